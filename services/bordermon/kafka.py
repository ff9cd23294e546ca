"""Plumbing for the confluent-kafka clients of the command line (publish, flags).

Both commands need the same things from Kafka: a quick, honest answer to "is the broker there
and does the topic exist" (librdkafka reports connection failures asynchronously, so waiting
for a call to time out would make a person wait seconds for a refused connection), the client's
log kept off stderr unless asked for, SIGTERM handled like Ctrl-C, and the one line that tells a
person what to do when Kafka is not there.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from confluent_kafka import KafkaError

KAFKA_LOGGER = "bordermon.kafka"
"""librdkafka's own log goes to this Python logger (not straight to stderr), so an application
decides what to show; the CLI shows it only with --verbose."""


CONNECT_TIMEOUT_S = 5.0
# A refused connection is reported in milliseconds, but a host name can resolve to several
# addresses (localhost: ::1 and 127.0.0.1) and librdkafka tries them one per reconnect: give it
# this long to try them all before believing "all brokers down".
_ALL_DOWN_GRACE_S = 1.5


class KafkaUnavailable(RuntimeError):
    """Kafka cannot be used right now: the cluster is unreachable or the topic is missing."""


class BrokerUnreachable(KafkaUnavailable):
    """No broker of the bootstrap list answered (refused, unresolvable, or silent)."""


class TopicNotFound(KafkaUnavailable):
    """The cluster answers but the topic does not exist (topics are created on purpose)."""


class NotAuthorized(KafkaUnavailable):
    """The cluster refused this client: its login failed, or no ACL lets it use the topic."""


# --- client plumbing shared with the flags subscriber -----------------------------------------


class _KafkaClient(Protocol):
    """What the connection check needs from a confluent-kafka Producer or Consumer."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...


class ClientErrors:
    """Collects librdkafka's asynchronous client errors (the `error_cb`).

    Connection failures are reported there, not by the call that waits for them, so the
    connection check reads them to fail in a fraction of a second on a refused connection
    instead of waiting out its whole timeout.
    """

    def __init__(self) -> None:
        self.seen: list[KafkaError] = []
        self.fatal: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        if len(self.seen) >= 100:
            del self.seen[:50]
        self.seen.append(error)
        if error.fatal():
            self.fatal = error

    def authentication_failed(self) -> KafkaError | None:
        """The SASL login was refused (a wrong user or password), if it was."""
        from confluent_kafka import KafkaError

        for error in reversed(self.seen):
            if error.code() == KafkaError._AUTHENTICATION:
                return error
        return None

    def all_brokers_down(self) -> bool:
        from confluent_kafka import KafkaError

        return any(e.code() == KafkaError._ALL_BROKERS_DOWN for e in self.seen)

    def last_transport_reason(self) -> str | None:
        """`Connection refused`, `Failed to resolve 'host:9092'`... from the latest error."""
        for error in reversed(self.seen):
            text = str(error.str())
            if "brokers are down" in text:
                continue
            return _short_reason(text)
        return None


def _short_reason(text: str) -> str:
    """librdkafka writes `host:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection
    refused (after 0ms in state CONNECT)`; a person needs `Connection refused`."""
    text = text.split("/bootstrap: ", 1)[-1]
    text = text.split(" (after ", 1)[0]
    if " failed: " in text and text.startswith("Connect to "):
        text = text.split(" failed: ", 1)[1]
    return text.strip()


def check_topic(
    client: _KafkaClient,
    poll: Callable[[float], object],
    errors: ClientErrors,
    *,
    bootstrap: str,
    topic: str,
    timeout: float = CONNECT_TIMEOUT_S,
) -> int:
    """Ask the cluster for the topic's metadata; return its partition count.

    Raises `BrokerUnreachable` once librdkafka has reported every bootstrap broker down for
    a moment (a refused or unresolvable address fails in under two seconds), or after `timeout`
    when the network stays silent; `TopicNotFound` when the cluster answers without the topic.
    """
    from confluent_kafka import KafkaError, KafkaException

    started = time.monotonic()
    deadline = started + timeout
    errors.seen.clear()
    topic_error: str | None = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            metadata = client.list_topics(topic, timeout=max(0.05, min(0.5, remaining)))
        except KafkaException:
            metadata = None
        if metadata is not None:
            found = metadata.topics.get(topic)
            error = None if found is None else found.error
            if found is None or (
                error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            ):
                raise TopicNotFound(f"topic {topic!r} does not exist on the Kafka cluster")
            if error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise NotAuthorized(
                    f"Kafka at {bootstrap} does not authorize this user to use topic {topic!r}"
                )
            if error is None and found.partitions:
                return len(found.partitions)
            # e.g. LEADER_NOT_AVAILABLE just after creation: worth waiting for.
            topic_error = str(error.str()) if error is not None else "no partitions"
        poll(0)  # serve error_cb
        refused = errors.authentication_failed()
        if refused is not None:
            raise NotAuthorized(
                f"Kafka at {bootstrap} refused the login ({_short_reason(str(refused.str()))})"
            )
        now = time.monotonic()
        if now >= deadline or (errors.all_brokers_down() and now - started >= _ALL_DOWN_GRACE_S):
            if topic_error is not None:
                raise KafkaUnavailable(f"topic {topic!r} is not available ({topic_error})")
            reason = errors.last_transport_reason() or f"no answer within {timeout:g} s"
            raise BrokerUnreachable(f"cannot reach Kafka at {bootstrap} ({reason})")


# --- the SDK ----------------------------------------------------------------------------------


_CLI_HANDLER_NAME = "bordermon-command"


def configure_client_logging(verbose: bool) -> None:
    """librdkafka logs every reconnect attempt; a command shows that only when asked to.

    Without a handler of its own the logger would fall back to Python's last-resort handler
    and print them all. Calling it again (tests run several commands) replaces the handler.
    """
    logger = logging.getLogger(KAFKA_LOGGER)
    for old in [h for h in logger.handlers if h.get_name() == _CLI_HANDLER_NAME]:
        logger.removeHandler(old)
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("kafka: %(message)s"))
        logger.setLevel(logging.DEBUG)
    else:
        handler = logging.NullHandler()
    handler.set_name(_CLI_HANDLER_NAME)
    logger.addHandler(handler)


class Terminated(Exception):
    """SIGTERM arrived (a supervisor stopping us): wind down as after Ctrl-C, exit 143."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` for the duration, so a command stopped by a service
    manager still flushes what it sent (publish) or commits what it printed (flags)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def unreachable_hint(error: KafkaUnavailable, setting: str) -> str:
    """The one line a person reads when Kafka is not there: what failed and what to do."""
    if isinstance(error, NotAuthorized):
        return (
            f"{error}; check kafka_username and kafka_password_file (BORDERMON_KAFKA_USERNAME,"
            " BORDERMON_KAFKA_PASSWORD_FILE), and that topics/acls.toml grants this user the"
            " topic (`bordermon topics apply` as admin)"
        )
    if "SSL" in str(error) or "certificate" in str(error):
        return (
            f"{error}; check kafka_security_protocol and kafka_ca_file (the CA that signed the"
            " brokers' certificates)"
        )
    if isinstance(error, TopicNotFound):
        return (
            f"{error}; create it with `bordermon topics apply`, or name another one with"
            f" --{setting.replace('_', '-')} / BORDERMON_{setting.upper()}"
        )
    return (
        f"{error}; start the local stack with `bordermon stack up`, or point"
        " BORDERMON_KAFKA_BOOTSTRAP (or --kafka-bootstrap) at your cluster"
    )
