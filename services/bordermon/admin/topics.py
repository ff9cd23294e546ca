"""Create or check the Kafka topics declared in topics/topics.toml (SPEC §2).

`bordermon topics apply` creates the declared topics that are missing, with their partition
count, replication factor and configs, and compares the ones that exist with the declaration.
It never changes an existing topic: adding partitions re-maps keys (a consignment would change
owner in the middle of its window) and changing retention or cleanup on a live cluster is an
operator's decision, so drift is reported and left to a person. `--check` only reports.

Exit codes: 0 when every declared topic exists and matches; 1 when one is missing (with
--check), drifted or could not be created; 2 when the broker cannot be reached or the
declarations or settings are unusable.

The declarations file is --file, else $BORDERMON_TOPICS_FILE, else topics/topics.toml of the
checkout. Topic names can be overridden per deployment with the settings crossings_topic,
flags_topic and dead_letter_topic (BORDERMON_CROSSINGS_TOPIC, ... or the flags below).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bordermon.admin.acls import (
    Acl,
    AclReport,
    AclStatus,
    apply_acls,
    read_declarations_file,
)
from bordermon.kafka import BrokerUnreachable

ROLES: tuple[str, ...] = ("crossings", "flags", "dead_letter", "links")
"""Every declarations file declares each role exactly once."""
TOPICS_FILE_ENV = "BORDERMON_TOPICS_FILE"
DEFAULT_BOOTSTRAP = "localhost:9092"
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_CONFIG_NAME = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")
_TOPIC_KEYS = {"role", "name", "partitions", "replication_factor", "config", "description"}
_LIST_CONFIGS = {"cleanup.policy"}
"""Configs whose value is a comma-separated set: compared without regard to order."""


class TopicDeclarationError(ValueError):
    """The declarations file is missing or wrong; the message names the file and the fix."""


@dataclass(frozen=True)
class TopicDeclaration:
    """One declared topic. `config` values are strings, as Kafka reports them."""

    role: str
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    description: str = ""

    def renamed(self, name: str) -> TopicDeclaration:
        return replace(self, name=name)


# --- declarations -----------------------------------------------------------------------------


def default_topics_file() -> Path:
    """$BORDERMON_TOPICS_FILE, else topics/topics.toml of the checkout (beside this package or
    above the working directory)."""
    env = os.environ.get(TOPICS_FILE_ENV, "").strip()
    if env:
        path = Path(env)
        if not path.is_file():
            raise TopicDeclarationError(f"{TOPICS_FILE_ENV}={env}: no such file")
        return path
    here = Path(__file__).resolve()
    cwd = Path.cwd().resolve()
    for base in (here.parents[3], cwd, *cwd.parents):  # the checkout: services/bordermon/admin/
        candidate = base / "topics" / "topics.toml"
        if candidate.is_file():
            return candidate
    raise TopicDeclarationError(
        "cannot find topics/topics.toml: run from the bordermon checkout, pass --file, or set"
        f" {TOPICS_FILE_ENV} (an installed package does not carry the topics/ folder)"
    )


def _config_value(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value).strip()
    return None


def _parse_topic(raw: object, where: str) -> TopicDeclaration:
    if not isinstance(raw, dict):
        raise TopicDeclarationError(f"{where}: must be a table ([[topics]])")
    unknown = sorted(set(raw) - _TOPIC_KEYS)
    if unknown:
        raise TopicDeclarationError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOPIC_KEYS))}"
        )
    for key in ("role", "name", "partitions", "replication_factor"):
        if key not in raw:
            raise TopicDeclarationError(f"{where}: `{key}` is missing")
    role, name = raw["role"], raw["name"]
    if role not in ROLES:
        raise TopicDeclarationError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
    where = f"{where} ({role})"
    if not isinstance(name, str) or not _TOPIC_NAME.fullmatch(name) or name in {".", ".."}:
        raise TopicDeclarationError(
            f"{where}: name {name!r} is not a Kafka topic name"
            " (1-249 of letters, digits, '.', '_', '-')"
        )
    numbers: dict[str, int] = {}
    for key in ("partitions", "replication_factor"):
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TopicDeclarationError(
                f"{where}: {key} must be a whole number >= 1, got {value!r}"
            )
        numbers[key] = value
    config_raw = raw.get("config", {})
    if not isinstance(config_raw, dict):
        raise TopicDeclarationError(f"{where}: config must be a table of Kafka topic configs")
    config: dict[str, str] = {}
    for key, value in config_raw.items():
        text = _config_value(value)
        if not _CONFIG_NAME.fullmatch(key):
            raise TopicDeclarationError(f"{where}: {key!r} is not a Kafka config name")
        if text is None:
            raise TopicDeclarationError(
                f"{where}: config {key} must be a string, an integer or a boolean, got {value!r}"
            )
        config[key] = text
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise TopicDeclarationError(f"{where}: description must be a string")
    return TopicDeclaration(
        role=role,
        name=name,
        partitions=numbers["partitions"],
        replication_factor=numbers["replication_factor"],
        config=MappingProxyType(config),
        description=description,
    )


def load_declarations(path: Path | str | None = None) -> list[TopicDeclaration]:
    """The topics declared in `path` (default: `default_topics_file()`), in file order.

    Raises TopicDeclarationError, naming the file and what to fix, when the file is missing,
    is not TOML, or does not declare each role of ROLES exactly once with sane values.
    """
    file = Path(path) if path is not None else default_topics_file()
    doc = read_declarations_file(file, TopicDeclarationError)
    unknown = sorted(set(doc) - {"topics"})
    if unknown:
        raise TopicDeclarationError(
            f"{file}: unknown top-level key(s) {', '.join(unknown)}; only [[topics]] tables"
        )
    raw_topics = doc.get("topics")
    if not isinstance(raw_topics, list) or not raw_topics:
        raise TopicDeclarationError(f"{file}: declares no topics (expected [[topics]] tables)")
    declarations = [
        _parse_topic(raw, f"{file}: topic #{number}")
        for number, raw in enumerate(raw_topics, start=1)
    ]
    _check_unique(declarations, str(file))
    return declarations


def _check_unique(declarations: Sequence[TopicDeclaration], where: str) -> None:
    roles = [d.role for d in declarations]
    for role in ROLES:
        if roles.count(role) != 1:
            how = "is not declared" if role not in roles else "is declared more than once"
            raise TopicDeclarationError(f"{where}: role {role} {how}; each role exactly once")
    names = [d.name for d in declarations]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TopicDeclarationError(f"{where}: topic name(s) used twice: {', '.join(duplicates)}")


def with_names(
    declarations: Sequence[TopicDeclaration], name_overrides: Mapping[str, str] | None
) -> list[TopicDeclaration]:
    """The declarations with names replaced by role (e.g. {"crossings": "test.crossings"})."""
    overrides = dict(name_overrides or {})
    unknown = sorted(set(overrides) - set(ROLES))
    if unknown:
        raise TopicDeclarationError(
            f"name override for unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}"
        )
    for role, name in overrides.items():
        if not _TOPIC_NAME.fullmatch(name) or name in {".", ".."}:
            raise TopicDeclarationError(f"{role} topic: {name!r} is not a Kafka topic name")
    renamed = [d.renamed(overrides[d.role]) if d.role in overrides else d for d in declarations]
    _check_unique(renamed, "topic names")
    return renamed


# --- apply ------------------------------------------------------------------------------------


class Status(Enum):
    CREATED = "created"
    OK = "ok"
    DRIFT = "drift"
    MISSING = "missing"
    FAILED = "failed"


@dataclass(frozen=True)
class Drift:
    setting: str
    declared: str
    actual: str

    def __str__(self) -> str:
        return f"{self.setting} declared {self.declared}, found {self.actual}"


@dataclass(frozen=True)
class TopicResult:
    declaration: TopicDeclaration
    status: Status
    drift: tuple[Drift, ...] = ()
    error: str = ""

    def line(self) -> str:
        d = self.declaration
        text = f"{d.name:<28} {self.status.value:<8}"
        if self.status is Status.CREATED:
            plural = "" if d.partitions == 1 else "s"
            text += f" {d.partitions} partition{plural}, replication {d.replication_factor}"
        elif self.status is Status.DRIFT:
            text += " " + "; ".join(str(item) for item in self.drift)
        elif self.status is Status.FAILED:
            text += " " + self.error
        return text.rstrip()


@dataclass(frozen=True)
class ApplyReport:
    bootstrap: str
    results: tuple[TopicResult, ...]
    check_only: bool
    acls: AclReport | None = None
    """The ACLs of acls.toml, when they were applied or checked too."""

    @property
    def ok(self) -> bool:
        """Every declared topic exists and matches its declaration (and every ACL)."""
        topics_ok = all(r.status in (Status.CREATED, Status.OK) for r in self.results)
        return topics_ok and (self.acls is None or self.acls.ok)

    def by_status(self, status: Status) -> list[TopicResult]:
        return [r for r in self.results if r.status is status]

    def for_role(self, role: str) -> TopicResult:
        for result in self.results:
            if result.declaration.role == role:
                return result
        raise KeyError(role)

    def lines(self) -> list[str]:
        out = [result.line() for result in self.results]
        counts = ", ".join(
            f"{len(self.by_status(s))} {s.value}" for s in Status if self.by_status(s)
        )
        out.append(f"{len(self.results)} topics on {self.bootstrap}: {counts}")
        if self.by_status(Status.MISSING):
            out.append("create the missing topics with `bordermon topics apply`")
        if self.by_status(Status.DRIFT):
            out.append(
                "drift is reported, never changed: fix the topic by hand (kafka-configs,"
                " kafka-topics) or delete it and apply again, or update topics/topics.toml"
            )
        if self.acls is not None:
            out += self.acls.lines()
        return out


_QUIET_LOGGER = logging.getLogger("bordermon.admin.topics.librdkafka")
_QUIET_LOGGER.addHandler(logging.NullHandler())
_QUIET_LOGGER.propagate = False


def admin_client(bootstrap: str, client_config: Mapping[str, Any] | None = None) -> Any:
    """A confluent-kafka AdminClient whose librdkafka logs stay off the terminal.

    `client_config` is `Settings.kafka_client_config()` (security: SASL, TLS) when the cluster
    is secured; its bootstrap servers give way to `bootstrap`."""
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {
        **(client_config or {}),
        "bootstrap.servers": bootstrap,
        "logger": _QUIET_LOGGER,
    }
    return AdminClient(config)


def _normalize(key: str, value: str) -> str:
    value = value.strip()
    if key in _LIST_CONFIGS:
        return ",".join(sorted(part.strip() for part in value.split(",") if part.strip()))
    return value


def _compare(
    declaration: TopicDeclaration, topic_metadata: Any, configs: Mapping[str, Any]
) -> list[Drift]:
    drift: list[Drift] = []
    partitions = topic_metadata.partitions
    if len(partitions) != declaration.partitions:
        drift.append(Drift("partitions", str(declaration.partitions), str(len(partitions))))
    factors = sorted({len(p.replicas) for p in partitions.values()})
    if factors and factors != [declaration.replication_factor]:
        found = f"{factors[0]}" if len(factors) == 1 else f"{factors[0]}-{factors[-1]}"
        drift.append(Drift("replication_factor", str(declaration.replication_factor), found))
    for key, declared in declaration.config.items():
        entry = configs.get(key)
        if entry is None:
            drift.append(Drift(key, declared, "(not a config this broker knows)"))
            continue
        actual = "" if entry.value is None else str(entry.value)
        if _normalize(key, actual) != _normalize(key, declared):
            drift.append(Drift(key, declared, actual))
    return drift


def _exists(metadata: Any, name: str) -> bool:
    """Listed in the metadata (a topic whose leaders are still being elected counts)."""
    from confluent_kafka import KafkaError

    topic = metadata.topics.get(name)
    if topic is None:
        return False
    return topic.error is None or topic.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART


def _wait_visible(admin: Any, metadata: Any, names: Sequence[str], timeout: float) -> Any:
    """Metadata in which all `names` are listed, polling up to `timeout` seconds.

    A topic is created by the controller and reaches the brokers' metadata a moment later: a
    create (or a check) right after another client's create must wait for it, not call it
    missing.
    """
    deadline = time.monotonic() + timeout
    while not all(_exists(metadata, name) for name in names) and time.monotonic() < deadline:
        time.sleep(0.1)
        metadata = admin.list_topics(timeout=timeout)
    return metadata


def _describe_configs(
    admin: Any, names: Sequence[str], timeout: float
) -> dict[str, dict[str, Any] | str]:
    """name -> {config name -> ConfigEntry}, or the error text when it cannot be described.

    Retried for a few seconds: right after a topic is created the broker that answers may not
    know it yet."""
    from confluent_kafka import KafkaException

    # Re-exported without `as` by confluent_kafka.admin, which mypy --strict does not see.
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        ConfigResource,
        ResourceType,
    )

    out: dict[str, dict[str, Any] | str] = {}
    pending = list(names)
    deadline = time.monotonic() + min(timeout, 10.0)
    while pending:
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in pending]
        futures = admin.describe_configs(resources, request_timeout=timeout)
        failed: list[str] = []
        for resource, future in futures.items():
            try:
                out[resource.name] = future.result()
            except KafkaException as error:
                out[resource.name] = error.args[0].str() if error.args else str(error)
                failed.append(resource.name)
        if not failed or time.monotonic() > deadline:
            break
        pending = failed
        time.sleep(0.2)
    return out


def apply_topics(
    bootstrap: str,
    declarations_path: Path | None = None,
    name_overrides: Mapping[str, str] | None = None,
    check_only: bool = False,
    *,
    declarations: Sequence[TopicDeclaration] | None = None,
    timeout: float = 15.0,
    client_config: Mapping[str, Any] | None = None,
    acls: Sequence[Acl] | None = None,
) -> ApplyReport:
    """Create the missing declared topics (unless check_only) and compare the existing ones.

    `declarations` (already loaded) wins over `declarations_path`; `name_overrides` maps roles
    to names; `client_config` is `Settings.kafka_client_config()` for a secured cluster;
    `acls` (from `bordermon.admin.acls.load_acls`) are applied and checked too, after the topics.
    Returns once created topics are listed in the broker's metadata, so they can be
    used at once. Raises BrokerUnreachable when Kafka does not answer within `timeout` seconds,
    and TopicDeclarationError when the declarations are unusable.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    declared = with_names(
        declarations if declarations is not None else load_declarations(declarations_path),
        name_overrides,
    )
    admin = admin_client(bootstrap, client_config)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as error:
        reason = error.args[0].str() if error.args else str(error)
        raise BrokerUnreachable(f"cannot reach Kafka at {bootstrap} ({reason})") from None

    results: dict[str, TopicResult] = {}
    to_create = [d for d in declared if not _exists(metadata, d.name)]
    if check_only:
        for d in to_create:
            results[d.name] = TopicResult(d, Status.MISSING)
    elif to_create:
        futures = admin.create_topics(
            [
                NewTopic(
                    d.name,
                    num_partitions=d.partitions,
                    replication_factor=d.replication_factor,
                    config=dict(d.config),
                )
                for d in to_create
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for d in to_create:
            try:
                futures[d.name].result()
                results[d.name] = TopicResult(d, Status.CREATED)
            except KafkaException as error:
                kafka_error = error.args[0]
                # TOPIC_ALREADY_EXISTS: created meanwhile by another client; compared below.
                if kafka_error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    results[d.name] = TopicResult(d, Status.FAILED, error=kafka_error.str())
        failed = {name for name, r in results.items() if r.status is Status.FAILED}
        wanted = [d.name for d in to_create if d.name not in failed]
        metadata = _wait_visible(admin, metadata, wanted, timeout)

    existing = [d for d in declared if d.name not in results and _exists(metadata, d.name)]
    configs = _describe_configs(admin, [d.name for d in existing], timeout)
    for d in existing:
        entries = configs.get(d.name, "not described")
        if isinstance(entries, str):
            results[d.name] = TopicResult(
                d, Status.FAILED, error=f"cannot read its configs: {entries}"
            )
            continue
        drift = _compare(d, metadata.topics[d.name], entries)
        results[d.name] = TopicResult(d, Status.DRIFT if drift else Status.OK, tuple(drift))
    for d in declared:
        results.setdefault(
            d.name,
            TopicResult(d, Status.FAILED, error=f"not in the broker's metadata after {timeout:g}s"),
        )
    acl_report = None
    if acls is not None:
        try:
            acl_report = apply_acls(admin, acls, check_only=check_only, timeout=timeout)
        except KafkaException as error:
            reason = error.args[0].str() if error.args else str(error)
            acl_report = AclReport(
                tuple((acl, AclStatus.FAILED, f"cannot list ACLs: {reason}") for acl in acls)
            )
    return ApplyReport(bootstrap, tuple(results[d.name] for d in declared), check_only, acl_report)
