"""`bordermon scanner-key new`: a scanner's signing key and its registry line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bordermon.cli.common import CommandError
from bordermon.core.signatures import encode_private_key, new_private_key, registry_line
from bordermon.scanner import keys as library
from bordermon.scanner.keys import FILE_NAME_SAFE, write_new_key_file

HELP = "make a scanner's signing key (signed scans) and print its registry line"
DESCRIPTION = library.__doc__


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = parser.add_subparsers(dest="key_action", metavar="ACTION", required=True)
    new = actions.add_parser(
        "new",
        help="make a new key, write it to a file (mode 0600), print its registry line",
        description=library.__doc__,
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
    scanner_id = args.scanner_id
    checkpoints = [
        code.strip() for text in args.checkpoints for code in text.split(",") if code.strip()
    ]
    if not checkpoints:
        raise CommandError("--checkpoints names no checkpoint (use '*' for any)")
    if args.out is None and not FILE_NAME_SAFE.fullmatch(scanner_id):
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
