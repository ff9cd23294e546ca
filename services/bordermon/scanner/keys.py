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

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from bordermon.core.signatures import PrivateKeyError, load_private_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_FILE_MODE = 0o600
FILE_NAME_SAFE = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)


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
