"""`bordermon replay` as a person or a script uses it (SPEC §7)."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bordermon.cli import main
from bordermon.jsonl import InputError, iter_lines
from support.builders import crossing_doc


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
    # Detection order: x1 (CHPL tier 1, no permit) flags at once; e1 completes A's transit.
    assert [(f["rule"], f["consignment_id"], f["severity"]) for f in flags] == [
        ("export-without-permit", "A", "high"),
        ("transit-to-ru", "A", "high"),
        ("transit-to-ru", "B", "low"),
    ]
    assert flags[0]["entry"] is None and flags[0]["exit"]["event_id"] == "x1"
    assert flags[1]["entry"]["event_id"] == "e1" and flags[1]["exit"]["event_id"] == "x1"
    stderr = result.stderr.decode()
    assert "line 3: invalid_json" in stderr
    assert "line 8: invalid_field:observed_at" in stderr
    assert "duplicates  1" in stderr and "flags       3 (high 2, low 1)" in stderr
    assert "by rule   export-without-permit 1, transit-to-ru 2" in stderr
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
    # A dwelt 4 days: only its export without a permit is flagged.
    assert [(f["rule"], f["consignment_id"]) for f in flags] == [
        ("export-without-permit", "A"),
        ("transit-to-ru", "B"),
    ]
    assert flags[1]["window_seconds"] == 86400
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
    assert "not valid UTF-8" in reject["detail"]


def test_metrics_file_has_the_workers_counters(tmp_path: Path) -> None:
    result = run_cli(tmp_path, scenario(), "--quiet", "--metrics", str(tmp_path / "m.prom"))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "m.prom").read_text()
    assert 'bordermon_flags_total{rule="export-without-permit",severity="high"} 1.0' in text
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
    # Chapter 85 counted by the export flag and the transit flag of A.
    assert 'bordermon_flags_by_hs_chapter_total{chapter="85"} 2.0' in text


def one_line_error(stderr: bytes | str) -> str:
    """The last line of stderr, after checking the command ended with it and no traceback."""
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text and text.endswith("\n"), text
    last = text.splitlines()[-1]
    assert last.startswith("bordermon: "), text
    return last


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("output", ["stdout", "--rejects", "--metrics"])
def test_a_full_disk_is_one_line_and_a_failure(tmp_path: Path, output: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(scenario())
    args = [] if output == "stdout" else [output, "/dev/full"]
    with Path("/dev/full").open("wb") as full, Path(os.devnull).open("wb") as devnull:
        result = subprocess.run(
            [sys.executable, "-m", "bordermon", "replay", str(source), *args],
            stdout=full if output == "stdout" else devnull,
            stderr=subprocess.PIPE,
            check=False,
            timeout=60,
        )
    assert result.returncode != 0
    where = "stdout" if output == "stdout" else "/dev/full"
    assert one_line_error(result.stderr) == (
        f"bordermon: cannot write to {where}: No space left on device"
    )
    assert result.stderr.count(b"No space left") == 1


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_an_input_error_is_one_line_and_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    # Reading the start of one's own address space fails with EIO: an I/O error on demand.
    assert main(["replay", "/proc/self/mem"]) == 2
    assert one_line_error(capsys.readouterr().err) == (
        "bordermon: cannot read /proc/self/mem at line 1: Input/output error"
    )


def test_a_byte_order_mark_before_the_first_line_is_ignored(tmp_path: Path) -> None:
    result = run_cli(tmp_path, b"\xef\xbb\xbf" + scenario(), "--quiet")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3  # as without the BOM (see above)
    assert b"(invalid_json 1, invalid_field:observed_at 1)" in result.stderr  # only line 3 and 8


def test_summary_prints_the_window_as_people_write_it(tmp_path: Path) -> None:
    result = run_cli(tmp_path, b"", "--window", "36h")
    assert b"window 36h," in result.stderr and b"e+" not in result.stderr


def test_no_watchlist_at_all_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"")
    assert main(["replay", str(tmp_path / "in.jsonl"), "--watchlists", " , "]) == 2
    assert "--watchlists: no watchlist given" in one_line_error(capsys.readouterr().err)
    monkeypatch.setenv("BORDERMON_WATCHLISTS", "")
    assert main(["replay", str(tmp_path / "in.jsonl")]) == 2
    assert "BORDERMON_WATCHLISTS: no watchlist given" in one_line_error(capsys.readouterr().err)


def test_a_watchlist_that_is_not_utf8_names_the_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"")
    watchlist = tmp_path / "national.csv"
    watchlist.write_bytes(b"hs6,tier,description\n854231,1,chips\n847150,2,Stra\xdfe\n")
    assert main(["replay", str(tmp_path / "in.jsonl"), "--watchlists", str(watchlist)]) == 2
    assert f"{watchlist}:3: not UTF-8" in one_line_error(capsys.readouterr().err)


class _FailingRead(io.BytesIO):
    name = "scans.jsonl"

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"a": 1}\n'
        raise OSError(errno.EIO, "Input/output error")


def test_jsonl_lines_skip_a_leading_bom_and_name_the_line_an_io_error_stopped_at() -> None:
    lines = iter_lines(io.BytesIO(b'\xef\xbb\xbf{"a": 1}\r\n\n{"b": 2}\n'))
    assert list(lines) == [(1, b'{"a": 1}'), (3, b'{"b": 2}')]
    lines = iter_lines(_FailingRead())
    assert next(lines) == (1, b'{"a": 1}')
    with pytest.raises(InputError, match=r"^cannot read scans\.jsonl at line 2: Input/output"):
        next(lines)
