"""Signed scans (issue 10): verification in the core, the registry, the key command, settings,
and the SDK's headers. No broker: a fake producer records what the SDK would send."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from bordermon.cli import main
from bordermon.core import DetectionConfig, load_watchlist, parse_crossing
from bordermon.core.pipeline import Accepted, Message, Reject, Tally, validate, validate_batch
from bordermon.core.signatures import (
    SCANNER_ID_HEADER,
    SIGNATURE_HEADER,
    PrivateKeyError,
    RegistryError,
    ScannerRegistry,
    check_signature,
    encode_private_key,
    encode_public_key,
    load_private_key,
    parse_registry,
    registry_line,
    sign_headers,
)
from bordermon.scanner.publisher import ScannerPublisher
from bordermon.settings import Settings, SettingsError
from support.builders import crossing_doc, crossing_line
from support.fakes import FakeProducer

KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
ANY_KEY = Ed25519PrivateKey.generate()
REGISTRY_TEXT = (
    "# scanner_id, public key, checkpoints\n"
    f"nur-1,{encode_public_key(KEY.public_key())},KZ-NUR-ZHOLY,KZ-KHORGOS\n"
    "\n"
    f"  mobile , {encode_public_key(ANY_KEY.public_key())} , * \n"
)
REGISTRY = parse_registry(REGISTRY_TEXT)
CONFIG = DetectionConfig(watchlist=load_watchlist(["builtin:chpl"]))


def payload(**fields: Any) -> bytes:
    """The bytes a scanner signs: a crossing line."""
    return crossing_line(**fields)


def check(
    value: bytes, headers: list[tuple[str, bytes]], registry: ScannerRegistry = REGISTRY
) -> tuple[str, str] | None:
    return check_signature(value, headers, parse_crossing(value), registry)


def reason(value: bytes, headers: list[tuple[str, bytes]]) -> str | None:
    fault = check(value, headers)
    return None if fault is None else fault[0]


# --- verification ---------------------------------------------------------------------------


def test_a_registered_scanner_signing_its_own_checkpoint_is_accepted() -> None:
    value = payload()
    assert check(value, sign_headers(value, "nur-1", KEY)) is None
    assert check(value, sign_headers(value, "mobile", ANY_KEY)) is None  # `*`: any checkpoint
    other_checkpoint = payload(checkpoint="KZ-KHORGOS")
    assert check(other_checkpoint, sign_headers(other_checkpoint, "nur-1", KEY)) is None


def test_headers_are_the_scanner_id_and_a_base64_signature_of_the_exact_bytes() -> None:
    value = payload()
    headers = dict(sign_headers(value, "nur-1", KEY))
    assert headers[SCANNER_ID_HEADER] == b"nur-1"
    signature = base64.b64decode(headers[SIGNATURE_HEADER], validate=True)
    assert len(signature) == 64 and len(headers[SIGNATURE_HEADER]) == 88
    KEY.public_key().verify(signature, value)


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        ({SIGNATURE_HEADER}, SIGNATURE_HEADER),
        ({SCANNER_ID_HEADER}, SCANNER_ID_HEADER),
        ({SIGNATURE_HEADER, SCANNER_ID_HEADER}, SIGNATURE_HEADER),
    ],
)
def test_no_signature_or_no_scanner_id_is_unsigned(drop: set[str], named: str) -> None:
    value = payload()
    headers = [(k, v) for k, v in sign_headers(value, "nur-1", KEY) if k not in drop]
    fault = check(value, [*headers, ("traceparent", b"00-abc")])
    assert fault is not None and fault[0] == "unsigned" and named in fault[1]


def test_an_empty_header_counts_as_missing() -> None:
    value = payload()
    headers = dict(sign_headers(value, "nur-1", KEY))
    signature = headers[SIGNATURE_HEADER]
    assert reason(value, [(SCANNER_ID_HEADER, b""), (SIGNATURE_HEADER, signature)]) == "unsigned"
    assert reason(value, [(SCANNER_ID_HEADER, b"nur-1"), (SIGNATURE_HEADER, b"")]) == "unsigned"


def test_an_unknown_scanner_is_a_bad_signature() -> None:
    value = payload()
    fault = check(value, sign_headers(value, "forger", OTHER_KEY))
    assert fault == ("bad_signature", "scanner 'forger' is not in the scanner registry")


def test_a_tampered_byte_is_a_bad_signature() -> None:
    value = payload(goods=[{"hs_code": "854231", "value_usd": 5000}])
    headers = sign_headers(value, "nur-1", KEY)
    tampered = value.replace(b"5000", b"5001")
    assert tampered != value
    fault = check(tampered, headers)
    assert fault is not None and fault[0] == "bad_signature" and "does not verify" in fault[1]
    # Even a byte that changes nothing the validator reads: the exact bytes are signed.
    assert reason(value.replace(b"{", b"{ ", 1), headers) == "bad_signature"


def test_the_signature_of_another_payload_is_a_bad_signature() -> None:
    value, other = payload(event_id="ev-1"), payload(event_id="ev-2")
    assert reason(value, sign_headers(other, "nur-1", KEY)) == "bad_signature"


def test_a_registered_id_with_the_wrong_key_is_a_bad_signature() -> None:
    value = payload()
    assert reason(value, sign_headers(value, "nur-1", OTHER_KEY)) == "bad_signature"
    assert reason(value, sign_headers(value, "nur-1", ANY_KEY)) == "bad_signature"


def test_a_valid_signature_for_a_checkpoint_the_scanner_may_not_report() -> None:
    value = payload(checkpoint="KZ-ALTYNKOL")
    fault = check(value, sign_headers(value, "nur-1", KEY))
    assert fault is not None and fault[0] == "checkpoint_not_allowed"
    assert "'KZ-ALTYNKOL'" in fault[1] and "KZ-KHORGOS, KZ-NUR-ZHOLY" in fault[1]


@pytest.mark.parametrize(
    "signature",
    [
        b"not base64!",
        base64.b64encode(b"x" * 63),  # base64, but not 64 bytes
        base64.b64encode(b"x" * 65),
        b"\xff\xfe",
        b" " + base64.b64encode(b"x" * 64),  # strict: no stray characters
    ],
)
def test_a_malformed_signature_value_is_a_bad_signature(signature: bytes) -> None:
    value = payload()
    fault = check(value, [(SCANNER_ID_HEADER, b"nur-1"), (SIGNATURE_HEADER, signature)])
    assert fault is not None and fault[0] == "bad_signature" and "base64" in fault[1]


def test_raw_signature_bytes_are_not_accepted_only_base64() -> None:
    value = payload()
    raw = KEY.sign(value)
    assert reason(value, [(SCANNER_ID_HEADER, b"nur-1"), (SIGNATURE_HEADER, raw)]) == (
        "bad_signature"
    )


def test_a_scanner_id_that_is_not_utf8_is_a_bad_signature() -> None:
    value = payload()
    signature = dict(sign_headers(value, "nur-1", KEY))[SIGNATURE_HEADER]
    fault = check(value, [(SCANNER_ID_HEADER, b"nur-\xff"), (SIGNATURE_HEADER, signature)])
    assert fault is not None and fault[0] == "bad_signature" and "UTF-8" in fault[1]


def test_a_header_given_twice_is_a_bad_signature_even_if_one_is_good() -> None:
    value = payload()
    good = sign_headers(value, "nur-1", KEY)
    forged = sign_headers(value, "nur-1", OTHER_KEY)
    fault = check(value, [*good, forged[1]])
    assert fault is not None and fault[0] == "bad_signature" and "exactly one" in fault[1]
    assert reason(value, [*good, (SCANNER_ID_HEADER, b"mobile")]) == "bad_signature"


def test_the_payload_scanner_id_must_be_the_signer_when_present() -> None:
    same = payload(scanner_id="nur-1")
    assert check(same, sign_headers(same, "nur-1", KEY)) is None
    # A genuine key vouching for an event that names another scanner: misattribution.
    other = payload(scanner_id="mobile")
    fault = check(other, sign_headers(other, "nur-1", KEY))
    assert fault is not None and fault[0] == "bad_signature"
    assert "'mobile'" in fault[1] and "'nur-1'" in fault[1]


# --- the pipeline: order of checks ----------------------------------------------------------


def kafka_message(value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> Message:
    return Message(value, key, True, partition=0, offset=1, headers=tuple(headers))


def test_validate_checks_the_payload_then_the_key_then_the_signature() -> None:
    good = payload()
    signed = sign_headers(good, "nur-1", KEY)
    outcome = validate(kafka_message(good, b"CONS-1", signed), CONFIG, REGISTRY)
    assert isinstance(outcome, Accepted)
    broken = payload(goods=None)
    outcome = validate(kafka_message(broken, b"CONS-1", []), CONFIG, REGISTRY)
    assert isinstance(outcome, Reject) and outcome.reason == "missing_field:goods"
    outcome = validate(kafka_message(good, b"OTHER", []), CONFIG, REGISTRY)
    assert isinstance(outcome, Reject) and outcome.reason == "key_mismatch"
    outcome = validate(kafka_message(good, b"CONS-1", []), CONFIG, REGISTRY)
    assert isinstance(outcome, Reject) and outcome.reason == "unsigned"


def test_without_a_verifier_signatures_are_not_looked_at() -> None:
    value = payload()
    forged = sign_headers(value, "forger", OTHER_KEY)
    assert isinstance(validate(kafka_message(value, b"CONS-1", forged), CONFIG), Accepted)
    assert isinstance(validate(Message(value, line=1), CONFIG), Accepted)  # replay's lines


def test_validate_batch_counts_signature_rejects_by_reason() -> None:
    good, elsewhere = payload(event_id="a"), payload(event_id="b", checkpoint="KZ-ALTYNKOL")
    messages = [
        kafka_message(good, b"CONS-1", sign_headers(good, "nur-1", KEY)),
        kafka_message(good, b"CONS-1", []),
        kafka_message(elsewhere, b"CONS-1", sign_headers(elsewhere, "nur-1", KEY)),
    ]
    tally = Tally()
    accepted, rejects = validate_batch(messages, CONFIG, tally, REGISTRY)
    assert [a.event.event_id for a in accepted] == ["a"]
    assert [r.reason for r in rejects] == ["unsigned", "checkpoint_not_allowed"]
    assert dict(tally.rejected) == {"unsigned": 1, "checkpoint_not_allowed": 1}


# --- the registry -----------------------------------------------------------------------------


def test_the_registry_reads_comments_blanks_spaces_and_star() -> None:
    assert len(REGISTRY) == 2
    nur, mobile = REGISTRY.get("nur-1"), REGISTRY.get("mobile")
    assert nur is not None and nur.checkpoints == {"KZ-NUR-ZHOLY", "KZ-KHORGOS"}
    assert mobile is not None and mobile.checkpoints == frozenset()
    assert mobile.may_report("anything") and not nur.may_report("KZ-ALTYNKOL")


def test_a_registry_line_quotes_what_csv_needs_and_parses_back() -> None:
    for scanner_id, checkpoints in [
        ("nur-1", ["KZ-NUR-ZHOLY"]),
        ('odd, "id"', ["A,B", " spaced"]),
        ("#not-a-comment", ["X"]),
        ("mobile", ["*"]),
    ]:
        line = registry_line(scanner_id, KEY.public_key(), checkpoints)
        assert "\n" not in line
        scanner = parse_registry(line + "\n").get(scanner_id)
        assert scanner is not None, line
        assert scanner.checkpoints == ({c.strip() for c in checkpoints} - {"*"})
        assert encode_public_key(scanner.public_key) == encode_public_key(KEY.public_key())
    plain = registry_line("nur-1", KEY.public_key(), ["KZ-NUR-ZHOLY", "KZ-KHORGOS"])
    assert plain == f"nur-1,{encode_public_key(KEY.public_key())},KZ-NUR-ZHOLY,KZ-KHORGOS"


PUBLIC = encode_public_key(KEY.public_key())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# only a comment\n\n", "lists no scanner"),
        (f"nur-1,{PUBLIC}\n", "line 1: expected scanner_id,public_key,checkpoint"),
        (f"# c\nnur-1,{PUBLIC},A\nx,not-base64!,A\n", "line 3: public key 'not-base64!'"),
        (f"x,{base64.b64encode(b'k' * 31).decode()},A\n", "line 1: public key"),
        (f"nur-1,{PUBLIC},A\n\nnur-1,{PUBLIC},B\n", "line 3: scanner 'nur-1' is already"),
        (f"nur-1,{PUBLIC},A,*\n", "line 1: '*' (any checkpoint) must be the only"),
        (f"nur-1,{PUBLIC},A,\n", "line 1: checkpoint '' must be 1-64"),
        (f"nur-1,{PUBLIC},{'C' * 65}\n", "line 1: checkpoint"),
        (f"{'s' * 65},{PUBLIC},A\n", "line 1: scanner id"),
        (f",{PUBLIC},A\n", "line 1: scanner id '' must be 1-64"),
        (f'"nur-1,{PUBLIC},A\n', "line 1: not a CSV line"),
    ],
)
def test_registry_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_registry(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_error_for_duplicates_names_both_lines() -> None:
    with pytest.raises(RegistryError, match=r"line 3: .* already listed on line 1"):
        parse_registry(f"nur-1,{PUBLIC},A\n\nnur-1,{PUBLIC},B\n")


# --- private keys -----------------------------------------------------------------------------


def raw_base64(key: Ed25519PrivateKey) -> bytes:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw)


def test_a_private_key_reads_from_pem_or_raw_base64() -> None:
    for data in (encode_private_key(KEY), raw_base64(KEY) + b"\n"):
        loaded = load_private_key(data)
        assert encode_public_key(loaded.public_key()) == PUBLIC


@pytest.mark.parametrize(
    "data",
    [
        b"garbage-secret-material",
        base64.b64encode(b"k" * 31),
        b"-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZS1zZWNyZXQ=\n-----END PRIVATE KEY-----\n",
        generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        ),
    ],
)
def test_an_unusable_private_key_is_an_error_that_quotes_nothing_of_it(data: bytes) -> None:
    with pytest.raises(PrivateKeyError) as caught:
        load_private_key(data)
    message = str(caught.value)
    assert "secret" not in message and "Z2Fy" not in message and "\n" not in message


# --- bordermon scanner-key new ------------------------------------------------------------------


def test_scanner_key_new_writes_a_0600_key_and_prints_only_the_registry_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nur-1.key"
    old_umask = os.umask(0o000)  # a permissive umask must not widen the key file's mode
    try:
        checkpoints = ["--checkpoints", "KZ-NUR-ZHOLY,", "--checkpoints", "KZ-KHORGOS"]
        code = main(
            ["scanner-key", "new", "--scanner-id", "nur-1", *checkpoints, "--out", str(out)]
        )
    finally:
        os.umask(old_umask)
    assert code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = load_private_key(out.read_bytes())
    assert out.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    captured = capsys.readouterr()
    public = encode_public_key(key.public_key())
    assert captured.out == f"nur-1,{public},KZ-NUR-ZHOLY,KZ-KHORGOS\n"
    assert str(out) in captured.err and "0600" in captured.err
    secret = raw_base64(key).decode()
    pem_body = out.read_text().splitlines()[1]
    for text in (captured.out, captured.err):
        assert secret not in text and pem_body not in text
    scanner = parse_registry(captured.out).get("nur-1")
    assert scanner is not None and scanner.checkpoints == {"KZ-NUR-ZHOLY", "KZ-KHORGOS"}


def test_scanner_key_new_refuses_to_overwrite_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "existing.key"
    out.write_bytes(b"the only copy")
    args = ["scanner-key", "new", "--scanner-id", "s", "--checkpoints", "*", "--out", str(out)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "exists" in captured.err and captured.err.count("\n") == 1
    assert out.read_bytes() == b"the only copy"


def test_scanner_key_new_defaults_to_the_scanner_id_and_checks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["scanner-key", "new", "--scanner-id", "mobile", "--checkpoints", "*"]) == 0
    assert (tmp_path / "mobile.key").exists()
    assert capsys.readouterr().out.endswith(",*\n")
    assert main(["scanner-key", "new", "--scanner-id", "../x", "--checkpoints", "A"]) == 2
    assert "--out" in capsys.readouterr().err
    too_long = ["--scanner-id", "s" * 65, "--checkpoints", "A", "--out", "k"]
    assert main(["scanner-key", "new", *too_long]) == 2
    assert "1-64" in capsys.readouterr().err and not (tmp_path / "k").exists()
    assert main(["scanner-key", "new", "--scanner-id", "y", "--checkpoints", " , "]) == 2
    assert "no checkpoint" in capsys.readouterr().err


# --- settings ---------------------------------------------------------------------------------


def test_require_signatures_needs_a_registry_in_one_line() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.load(environ={"BORDERMON_REQUIRE_SIGNATURES": "true"})
    assert "scanner_registry" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(SettingsError, match="BORDERMON_REQUIRE_SIGNATURES: 'maybe' is not"):
        Settings.load(environ={"BORDERMON_REQUIRE_SIGNATURES": "maybe"})
    assert Settings.load(environ={}).load_scanner_registry() is None


def test_the_registry_loads_only_when_signatures_are_required(tmp_path: Path) -> None:
    path = tmp_path / "registry.csv"
    path.write_text(REGISTRY_TEXT)
    on = {"BORDERMON_REQUIRE_SIGNATURES": "on", "BORDERMON_SCANNER_REGISTRY": str(path)}
    registry = Settings.load(environ=on).load_scanner_registry()
    assert registry is not None and len(registry) == 2
    off = {**on, "BORDERMON_REQUIRE_SIGNATURES": "false"}
    assert Settings.load(environ=off).load_scanner_registry() is None


def test_a_malformed_or_missing_registry_is_one_line_naming_the_file_and_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "registry.csv"
    path.write_text(REGISTRY_TEXT + "broken-line\n")
    settings = Settings.load({"require_signatures": True, "scanner_registry": str(path)})
    with pytest.raises(SettingsError) as caught:
        settings.load_scanner_registry()
    assert str(caught.value).startswith(f"scanner registry {path}: line 5: expected")
    missing = Settings.load({"require_signatures": "yes", "scanner_registry": str(path) + "x"})
    with pytest.raises(SettingsError, match=r"cannot read scanner_registry .*x: No such file"):
        missing.load_scanner_registry()


def test_the_scanner_key_file_is_masked_and_read_with_its_scanner_id(tmp_path: Path) -> None:
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(encode_private_key(KEY))
    settings = Settings.load(
        environ={"BORDERMON_SCANNER_KEY_FILE": str(key_file), "BORDERMON_SCANNER_ID": "nur-1"}
    )
    assert settings.describe()["scanner_key_file"] == "***"
    assert str(key_file) not in repr(settings) and str(key_file) not in str(settings.describe())
    assert settings.describe()["scanner_id"] == "nur-1"
    loaded = settings.load_scanner_key()
    assert loaded is not None and loaded[0] == "nur-1"
    assert encode_public_key(loaded[1].public_key()) == PUBLIC
    assert Settings.load(environ={}).describe()["scanner_key_file"] == ""
    assert Settings.load(environ={}).load_scanner_key() is None


def test_scanner_key_errors_never_show_the_value(tmp_path: Path) -> None:
    pasted = raw_base64(KEY).decode()  # the key itself put in the variable by mistake
    settings = Settings.load({"scanner_key_file": pasted, "scanner_id": "nur-1"})
    with pytest.raises(SettingsError) as caught:
        settings.load_scanner_key()
    assert pasted not in str(caught.value) and "cannot read" in str(caught.value)
    assert pasted not in repr(settings) and pasted not in str(settings.describe())
    with pytest.raises(SettingsError, match="scanner_key_file is set but scanner_id is not"):
        Settings.load({"scanner_key_file": "k"}).load_scanner_key()
    with pytest.raises(SettingsError, match="scanner_id is set but scanner_key_file is not"):
        Settings.load({"scanner_id": "nur-1"}).load_scanner_key()
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"secret-ish")
    with pytest.raises(SettingsError) as caught:
        Settings.load({"scanner_key_file": str(garbage), "scanner_id": "n"}).load_scanner_key()
    assert "secret-ish" not in str(caught.value)


def test_worker_with_a_broken_registry_stops_in_one_line_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "registry.csv"
    path.write_text(f"nur-1,{PUBLIC}\n")
    args = ["worker", "--require-signatures", "true", "--scanner-registry", str(path)]
    assert main([*args, "--kafka-bootstrap", "127.0.0.1:1", "--redis-url", "redis://h:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bordermon: scanner registry {path}: line 1: expected")
    assert err.count("\n") == 1 and "Traceback" not in err


# --- the SDK ----------------------------------------------------------------------------------


def test_the_sdk_signs_the_exact_bytes_it_sends() -> None:
    fake = FakeProducer()
    publisher = ScannerPublisher(topic="t", producer=fake, scanner_id="nur-1", signing_key=KEY)
    publisher.publish(crossing_doc(event_id="a"))
    raw = b'{ "spaced":  true, ' + payload(event_id="b")[1:]
    publisher.publish(raw)
    publisher.publish_raw(b"{not json")
    assert len(fake.produced) == len(fake.headers) == 3
    for headers in fake.headers:
        assert headers is not None
        assert [name for name, _ in headers] == [SCANNER_ID_HEADER, SIGNATURE_HEADER]
        assert dict(headers)[SCANNER_ID_HEADER] == b"nur-1"
    for (_, _, value), headers in list(zip(fake.produced, fake.headers, strict=True))[:2]:
        assert check(value, headers or []) is None
    assert fake.produced[1][2] == raw
    bad_value, bad_headers = fake.produced[2][2], dict(fake.headers[2] or [])
    signature = base64.b64decode(bad_headers[SIGNATURE_HEADER])
    KEY.public_key().verify(signature, bad_value)  # --raw bytes are signed as they are


def test_the_sdk_without_a_key_sends_no_headers_and_needs_both_or_neither() -> None:
    fake = FakeProducer()
    ScannerPublisher(topic="t", producer=fake).publish(crossing_doc())
    assert fake.headers == [None]
    with pytest.raises(ValueError, match="together"):
        ScannerPublisher(producer=fake, scanner_id="nur-1")
    with pytest.raises(ValueError, match="together"):
        ScannerPublisher(producer=fake, signing_key=KEY)
    with pytest.raises(ValueError, match="1-64"):
        ScannerPublisher(producer=fake, scanner_id="", signing_key=KEY)


def test_publish_takes_the_scanner_key_and_id_as_settings() -> None:
    import argparse

    import bordermon.cli.publish as publish_command
    from bordermon.cli import load_settings

    parser = argparse.ArgumentParser()
    publish_command.configure_parser(parser)
    args = parser.parse_args(["--scanner-key", "k.pem", "--scanner-id", "nur-1"])
    settings = load_settings(args)
    assert (settings.scanner_key_file, settings.scanner_id) == ("k.pem", "nur-1")


# --- the documentation ------------------------------------------------------------------------


def test_the_registry_examples_of_the_readme_and_the_module_parse() -> None:
    from bordermon.core import signatures

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    section = readme.split("## Signed scans", 1)[1].split("\n## ", 1)[0]
    block = section.split("One\n   scanner per line", 1)[1].split("```", 2)[1]
    docstring = (signatures.__doc__ or "").split("written):", 1)[1].split("\n\n", 2)[1]
    for text in (block, docstring):
        registry = parse_registry(text)
        assert len(registry) == 3
        mobile = registry.get("mobile-team")
        assert mobile is not None and mobile.may_report("ANY")
