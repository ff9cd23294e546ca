"""Transport security settings: every Kafka and Redis client gets them, no secret ever shows."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from bordermon.cli import main
from bordermon.settings import Secret, Settings, SettingsError

PASSWORD = "pw-7f3a-do-not-print"
REDIS_PASSWORD = "redis-pw-91c2-do-not-print"


class Captured(Exception):
    """Raised by a fake client constructor once it has recorded its configuration."""


@pytest.fixture
def secure_env(tmp_path: Path) -> dict[str, str]:
    password = tmp_path / "scanner.password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    redis_password = tmp_path / "redis.password"
    redis_password.write_text(REDIS_PASSWORD + "\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    return {
        "BORDERMON_KAFKA_BOOTSTRAP": "127.0.0.1:9094",
        "BORDERMON_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "BORDERMON_KAFKA_USERNAME": "scanner",
        "BORDERMON_KAFKA_PASSWORD_FILE": str(password),
        "BORDERMON_KAFKA_CA_FILE": str(ca),
        "BORDERMON_REDIS_URL": "redis://bordermon@127.0.0.1:6380/0",
        "BORDERMON_REDIS_PASSWORD_FILE": str(redis_password),
    }


@pytest.fixture
def secure_environ(secure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in secure_env.items():
        monkeypatch.setenv(name, value)
    return secure_env


def test_plaintext_is_the_default_and_needs_nothing() -> None:
    settings = Settings.load(environ={})
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert settings.kafka_client_config() == {
        "bootstrap.servers": "localhost:9092",
        "security.protocol": "plaintext",
    }
    assert settings.faust_credentials() is None
    assert settings.redis_client_args() == {}


def test_sasl_ssl_settings_become_librdkafka_configuration(secure_env: dict[str, str]) -> None:
    settings = Settings.load(environ=secure_env)
    assert settings.kafka_password == Secret(PASSWORD)  # newline stripped
    assert settings.kafka_client_config() == {
        "bootstrap.servers": "127.0.0.1:9094",
        "security.protocol": "sasl_ssl",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "scanner",
        "sasl.password": PASSWORD,
        "ssl.ca.location": secure_env["BORDERMON_KAFKA_CA_FILE"],
    }


def test_sasl_ssl_settings_become_aiokafka_and_faust_arguments(
    secure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiokafka.helpers

    cafiles: list[str | None] = []
    monkeypatch.setattr(
        aiokafka.helpers, "create_ssl_context", lambda cafile=None: cafiles.append(cafile) or 1
    )
    settings = Settings.load(environ=secure_env)
    args = settings.aiokafka_security()
    assert args == {
        "security_protocol": "SASL_SSL",
        "ssl_context": 1,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "scanner",
        "sasl_plain_password": PASSWORD,
    }
    credentials = settings.faust_credentials()
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("scanner", PASSWORD)
    assert PASSWORD not in repr(credentials)
    assert cafiles == [secure_env["BORDERMON_KAFKA_CA_FILE"]] * 2


def test_no_secret_in_describe_repr_or_logs(
    secure_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    env = {**secure_env, "BORDERMON_REDIS_URL": "redis://bordermon:inurl-secret@127.0.0.1:6380/0"}
    settings = Settings.load(environ=env)
    described = settings.describe()
    assert described["kafka_password_file"] == env["BORDERMON_KAFKA_PASSWORD_FILE"]
    assert described["kafka_username"] == "scanner"
    assert "kafka_password" not in described and "redis_password" not in described
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("bordermon.test").info("starting worker: %s", settings)
        logging.getLogger("bordermon.test").info("%r %s", settings.kafka_password, described)
    for text in (repr(settings), str(described), caplog.text, str(settings.redis_password)):
        for secret in (PASSWORD, REDIS_PASSWORD, "inurl-secret"):
            assert secret not in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"BORDERMON_KAFKA_USERNAME": ""}, "SASL_SSL needs kafka_username"),
        ({"BORDERMON_KAFKA_PASSWORD_FILE": "/nonexistent/pw"}, "kafka_password_file: cannot read"),
        ({"BORDERMON_KAFKA_SECURITY_PROTOCOL": "tls"}, "not one of PLAINTEXT"),
        ({"BORDERMON_KAFKA_SASL_MECHANISM": "GSSAPI"}, "not one of SCRAM-SHA-512"),
        ({"BORDERMON_KAFKA_CA_FILE": "/nonexistent/ca.pem"}, "kafka_ca_file"),
        ({"BORDERMON_REDIS_PASSWORD_FILE": "/nonexistent/r"}, "redis_password_file: cannot"),
    ],
)
def test_unusable_security_settings_are_one_clear_error(
    secure_env: dict[str, str], change: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.load(environ={**secure_env, **change})


def test_an_empty_password_file_is_refused_without_showing_content(tmp_path: Path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    with pytest.raises(SettingsError, match="is empty"):
        Settings.load({"kafka_password_file": str(empty)}, environ={})


# --- every client gets the security settings -----------------------------------------------


def _capture(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake(config: dict[str, Any], *args: object, **kwargs: object) -> object:
        seen.append(dict(config))
        raise Captured

    monkeypatch.setattr(module, name, fake)
    return seen


def _assert_secured(config: dict[str, Any]) -> None:
    assert config["security.protocol"] == "sasl_ssl"
    assert config["sasl.username"] == "scanner"
    assert config["sasl.password"] == PASSWORD
    assert config["ssl.ca.location"].endswith("ca.pem")
    assert config["bootstrap.servers"] == "127.0.0.1:9094"


@pytest.mark.usefixtures("secure_environ")
def test_publish_and_the_sdk_get_the_security(monkeypatch: pytest.MonkeyPatch) -> None:
    import confluent_kafka

    seen = _capture(monkeypatch, confluent_kafka, "Producer")
    with pytest.raises(Captured):
        main(["publish", "/dev/null"])
    _assert_secured(seen[0])
    assert seen[0]["enable.idempotence"] is True  # the SDK's own settings are kept


@pytest.mark.usefixtures("secure_environ")
def test_flags_gets_the_security(monkeypatch: pytest.MonkeyPatch) -> None:
    import confluent_kafka

    seen = _capture(monkeypatch, confluent_kafka, "Consumer")
    with pytest.raises(Captured):
        main(["flags"])
    _assert_secured(seen[0])


@pytest.mark.usefixtures("secure_environ")
def test_topics_gets_the_security(monkeypatch: pytest.MonkeyPatch) -> None:
    import confluent_kafka.admin

    seen = _capture(monkeypatch, confluent_kafka.admin, "AdminClient")
    with pytest.raises(Captured):
        main(["topics", "apply", "--check"])
    _assert_secured(seen[0])


@pytest.mark.usefixtures("secure_environ")
def test_worker_preflight_gets_kafka_and_redis_security(monkeypatch: pytest.MonkeyPatch) -> None:
    import confluent_kafka.admin
    import redis

    redis_calls: list[tuple[str, dict[str, Any]]] = []

    class FakeRedis:
        def ping(self) -> bool:
            return True

    def from_url(url: str, **kwargs: Any) -> FakeRedis:
        redis_calls.append((url, kwargs))
        return FakeRedis()

    monkeypatch.setattr(redis.Redis, "from_url", from_url)
    seen = _capture(monkeypatch, confluent_kafka.admin, "AdminClient")
    with pytest.raises(Captured):
        main(["worker"])
    _assert_secured(seen[0])
    url, kwargs = redis_calls[0]
    assert url == "redis://bordermon@127.0.0.1:6380/0"
    assert kwargs["password"] == REDIS_PASSWORD


def test_the_faust_app_and_the_redis_store_get_the_security(
    secure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiokafka.helpers

    from bordermon.processor.app import new_faust_app

    monkeypatch.setattr(aiokafka.helpers, "create_ssl_context", lambda cafile=None: None)
    from bordermon.stores.redis_store import RedisStore

    settings = Settings.load(environ=secure_env)
    credentials = settings.faust_credentials()
    app = new_faust_app("bordermon-test", settings.kafka_bootstrap, broker_credentials=credentials)
    assert app.conf.broker_credentials is credentials
    store: RedisStore[Any] = RedisStore.from_url(
        settings.redis_url, ttl_seconds=60, password=settings.redis_password
    )
    pool_kwargs = store._client.connection_pool.connection_kwargs  # type: ignore[attr-defined]
    assert pool_kwargs["password"] == REDIS_PASSWORD
    assert pool_kwargs["username"] == "bordermon"
    assert REDIS_PASSWORD not in store._unavailable("load", OSError(REDIS_PASSWORD)).args[0]
