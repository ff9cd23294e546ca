"""The secure stacks' generated material (bordermon.admin.credentials, for the Docker and the local
secure stacks; the local one's client settings files): secrets stay in 0600 files, never in what
is shown."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import stat
from pathlib import Path

import pytest

from bordermon.admin import credentials
from bordermon.settings import Settings
from bordermon_devstack import secure_stack


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    credentials.ensure_secrets(tmp_path)
    return tmp_path


def test_passwords_are_generated_once_mode_0600_in_a_0700_folder(run_dir: Path) -> None:
    folder = credentials.secrets_dir(run_dir)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    names = {*credentials.KAFKA_USERS, "bordermon", "redis-admin", "keystore"}
    assert {p.name for p in folder.iterdir()} == {f"{n}.password" for n in names}
    before = {p.name: p.read_text() for p in folder.iterdir()}
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(path.read_text().strip()) >= 32
    credentials.ensure_secrets(run_dir)
    assert {p.name: p.read_text() for p in folder.iterdir()} == before
    assert len(set(before.values())) == len(before)


def test_scram_users_are_created_from_salted_hashes_not_passwords() -> None:
    argument = credentials.scram_argument("scanner", "s3cret-value", iterations=4096)
    assert "s3cret-value" not in argument
    match = re.fullmatch(
        r'SCRAM-SHA-512=\[name=scanner,iterations=4096,salt="([^"]+)",saltedpassword="([^"]+)"\]',
        argument,
    )
    assert match is not None
    salt, salted = (base64.b64decode(group) for group in match.groups())
    # RFC 5802 Hi(): U1 = HMAC(p, salt + INT(1)), Ui = HMAC(p, Ui-1), XOR of all.
    u = hmac.new(b"s3cret-value", salt + b"\x00\x00\x00\x01", hashlib.sha512).digest()
    result = bytearray(u)
    for _ in range(4095):
        u = hmac.new(b"s3cret-value", u, hashlib.sha512).digest()
        result = bytearray(a ^ b for a, b in zip(result, u, strict=True))
    assert salted == bytes(result)


def test_the_redis_acl_file_holds_hashes_and_limits_the_bordermon_user(run_dir: Path) -> None:
    acl = credentials.redis_acl(run_dir)
    for name in ("bordermon", "redis-admin"):
        assert credentials.read_password(run_dir, name) not in acl
    lines = {line.split()[1]: line for line in acl.splitlines()}
    assert lines["default"].startswith("user default off")
    bordermon = lines["bordermon"]
    assert "~bordermon:*" in bordermon and "-@all" in bordermon and "+evalsha" in bordermon
    assert "flushall" not in bordermon and "+@all" not in bordermon


def test_client_settings_files_load_and_hold_no_password(run_dir: Path) -> None:
    (run_dir / "tls").mkdir()
    secure_stack.ca_file(run_dir).write_text("-----BEGIN CERTIFICATE-----\n")
    folder = secure_stack.write_client_configs(run_dir, 9094, 6380)
    for user in credentials.KAFKA_USERS:
        text = (folder / f"{user}.toml").read_text()
        assert credentials.read_password(run_dir, user) not in text
        settings = Settings.load(environ={}, config_file=folder / f"{user}.toml")
        assert settings.kafka_username == user
        assert settings.kafka_client_config()["sasl.password"] == credentials.read_password(
            run_dir, user
        )
    worker = Settings.load(environ={}, config_file=folder / "worker.toml")
    assert worker.redis_url.startswith("rediss://bordermon@127.0.0.1:6380/0?ssl_ca_certs=")
    assert worker.redis_client_args()["password"] == credentials.read_password(run_dir, "bordermon")


def test_users_generates_a_0600_password_and_upserts_a_scram_512_credential(
    tmp_path: Path,
) -> None:
    from bordermon.admin.users import generate_password_file, set_password

    path = tmp_path / "keys" / "scanner-aktau.password"
    generate_password_file(path)
    first = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first.strip()) >= 32
    generate_password_file(path)
    assert path.read_text() != first and stat.S_IMODE(path.stat().st_mode) == 0o600

    class FakeAdmin:
        def __init__(self) -> None:
            self.upserts: list[object] = []

        def alter_user_scram_credentials(
            self, upserts: list[object], request_timeout: float
        ) -> dict[str, object]:
            self.upserts += upserts
            done = type("Done", (), {"result": lambda self: None})()
            return {"scanner-aktau": done}

    admin = FakeAdmin()
    set_password(admin, "scanner-aktau", "pw")
    (upsert,) = admin.upserts
    assert upsert.user == "scanner-aktau"  # type: ignore[attr-defined]
    assert upsert.scram_credential_info.mechanism.name == "SCRAM_SHA_512"  # type: ignore[attr-defined]
