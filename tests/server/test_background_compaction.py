"""``serve --compact-every``: small segments merged in the background, exactly, and stoppably.

The story: nine short-lived writer processes (a parent and eight forked workers, each rotating
its segment every 1,000 rows) and one writer SIGKILLed after a flush leave ~40 small segments
over 18 hours. A real ``kronicler serve`` subprocess merges them in the background (time-disjoint,
see ``disjoint.py``) while the test asks it questions over gRPC; every answer must equal
the brute force over the rows written, and the rows stored afterwards must be exactly those rows.
A server that ingests OTLP meanwhile rewrites overlapping writers' segments and answers exactly.
Then the ways it must stop: another maintainer holding the lock (skipped, tried again later),
SIGTERM mid-compaction (no partial file, nothing lost or doubled) and SIGKILL of the server (the
run notices and cleans up after itself).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from kronicler import query
from kronicler.db import Database, compaction, disjoint
from kronicler.db.lock import LOCK_FILE, MaintenanceLock
from kronicler.server import Client, KroniclerServer, ServerOptions
from kronicler.server.maintenance import CompactionScheduler
from tests.oracle.interfaces import CliApi, GrpcApi
from tests.oracle.layouts import ROOT, segment_ids, write, writer_env
from tests.oracle.test_ingest import as_set, stored
from tests.oracle.truth import Query, Rows, check_table, expected_slowest, expected_stats, generate
from tests.server.test_ingest import request
from tests.server.test_ingest_queries import NAMES, raw_export
from tests.server.test_ingest_queries import _check as check_live

HOUR = 3600 * 10**9
MINUTE = 60 * 10**9
BASE = 1_790_000_000 * 10**9
FUNCTIONS = ("shop.cart", "shop.pay", "shop.search")


def _deployment(work: Path) -> tuple[Path, Rows]:
    """Short-lived writers' segments in ``work/db``, and the rows they wrote."""
    rng = np.random.default_rng(11)
    forked = generate(rng, 36_000, FUNCTIONS, base=BASE, span=18 * HOUR, tail=["shop.search"],
                      lane=0)  # fmt: skip
    forked = forked.take(np.argsort(forked.start))  # each process gets a stretch of time
    killed = generate(rng, 1_500, FUNCTIONS, base=BASE + 5 * HOUR, span=HOUR // 2, lane=1)
    path = work / "db"
    write(path, forked, work, "forked", mode="fork", workers=8, chunk_rows=250,
          segment_rows=1000, batches=4)  # fmt: skip
    write(path, killed, work, "killed", chunk_rows=250, then="kill")
    return path, Rows.concat([forked, killed])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Rows]:
    return _deployment(tmp_path_factory.mktemp("background-compaction"))


@pytest.fixture
def db_copy(deployment: tuple[Path, Rows], tmp_path: Path) -> tuple[Path, Rows]:
    path, truth = deployment
    shutil.copytree(path, tmp_path / "db")
    return tmp_path / "db", truth


def unpublished(path: Path) -> list[str]:
    """Compaction outputs not (yet) published: what an interrupted compaction would leave."""
    readers = compaction.open_readers(path / "segments")
    return sorted(r.id for r in readers.values() if r.replaces and not r.closed)


def strays(path: Path) -> list[str]:
    """Files that belong to no segment: temporaries, and catalogs or logs without data."""
    names = [p.name for p in (path / "segments").iterdir()]
    data = {n[:-5] for n in names if n.endswith(".kseg")}
    return sorted(n for n in names if n != LOCK_FILE and not n.endswith(".kseg")
                  and n.rsplit(".", 1)[0] not in data)  # fmt: skip


def lock_held(path: Path) -> bool:
    """True while a maintainer holds the lock (it writes its pid there and empties it after)."""
    try:
        return bool((path / "segments" / LOCK_FILE).read_text().strip())
    except FileNotFoundError:
        return False


class Served:
    """A ``kronicler serve`` subprocess; its stdout lines collected by a thread."""

    def __init__(self, path: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kronicler", "serve", "--path", str(path), "--address",
             "127.0.0.1:0", "--no-otlp", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=writer_env(), cwd=ROOT,
        )  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stderr is not None
        first = self.proc.stdout.readline()
        found = re.search(r"on (127\.0\.0\.1:\d+)", first)
        assert found, (first, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.address = found.group(1)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_for(self, pattern: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            assert self.proc.poll() is None, f"serve exited: {self.lines}"
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} in {timeout} s: {self.lines}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(60)
        self._reader.join(10)
        return code


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(30)


def check_answers(api: GrpcApi | CliApi, truth: Rows, where: str) -> None:
    everything = Query()
    check_table(api.stats(everything), "function", expected_stats(truth, everything),
                (0.5, 0.9, 0.99), exact=False, where=f"{where} stats")  # fmt: skip
    one = Query(functions=("shop.search",), since=BASE + 4 * HOUR, until=BASE + 9 * HOUR)
    check_table(api.stats(one, exact=True), "function", expected_stats(truth, one),
                (0.5, 0.9, 0.99), exact=True, where=f"{where} exact")  # fmt: skip
    assert api.slowest(everything, 5) == expected_slowest(truth, everything, 5), where


def test_serve_compacts_in_the_background_and_answers_exactly_meanwhile(
    db_copy: tuple[Path, Rows], served: list[Served]
) -> None:
    path, truth = db_copy
    before = segment_ids(path)
    assert len(before) >= 30
    server = Served(path, "--compact-every", "0.5")
    served.append(server)
    api = GrpcApi(Client(server.address))
    asked = during = 0
    while not any("compaction merged" in line for line in server.lines):
        held = lock_held(path)
        check_answers(api, truth, f"query {asked}")
        during += held or lock_held(path)  # the question overlapped the compaction
        asked += 1
        assert asked < 2000 and server.proc.poll() is None, server.lines
    line = server.wait_for(r"compaction merged (\d+) segment\(s\) into (\d+)")
    merged, outputs = map(int, re.findall(r"merged (\d+) segment\(s\) into (\d+)", line)[0])
    after = segment_ids(path)
    # Small segments that follow each other in time are joined (time-disjoint, see
    # disjoint.py); the killed writer's unsealed segment is finished (its process is gone), so
    # it is merged too.
    assert merged >= 30 and outputs < merged
    assert len(after) == len(before) - merged + outputs
    assert len(before & after) == len(before) - merged  # the rest were left as they were
    assert during >= 1, "no question was asked while the compaction held the lock"
    check_answers(api, truth, "after compaction (grpc)")
    check_answers(CliApi(address=server.address), truth, "after compaction (cli)")
    assert server.stop() == 0
    assert as_set(stored(path)) == as_set(truth)
    assert unpublished(path) == [] and strays(path) == []


def test_a_held_lock_skips_the_run_until_it_is_free(
    db_copy: tuple[Path, Rows], served: list[Served]
) -> None:
    path, truth = db_copy
    before = segment_ids(path)
    with MaintenanceLock(path / "segments"):
        server = Served(path, "--compact-every", "0.2")
        served.append(server)
        server.wait_for("compaction skipped: another compaction or retention holds the lock")
        assert segment_ids(path) == before
    server.wait_for("compaction merged")
    assert len(segment_ids(path)) < len(before)
    assert server.stop() == 0
    assert as_set(stored(path)) == as_set(truth)


def _interrupt_mid_compaction(path: Path, served: list[Served], sig: int) -> Served:
    server = Served(path, "--compact-every", "0.2")
    served.append(server)
    deadline = time.monotonic() + 120
    while not lock_held(path):
        assert time.monotonic() < deadline and server.proc.poll() is None, server.lines
        time.sleep(0.002)
    server.proc.send_signal(sig)
    return server


def test_sigterm_during_compaction_stops_it_and_leaves_a_consistent_database(
    db_copy: tuple[Path, Rows], served: list[Served]
) -> None:
    path, truth = db_copy
    server = _interrupt_mid_compaction(path, served, signal.SIGTERM)
    assert server.stop() == 0
    said = [line for line in server.lines if "compaction" in line]
    if not any("compaction stopped" in line for line in said):
        pytest.skip(f"the compaction finished before the signal arrived: {said}")
    assert not lock_held(path)
    assert unpublished(path) == [] and strays(path) == []
    assert as_set(stored(path)) == as_set(truth)
    # What was left unmerged is merged by the next compaction, still exactly.
    with Database.open(path) as db:
        db.compact()
    assert as_set(stored(path)) == as_set(truth)


def test_a_killed_server_leaves_its_compaction_to_clean_up_after_itself(
    db_copy: tuple[Path, Rows], served: list[Served]
) -> None:
    path, truth = db_copy
    server = _interrupt_mid_compaction(path, served, signal.SIGKILL)
    assert server.stop() == -signal.SIGKILL
    # The run sees its stdin close, deletes its unpublished output and lets the lock go.
    with MaintenanceLock(path / "segments", wait=60):
        assert unpublished(path) == [] and strays(path) == []
    assert as_set(stored(path)) == as_set(truth)


# Questions to ``stop`` in order: 1 before the group, 2-7 before reading each of the six
# segments, 8-13 before writing each 500-row piece (8: the output exists, nothing in it yet;
# 13: all but the last piece written, chunks sealed).
@pytest.mark.parametrize("stop_at", [1, 4, 8, 10, 13])
def test_stop_deletes_the_output_being_written_and_keeps_the_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_at: int
) -> None:
    monkeypatch.setattr(compaction, "_STEP_ROWS", 500)
    path = tmp_path / "db"
    rng = np.random.default_rng(3)
    truth = generate(rng, 3_000, FUNCTIONS, base=BASE, span=HOUR // 4)
    for part in np.array_split(np.arange(len(truth)), 6):  # six closed segments
        with Database.open(path, chunk_rows=100) as db:
            db.append(**truth.take(part).append_kwargs())
    before = segment_ids(path)
    files = sorted(p.name for p in (path / "segments").iterdir())  # before any lock file
    asked = 0

    def stop() -> bool:
        nonlocal asked
        asked += 1
        return asked >= stop_at

    merges: list[compaction.Merge] = []
    merged = compaction.compact(path / "segments", chunk_rows=100, stop=stop,
                                report=merges.append)  # fmt: skip
    assert (merged, merges) == (0, []) and asked == stop_at
    assert sorted(p.name for p in (path / "segments").iterdir() if p.name != LOCK_FILE) == files
    assert as_set(stored(path)) == as_set(truth)
    merged = compaction.compact(path / "segments", report=merges.append)
    assert merged == 6 and [(set(m.sources), m.rows) for m in merges] == [(before, 3000)]
    assert segment_ids(path) == {merges[0].output}
    assert as_set(stored(path)) == as_set(truth)


def test_the_scheduler_runs_and_reports(db_copy: tuple[Path, Rows]) -> None:
    path, truth = db_copy
    runs: list[str] = []
    scheduler = CompactionScheduler(path, 0.05,
                                    on_run=lambda r: runs.append(r.describe()))  # fmt: skip
    scheduler.start()
    deadline = time.monotonic() + 120
    while not runs:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    scheduler.stop()
    assert runs[0].startswith("compaction merged"), runs
    assert as_set(stored(path)) == as_set(truth)


def test_a_read_only_database_is_not_compacted(db_copy: tuple[Path, Rows]) -> None:
    path, _ = db_copy
    with Database.open(path, readonly=True) as db, pytest.raises(ValueError, match="readonly"):
        KroniclerServer(db, ServerOptions(address="127.0.0.1:0", compact_every=1))


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "5", True])
def test_bad_intervals_are_refused(bad: object, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="compact_every"):
        ServerOptions(compact_every=bad).check()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compact_every"):
        CompactionScheduler(tmp_path, bad)  # type: ignore[arg-type]


def test_serve_refuses_a_bad_interval(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kronicler", "serve", "--path", str(tmp_path / "db"),
         "--address", "127.0.0.1:0", "--compact-every", "-5"],
        capture_output=True, text=True, env=writer_env(), cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and "compact_every" in proc.stderr and "-5" in proc.stderr
    assert not (tmp_path / "db").exists()


def test_serve_rewrites_overlapping_segments_while_ingesting_and_answers_exactly(
    tmp_path: Path,
) -> None:
    """Five writers that ran at the same time left overlapping segments; a server with OTLP
    ingest workers rewrites them time-disjoint in the background while spans arrive and
    questions are asked: the old rows' answers equal the brute force throughout, the ingested
    spans' answers a prefix of what was sent, and afterwards the segments are disjoint."""
    path = tmp_path / "db"
    rng = np.random.default_rng(4)
    parts = []
    # a long writer over three hours, two more in its last 20 minutes and two in its first
    # (merging by age alone would leave the early two apart, overlapping the rest)
    for lane, (start, span) in enumerate([(0, 3 * HOUR), (2 * HOUR + 40 * MINUTE, 20 * MINUTE),
                                          (2 * HOUR + 40 * MINUTE, 20 * MINUTE),
                                          (0, 20 * MINUTE), (0, 20 * MINUTE)]):  # fmt: skip
        rows = generate(rng, 1_200, FUNCTIONS, base=BASE + start, span=span, lane=lane)
        with Database.open(path, chunk_rows=100) as db:
            db.append(**rows.append_kwargs())
        parts.append(rows)
    truth = Rows.concat(parts)
    before = segment_ids(path)
    everything = Query()
    want = expected_stats(truth, everything)
    db = Database.open(path)
    options = ServerOptions(address="127.0.0.1:0", ingest_workers=2, compact_every=0.2)
    server = KroniclerServer(db, options).start()
    names: list[str] = []
    durations: list[int] = []
    sent, acked = [0], [0]
    done = threading.Event()
    failure: list[BaseException] = []

    def send() -> None:
        try:
            with raw_export(server.address) as export:
                first = 1
                for i in range(60):
                    n = 50 + 10 * (i % 7)
                    name = NAMES[i % len(NAMES)]
                    names.extend([name] * n)
                    durations.extend(range(first, first + n))
                    sent[0] += n
                    export(request(first, n, name=name).SerializeToString(), timeout=30)
                    acked[0] += n
                    first += n
                    time.sleep(0.02)
        except BaseException as exc:  # reported by the test thread
            failure.append(exc)
        finally:
            done.set()

    sender = threading.Thread(target=send)
    client = Client(server.address)
    asked = 0
    try:
        sender.start()
        assert server.compaction is not None
        while not (done.is_set() and server.compaction.runs >= 1 and asked >= 5):
            for ask, where in ((client.stats, "gRPC"), (lambda: query.stats(db), "local")):
                low = acked[0]
                table = ask()
                high = sent[0]
                old = [r.to_dict("function") for r in table.rows if r.key in FUNCTIONS]
                check_table(old, "function", want, (0.5, 0.9, 0.99), exact=False,
                            where=f"{where} question {asked}")  # fmt: skip
                live = replace(table, rows=tuple(r for r in table.rows if r.key in NAMES))
                assert low <= check_live(live, names, durations, where) <= high
            asked += 1
            assert asked < 5000
    finally:
        sender.join()
        client.close()
        server.stop()
    assert not failure, failure
    assert not before & segment_ids(path), "the overlapping segments were not rewritten"
    readers = compaction.open_readers(path / "segments")
    spans = sorted(covered for r in compaction.visible(readers.values())
                   if (covered := disjoint.time_range(r)) is not None and covered[0] >= BASE)  # fmt: skip
    assert spans and all(a[1] < b[0] for a, b in pairwise(spans)), spans
    table = query.stats(db)
    live = replace(table, rows=tuple(r for r in table.rows if r.key in NAMES))
    assert check_live(live, names, durations, "end") == sent[0]
    old = [r.to_dict("function") for r in table.rows if r.key in FUNCTIONS]
    check_table(old, "function", want, (0.5, 0.9, 0.99), exact=False, where="end")
    db.close()
