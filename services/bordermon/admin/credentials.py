"""The credentials of a secure deployment: one password per user, SCRAM hashes, the Redis ACL.

Used by the secure Docker stack's one-shot `secrets` service (deploy/docker/secure-secrets.sh,
in the bordermon image) and by the secure local dev stack (`bordermon stack up --secure`, from
deploy/local/devstack), so both create the same users with the same rights. Passwords live in
`<folder>/secrets/<name>.password` (mode 0600, folder 0700) and are never printed: Kafka users
are created from salted hashes, Redis users from SHA-256 hashes.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from bordermon.admin.users import SCRAM_ITERATIONS, generate_password_file

KAFKA_USERS = ("admin", "scanner", "worker", "subscriber")
"""One Kafka principal per role; `admin` is a super user (topics, ACLs); the broker logs in as
admin too."""
REDIS_USER = "bordermon"
REDIS_ADMIN = "redis-admin"
KEYSTORE = "keystore"
"""The password of the broker's TLS keystore."""

REDIS_COMMANDS = (
    # redis_store.RedisStore: MGET (load), EVALSHA + SCRIPT LOAD (save; the script calls GET,
    # GETRANGE, SET on bordermon:* keys, which the key pattern checks too), INCRBY (claim), SET
    # (quarantine), DBSIZE (state gauge); the worker's preflight and the probe: PING; redis-py's
    # connection set-up: SELECT, CLIENT SETNAME (redis-py's CLIENT SETINFO is left refused: it
    # ignores the error, and Redis 7.0 does not know the command).
    "ping",
    "select",
    "mget",
    "get",
    "getrange",
    "set",
    "incr",
    "incrby",  # redis-py sends INCR as INCRBY key 1
    "evalsha",
    "script|load",
    "dbsize",
    "client|setname",
)


def secrets_dir(folder: Path) -> Path:
    return folder / "secrets"


def password_file(folder: Path, name: str) -> Path:
    return secrets_dir(folder) / f"{name}.password"


def write_private(path: Path, text: str) -> None:
    """Create `path` with mode 0600 from the start (never readable by others, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def ensure_secrets(folder: Path) -> None:
    """Generate each missing password (mode 0600 files in a 0700 folder); keep existing ones."""
    secrets = secrets_dir(folder)
    secrets.mkdir(parents=True, exist_ok=True)
    os.chmod(secrets, 0o700)
    for name in (*KAFKA_USERS, REDIS_USER, REDIS_ADMIN, KEYSTORE):
        path = password_file(folder, name)
        if not path.is_file() or not path.read_text().strip():
            generate_password_file(path)


def read_password(folder: Path, name: str) -> str:
    return password_file(folder, name).read_text().strip()


def scram_argument(user: str, password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """`--add-scram` value from a salted hash (RFC 5802 Hi = PBKDF2-HMAC), not the password."""
    salt = os.urandom(24)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (
        f"SCRAM-SHA-512=[name={user},iterations={iterations},"
        f'salt="{base64.b64encode(salt).decode()}",'
        f'saltedpassword="{base64.b64encode(salted).decode()}"]'
    )


def kafka_format_args(folder: Path) -> list[str]:
    """StorageTool arguments that create every Kafka user at format time."""
    args: list[str] = []
    for user in KAFKA_USERS:
        args += ["--add-scram", scram_argument(user, read_password(folder, user))]
    return args


def redis_acl(folder: Path) -> str:
    """The ACL file: passwords only as SHA-256 hashes; `default` off."""

    def hashed(name: str) -> str:
        return "#" + hashlib.sha256(read_password(folder, name).encode()).hexdigest()

    commands = " ".join(f"+{command}" for command in REDIS_COMMANDS)
    return (
        "user default off resetkeys -@all\n"
        f"user {REDIS_USER} on {hashed(REDIS_USER)} resetkeys ~bordermon:* resetchannels"
        f" -@all {commands}\n"
        f"user {REDIS_ADMIN} on {hashed(REDIS_ADMIN)} ~* &* +@all\n"
    )
