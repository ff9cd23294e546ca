"""topics/acls.toml gives each role exactly what it needs, and bad files fail clearly.

Pure: reads files only. (Applying against the secure broker and the refusals it enforces:
tests/integration/test_security.py.)
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bordermon.admin.acls import Acl, AclDeclarationError, AclStatus, apply_acls, load_acls

REPO = Path(__file__).resolve().parents[2]
ACLS_FILE = REPO / "topics" / "acls.toml"
NAMES = {
    "crossings": "c",
    "flags": "f",
    "dead_letter": "d",
    "links": "l",
}


def grants(acls: list[Acl], user: str) -> set[tuple[str, str, str, str]]:
    return {
        (a.resource, a.name, a.pattern, a.operation) for a in acls if a.principal == f"User:{user}"
    }


def test_each_principal_gets_only_what_its_role_needs() -> None:
    acls = load_acls(ACLS_FILE, NAMES, {"consumer_group": "grp"})
    assert grants(acls, "scanner") == {("TOPIC", "c", "LITERAL", "WRITE")}
    assert grants(acls, "worker") == {
        ("TOPIC", "c", "LITERAL", "READ"),
        ("TOPIC", "l", "LITERAL", "READ"),
        ("TOPIC", "l", "LITERAL", "WRITE"),
        ("TOPIC", "f", "LITERAL", "WRITE"),
        ("TOPIC", "d", "LITERAL", "WRITE"),
        ("GROUP", "grp", "LITERAL", "READ"),
    }
    assert grants(acls, "subscriber") == {
        ("TOPIC", "f", "LITERAL", "READ"),
        ("GROUP", "bordermon-flags-", "PREFIXED", "READ"),
        ("GROUP", "grp.flags-cli", "LITERAL", "READ"),
    }
    assert not grants(acls, "admin")  # a super user
    forbidden = {"CREATE", "DELETE", "ALTER", "ALTER_CONFIGS", "ALL"}
    assert not {a.operation for a in acls} & forbidden


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('principal = "scanner"\nresource = "topic"\nrole = "crossings"', "principal must be"),
        ('principal = "User:x"\nresource = "table"', "resource 'table'"),
        ('principal = "User:x"\nresource = "topic"\nrole = "nope"', "named by its role"),
        ('principal = "User:x"\nresource = "group"\nname = "{nope}"', "unknown placeholder"),
        ('principal = "User:x"\nresource = "group"\nname = "g"\noperations = ["fly"]', "ops"),
        ('principal = "User:x"\nresource = "group"\nname = "g"\nextra = 1', "unknown key"),
    ],
)
def test_bad_declarations_name_the_entry(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "acls.toml"
    if "operations" not in entry:
        entry += '\noperations = ["read"]'
    path.write_text("[[acls]]\n" + entry + "\n")
    with pytest.raises(AclDeclarationError, match="acl #1") as error:
        load_acls(path, NAMES, {"consumer_group": "grp"})
    if message != "ops":
        assert message in str(error.value)


class FakeAdmin:
    """describe_configs says whether there is an authorizer; describe_acls lists `existing`."""

    def __init__(self, authorizer: str, existing: list[Any]) -> None:
        self.authorizer = authorizer
        self.existing = existing
        self.created: list[Any] = []

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(brokers={1: None})

    def describe_configs(self, resources: list[Any], request_timeout: float) -> Any:
        value = SimpleNamespace(value=self.authorizer)
        return {resources[0]: _Done({"authorizer.class.name": value})}

    def describe_acls(self, flt: Any, request_timeout: float) -> Any:
        return _Done(self.existing)

    def create_acls(self, bindings: list[Any], request_timeout: float) -> Any:
        self.created += bindings
        return {b: _Done(None) for b in bindings}


class _Done:
    def __init__(self, value: object) -> None:
        self.value = value

    def result(self) -> object:
        return self.value


def test_without_an_authorizer_acls_are_skipped_with_a_note() -> None:
    acls = load_acls(ACLS_FILE, NAMES, {"consumer_group": "grp"})
    report = apply_acls(FakeAdmin("", []), acls, check_only=False)
    assert report.ok and "no authorizer" in report.lines()[0]


def test_missing_are_created_and_undeclared_are_reported_not_removed() -> None:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    acls = load_acls(ACLS_FILE, NAMES, {"consumer_group": "grp"})
    stray = AclBinding(
        ResourceType.TOPIC,
        "f",
        ResourcePatternType.LITERAL,
        "User:scanner",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    admin = FakeAdmin("org.apache.kafka.metadata.authorizer.StandardAuthorizer", [stray])
    report = apply_acls(admin, acls, check_only=False)
    assert len(admin.created) == len(acls)
    assert len(report.with_status(AclStatus.CREATED)) == len(acls)
    assert [str(a) for a in report.with_status(AclStatus.UNDECLARED)] == [
        "User:scanner     READ      topic f"
    ]
    assert not report.ok and any("never removed" in line for line in report.lines())
    checked = apply_acls(FakeAdmin("StandardAuthorizer", []), acls, check_only=True)
    assert len(checked.with_status(AclStatus.MISSING)) == len(acls) and not checked.ok
