"""`bordermon replay --jobs N`: the replay of `bordermon.replay` over N processes, same output.

Each job (a forked process) runs the same core steps as the in-process driver
(`core.pipeline.validate_batch`, `apply_batch`, `apply_link_batch`) over its share of the
input, and the parent only merges what the jobs report. The output is that of `--jobs 1`:
the same flags (but for `detected_at`, a wall clock) in the same order, the same rejects in
the same order, the same summary counts. How:

- **Every job reads the whole input and keeps its share.** A regular file is opened by each
  job; any other input (stdin, a pipe) is read once by the parent, which copies its blocks
  to every job without looking at lines. So all jobs see the same lines, numbered and
  batched exactly as `replay` does (`jsonl.iter_lines`, `BATCH_LINES`), and no line goes
  through the parent. A line belongs to the job of its consignment id
  (`consignment_owner`): read straight from the bytes when that is certain, else from the
  validated event.
- **Consignment stage**: each job validates and applies its own lines, batch by batch,
  with states in its own dicts, and reports its rejects and flags to the parent with their
  line numbers. Every consignment's events reach one job, in file order, so its state goes
  through the same transitions as in one process.
- **Link stage**: the sightings of each batch go to the job of their link key
  (`link_owner`), tagged with the line that emitted them (and their rank among that line's
  sightings). A job runs a batch's link stage once every job has sent it that batch's
  sightings, merged in (line, rank) order: the order in which one process applies them.
- **The parent** writes batch by batch, as one process does: the batch's rejects in line
  order, then its consignment-stage flags in line order, then its link-stage flags in
  (line, rank) order. Equal keys come from one job (one event, or one sighting) and keep
  that job's order.

Memory: the states are split between the jobs (each consignment and link key lives in one),
so the total is about that of one process plus one interpreter per job; nothing expires
(see `bordermon.replay`). A job that gets ahead of the slowest by more than `LAG_BYTES` of
input waits for it, so what is buffered between jobs and in the parent stays bounded.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import itertools
import multiprocessing
import operator
import os
import re
import signal
import stat
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue as ProcessQueue
from queue import Empty
from typing import IO, Any, NamedTuple

from bordermon.core.config import DetectionConfig
from bordermon.core.flag import Flag
from bordermon.core.link import LinkState
from bordermon.core.pipeline import (
    Accepted,
    Message,
    Reject,
    Tally,
    apply_batch,
    apply_link_batch,
    validate,
    validate_batch,
)
from bordermon.core.sighting import LinkSighting, Sighting
from bordermon.core.state import ConsignmentState
from bordermon.jsonl import InputError, iter_lines, read_error
from bordermon.replay import BATCH_LINES, ReplayResult, replay

LAG_BYTES = 16 << 20
"""How far (in bytes of input) a job may run ahead of the slowest before it waits."""
RELAY_BLOCK = 1 << 20
"""Bytes the parent copies to every job at a time when the input is not a regular file.
The lag allowed is at least this: while the parent waits to hand a block to a job that is
waiting, every slower job has been given all the input up to that block, hence all the lines
of the batch the waiting job waits for (so nobody waits for ever)."""
PEER_POLL_S = 1.0
"""How often a job waiting for another checks that the parent is still there."""
STOP_GRACE_S = 5.0

_KEY_NAME = b'"consignment_id"'
_CONSIGNMENT_KEY = re.compile(rb'"consignment_id"\s*:\s*"([^"]*)"')


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _owner_of_text(text: str, jobs: int) -> int:
    # crc32, not hash(): the same in every process whatever PYTHONHASHSEED is.
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % jobs


def consignment_owner(value: bytes, jobs: int, config: DetectionConfig) -> int:
    """The job (0..jobs-1) that handles this input line: the one of its consignment id.

    A line with no backslash and `"consignment_id"` only once holds no escape, so if it is
    valid at all that occurrence is its top-level key and the quoted bytes after it are the
    id as `parse_crossing` reads it: they are hashed as they are (~1 µs). Any other line
    (escapes, the name twice or nested, no string after it) is validated as its owner will
    validate it, and goes to the owner of the event's id. A line that is not valid can go
    anywhere as long as it is one place: its reject is ordered by line number.
    """
    at = value.find(_KEY_NAME)
    # (`find`, not `in`: `bytes in bytes` first tries the needle as an int, and raises and
    # formats a TypeError to find it is not one, which cost more than the search.)
    if at >= 0 and value.find(_KEY_NAME, at + len(_KEY_NAME)) < 0 and value.find(b"\\") < 0:
        match = _CONSIGNMENT_KEY.match(value, at)
        if match is not None:
            return zlib.crc32(match[1]) % jobs
    outcome = validate(Message(value), config)
    if isinstance(outcome, Accepted):
        return _owner_of_text(outcome.event.consignment_id, jobs)
    return 0


def link_owner(link: str, jobs: int) -> int:
    """The job that runs the link stage of this link key."""
    return _owner_of_text(link, jobs)


class ReplayJobFailed(Exception):
    """A job process died or failed; the message says which and what to do."""


class _Tagged(NamedTuple):
    """A link sighting with the place of its crossing: line, then rank among its sightings."""

    line: int
    rank: int
    sighting: LinkSighting


# Between processes, plain tuples only: pickle rebuilds a NamedTuple through its class (a link
# sighting took ~12 µs to pickle and ~6 to unpickle, a third of what a job added per event);
# a tuple of strings and numbers takes ~2 and ~1.
_SightingRow = tuple[
    int, int, str, str, str, tuple[str, str, str, str, str, int], tuple[str, ...], str | None
]
"""A `_Tagged` for another job: line, rank, then the link sighting's fields, its crossing's
as a tuple."""
_Parcel = tuple[int, int, list[_SightingRow]]
"""Link sightings one job sends another: (batch, sending job, rows)."""
_FlagRow = tuple[int, int, bytes, dict[str, Any] | None]
"""A flag for the parent: line, rank, its JSON, and its record when the parent asked for the
flags (`Flag.to_record`)."""
_RejectRow = tuple[int, str, str, bytes]
"""A reject for the parent: line, reason, detail, the line's bytes."""
_sort_key = operator.itemgetter(0, 1)  # (line, rank) of a _Tagged, a row or a _FlagRow


def _sighting_row(line: int, rank: int, sighting: LinkSighting) -> _SightingRow:
    crossing = sighting.sighting
    return (
        line,
        rank,
        sighting.link,
        sighting.consignment_id,
        sighting.direction,
        (
            crossing.event_id,
            crossing.checkpoint,
            crossing.from_country,
            crossing.to_country,
            crossing.observed_at,
            crossing.instant_ns,
        ),
        sighting.hs_codes,
        sighting.declared_destination,
    )


def _tagged(row: _SightingRow) -> _Tagged:
    line, rank, link, consignment_id, direction, crossing, hs_codes, declared = row
    sighting = LinkSighting(
        link, consignment_id, direction, Sighting(*crossing), hs_codes, declared
    )
    return _Tagged(line, rank, sighting)


@dataclass(slots=True)
class _JobSummary:
    tally: Tally
    blank_lines: int
    consignments: int
    link_keys: int
    events_by_label: Counter[tuple[str, str]]


def merge_tallies(tallies: Iterable[Tally]) -> Tally:
    """One tally with the counts of all."""
    total = Tally()
    for tally in tallies:
        total.read += tally.read
        total.accepted += tally.accepted
        total.duplicates += tally.duplicates
        total.sightings += tally.sightings
        total.rejected.update(tally.rejected)
        total.flags.update(tally.flags)
        total.flags_by_rule.update(tally.flags_by_rule)
    return total


@dataclass
class _Job:
    """What one job process is given (inherited through fork: nothing is pickled)."""

    index: int
    jobs: int
    config: DetectionConfig
    clock: Callable[[], int]
    input_path: str | None  # a regular file the job opens itself, or
    input_fd: int  # the read end of the pipe the parent copies the input into
    results: Connection
    inboxes: Sequence[ProcessQueue[_Parcel]]  # link sightings sent to each job
    fds_to_close: Sequence[int]  # the other jobs' pipe ends, so EOFs reach who waits
    ship_flags: bool
    count_events: bool
    lag_bytes: int
    parent_pid: int


class _JobRun:
    """One job's pass over the input (runs in the job's process)."""

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.tally = Tally()
        self.states: dict[str, ConsignmentState] = {}
        self.link_states: dict[str, LinkState] = {}
        self.blank = [0]
        self.events_by_label: Counter[tuple[str, str]] = Counter()
        # Link sightings by batch, one list per sending job (None: not arrived yet).
        self.inbox: dict[int, list[list[_Tagged] | None]] = {}
        self.next_link_batch = 0
        self.bytes_read = 0
        self.bytes_at_batch_end: dict[int, int] = {}

    def run(self) -> _JobSummary:
        job = self.job
        if job.input_path is not None:
            try:
                source: IO[bytes] = open(job.input_path, "rb")  # noqa: SIM115 - closed below
            except OSError as error:
                raise InputError(f"cannot read {job.input_path}: {error.strerror}") from None
        else:
            source = os.fdopen(job.input_fd, "rb")
        with source:
            lines = iter_lines(source, self.blank)
            batches = 0
            while chunk := list(itertools.islice(lines, BATCH_LINES)):
                self.consignment_stage(batches, chunk)
                batches += 1
                self.link_stages(until=batches, wait=False)
                self.wait_for_the_slowest(batches)
                # As in `replay`: states live until the end; spare the cyclic GC re-scanning them.
                gc.freeze()
        self.link_stages(until=batches, wait=True)
        return _JobSummary(
            self.tally,
            self.blank[0],
            len(self.states),
            len(self.link_states),
            self.events_by_label,
        )

    def consignment_stage(self, batch: int, chunk: list[tuple[int, bytes]]) -> None:
        job = self.job
        jobs, index, config = job.jobs, job.index, job.config
        mine: list[Message] = []
        size = 0
        for number, value in chunk:  # every line of the input: keep this loop lean
            size += len(value)
            if consignment_owner(value, jobs, config) == index:
                mine.append(Message(value, line=number))
        self.bytes_read += size + len(chunk)
        self.bytes_at_batch_end[batch] = self.bytes_read
        accepted, rejects = validate_batch(mine, job.config, self.tally)
        if job.count_events:
            self.events_by_label.update(
                (item.event.checkpoint, item.event.direction.value) for item in accepted
            )
        flags: list[_FlagRow] = []
        own: list[_Tagged] = []
        outgoing: list[list[_SightingRow]] = [[] for _ in range(jobs)]
        for item in accepted:
            line = item.message.line
            # One event at a time, so that each flag and sighting is known to be this line's.
            outcome = apply_batch((item,), self.states, config, self.tally, job.clock)
            for rank, (flag, _) in enumerate(outcome.flags):
                flags.append((line, rank, flag.to_json(), self._record(flag)))
            for rank, sighting in enumerate(outcome.sightings):
                owner = link_owner(sighting.link, jobs)
                if owner == index:
                    own.append(_Tagged(line, rank, sighting))
                else:
                    outgoing[owner].append(_sighting_row(line, rank, sighting))
            if outcome.flags:
                # Reported is delivered, as in `replay`: nothing stays pending.
                for state in outcome.touched.values():
                    state.pending.clear()
        reported: list[_RejectRow] = [
            (reject.message.line, reject.reason, reject.detail, reject.message.value)
            for reject in rejects
        ]
        job.results.send(("consignments", batch, self.tally, reported, flags))
        self._receive(batch, index, own)
        for peer, rows in enumerate(outgoing):
            if peer != index:
                job.inboxes[peer].put((batch, index, rows))

    def _record(self, flag: Flag) -> dict[str, Any] | None:
        return flag.to_record() if self.job.ship_flags else None

    def _receive(self, batch: int, sender: int, sightings: list[_Tagged]) -> None:
        parts = self.inbox.setdefault(batch, [None] * self.job.jobs)
        parts[sender] = sightings

    def _ready(self, batch: int) -> bool:
        parts = self.inbox.get(batch)
        return parts is not None and all(part is not None for part in parts)

    def _take_arrived(self, block: bool) -> None:
        """Move the sightings other jobs sent into `inbox`; with `block`, wait for one."""
        inbox = self.job.inboxes[self.job.index]
        while True:
            try:
                batch, sender, rows = inbox.get(block, PEER_POLL_S if block else None)
            except Empty:
                if not block:
                    return
                if os.getppid() != self.job.parent_pid:
                    os._exit(1)  # orphaned: the parent that would read the result is gone
                continue
            self._receive(batch, sender, [_tagged(row) for row in rows])
            block = False

    def link_stages(self, until: int, wait: bool) -> None:
        """Run the link stage of every batch before `until` whose sightings are all here;
        with `wait`, wait for them."""
        self._take_arrived(block=False)
        while self.next_link_batch < until:
            if not self._ready(self.next_link_batch):
                if not wait:
                    return
                self._take_arrived(block=True)
                continue
            self.link_stage(self.next_link_batch)
            self.next_link_batch += 1

    def wait_for_the_slowest(self, batches: int) -> None:
        while (
            self.next_link_batch < batches
            and self.bytes_read - self.bytes_at_batch_end[self.next_link_batch] > self.job.lag_bytes
        ):
            self.link_stages(until=self.next_link_batch + 1, wait=True)

    def link_stage(self, batch: int) -> None:
        job = self.job
        parts = self.inbox.pop(batch)
        del self.bytes_at_batch_end[batch]
        merged = list(heapq.merge(*(part or () for part in parts), key=_sort_key))
        outcome = apply_link_batch(
            [tagged.sighting for tagged in merged],
            self.link_states,
            job.config,
            self.tally,
            job.clock,
        )
        flags: list[_FlagRow] = []
        if outcome.flags:
            # Each flag comes with the very sighting object that raised it: its place is known.
            place = {id(tagged.sighting): (tagged.line, tagged.rank) for tagged in merged}
            flags = [
                (*place[id(sighting)], flag.to_json(), self._record(flag))
                for flag, sighting in outcome.flags
            ]
            for state in outcome.touched.values():
                state.pending.clear()
        job.results.send(("links", batch, self.tally, flags))


def _job_main(job: _Job) -> None:
    """A job process: run, then report the summary, or one line saying what failed."""
    # Ctrl-C reaches the whole process group: the parent alone handles it (and stops us).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != job.parent_pid:
        os._exit(1)
    for fd in job.fds_to_close:
        with contextlib.suppress(OSError):
            os.close(fd)
    try:
        try:
            message: tuple[Any, ...] = ("done", _JobRun(job).run())
        except InputError as error:
            message = ("error", "input", str(error))
        except BrokenPipeError:
            raise  # the parent is gone, or stopping us
        except BaseException as error:  # a bug: said in one line; the parent stops the rest
            message = ("error", "failed", f"{type(error).__name__}: {error}")
        job.results.send(message)
    except BaseException:
        os._exit(1)  # nothing to tell, nobody to tell it to: no traceback either
    if message[0] != "done":
        os._exit(1)
    # Returning lets multiprocessing flush this job's queues to the others before exiting.


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (no orphan keeps a CPU busy)."""
    with contextlib.suppress(Exception):
        import ctypes  # noqa: PLC0415 - only in job processes, only on Linux

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class _Relay(threading.Thread):
    """Copies an input that jobs cannot open themselves (stdin, a pipe) to every job."""

    def __init__(self, source: IO[bytes], fds: list[int]) -> None:
        super().__init__(name="bordermon-replay-relay", daemon=True)
        self.source = source
        self.fds = fds
        self.error: InputError | None = None

    def run(self) -> None:
        read = getattr(self.source, "read1", self.source.read)
        complete_lines = 0
        try:
            while True:
                try:
                    block = read(RELAY_BLOCK)
                except OSError as error:
                    self.error = read_error(self.source, complete_lines + 1, error)
                    return
                if not block:
                    return
                complete_lines += block.count(b"\n")
                for fd in self.fds:
                    view = memoryview(block)
                    while view:
                        view = view[os.write(fd, view) :]
        except OSError:
            return  # a job has gone: the parent reports why
        finally:
            for fd in self.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)


@dataclass(slots=True)
class _Batch:
    """What the jobs reported for one batch, until all have."""

    rejects: list[list[_RejectRow]] = field(default_factory=list)
    consignment_flags: list[list[_FlagRow]] = field(default_factory=list)
    link_flags: list[list[_FlagRow]] = field(default_factory=list)


class _Merger:
    """Writes the jobs' reports batch by batch, in the order one process writes them."""

    def __init__(
        self,
        jobs: int,
        flags_out: IO[bytes],
        on_reject: Callable[[Reject], None] | None,
        on_batch: Callable[[Tally], None] | None,
        on_flags: Callable[[list[Flag]], None] | None,
    ) -> None:
        self.jobs = jobs
        self.flags_out = flags_out
        self.on_reject = on_reject
        self.on_batch = on_batch
        self.on_flags = on_flags
        self.batches: dict[int, _Batch] = {}
        self.next_batch = 0
        self.tallies = [Tally() for _ in range(jobs)]
        # Rejects by reason in the order one process meets them (the summary lists ties so).
        self.rejected: Counter[str] = Counter()

    def consignments(
        self, job: int, batch: int, tally: Tally, rejects: list[_RejectRow], flags: list[_FlagRow]
    ) -> None:
        self.tallies[job] = tally
        parts = self.batches.setdefault(batch, _Batch())
        parts.rejects.append(rejects)
        parts.consignment_flags.append(flags)
        self._write_complete()

    def links(self, job: int, batch: int, tally: Tally, flags: list[_FlagRow]) -> None:
        self.tallies[job] = tally
        self.batches.setdefault(batch, _Batch()).link_flags.append(flags)
        self._write_complete()

    def _write_complete(self) -> None:
        while (parts := self.batches.get(self.next_batch)) is not None and (
            len(parts.consignment_flags) == len(parts.link_flags) == self.jobs
        ):
            del self.batches[self.next_batch]
            self.next_batch += 1
            self._write(parts)

    def _write(self, parts: _Batch) -> None:
        for line, reason, detail, raw in heapq.merge(*parts.rejects):
            self.rejected[reason] += 1
            if self.on_reject is not None:
                self.on_reject(Reject(Message(value=raw, line=line), reason, detail))
        flags = [
            *heapq.merge(*parts.consignment_flags, key=_sort_key),
            *heapq.merge(*parts.link_flags, key=_sort_key),
        ]
        if flags:
            self.flags_out.write(b"".join(body + b"\n" for _, _, body, _ in flags))
            if self.on_flags is not None:
                self.on_flags([Flag.from_record(record) for *_, record in flags if record])
        if self.on_batch is not None:
            self.on_batch(merge_tallies(self.tallies))

    def unfinished(self) -> bool:
        return bool(self.batches)


def _input_path(source: IO[bytes]) -> str | None:
    """The path of `source` when it is a regular file not read from yet (each job can open
    it), else None (the parent copies it to the jobs)."""
    name = getattr(source, "name", None)
    if not isinstance(name, str):
        return None
    try:
        regular = stat.S_ISREG(os.fstat(source.fileno()).st_mode)
        return name if regular and source.tell() == 0 else None
    except (OSError, ValueError, AttributeError):
        return None


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = "; out of memory? see dmesg" if -exitcode == signal.SIGKILL else ""
        return f"was killed by signal {-exitcode} ({name}{hint})"
    return f"exited with code {exitcode}"


def replay_parallel(
    source: IO[bytes],
    flags_out: IO[bytes],
    config: DetectionConfig,
    jobs: int,
    *,
    on_reject: Callable[[Reject], None] | None = None,
    on_batch: Callable[[Tally], None] | None = None,
    on_flags: Callable[[list[Flag]], None] | None = None,
    count_events: bool = False,
    clock: Callable[[], int] = time.time_ns,
    lag_bytes: int = LAG_BYTES,
) -> ReplayResult:
    """`replay` over `jobs` processes (see the module's docstring), with the same output;
    with one job, `replay` itself, in this process.

    `on_reject` gets the rejects in line order, `on_batch` the running tally after each
    batch is written, `on_flags` each batch's flags in output order; `count_events` as for
    `replay`. Raises `InputError` when the input cannot be read and `ReplayJobFailed` when a
    job dies or fails.
    """
    if jobs == 1:
        return replay(
            source,
            flags_out,
            config,
            on_reject=on_reject,
            on_batch=on_batch,
            on_flags=on_flags,
            count_events=count_events,
            clock=clock,
        )
    started = time.perf_counter()
    context = multiprocessing.get_context("fork")
    input_path = _input_path(source)
    if input_path is None:
        # A job waiting for a slower one must never hold back that one's input: it waits
        # only for a batch that ended a whole relayed block before its own position.
        lag_bytes = max(lag_bytes, RELAY_BLOCK)
    relay_pipes = [] if input_path is not None else [os.pipe() for _ in range(jobs)]
    result_pipes = [context.Pipe(duplex=False) for _ in range(jobs)]
    inboxes: list[ProcessQueue[_Parcel]] = [context.Queue() for _ in range(jobs)]
    all_fds = [fd for pipe in relay_pipes for fd in pipe] + [
        end.fileno() for pipe in result_pipes for end in pipe
    ]
    processes: list[BaseProcess] = []
    flags_out.flush()  # nothing buffered is inherited, so nothing can be written twice
    for index in range(jobs):
        keep = {result_pipes[index][1].fileno()}
        if relay_pipes:
            keep.add(relay_pipes[index][0])
        job = _Job(
            index=index,
            jobs=jobs,
            config=config,
            clock=clock,
            input_path=input_path,
            input_fd=relay_pipes[index][0] if relay_pipes else -1,
            results=result_pipes[index][1],
            inboxes=inboxes,
            fds_to_close=[fd for fd in all_fds if fd not in keep],
            ship_flags=on_flags is not None,
            count_events=count_events,
            lag_bytes=lag_bytes,
            parent_pid=os.getpid(),
        )
        processes.append(
            context.Process(target=_job_main, args=(job,), name=f"bordermon-replay-{index + 1}")
        )
    relay: _Relay | None = None
    finished = False
    try:
        for process in processes:
            process.start()
        for _, writer in result_pipes:
            writer.close()
        if relay_pipes:
            for reader_fd, _ in relay_pipes:
                os.close(reader_fd)
            relay = _Relay(source, [writer_fd for _, writer_fd in relay_pipes])
            relay.start()
        merger = _Merger(jobs, flags_out, on_reject, on_batch, on_flags)
        summaries = _collect(processes, [reader for reader, _ in result_pipes], merger, relay)
        finished = True
    finally:
        _stop(processes, relay, finished)
        for queue in inboxes:
            queue.close()
            queue.cancel_join_thread()
    if merger.unfinished():
        raise ReplayJobFailed(
            "replay jobs ended before every batch was written; rerun with --jobs 1"
        )
    events_by_label: Counter[tuple[str, str]] = Counter()
    for summary in summaries:
        events_by_label.update(summary.events_by_label)
    tally = merge_tallies(summary.tally for summary in summaries)
    tally.rejected = merger.rejected  # the same counts, in the order of the lines
    return ReplayResult(
        tally,
        summaries[0].blank_lines,  # every job sees every line
        sum(summary.consignments for summary in summaries),
        sum(summary.link_keys for summary in summaries),
        time.perf_counter() - started,
        events_by_label,
    )


def _collect(
    processes: Sequence[BaseProcess],
    readers: list[Connection],
    merger: _Merger,
    relay: _Relay | None,
) -> list[_JobSummary]:
    """Read every job's reports until all are done; raise at the first failure."""
    jobs = len(processes)
    summaries: dict[int, _JobSummary] = {}
    open_readers = {reader: index for index, reader in enumerate(readers)}
    while len(summaries) < jobs:
        for reader in wait(list(open_readers), timeout=PEER_POLL_S):
            assert isinstance(reader, Connection)
            index = open_readers[reader]
            try:
                message = reader.recv()
            except EOFError:
                processes[index].join(PEER_POLL_S)
                raise ReplayJobFailed(
                    f"replay job {index + 1} of {jobs} (pid {processes[index].pid})"
                    f" {_how_it_ended(processes[index].exitcode)}; rerun with --jobs 1"
                ) from None
            kind = message[0]
            if kind == "consignments":
                merger.consignments(index, *message[1:])
            elif kind == "links":
                merger.links(index, *message[1:])
            elif kind == "done":
                summaries[index] = message[1]
                del open_readers[reader]
            elif message[1] == "input":
                raise InputError(message[2])
            else:
                raise ReplayJobFailed(
                    f"replay job {index + 1} of {jobs} failed: {message[2]}; rerun with --jobs 1"
                )
        if relay is not None and relay.error is not None:
            raise relay.error
    if relay is not None:
        relay.join()
        if relay.error is not None:
            raise relay.error
    return [summaries[index] for index in range(jobs)]


def _stop(processes: Sequence[BaseProcess], relay: _Relay | None, finished: bool) -> None:
    """Reap every job: after a run, let them exit; after a failure, Ctrl-C or a closed
    output, stop those still running first."""
    started = [process for process in processes if process.pid is not None]
    if finished:
        for process in started:
            process.join(STOP_GRACE_S)
    for process in started:
        if process.exitcode is None:
            with contextlib.suppress(OSError):
                process.terminate()
    for process in started:
        process.join(STOP_GRACE_S)
        if process.exitcode is None:
            process.kill()
            process.join()
    if relay is not None:
        relay.join(STOP_GRACE_S)
