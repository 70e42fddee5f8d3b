"""``serve --compact-every``: small segments merged in the background, exactly, and stoppably.

The story: nine short-lived writer processes (a parent and eight forked workers, each rotating
its segment every 1,000 rows) and one writer SIGKILLed after a flush leave ~40 small segments
over 18 hours. A real ``kronicler serve`` subprocess merges them in the background (hour by hour,
as compaction groups by age) while the test asks it questions over gRPC; every answer must equal
the brute force over the rows written, and the rows stored afterwards must be exactly those rows.
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
from pathlib import Path

import numpy as np
import pytest

from kronicler.db import Database, compaction
from kronicler.db.lock import LOCK_FILE, MaintenanceLock
from kronicler.server import Client, KroniclerServer, ServerOptions
from kronicler.server.maintenance import CompactionScheduler
from tests.oracle.interfaces import CliApi, GrpcApi
from tests.oracle.layouts import ROOT, segment_ids, write, writer_env
from tests.oracle.test_ingest import as_set, stored
from tests.oracle.truth import Query, Rows, check_table, expected_slowest, expected_stats, generate

HOUR = 3600 * 10**9
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
    # Hour by hour: ~40 segments over 18 hours become ~18; the killed writer's unsealed
    # segment is finished (its process is gone), so it is merged too.
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
