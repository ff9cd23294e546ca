"""What every command shares: the one-line error, settings options, inputs and outputs.

Every failure a person can cause (a missing file, a bad setting, a broker that is down) ends
as one line on stderr and a non-zero exit code, never a traceback: a command raises
`CommandError` (or lets a `SettingsError` / `InputError` through) and `bordermon.cli.main`
prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from bordermon.settings import Settings

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "KAFKA_SECURITY_SETTINGS",
    "CommandError",
    "add_settings_options",
    "load_settings",
    "open_input",
    "open_output",
]


class CommandError(Exception):
    """A failure to report as one line (exit code 2 unless given)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_settings_options(
    parser: argparse.ArgumentParser, *names: str, with_config: bool = True
) -> None:
    """Command-line overrides of settings; each also reads BORDERMON_<NAME> and the config file.
    `with_config=False` when the command already has its own --config option."""
    if with_config:
        parser.add_argument(
            "--config",
            metavar="FILE",
            help="TOML config file with settings (default: $BORDERMON_CONFIG)",
        )
    helps = {
        "kafka_bootstrap": ("HOST:PORT", "Kafka bootstrap servers (default localhost:9092)"),
        "redis_url": ("URL", "Redis URL (default redis://localhost:6379/0)"),
        "crossings_topic": ("TOPIC", "crossings topic (default bordermon.crossings)"),
        "flags_topic": ("TOPIC", "flags topic (default bordermon.flags)"),
        "dead_letter_topic": ("TOPIC", "dead-letter topic (default bordermon.crossings.dlq)"),
        "consumer_group": ("GROUP", "Kafka consumer group"),
        "window": ("DURATION", "detection window, e.g. 30d, 72h (default 30d)"),
        "monitored_country": ("CC", "the monitored country (default KZ)"),
        "destinations_of_concern": ("CC,CC", "destinations of concern (default RU)"),
        "watchlists": ("SRC,SRC", "watchlists: builtin:chpl and/or CSV files (hs6,tier,...)"),
        "state_ttl": ("DURATION", "state expiry after a consignment's last event"),
        "rules": (
            "RULE,RULE",
            "rules to run (default transit-to-ru,relabel-to-ru,export-without-permit)",
        ),
        "relabel_window": ("DURATION", "window of relabel-to-ru (default 90d)"),
        "export_controls": (
            "SRC,SRC",
            "export-control lists: builtin:chpl-tiers-1-2 (default) and/or CSV files",
        ),
        "link_state_ttl": ("DURATION", "link-key state expiry after its last sighting"),
        "links_topic": ("TOPIC", "internal link-sightings topic (default bordermon.links)"),
        "require_signatures": (
            "true|false",
            "dead-letter crossings not signed by a scanner of the registry (default false)",
        ),
        "scanner_registry": ("FILE", "scanner registry: scanner ids, public keys, checkpoints"),
        "metrics_port": ("PORT", "port of /metrics (0 disables; default 9108)"),
        "kafka_security_protocol": (
            "PROTOCOL",
            "Kafka security: PLAINTEXT (default), SASL_SSL, SSL or SASL_PLAINTEXT",
        ),
        "kafka_sasl_mechanism": ("MECHANISM", "SASL mechanism (default SCRAM-SHA-512)"),
        "kafka_username": ("USER", "Kafka SASL user"),
        "kafka_password_file": ("FILE", "file holding the Kafka SASL password (mode 0600)"),
        "kafka_ca_file": ("PEM", "CA certificate(s) that signed the Kafka brokers' certificates"),
        "redis_password_file": ("FILE", "file holding the Redis password (wins over the URL's)"),
    }
    for name in names:
        metavar, text = helps[name]
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest="setting_" + name,
            metavar=metavar,
            help=f"{text}; env BORDERMON_{name.upper()}",
        )


KAFKA_SECURITY_SETTINGS = (
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_username",
    "kafka_password_file",
    "kafka_ca_file",
)
"""The options every Kafka client command offers (with kafka_bootstrap)."""


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {
        key.removeprefix("setting_"): value
        for key, value in vars(args).items()
        if key.startswith("setting_")
    }
    return Settings.load(overrides, config_file=getattr(args, "config", None))


def open_input(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        return Path(path).open("rb")
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None


class _ReportingSink(io.RawIOBase):
    """Writes through to `target` at once; a write error (a full disk, a quota) becomes one
    `CommandError` naming the output, and whatever is written after it is dropped, so that
    closing or flushing at exit does not report it a second time."""

    def __init__(self, target: IO[bytes], name: str, *, owned: bool) -> None:
        super().__init__()
        self._target = target
        self._name = name
        self._owned = owned
        self._failed = False

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        if not self._failed:
            try:
                while view:
                    view = view[self._target.write(view) or 0 :]
                self._target.flush()
            except BrokenPipeError:
                raise  # `| head`: main() treats the reader leaving as normal
            except OSError as error:
                self._failed = True
                raise CommandError(f"cannot write {self._name}: {error.strerror}") from None
        return size

    def close(self) -> None:
        if not self.closed and self._owned:
            with contextlib.suppress(OSError):
                self._target.close()
        super().close()


def open_output(path: str) -> IO[bytes]:
    """A buffered output (`-`: stdout) whose write errors end the command as one line."""
    if path == "-":
        sys.stdout.flush()
        buffer = sys.stdout.buffer
        sink = _ReportingSink(getattr(buffer, "raw", buffer), "to stdout", owned=False)
    else:
        try:
            target = Path(path).open("wb", buffering=0)  # noqa: SIM115 - the sink closes it
        except OSError as error:
            raise CommandError(f"cannot write {path}: {error.strerror}") from None
        sink = _ReportingSink(target, f"to {path}", owned=True)
    return io.BufferedWriter(sink, buffer_size=1 << 16)
