"""Kafka ACLs as code: topics/acls.toml, applied and drift-checked by `bordermon topics apply`.

Declared grants are expanded to one binding per operation (ALLOW, any host) and compared with
what the cluster holds (`describe_acls`): missing bindings are created (or reported, with
--check); bindings on the cluster that are not declared are reported as drift and left alone,
like drifted topics. A broker without an authorizer answers SECURITY_DISABLED: ACLs are then
skipped with a note, so the same command serves the plaintext and the secure stack.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

ACLS_FILE = "acls.toml"
_RESOURCES = {
    "topic": "TOPIC",
    "group": "GROUP",
    "cluster": "BROKER",  # confluent-kafka's name for the cluster resource
    "transactional_id": "TRANSACTIONAL_ID",
}
_OPERATIONS = (
    "all",
    "read",
    "write",
    "create",
    "delete",
    "alter",
    "describe",
    "cluster_action",
    "describe_configs",
    "alter_configs",
    "idempotent_write",
)
_PATTERNS = ("literal", "prefixed")
_KEYS = {"principal", "resource", "role", "name", "pattern", "operations"}
CLUSTER_NAME = "kafka-cluster"


class AclDeclarationError(ValueError):
    """acls.toml is wrong; the message names the file, the entry and the fix."""


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW binding, as compared with the cluster (names as Kafka spells them)."""

    principal: str
    resource: str
    """TOPIC, GROUP, BROKER (the cluster) or TRANSACTIONAL_ID (confluent-kafka's names)."""
    name: str
    pattern: str
    """LITERAL or PREFIXED."""
    operation: str
    """READ, WRITE, ... (AclOperation names)."""
    host: str = "*"

    def __str__(self) -> str:
        kind = "cluster" if self.resource == "BROKER" else self.resource.lower()
        prefixed = "*" if self.pattern == "PREFIXED" else ""
        return f"{self.principal:<16} {self.operation:<9} {kind} {self.name}{prefixed}"


def default_acls_file(topics_file: Path) -> Path:
    """acls.toml beside the topics declarations."""
    return topics_file.with_name(ACLS_FILE)


def read_declarations_file(file: Path, error: type[ValueError]) -> dict[str, Any]:
    """A TOML declarations file (topics, ACLs); `error` names the file and the problem."""
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise error(f"{file}: no such file") from None
    except OSError as failure:
        raise error(f"{file}: cannot read it ({failure.strerror})") from None
    except tomllib.TOMLDecodeError as failure:
        raise error(f"{file}: not valid TOML ({failure})") from None


def load_acls(
    path: Path, topic_names: Mapping[str, str], placeholders: Mapping[str, str]
) -> list[Acl]:
    """The bindings declared in `path`; topic roles resolve through `topic_names` (role ->
    name) and `{placeholders}` in names (e.g. {consumer_group}) through `placeholders`."""
    doc = read_declarations_file(path, AclDeclarationError)
    unknown = sorted(set(doc) - {"acls"})
    entries = doc.get("acls")
    if unknown or not isinstance(entries, list):
        raise AclDeclarationError(f"{path}: expected only [[acls]] tables")
    out: list[Acl] = []
    for number, raw in enumerate(entries, start=1):
        out += _parse(raw, f"{path}: acl #{number}", topic_names, placeholders)
    return sorted(set(out))


def _parse(
    raw: object, where: str, topic_names: Mapping[str, str], placeholders: Mapping[str, str]
) -> list[Acl]:
    if not isinstance(raw, dict):
        raise AclDeclarationError(f"{where}: must be a table ([[acls]])")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise AclDeclarationError(f"{where}: unknown key(s) {', '.join(unknown)}")
    principal = raw.get("principal")
    if not isinstance(principal, str) or not principal.startswith("User:") or principal == "User:":
        raise AclDeclarationError(f"{where}: principal must be 'User:<name>', got {principal!r}")
    resource = raw.get("resource")
    if resource not in _RESOURCES:
        raise AclDeclarationError(
            f"{where}: resource {resource!r} is not one of {', '.join(_RESOURCES)}"
        )
    if resource == "topic":
        role = raw.get("role")
        if not isinstance(role, str) or role not in topic_names or "name" in raw:
            raise AclDeclarationError(
                f"{where}: a topic is named by its role, one of {', '.join(topic_names)}"
                f" (got role={role!r})"
            )
        name = topic_names[role]
    elif resource == "cluster":
        name = CLUSTER_NAME
    else:
        template = raw.get("name")
        if not isinstance(template, str) or not template or "role" in raw:
            raise AclDeclarationError(f"{where}: a {resource} needs a name (and no role)")
        try:
            name = template.format_map(dict(placeholders))
        except (KeyError, ValueError) as error:
            raise AclDeclarationError(
                f"{where}: unknown placeholder {error} in {template!r};"
                f" known: {', '.join('{' + k + '}' for k in placeholders)}"
            ) from None
    pattern = raw.get("pattern", "literal")
    if pattern not in _PATTERNS:
        raise AclDeclarationError(f"{where}: pattern must be literal or prefixed")
    operations = raw.get("operations")
    if (
        not isinstance(operations, list)
        or not operations
        or any(op not in _OPERATIONS for op in operations)
    ):
        raise AclDeclarationError(
            f"{where}: operations must be a non-empty list of {', '.join(_OPERATIONS)}"
        )
    return [
        Acl(principal, _RESOURCES[resource], name, pattern.upper(), op.upper()) for op in operations
    ]


# --- apply --------------------------------------------------------------------------------------


class AclStatus(Enum):
    CREATED = "created"
    OK = "ok"
    MISSING = "missing"
    UNDECLARED = "undeclared"
    FAILED = "failed"


@dataclass(frozen=True)
class AclReport:
    results: tuple[tuple[Acl, AclStatus, str], ...] = ()
    skipped: str = ""
    """Why ACLs were not applied (a broker without an authorizer); empty when they were."""

    @property
    def ok(self) -> bool:
        return all(status in (AclStatus.CREATED, AclStatus.OK) for _, status, _ in self.results)

    def with_status(self, status: AclStatus) -> list[Acl]:
        return [acl for acl, s, _ in self.results if s is status]

    def lines(self) -> list[str]:
        if self.skipped:
            return [f"ACLs: skipped ({self.skipped})"]
        out = [
            f"acl {acl} {status.value}" + (f": {error}" if error else "")
            for acl, status, error in self.results
            if status is not AclStatus.OK
        ]
        counts = ", ".join(
            f"{len(self.with_status(s))} {s.value}" for s in AclStatus if self.with_status(s)
        )
        out.append(f"{len(self.results)} ACL bindings: {counts or 'none'}")
        if self.with_status(AclStatus.MISSING):
            out.append("create the missing ACLs with `bordermon topics apply` (as admin)")
        if self.with_status(AclStatus.UNDECLARED):
            out.append(
                "undeclared ACLs are reported, never removed: declare them in acls.toml or"
                " remove them by hand (kafka-acls --remove)"
            )
        return out


def _binding(acl: Acl) -> Any:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBinding(
        ResourceType[acl.resource],
        acl.name,
        ResourcePatternType[acl.pattern],
        acl.principal,
        acl.host,
        AclOperation[acl.operation],
        AclPermissionType.ALLOW,
    )


def _authorizer(admin: Any, timeout: float) -> str | None:
    """The broker's authorizer.class.name ('' when it has none); None when it cannot be read.

    A Kafka 4 broker without an authorizer answers DescribeAcls with an empty list rather than
    SECURITY_DISABLED, so "no ACLs" and "no ACLs possible" are told apart by its config."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]

    try:
        brokers = admin.list_topics(timeout=timeout).brokers
        resource = ConfigResource(ResourceType.BROKER, str(min(brokers)))
        entries = admin.describe_configs([resource], request_timeout=timeout)[resource].result()
    except (KafkaException, ValueError):
        return None
    entry = entries.get("authorizer.class.name")
    return None if entry is None else str(entry.value or "")


def _existing(admin: Any, timeout: float) -> list[Acl] | str:
    """Every ALLOW binding on the cluster, or why they cannot be listed (no authorizer)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    if _authorizer(admin, timeout) == "":
        return "the broker has no authorizer (authorizer.class.name is empty): nothing to apply"
    # None matches any name, principal and host (the stubs say str).
    everything = AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]
        ResourcePatternType.ANY,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    try:
        bindings = admin.describe_acls(everything, request_timeout=timeout).result()
    except KafkaException as error:
        kafka_error = error.args[0]
        if kafka_error.code() == KafkaError.SECURITY_DISABLED:
            return "this broker has no authorizer: nothing to apply"
        raise
    out = []
    for b in bindings:
        # A DENY is never declared here: it shows as undeclared, marked as such.
        deny = "" if b.permission_type == AclPermissionType.ALLOW else "DENY "
        out.append(
            Acl(
                b.principal,
                b.restype.name,
                b.name,
                b.resource_pattern_type.name,
                deny + b.operation.name,
                b.host,
            )
        )
    return out


def apply_acls(
    admin: Any, declared: Sequence[Acl], *, check_only: bool, timeout: float = 15.0
) -> AclReport:
    """Create the declared bindings that are missing (unless check_only); report the rest."""
    from confluent_kafka import KafkaException

    existing = _existing(admin, timeout)
    if isinstance(existing, str):
        return AclReport(skipped=existing)
    have = set(existing)
    results: list[tuple[Acl, AclStatus, str]] = []
    missing = [acl for acl in declared if acl not in have]
    results += [(acl, AclStatus.OK, "") for acl in declared if acl in have]
    if check_only:
        results += [(acl, AclStatus.MISSING, "") for acl in missing]
    elif missing:
        bindings = [_binding(acl) for acl in missing]
        futures = admin.create_acls(bindings, request_timeout=timeout)
        for acl, binding in zip(missing, bindings, strict=True):
            try:
                futures[binding].result()
                results.append((acl, AclStatus.CREATED, ""))
            except KafkaException as error:
                results.append((acl, AclStatus.FAILED, error.args[0].str()))
    wanted = set(declared)
    results += [(acl, AclStatus.UNDECLARED, "") for acl in sorted(have - wanted)]
    return AclReport(tuple(results))
