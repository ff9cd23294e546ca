"""The secure variant of the local dev stack: `bordermon stack up --secure`.

Kafka listens for clients with SASL/SCRAM-SHA-512 over TLS only, its controller listener with
TLS and client certificates, and authorizes with KRaft's StandardAuthorizer (nothing allowed
without an ACL; topics/acls.toml declares them). Redis listens with TLS only, its `default`
user disabled; the `bordermon` user may touch `bordermon:*` keys with the commands the state
store uses, `redis-admin` may do anything.

Made on first start, under the run folder, and never printed:
- `tls/`: a local CA (ca.pem, ca.key) and one server certificate (server.pem/.key/.p12) for
  127.0.0.1 and localhost, used by Kafka and Redis; clients trust ca.pem;
- `secrets/<name>.password` (mode 0600, folder 0700): the Kafka users admin, scanner, worker,
  subscriber (created at format time with `--add-scram`, from salted hashes so no password
  appears on a command line), the Redis users bordermon and redis-admin (hashed in the ACL
  file), and the broker's keystore: bordermon.admin.credentials makes them, as it does for the
  secure Docker stack;
- `clients/<name>.toml`: settings files for `--config` / BORDERMON_CONFIG that point at the
  secure stack as that user (paths to the password files, never the passwords).

Its default run folder is <repo>/run/secure and its default ports 9094 (controller 9095) for
Kafka and 6380 for Redis, so it runs beside the plaintext stack; the same BORDERMON_RUN_DIR and
BORDERMON_STACK_*_PORT variables override them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import string
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bordermon.admin.credentials import (
    KAFKA_USERS,
    KEYSTORE,
    REDIS_USER,
    ensure_secrets,
    password_file,
    read_password,
    redis_acl,
    write_private,
)
from bordermon_devstack.stack_base import (
    Answer,
    Context,
    Probe,
    StackError,
    _tcp_open,
    ensure_debian_package,
    probe_kafka,
)

ProbeHook = Callable[[int, float], Probe]

SECURE_ENV = "BORDERMON_STACK_SECURE"
DEFAULT_KAFKA_PORT = 9094
DEFAULT_REDIS_PORT = 6380
SERVER_CN = "bordermon-local"
MARKER = ".secure"
"""A file in the run folder that makes later `stack` commands there secure without --secure."""


def requested(flag: bool | None) -> bool:
    """--secure, else $BORDERMON_STACK_SECURE."""
    return bool(flag) or os.environ.get(SECURE_ENV, "").strip().lower() in {"1", "true", "yes"}


def enabled(run_dir: Path, flag: bool | None) -> bool:
    """Requested, or a run folder that was set up secure (later commands need no --secure)."""
    return requested(flag) or (run_dir / MARKER).is_file()


# --- TLS material -------------------------------------------------------------------------------


def tls_dir(run_dir: Path) -> Path:
    return run_dir / "tls"


def ca_file(run_dir: Path) -> Path:
    return tls_dir(run_dir) / "ca.pem"


def _openssl(openssl: str, args: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        code = subprocess.run(
            [openssl, *args], check=False, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        ).returncode
    if code != 0:
        raise StackError(f"openssl {args[0]} failed (exit {code}); see {log}")


def ensure_material(ctx: Context) -> None:
    """The passwords and the TLS certificates, each made once (before Kafka or Redis starts)."""
    ensure_secrets(ctx.run_dir)
    ensure_tls(ctx)


def ensure_tls(ctx: Context) -> None:
    """A local CA and a server certificate for 127.0.0.1/localhost, made once (openssl, from
    Debian's package when it is missing)."""
    run_dir, log = ctx.run_dir, ctx.log("tls")
    folder = tls_dir(run_dir)
    p12 = folder / "server.p12"
    if ca_file(run_dir).is_file() and p12.is_file():
        return
    openssl = ensure_debian_package("openssl", "openssl", ctx)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    ca_key, ca_pem = folder / "ca.key", ca_file(run_dir)
    key, csr, pem = folder / "server.key", folder / "server.csr", folder / "server.pem"
    extensions = folder / "server.ext"
    extensions.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    with contextlib.suppress(FileNotFoundError):
        p12.unlink()
    paths = {
        "ca_key": ca_key,
        "ca_pem": ca_pem,
        "key": key,
        "csr": csr,
        "pem": pem,
        "ext": extensions,
        "p12": p12,
        "keystore_password": password_file(run_dir, KEYSTORE),
    }
    for command in (
        "req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout {ca_key} -out {ca_pem}"
        " -subj /CN=bordermon-local-CA -addext basicConstraints=critical,CA:TRUE"
        " -addext keyUsage=critical,keyCertSign,cRLSign",
        f"req -newkey rsa:2048 -nodes -sha256 -keyout {{key}} -out {{csr}} -subj /CN={SERVER_CN}",
        "x509 -req -sha256 -days 825 -CAcreateserial -in {csr} -CA {ca_pem} -CAkey {ca_key}"
        " -out {pem} -extfile {ext}",
        "pkcs12 -export -in {pem} -inkey {key} -certfile {ca_pem} -name server -out {p12}"
        " -passout file:{keystore_password}",
    ):
        # Split first, then fill in: a path with spaces stays one argument.
        _openssl(openssl, [part.format(**paths) for part in command.split()], log)
    for path in (ca_key, key, p12):
        os.chmod(path, 0o600)


# --- Kafka --------------------------------------------------------------------------------------


def kafka_properties(ctx: Context, port: int, controller_port: int) -> str:
    """The secure section appended to the broker's properties (see the template)."""
    template = string.Template(ctx.deploy_file("server-secure.properties.template").read_text())
    return template.substitute(
        kafka_port=port,
        controller_port=controller_port,
        tls_dir=str(tls_dir(ctx.run_dir)),
        keystore_password=read_password(ctx.run_dir, KEYSTORE),
        admin_password=read_password(ctx.run_dir, "admin"),
    )


def kafka_client_config(run_dir: Path, user: str) -> dict[str, Any]:
    """librdkafka settings to reach the secure broker as `user` (bootstrap not included)."""
    return {
        "security.protocol": "sasl_ssl",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": read_password(run_dir, user),
        "ssl.ca.location": str(ca_file(run_dir)),
    }


def kafka_probe(run_dir: Path) -> ProbeHook:
    """A probe(port, timeout) that lists topics as admin over SASL_SSL."""

    def probe(port: int, timeout: float) -> Probe:
        if not password_file(run_dir, "admin").is_file() or not ca_file(run_dir).is_file():
            if not _tcp_open(port):
                return Probe(Answer.DOWN)
            return Probe(Answer.FOREIGN, f"no admin password or CA under {run_dir}")
        return probe_kafka(port, timeout, kafka_client_config(run_dir, "admin"))

    return probe


# --- Redis --------------------------------------------------------------------------------------


def redis_arguments(ctx: Context, port: int) -> list[str]:
    """redis-server options of the secure stack: TLS only, the ACL file."""
    acl = ctx.data("redis") / "users.acl"
    acl.parent.mkdir(parents=True, exist_ok=True)
    write_private(acl, redis_acl(ctx.run_dir))
    folder = tls_dir(ctx.run_dir)
    return [
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(folder / "server.pem"),
        "--tls-key-file",
        str(folder / "server.key"),
        "--tls-ca-cert-file",
        str(ca_file(ctx.run_dir)),
        "--tls-auth-clients",
        "no",
        "--aclfile",
        str(acl),
    ]


def redis_url(run_dir: Path, port: int, user: str = REDIS_USER) -> str:
    """How clients address the secure Redis (the password comes from redis_password_file)."""
    return f"rediss://{user}@127.0.0.1:{port}/0?ssl_ca_certs={ca_file(run_dir)}"


def redis_probe(run_dir: Path) -> ProbeHook:
    """A probe(port, timeout): TLS, AUTH as the bordermon user, PING answered +PONG."""

    def probe(port: int, timeout: float) -> Probe:
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError:
            return Probe(Answer.DOWN)
        try:
            context = ssl.create_default_context(cafile=str(ca_file(run_dir)))
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                password = read_password(run_dir, REDIS_USER)
                sock.sendall(f"AUTH {REDIS_USER} {password}\r\nPING\r\n".encode())
                reply = b""
                while reply.count(b"\r\n") < 2:
                    chunk = sock.recv(256)
                    if not chunk:
                        break
                    reply += chunk
        except (OSError, ssl.SSLError) as error:
            raw.close()
            return Probe(Answer.FOREIGN, f"no TLS answer to AUTH/PING: {type(error).__name__}")
        if reply == b"+OK\r\n+PONG\r\n":
            return Probe(Answer.UP)
        return Probe(Answer.FOREIGN, f"AUTH/PING answered {reply[:60]!r}")

    return probe


# --- client settings files ----------------------------------------------------------------------


def write_client_configs(run_dir: Path, kafka_port: int, redis_port: int) -> Path:
    """clients/<user>.toml: bordermon settings to reach the secure stack as each user."""
    folder = run_dir / "clients"
    folder.mkdir(parents=True, exist_ok=True)
    for user in KAFKA_USERS:
        lines = [
            f"# `bordermon ... --config {folder / (user + '.toml')}`: the secure local stack as"
            f" Kafka user {user}.",
            "# Generated by `bordermon stack up --secure`; holds paths, never passwords.",
            f'kafka_bootstrap = "127.0.0.1:{kafka_port}"',
            'kafka_security_protocol = "SASL_SSL"',
            'kafka_sasl_mechanism = "SCRAM-SHA-512"',
            f'kafka_username = "{user}"',
            f'kafka_password_file = "{password_file(run_dir, user)}"',
            f'kafka_ca_file = "{ca_file(run_dir)}"',
        ]
        if user in ("worker", "admin"):
            lines += [
                f'redis_url = "{redis_url(run_dir, redis_port)}"',
                f'redis_password_file = "{password_file(run_dir, REDIS_USER)}"',
            ]
        (folder / f"{user}.toml").write_text("\n".join(lines) + "\n")
    return folder
