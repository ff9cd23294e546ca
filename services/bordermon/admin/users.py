"""Add a Kafka user or rotate its password (SASL/SCRAM-SHA-512), as the admin principal.

    bordermon users set-password scanner-aktau --password-file scanner-aktau.password --generate

sets the SCRAM credential of the user (creating the user when it is new) from the password in
the file; with --generate a fresh random password is first written to the file (mode 0600,
replacing what was there). The password is never printed. Connect as admin with the usual
settings (`--config run/secure/clients/admin.toml`). A new user may do nothing until an ACL
allows it: declare it in topics/acls.toml and run `bordermon topics apply`.

Clients already connected keep their sessions; new connections need the new password, so
rotate by writing the new password where the client reads it (its kafka_password_file), then
setting it here, then restarting the client.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

SCRAM_ITERATIONS = 8192
USER_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


class UserError(Exception):
    """A problem a person can fix, in one line."""


def generate_password_file(path: Path) -> None:
    """A fresh random password in `path`, created mode 0600 (replacing an existing file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    partial.replace(path)


def set_password(admin: object, user: str, password: str, timeout: float = 15.0) -> None:
    """Upsert the user's SCRAM-SHA-512 credential through an AdminClient."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    upsert = UserScramCredentialUpsertion(
        user,
        ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
        password.encode(),
    )
    futures = admin.alter_user_scram_credentials(  # type: ignore[attr-defined]
        [upsert], request_timeout=timeout
    )
    try:
        futures[user].result()
    except KafkaException as error:
        reason = error.args[0].str() if error.args else str(error)
        raise UserError(f"Kafka refused to set the password of {user}: {reason}") from None
