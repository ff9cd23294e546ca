"""topics/topics.toml declares SPEC §2's topics sanely, and bad files fail with a clear message.

Pure: reads files only, no broker. (Creating and drift against a real broker: see
tests/integration/test_stack_and_topics.py.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from bordermon.admin.topics import (
    ROLES,
    TopicDeclaration,
    TopicDeclarationError,
    _compare,
    default_topics_file,
    load_declarations,
    with_names,
)
from bordermon.settings import Settings

REPO = Path(__file__).resolve().parents[2]
TOPICS_FILE = REPO / "topics" / "topics.toml"
DAY_MS = 86_400_000

SPEC_NAMES = {
    "crossings": "bordermon.crossings",
    "flags": "bordermon.flags",
    "dead_letter": "bordermon.crossings.dlq",
    "links": "bordermon.links",  # internal, between the two stages (SPEC §2, §4.2)
}


@pytest.fixture
def declared() -> dict[str, TopicDeclaration]:
    return {d.role: d for d in load_declarations(TOPICS_FILE)}


def test_every_role_is_declared_once_with_the_spec_names(
    declared: dict[str, TopicDeclaration],
) -> None:
    roles = [d.role for d in load_declarations(TOPICS_FILE)]
    assert sorted(roles) == sorted(ROLES)
    assert {role: d.name for role, d in declared.items()} == SPEC_NAMES


def test_names_agree_with_the_settings_defaults(declared: dict[str, TopicDeclaration]) -> None:
    defaults = Settings()
    for role in ROLES:
        assert getattr(defaults, f"{role}_topic") == declared[role].name


def test_numbers_are_sane(declared: dict[str, TopicDeclaration]) -> None:
    for d in declared.values():
        assert 1 <= d.partitions <= 64, d
        assert d.replication_factor >= 1, d
        assert d.config["cleanup.policy"] == "delete", d
        assert int(d.config["retention.ms"]) >= 7 * DAY_MS, d
    # The input is the busiest topic: the most partitions.
    assert declared["crossings"].partitions >= declared["flags"].partitions
    assert declared["crossings"].partitions >= declared["dead_letter"].partitions


def test_crossings_history_covers_the_state_ttl(declared: dict[str, TopicDeclaration]) -> None:
    """Lost Redis state can be rebuilt by re-reading the crossings topic (SPEC §6)."""
    ttl_ms = Settings().state_ttl_ns // 1_000_000
    assert int(declared["crossings"].config["retention.ms"]) >= ttl_ms


def test_anything_the_crossings_topic_accepts_can_be_dead_lettered(
    declared: dict[str, TopicDeclaration],
) -> None:
    crossings = int(declared["crossings"].config["max.message.bytes"])
    dead_letter = int(declared["dead_letter"].config["max.message.bytes"])
    assert crossings >= 64 * 1024  # at least SPEC §3's limit, so too_large reaches the worker
    assert dead_letter > crossings


def test_declarations_are_frozen_with_string_configs(
    declared: dict[str, TopicDeclaration],
) -> None:
    d = declared["crossings"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.partitions = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        d.config["retention.ms"] = "1"  # type: ignore[index]
    assert all(isinstance(v, str) for v in d.config.values())
    assert d.renamed("x").name == "x" and d.name == "bordermon.crossings"


def test_default_file_is_the_repo_one_or_the_env_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BORDERMON_TOPICS_FILE", raising=False)
    assert default_topics_file().resolve() == TOPICS_FILE
    own = tmp_path / "prod-topics.toml"
    own.write_text(TOPICS_FILE.read_text().replace('"bordermon.flags"', '"prod.flags"'))
    monkeypatch.setenv("BORDERMON_TOPICS_FILE", str(own))
    assert {d.role: d.name for d in load_declarations()}["flags"] == "prod.flags"
    monkeypatch.setenv("BORDERMON_TOPICS_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(TopicDeclarationError, match=r"BORDERMON_TOPICS_FILE=.*no such file"):
        load_declarations()


def test_name_overrides(declared: dict[str, TopicDeclaration]) -> None:
    renamed = with_names(list(declared.values()), {"flags": "test.flags"})
    assert {d.role: d.name for d in renamed}["flags"] == "test.flags"
    with pytest.raises(TopicDeclarationError, match="unknown role"):
        with_names(list(declared.values()), {"flagz": "x"})
    with pytest.raises(TopicDeclarationError, match="used twice"):
        with_names(list(declared.values()), {"flags": "bordermon.crossings"})
    with pytest.raises(TopicDeclarationError, match="not a Kafka topic name"):
        with_names(list(declared.values()), {"flags": "bad name"})


GOOD = """
[[topics]]
role = "crossings"
name = "a"
partitions = 2
replication_factor = 1
[topics.config]
"retention.ms" = 1_000
"cleanup.policy" = "delete"

[[topics]]
role = "flags"
name = "b"
partitions = 1
replication_factor = 1

[[topics]]
role = "dead_letter"
name = "c"
partitions = 1
replication_factor = 1
[topics.config]
"unclean.leader.election.enable" = false

[[topics]]
role = "links"
name = "d"
partitions = 2
replication_factor = 1
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topics.toml"
    path.write_text(text)
    return path


def test_a_minimal_file_loads_and_values_become_strings(tmp_path: Path) -> None:
    loaded = {d.role: d for d in load_declarations(_write(tmp_path, GOOD))}
    assert loaded["crossings"].config == {"retention.ms": "1000", "cleanup.policy": "delete"}
    assert loaded["dead_letter"].config == {"unclean.leader.election.enable": "false"}
    assert loaded["flags"].config == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[topics]\n", "not valid TOML"),
        ("", "declares no topics"),
        ("version = 1\n" + GOOD, "unknown top-level key"),
        (GOOD.replace('role = "flags"', 'role = "alerts"'), "role 'alerts' is not one of"),
        (GOOD.replace('role = "flags"', 'role = "crossings"'), "more than once"),
        (GOOD.replace('name = "b"', 'name = "a"'), "used twice"),
        (GOOD.replace('name = "b"', 'name = "b c"'), "not a Kafka topic name"),
        (GOOD.replace("partitions = 2", "partitions = 0"), "partitions must be a whole number"),
        (GOOD.replace("partitions = 2", "partitions = true"), "partitions must be a whole"),
        (GOOD.replace("partitions = 2", 'partitions = "6"'), "partitions must be a whole"),
        (GOOD.replace('name = "b"\n', ""), "`name` is missing"),
        (GOOD.replace('name = "b"', 'name = "b"\npartition = 3'), "unknown key(s) partition"),
        (GOOD.replace("= 1_000", "= 1.5"), "must be a string, an integer or a boolean"),
        (GOOD.replace('"retention.ms"', '"Retention MS"'), "is not a Kafka config name"),
    ],
)
def test_a_bad_file_names_itself_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(TopicDeclarationError) as caught:
        load_declarations(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TopicDeclarationError, match="no such file"):
        load_declarations(tmp_path / "absent.toml")


def _metadata(partitions: int, replicas: int) -> SimpleNamespace:
    parts = {i: SimpleNamespace(replicas=list(range(replicas))) for i in range(partitions)}
    return SimpleNamespace(partitions=parts)


def _configs(**values: str) -> dict[str, SimpleNamespace]:
    return {key.replace("_", "."): SimpleNamespace(value=v) for key, v in values.items()}


def test_drift_compares_partitions_replication_and_each_declared_config() -> None:
    d = TopicDeclaration(
        "flags", "f", 3, 1, {"cleanup.policy": "compact,delete", "retention.ms": "100"}
    )
    same = _configs(cleanup_policy="delete,compact", retention_ms="100", segment_ms="5")
    assert _compare(d, _metadata(3, 1), same) == []
    drift = _compare(d, _metadata(4, 2), _configs(cleanup_policy="delete", retention_ms="100"))
    assert [str(x) for x in drift] == [
        "partitions declared 3, found 4",
        "replication_factor declared 1, found 2",
        "cleanup.policy declared compact,delete, found delete",
    ]
    unknown = _compare(d, _metadata(3, 1), _configs(retention_ms="100"))
    assert [x.setting for x in unknown] == ["cleanup.policy"]
