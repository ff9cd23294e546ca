"""`bordermon replay --jobs N`: the same output as one process, whatever N and the input.

The library drivers are compared with a fixed clock, so flags must be byte-identical
(`detected_at` included); the command line is compared with `detected_at` left out (a wall
clock). Inputs come from the simulator (every pattern of the three rules, duplicates, lines
out of order, malformed lines) and from hypothesis (few consignments and link keys shared by
many events, ids spelled with escapes and extra spaces so that lines take both routes of
`consignment_owner`, blank lines, a byte-order mark, batches of a few lines). The last tests
check that the comparison has teeth: a line or a link key routed to the wrong job changes
the output.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bordermon import replay as replay_module
from bordermon.cli import build_parser, main
from bordermon.core import DetectionConfig
from bordermon.core.flag import Flag
from bordermon.core.pipeline import Reject
from bordermon.jsonl import InputError
from bordermon.replay import ReplayResult, replay
from bordermon.replay import parallel as parallel_replay
from bordermon.replay.parallel import (
    consignment_owner,
    link_owner,
    replay_parallel,
)
from bordermon.simulate import DEFAULT_MIX, SimulationSpec, simulate
from support.builders import CHPL, crossing_doc

CONFIG = DetectionConfig(watchlist=CHPL)  # all three rules
SERVICES = Path(__file__).resolve().parents[2] / "services"
pytestmark = pytest.mark.timeout(300)  # a deadlock fails the test, not the whole run

RELABEL_HEAVY = tuple(
    (dict(DEFAULT_MIX) | {"relabel": 0.6, "container-reuse": 0.2, "controlled-export": 0.1}).items()
)


@dataclass(frozen=True)
class Output:
    """Everything a replay reports, but for its duration."""

    flags: bytes
    rejects: list[tuple[int, str, str, bytes]]
    flag_objects: list[Flag]
    counts: tuple[Any, ...]


def counts_of(result: ReplayResult) -> tuple[Any, ...]:
    tally = result.tally
    return (
        tally.read,
        tally.accepted,
        tally.duplicates,
        tally.sightings,
        dict(tally.rejected),
        dict(tally.flags),
        dict(tally.flags_by_rule),
        result.blank_lines,
        result.consignments,
        result.link_keys,
        dict(result.events_by_label),
    )


def run(data: bytes, jobs: int, *, path: Path | None = None, **options: Any) -> Output:
    """Replay `data` in one process (jobs=1) or over `jobs`, from a file when `path` is
    given (each job opens it) else from a stream (the parent copies it to the jobs)."""
    out = io.BytesIO()
    rejects: list[Reject] = []
    flags: list[Flag] = []
    kwargs: dict[str, Any] = {
        "on_reject": rejects.append,
        "on_flags": flags.extend,
        "count_events": True,
        "clock": lambda: 1_700_000_000_000_000_000,
        **options,
    }
    if path is not None:
        path.write_bytes(data)
    with path.open("rb") if path is not None else io.BytesIO(data) as source:
        if jobs == 1:
            result = replay(source, out, CONFIG, **kwargs)
        else:
            result = replay_parallel(source, out, CONFIG, jobs, **kwargs)
    return Output(
        out.getvalue(),
        [(r.message.line, r.reason, r.detail, r.message.value) for r in rejects],
        flags,
        counts_of(result),
    )


def simulated(seed: int, **spec: Any) -> bytes:
    lines, _ = simulate(SimulationSpec(seed=seed, **spec))
    return b"\n".join(lines) + b"\n"


@pytest.fixture
def small_batches() -> Iterator[None]:
    """Batches of a few lines: many batch boundaries, where the order rules bite."""
    with (
        mock.patch.object(replay_module, "BATCH_LINES", 7),
        mock.patch.object(parallel_replay, "BATCH_LINES", 7),
    ):
        yield


@pytest.mark.parametrize(
    ("seed", "spec"),
    [
        (11, {"consignments": 1500}),
        (12, {"consignments": 800, "mix": RELABEL_HEAVY, "duplicate_rate": 0.2}),
        (13, {"consignments": 800, "malformed_rate": 0.2, "max_lateness_s": 30 * 86_400.0}),
    ],
    ids=["default", "relabel-heavy-duplicates", "malformed-and-late"],
)
def test_jobs_give_the_output_of_one_process_on_simulated_traffic(
    seed: int, spec: dict[str, Any], tmp_path: Path
) -> None:
    data = simulated(seed, **spec)
    one = run(data, 1)
    assert one.flags.count(b"\n") > 100 and one.rejects, "the input exercises the rules"
    assert {flag.rule for flag in one.flag_objects} == {
        "transit-to-ru",
        "relabel-to-ru",
        "export-without-permit",
    }
    for jobs in (2, 3):
        assert run(data, jobs, path=tmp_path / "in.jsonl") == one, f"{jobs} jobs, from a file"
    assert run(data, 2) == one, "2 jobs, from a stream"


def test_jobs_give_the_output_of_one_process_across_many_batches(
    small_batches: None, tmp_path: Path
) -> None:
    data = simulated(21, consignments=300, mix=RELABEL_HEAVY, duplicate_rate=0.1)
    one = run(data, 1)
    assert one.flags.count(b"\n") > 50
    assert run(data, 3, path=tmp_path / "in.jsonl") == one
    # A job that may run only a batch ahead of the slowest one waits for it, often.
    assert run(data, 2, path=tmp_path / "in.jsonl", lag_bytes=1) == one
    # From a stream, the lag allowed is at least a relayed block, or jobs could wait for
    # each other for ever.
    assert run(data, 2, lag_bytes=1) == one


# --- hypothesis: few consignments and link keys, many ways to write a line ----------------

CONSIGNMENTS = ["A", "B", "B-2", "ß"]  # "ß": not ASCII, so its bytes are UTF-8
CONTAINERS = [None, "MSCU1", "mscu 1", "TGHU2"]


def spell(doc: dict[str, Any], how: str) -> bytes:
    """One valid document, written as different producers write it."""
    if how == "compact":
        return orjson.dumps(doc)
    if how == "spaces":  # Python's json.dumps style
        return orjson.dumps(doc).replace(b'":', b'": ').replace(b',"', b', "')
    if how == "escaped":  # the id with \\u escapes: no shortcut, the owner is validated
        escaped = "".join(f"\\u{ord(char):04x}" for char in doc["consignment_id"])
        return orjson.dumps(doc).replace(
            orjson.dumps(doc["consignment_id"]), f'"{escaped}"'.encode(), 1
        )
    if how == "nested":  # the key also inside a goods line (an unknown field there)
        goods = [dict(line, consignment_id="decoy") for line in doc["goods"]]
        return orjson.dumps(dict(doc, goods=goods))
    raise AssertionError(how)


@st.composite
def valid_line(draw: st.DrawFn) -> bytes:
    is_entry = draw(st.booleans())
    day = draw(st.integers(0, 40))
    container = draw(st.sampled_from(CONTAINERS))
    doc = crossing_doc(
        event_id=f"ev-{draw(st.integers(0, 6))}",  # a small pool: duplicates and reuse
        consignment_id=draw(st.sampled_from(CONSIGNMENTS)),
        from_country=draw(st.sampled_from(["CN", "RU"])) if is_entry else "KZ",
        to_country="KZ" if is_entry else draw(st.sampled_from(["RU", "RU", "KG"])),
        observed_at=f"2024-03-{1 + day % 28:02d}T{day % 24:02d}:00:00Z"
        if day < 28
        else f"2024-04-{day - 27:02d}T00:00:00+05:00",
        goods=[{"hs_code": draw(st.sampled_from(["854231", "847150", "940360"]))}],
        transport=None if container is None else {"container_id": container},
        permit_id=draw(st.sampled_from([None, None, "KZ-LIC-1"])),
    )
    return spell(doc, draw(st.sampled_from(["compact", "compact", "spaces", "escaped", "nested"])))


invalid_line = st.sampled_from(
    [
        b"{broken",
        b"[1, 2]",
        orjson.dumps(crossing_doc(consignment_id=None)),
        orjson.dumps(crossing_doc(consignment_id="A", observed_at="2024-03-01T00:00:00")),
        orjson.dumps(crossing_doc(consignment_id=7)),
        b'{"consignment_id": "A", "consignment_id": "B"}',
        b"\xff\xfe not utf-8",
    ]
)
blank_line = st.sampled_from([b"", b"   ", b"\t"])


@st.composite
def jsonl_input(draw: st.DrawFn) -> bytes:
    lines = draw(
        st.lists(
            st.one_of(valid_line(), valid_line(), valid_line(), invalid_line, blank_line),
            min_size=1,
            max_size=60,
        )
    )
    # Re-sent lines, anywhere later in the file.
    for _ in range(draw(st.integers(0, 8))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(lines)))
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    ending = draw(st.sampled_from([b"\n", b"\r\n"]))
    return bom + ending.join(lines) + draw(st.sampled_from([ending, b""]))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=jsonl_input(), jobs=st.sampled_from([2, 3]), from_file=st.booleans())
def test_any_input_gives_the_output_of_one_process(
    small_batches: None, tmp_path: Path, data: bytes, jobs: int, from_file: bool
) -> None:
    path = tmp_path / "in.jsonl" if from_file else None
    assert run(data, jobs, path=path) == run(data, 1)


def test_a_line_goes_to_the_job_of_its_consignment_however_it_is_written() -> None:
    doc = crossing_doc(consignment_id="CSG-0000042-AB12")
    jobs = 7
    owner = consignment_owner(spell(doc, "compact"), jobs, CONFIG)
    for how in ("spaces", "escaped", "nested"):
        assert consignment_owner(spell(doc, how), jobs, CONFIG) == owner, how
    # Every id of the pool lands somewhere in range, and the ids do not all land together.
    owners = {
        consignment_owner(orjson.dumps(crossing_doc(consignment_id=f"C{n}")), jobs, CONFIG)
        for n in range(200)
    }
    assert owners == set(range(jobs))
    assert {link_owner(f"container:BOX{n}", jobs) for n in range(200)} == set(range(jobs))


# --- the comparison has teeth ----------------------------------------------------------------


def test_a_consignment_split_between_jobs_changes_the_output(tmp_path: Path) -> None:
    data = simulated(11, consignments=1500)
    one = run(data, 1)
    flagged = next(f for f in one.flag_objects if f.rule == "transit-to-ru").consignment_id
    needle = orjson.dumps(flagged)
    route = parallel_replay.consignment_owner

    def misroute(value: bytes, jobs: int, config: DetectionConfig) -> int:
        owner = route(value, jobs, config)
        # Its exits to Russia go to another job than its entries.
        return (owner + 1) % jobs if needle in value and b'"RU"' in value else owner

    with mock.patch.object(parallel_replay, "consignment_owner", misroute):
        wrong = run(data, 2, path=tmp_path / "in.jsonl")
    assert wrong.counts[0] == one.counts[0]  # every line was still read once
    assert wrong.flags != one.flags
    transits = {f.consignment_id for f in wrong.flag_objects if f.rule == "transit-to-ru"}
    assert flagged not in transits


def test_a_link_key_split_between_jobs_changes_the_output(tmp_path: Path) -> None:
    data = simulated(12, consignments=800, mix=RELABEL_HEAVY)
    one = run(data, 1)
    link = next(f for f in one.flag_objects if f.rule == "relabel-to-ru").link
    route = parallel_replay.link_owner
    calls = [0]

    def misroute(key: str, jobs: int) -> int:
        if key != link:
            return route(key, jobs)
        calls[0] += 1  # its sightings alternate between the jobs
        return calls[0] % jobs

    with mock.patch.object(parallel_replay, "link_owner", misroute):
        wrong = run(data, 2, path=tmp_path / "in.jsonl")
    assert wrong.flags != one.flags
    assert link not in {f.link for f in wrong.flag_objects}


# --- the command line --------------------------------------------------------------------------


def cli(*args: str, stdin: bytes | None = None, **popen: Any) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BORDERMON_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SERVICES), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "bordermon", "replay", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=300,
        check=False,
        **popen,
    )


def without_detected_at(flags: bytes) -> list[dict[str, Any]]:
    docs = [orjson.loads(line) for line in flags.splitlines()]
    for doc in docs:
        del doc["detected_at"]
    return docs


def test_the_command_gives_the_same_output_with_any_jobs(tmp_path: Path) -> None:
    source = tmp_path / "scans.jsonl"
    source.write_bytes(simulated(14, consignments=1200, malformed_rate=0.05))
    outputs = {}
    for jobs in ("1", "2", "3"):
        rejects, metrics = tmp_path / f"rejects{jobs}.jsonl", tmp_path / f"m{jobs}.prom"
        args = [str(source), "--jobs", jobs, "--rejects", str(rejects), "--metrics", str(metrics)]
        result = cli(*args)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        stderr = result.stderr.decode().splitlines()
        [start] = [n for n, line in enumerate(stderr) if line.startswith("replay: ")]
        assert ("jobs)" in stderr[start]) == (jobs != "1")
        outputs[jobs] = (
            without_detected_at(result.stdout),
            rejects.read_bytes(),
            metrics.read_bytes(),
            stderr[:start],  # the rejected lines listed
            stderr[start + 1 :],  # the summary but its first line (time and rate)
        )
    assert outputs["1"][0] and outputs["1"][3]
    assert outputs["2"] == outputs["1"]
    assert outputs["3"] == outputs["1"]
    # From stdin (copied to the jobs by the parent) into --flags-out: the same again.
    piped = cli(
        "-",
        "--jobs",
        "2",
        "--quiet",
        "--flags-out",
        str(tmp_path / "flags.jsonl"),
        stdin=source.read_bytes(),
    )
    assert piped.returncode == 0 and piped.stdout == b""
    assert without_detected_at((tmp_path / "flags.jsonl").read_bytes()) == outputs["1"][0]


def test_help_has_examples_that_the_parser_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["replay", "--help"])
    text = capsys.readouterr().out
    lines = [line.split() for line in text.splitlines()]
    examples = [words[1:] for words in lines if words[:2] == ["bordermon", "replay"]]
    assert ["replay", "crossings.jsonl", "--flags-out", "flags.jsonl", "--jobs", "2"] in examples
    parser = build_parser()
    for words in examples:
        args = parser.parse_args(words[: words.index(">")] if ">" in words else words)
        assert args.command == "replay"
    prose = " ".join(text.split())
    assert "Memory:" in prose and "(no expiry" in prose and "--jobs" in prose


# --- failures stay one line, and leave no process behind ---------------------------------------


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr and stderr.endswith("\n"), stderr
    last = stderr.splitlines()[-1]
    assert last.startswith("bordermon: "), stderr
    return last


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    path = tmp_path / "scans.jsonl"
    path.write_bytes(simulated(15, consignments=300))
    return path


def test_a_job_killed_is_one_line_naming_it(
    scans: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = parallel_replay._JobRun.consignment_stage

    def killed(self: parallel_replay._JobRun, batch: int, chunk: list[tuple[int, bytes]]) -> None:
        if self.job.index == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
        stage(self, batch, chunk)

    monkeypatch.setattr(parallel_replay._JobRun, "consignment_stage", killed)
    assert main(["replay", str(scans), "--jobs", "2", "--quiet"]) == 2
    last = one_line_error(capsys.readouterr().err)
    assert last.startswith("bordermon: replay job 2 of 2 (pid ")
    assert "was killed by signal 9 (SIGKILL" in last and last.endswith("rerun with --jobs 1")
    assert multiprocessing_children() == []


def test_a_job_that_fails_is_one_line_saying_why(
    scans: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: parallel_replay._JobRun, batch: int) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(parallel_replay._JobRun, "link_stage", broken)
    assert main(["replay", str(scans), "--jobs", "3", "--quiet"]) == 2
    last = one_line_error(capsys.readouterr().err)
    assert last.startswith("bordermon: replay job ") and last.endswith(
        " of 3 failed: RuntimeError: boom; rerun with --jobs 1"
    )
    assert multiprocessing_children() == []


def multiprocessing_children() -> list[multiprocessing.process.BaseProcess]:
    return multiprocessing.active_children()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_one_line(scans: Path) -> None:
    with Path("/dev/full").open("wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "bordermon", "replay", str(scans), "--jobs", "2"],
            stdout=full,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=str(SERVICES)),
            timeout=120,
            check=False,
        )
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert one_line_error(stderr) == "bordermon: cannot write to stdout: No space left on device"
    assert stderr.count("No space left") == 1


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_an_input_error_in_the_jobs_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # Each job opens the path itself, and reading the start of its own memory fails (EIO).
    assert main(["replay", "/proc/self/mem", "--jobs", "2"]) == 2
    assert one_line_error(capsys.readouterr().err) == (
        "bordermon: cannot read /proc/self/mem at line 1: Input/output error"
    )


class _FailingStream(io.BytesIO):
    """A stream (no file to open) that fails after its first block."""

    name = "scans.jsonl"

    def __init__(self, first: bytes) -> None:
        super().__init__(first)
        self.served = False

    def read1(self, size: int = -1, /) -> bytes:
        if self.served:
            raise OSError(5, "Input/output error")
        self.served = True
        return self.getvalue()


def test_an_input_error_in_the_parent_names_the_line() -> None:
    first = b"".join(orjson.dumps(crossing_doc(event_id=f"e{n}")) + b"\n" for n in range(5))
    with pytest.raises(InputError, match=r"^cannot read scans\.jsonl at line 6: Input/output"):
        replay_parallel(_FailingStream(first), io.BytesIO(), CONFIG, 2)
    assert multiprocessing_children() == []


def test_ctrl_c_stops_every_process_without_a_traceback() -> None:
    # The scans come through a pipe held open, so the replay is still running, its jobs
    # waiting for more, whenever Ctrl-C comes: on a fast box a file could be done before.
    env = dict(os.environ, PYTHONPATH=str(SERVICES))
    process = subprocess.Popen(
        [sys.executable, "-m", "bordermon", "replay", "-", "--jobs", "2", "--quiet"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own process group, as a shell gives a command
    )
    assert process.stdin is not None
    process.stdin.write(simulated(16, consignments=None, events=2_000))
    process.stdin.flush()
    children: list[int] = []
    deadline = time.monotonic() + 60
    while len(children) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        children = child_pids(process.pid)
    assert len(children) == 2, "the jobs started"
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert b"Traceback" not in stderr and b"KeyboardInterrupt" not in stderr, stderr
    assert all(not Path(f"/proc/{pid}").exists() for pid in children)


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(word) for word in text.split()]
