"""`bordermon scanner-key new`: make a scanner's Ed25519 signing key and print its registry line.

The private key is written to a new file (mode 0600, never over an existing file) as
unencrypted PKCS#8 PEM; it belongs on the scanner only (BORDERMON_SCANNER_KEY_FILE, or
`bordermon publish --scanner-key`). The scanner registry line, with the public key, goes to
stdout, to append to the workers' registry (BORDERMON_SCANNER_REGISTRY):

    bordermon scanner-key new --scanner-id nur-zholy-1 --checkpoints KZ-NUR-ZHOLY \\
        --out /etc/bordermon/nur-zholy-1.key >> registry.csv

The private key is never printed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bordermon.core.signatures import PrivateKeyError, load_private_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_FILE_MODE = 0o600
_FILE_NAME_SAFE = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)


def read_private_key(path: str | Path) -> Ed25519PrivateKey:
    """A scanner's private key from a file (PEM, or base64 of the raw 32 bytes).

    `PrivateKeyError` says what is wrong, never what the file holds."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise PrivateKeyError(f"cannot read the key file: {error.strerror}") from None
    return load_private_key(data)


def write_new_key_file(path: Path, pem: bytes) -> None:
    """Create `path` with mode 0600 and write `pem`; FileExistsError if it exists (a key is
    never overwritten: it may be the only copy of a scanner's identity)."""
    # O_EXCL: no overwrite, and no following a planted symlink. fchmod: whatever the umask.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)
        view = memoryview(pem)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = parser.add_subparsers(dest="key_action", metavar="ACTION", required=True)
    new = actions.add_parser(
        "new",
        help="make a new key, write it to a file (mode 0600), print its registry line",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    new.add_argument(
        "--scanner-id", required=True, metavar="ID", help="the scanner's id (1-64 characters)"
    )
    new.add_argument(
        "--checkpoints",
        required=True,
        action="append",
        metavar="CODE,CODE",
        help="checkpoints the scanner may report, comma-separated (may be repeated), or '*' for"
        " any",
    )
    new.add_argument(
        "--out",
        metavar="FILE",
        help="where to write the private key (default: ./<scanner id>.key); never overwritten",
    )


def run(args: argparse.Namespace) -> int:
    from bordermon.cli import CommandError
    from bordermon.core.signatures import (
        encode_private_key,
        new_private_key,
        registry_line,
    )

    scanner_id = args.scanner_id
    checkpoints = [
        code.strip() for text in args.checkpoints for code in text.split(",") if code.strip()
    ]
    if not checkpoints:
        raise CommandError("--checkpoints names no checkpoint (use '*' for any)")
    if args.out is None and not _FILE_NAME_SAFE.fullmatch(scanner_id):
        raise CommandError(
            f"scanner id {scanner_id!r} is not a safe file name: give the key file with --out"
        )
    out = Path(args.out if args.out is not None else f"{scanner_id}.key")
    key = new_private_key()
    try:
        line = registry_line(scanner_id, key.public_key(), checkpoints)
    except ValueError as error:
        raise CommandError(str(error)) from None
    try:
        write_new_key_file(out, encode_private_key(key))
    except FileExistsError:
        raise CommandError(
            f"{out} exists: a key file is never overwritten; choose another --out, or remove"
            " the old key first if it is really unused"
        ) from None
    except OSError as error:
        raise CommandError(f"cannot write {out}: {error.strerror}") from None
    print(line)
    sys.stderr.write(
        f"scanner-key: private key of scanner {scanner_id!r} written to {out} (mode 0600):"
        " install it on that scanner only (BORDERMON_SCANNER_KEY_FILE or publish"
        " --scanner-key), and add the line above to the workers' scanner registry"
        " (BORDERMON_SCANNER_REGISTRY)\n"
    )
    return 0
