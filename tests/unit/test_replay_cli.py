"""`bordermon replay` as a person or a script uses it (SPEC §7)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from builders import crossing_doc

from bordermon.cli import main


def jsonl(*docs: object) -> bytes:
    return b"".join(orjson.dumps(doc) + b"\n" for doc in docs)


def scenario() -> bytes:
    return (
        jsonl(
            crossing_doc(
                event_id="x1",
                consignment_id="A",
                from_country="KZ",
                to_country="RU",
                observed_at="2024-03-05T00:00:00Z",
            ),
            crossing_doc(event_id="e1", consignment_id="A", observed_at="2024-03-01T00:00:00Z"),
        )
        + b"{broken\n"
        + b"\n"
        + jsonl(
            crossing_doc(event_id="e1", consignment_id="A", observed_at="2024-03-01T00:00:00Z"),
            crossing_doc(event_id="e9", consignment_id="B", goods=[{"hs_code": "9403.60"}]),
            crossing_doc(
                event_id="x9",
                consignment_id="B",
                from_country="KZ",
                to_country="RU",
                observed_at="2024-03-02T00:00:00+03:00",
                goods=[{"hs_code": "940360"}],
            ),
            crossing_doc(event_id="bad", observed_at="2024-03-01T00:00:00"),
        )
    )


def run_cli(tmp_path: Path, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    source = tmp_path / "in.jsonl"
    source.write_bytes(data)
    return subprocess.run(
        [sys.executable, "-m", "bordermon", "replay", str(source), *args],
        capture_output=True,
        check=False,
        timeout=60,
    )


def test_flags_on_stdout_in_detection_order_and_rejects_on_stderr(tmp_path: Path) -> None:
    result = run_cli(tmp_path, scenario(), "--rejects", str(tmp_path / "rejects.jsonl"))
    assert result.returncode == 0, result.stderr
    flags = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(f["consignment_id"], f["severity"]) for f in flags] == [("A", "high"), ("B", "low")]
    assert flags[0]["entry"]["event_id"] == "e1" and flags[0]["exit"]["event_id"] == "x1"
    stderr = result.stderr.decode()
    assert "line 3: invalid_json" in stderr
    assert "line 8: invalid_field:observed_at" in stderr
    assert "duplicates  1" in stderr and "flags       2 (high 1, low 1)" in stderr
    rejects = [
        orjson.loads(line) for line in (tmp_path / "rejects.jsonl").read_bytes().splitlines()
    ]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (3, "invalid_json"),
        (8, "invalid_field:observed_at"),
    ]
    assert rejects[0]["raw"] == "{broken"


def test_stdin_and_settings_flags(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bordermon", "replay", "-", "--window", "1d", "--quiet"],
        input=scenario(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0
    flags = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [f["consignment_id"] for f in flags] == ["B"]  # A dwelt 4 days
    assert flags[0]["window_seconds"] == 86400
    assert b"line 3" not in result.stderr  # --quiet


def test_missing_file_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "/nonexistent/scans.jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read /nonexistent/scans.jsonl" in err


def test_bad_setting_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"")
    assert main(["replay", str(tmp_path / "in.jsonl"), "--window", "soon"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--window" in err


def test_empty_input_is_fine(tmp_path: Path) -> None:
    result = run_cli(tmp_path, b"")
    assert result.returncode == 0 and result.stdout == b""
    assert b"0 events read" in result.stderr


def test_invalid_utf8_line_is_rejected_and_kept(tmp_path: Path) -> None:
    result = run_cli(tmp_path, b'{"event_id": "\xff"}\n', "--rejects", str(tmp_path / "r.jsonl"))
    assert result.returncode == 0
    [reject] = [orjson.loads(line) for line in (tmp_path / "r.jsonl").read_bytes().splitlines()]
    assert reject["reason"] == "invalid_json" and reject["line"] == 1


def test_metrics_file_has_the_workers_counters(tmp_path: Path) -> None:
    result = run_cli(tmp_path, scenario(), "--quiet", "--metrics", str(tmp_path / "m.prom"))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "m.prom").read_text()
    assert 'bordermon_flags_total{rule="transit-to-ru",severity="high"} 1.0' in text
    assert 'bordermon_flags_total{rule="transit-to-ru",severity="low"} 1.0' in text
    assert 'bordermon_events_rejected_total{reason="invalid_json"} 1.0' in text
    assert 'bordermon_events_rejected_total{reason="invalid_field:observed_at"} 1.0' in text
    assert "bordermon_events_duplicate_total 1.0" in text
    assert (
        'bordermon_events_consumed_total{checkpoint="KZ-NUR-ZHOLY",direction="entry"} 3.0' in text
    )
    dead_letters = [line for line in text.splitlines() if line.startswith("bordermon_dead_l")]
    assert dead_letters and all(line.endswith(" 0.0") for line in dead_letters)  # none: replay
    assert "_created" not in text
    assert 'bordermon_flags_by_hs_chapter_total{chapter="85"} 1.0' in text
