"""Time-disjoint compaction: the segments of writers that ran at the same time become a run of
segments that cover disjoint times, switched over at once for readers, crash-safely, one
maintainer at a time, every answer unchanged.

The story: seven writers wrote over the same hour (one SIGKILLed after a flush, its last rows only
in its log), each into segments of small chunks. The compaction rewrites them as segments of 700
rows; every answer (statistics of all functions, by function, over time ranges, exact, the
slowest calls, series) must equal the brute force over the rows written, before and after, and
the rows stored must be exactly those rows.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from kronicler import query as kq
from kronicler.db import Database, compaction, disjoint, retention
from kronicler.db.database import SEGMENTS
from kronicler.db.lock import LOCK_FILE
from kronicler.errors import MaintenanceBusyError
from tests.oracle.interfaces import PythonApi, to_filter
from tests.oracle.layouts import ROOT, write, writer_env
from tests.oracle.test_ingest import as_set, stored
from tests.oracle.truth import (
    Query,
    Rows,
    check_table,
    expected_series_counts,
    expected_slowest,
    expected_stats,
    generate,
)

HOUR = 3600 * 10**9
BASE = 1_790_000_000 * 10**9
FUNCTIONS = ("shop.cart", "shop.pay", "shop.search", "shop.ship")
OUTPUT_ROWS = 700


def _deployment(work: Path) -> tuple[Path, Rows]:
    rng = np.random.default_rng(5)
    path = work / "db"
    parts = []
    for lane in range(6):  # six writers over the same hour, one segment each (two for lane 0)
        rows = generate(rng, 500 + 150 * lane, FUNCTIONS, base=BASE, span=HOUR,
                        tail=["shop.search"], lane=lane)  # fmt: skip
        options: dict[str, object] = {"chunk_rows": 64}
        if lane == 0:
            options["segment_rows"] = 300
        write(path, rows, work, f"lane{lane}", **options)  # type: ignore[arg-type]
        parts.append(rows)
    killed = generate(rng, 400, FUNCTIONS, base=BASE + HOUR // 3, span=HOUR // 3, lane=6)
    write(path, killed, work, "killed", chunk_rows=64, batches=3, then="kill")
    parts.append(killed)
    return path, Rows.concat(parts)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Rows]:
    return _deployment(tmp_path_factory.mktemp("disjoint"))


@pytest.fixture
def db_copy(deployment: tuple[Path, Rows], tmp_path: Path) -> tuple[Path, Rows]:
    path, truth = deployment
    shutil.copytree(path, tmp_path / "db")
    return tmp_path / "db", truth


def _ranges(path: Path) -> list[tuple[int, int, int, str | None]]:
    """(oldest start, newest start, rows, part_of) of every visible segment, oldest first."""
    readers = compaction.open_readers(path / SEGMENTS)
    out = []
    for r in compaction.visible(readers.values()):
        span = disjoint.time_range(r)
        assert span is not None
        out.append((*span, compaction.rows_of(r), r.part_of))
    return sorted(out)


WINDOWS = [(None, None), (BASE + HOUR // 10, BASE + HOUR // 2),
           (BASE + HOUR // 3 + 12_345, BASE + 2 * HOUR // 3), (BASE + 7, BASE + 8)]  # fmt: skip


def check_answers(db: Database, truth: Rows, where: str) -> None:
    """Every kind of answer, against the brute force."""
    api = PythonApi(db)
    for since, until in WINDOWS:
        for functions in ((), ("shop.search",)):
            q = Query(functions=functions, since=since, until=until)
            for exact in (False, True):
                check_table(api.stats(q, exact=exact), "function", expected_stats(truth, q),
                            (0.5, 0.9, 0.99), exact=exact,
                            where=f"{where} {q.label()} exact={exact}")  # fmt: skip
            assert api.slowest(q, 7) == expected_slowest(truth, q, 7), f"{where} {q.label()}"
    since, until, step = BASE, BASE + HOUR, HOUR // 7
    got = kq.series(db, to_filter(Query(since=since, until=until)), step=step)
    want = expected_series_counts(truth, Query(), since, until, step)
    assert {s.key: [(p.count, p.errors) for p in s.points] for s in got.series} == want, where


def test_overlapping_writers_become_time_disjoint_segments_with_identical_answers(
    db_copy: tuple[Path, Rows],
) -> None:
    path, truth = db_copy
    spans = _ranges(path)
    assert len(spans) == 8
    assert sum(b[0] <= a[1] for a, b in pairwise(spans)) >= 6  # they overlap
    reader = Database.open(path, readonly=True)  # open before, and asked after too
    check_answers(reader, truth, "before")
    merges: list[compaction.Merge] = []
    with Database.open(path) as db:
        merged = disjoint.compact(path / SEGMENTS, output_rows=OUTPUT_ROWS, chunk_rows=64,
                                  slice_rows=250, report=merges.append)  # fmt: skip
        assert merged == 8
        check_answers(db, truth, "after, the compacting process")
    check_answers(reader, truth, "after, a reader opened before")
    reader.close()
    with Database.open(path, readonly=True) as db:
        check_answers(db, truth, "after, a new reader")
    assert as_set(stored(path)) == as_set(truth)
    spans = _ranges(path)
    (merge,) = merges
    assert merge.rows == len(truth) and len(merge.parts) == len(spans) - 1
    assert {s[3] for s in spans} == {None, merge.output}  # the parts name the last
    assert all(a[1] < b[0] for a, b in pairwise(spans)), spans  # time-disjoint
    # every output but the last holds OUTPUT_ROWS (more only for rows sharing a start time)
    assert all(OUTPUT_ROWS <= s[2] < OUTPUT_ROWS + 5 for s in spans[:-1]), spans
    assert spans[-1][2] <= OUTPUT_ROWS
    # nothing left to do: the outputs are disjoint, and none is small
    with Database.open(path) as db:
        assert db.compact(time_disjoint=True, output_rows=OUTPUT_ROWS, small_rows=100) == 0


def test_a_new_overlapping_segment_is_merged_only_with_the_outputs_it_overlaps(
    db_copy: tuple[Path, Rows],
) -> None:
    path, truth = db_copy
    with Database.open(path) as db:
        db.compact(time_disjoint=True, output_rows=OUTPUT_ROWS)
    before = _ranges(path)
    late = generate(np.random.default_rng(9), 200, FUNCTIONS, base=before[1][0],
                    span=before[1][1] - before[1][0], lane=7)  # fmt: skip
    with Database.open(path, chunk_rows=64) as db:
        db.append(**late.append_kwargs())
    truth = Rows.concat([truth, late])
    lo, hi = int(late.start.min()), int(late.start.max())
    hit = [s for s in before if s[0] <= hi and lo <= s[1]]
    assert 1 <= len(hit) < len(before) - 1
    with Database.open(path) as db:
        merged = db.compact(time_disjoint=True, output_rows=OUTPUT_ROWS, small_rows=100)
        assert merged == 1 + len(hit)
        check_answers(db, truth, "after the second compaction")
    after = _ranges(path)
    untouched = [s[:3] for s in before if s not in hit]
    assert set(untouched) <= {s[:3] for s in after}
    assert all(a[1] < b[0] for a, b in pairwise(after)), after
    assert as_set(stored(path)) == as_set(truth)


@pytest.mark.parametrize("shuffled", [False, True])
def test_the_merge_streams_in_order_and_carries_a_bounded_number_of_rows(
    tmp_path: Path, shuffled: bool
) -> None:
    """A chunk holding one very old row among recent ones is put back and decoded again when the
    merge gets there, rather than held; chunks whose rows span the whole hour (written out of
    order) are cut into slices by their time ranges. Every row comes out once, in order."""
    rng = np.random.default_rng(2)
    rows = []
    for lane in range(3):
        r = generate(rng, 900, FUNCTIONS, base=BASE, span=HOUR, lane=lane)
        if not shuffled:
            r = r.take(np.argsort(r.start))
        r.start[-1] = BASE - HOUR + lane  # a call that began long before: its chunk spans all
        with Database.open(tmp_path, chunk_rows=100) as db:
            db.append(**r.append_kwargs())
        rows.append(r)
    readers = compaction.open_readers(tmp_path / SEGMENTS)
    group = sorted(readers.values(), key=lambda r: r.id)
    slices = list(disjoint.merged_slices(group, slice_rows=120, carry_rows=150))
    starts = np.concatenate([s.columns["start"] for s in slices])
    want = np.sort(np.concatenate([r.start for r in rows]))
    assert np.array_equal(starts, want)
    # a slice: about slice_rows; the three chunks with an old row are misjudged by their ranges
    assert max(map(len, slices)) <= 2 * 120 + 3 * 100, list(map(len, slices))
    names = [s.tables["name"][i] for s in slices for i in s.columns["name"].tolist()]
    order = np.argsort(np.concatenate([r.start for r in rows]), kind="stable")
    assert names == np.concatenate([r.name for r in rows])[order].tolist()


# A compaction that kills itself (SIGKILL) at one moment: asked to stop for the Nth time (before
# the Nth slice), at the last output's publication, or after it, before deleting the sources.
KILLED_COMPACTION = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from kronicler.db import compaction, disjoint
    from kronicler.db.writer import SegmentWriter
    seg, when = Path(sys.argv[1]), sys.argv[2]
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    asked = 0
    def stop():
        global asked
        asked += 1
        if when.isdigit() and asked == int(when):
            die()
        return False
    if when == "publish":  # the last output closing: its catalog is written, its index not
        real = SegmentWriter._save_index
        def save_index(self, *, closed):
            if closed and self.parts:
                die()
            real(self, closed=closed)
        SegmentWriter._save_index = save_index
    if when == "sources":  # published; the replaced segments not yet deleted
        compaction.delete_tree = die
    disjoint.compact(seg, output_rows=700, chunk_rows=64, slice_rows=250, stop=stop)
    """
)


@pytest.mark.parametrize("when", ["1", "3", "9", "publish", "sources"])
def test_a_compaction_killed_at_any_moment_leaves_exact_answers(
    db_copy: tuple[Path, Rows], when: str
) -> None:
    path, truth = db_copy
    segdir = path / SEGMENTS
    proc = subprocess.run([sys.executable, "-c", KILLED_COMPACTION, str(segdir), when],
                          env=writer_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    files = {p.suffix for p in segdir.iterdir()}
    assert ".kseg" in files
    with Database.open(path, readonly=True) as db:
        check_answers(db, truth, f"killed at {when}")
    assert as_set(stored(path)) == as_set(truth)
    # the next maintenance sweeps the leftovers (or finishes the deletion) and compacts again
    with Database.open(path) as db:
        db.compact(time_disjoint=True, output_rows=OUTPUT_ROWS)
        check_answers(db, truth, f"compacted again after a kill at {when}")
    spans = _ranges(path)
    assert all(a[1] < b[0] for a, b in pairwise(spans)), spans
    readers = compaction.open_readers(segdir)
    assert len(readers) == len(spans)  # nothing left over: every segment on disk is read
    assert as_set(stored(path)) == as_set(truth)


def test_a_listing_that_misses_a_part_keeps_reading_the_replaced_segments(
    db_copy: tuple[Path, Rows],
) -> None:
    """A reader lists the directory while the parts are written and reads the last output's
    catalog after it closed: it must read the old segments, not a group with a hole."""
    path, _ = db_copy
    segdir = path / SEGMENTS
    old = set(compaction.open_readers(segdir))
    merges: list[compaction.Merge] = []
    real = compaction.delete_tree
    compaction.delete_tree = lambda *a: []  # keep the sources on disk after publishing
    try:
        disjoint.compact(segdir, output_rows=OUTPUT_ROWS, report=merges.append)
    finally:
        compaction.delete_tree = real
    (merge,) = merges
    readers = compaction.open_readers(segdir)
    shown = {r.id for r in compaction.visible(readers.values())}
    assert shown == {merge.output, *merge.parts}  # the whole listing: the new group
    missing = {k: v for k, v in readers.items() if k != merge.parts[1]}
    assert {r.id for r in compaction.visible(missing.values())} == old
    # once the replaced segments are gone, each output stands alone, the last one too
    for seg in old:
        compaction.delete_segment(segdir, seg)
    alone = {k: v for k, v in readers.items() if k not in old and k != merge.output}
    assert {r.id for r in compaction.visible(alone.values())} == set(merge.parts)


def test_a_reader_holding_a_view_during_the_switch_counts_every_row_once(
    db_copy: tuple[Path, Rows],
) -> None:
    path, truth = db_copy
    total = len(truth)
    with Database.open(path, readonly=True) as reader:
        views = []
        switched = threading.Event()

        def stop() -> bool:  # between slices: the reader asks while the outputs are written
            views.append(sum(s.count for s in reader.stats().values()))
            return False

        merges: list[compaction.Merge] = []

        def run() -> None:
            try:
                disjoint.compact(path / SEGMENTS, output_rows=OUTPUT_ROWS, slice_rows=250,
                                 stop=stop, report=merges.append)  # fmt: skip
            finally:
                switched.set()

        done = threading.Thread(target=run)
        done.start()
        while not switched.is_set():
            views.append(sum(s.count for s in reader.stats().values()))
            views.append(reader.stats(exact=True)["shop.pay"].count)
        done.join()
        assert merges and len(views) > 10
        want_pay = int((truth.name == "shop.pay").sum())
        assert set(views) <= {total, want_pay}, sorted(set(views))
        check_answers(reader, truth, "the reader after the switch")


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from kronicler.db import disjoint
    seg, flag = Path(sys.argv[1]), Path(sys.argv[2])
    def stop():
        flag.touch()
        while flag.exists():  # held mid-compaction until the test removes the flag
            time.sleep(0.01)
        return True
    disjoint.compact(seg, output_rows=700, stop=stop)
    """
)


def test_retention_and_another_compaction_are_told_a_compaction_is_running(
    db_copy: tuple[Path, Rows], tmp_path: Path
) -> None:
    path, truth = db_copy
    flag = tmp_path / "holding"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path / SEGMENTS), str(flag)],
                            env=writer_env(), cwd=ROOT)  # fmt: skip
    try:
        for _ in range(6000):
            if flag.exists() or proc.poll() is not None:
                break
            threading.Event().wait(0.01)
        assert flag.exists(), "the compaction did not start"
        with pytest.raises(MaintenanceBusyError, match="another compaction or retention"):
            disjoint.compact(path / SEGMENTS)
        with pytest.raises(MaintenanceBusyError, match=str(proc.pid)):
            retention.retain(path / SEGMENTS, None, 0, None, wait=0.1)
        cli = subprocess.run([sys.executable, "-m", "kronicler", "compact", "--path", str(path),
                              "--time-disjoint"], env=writer_env(), cwd=ROOT, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert cli.returncode != 0 and "another compaction or retention" in cli.stderr
    finally:
        flag.unlink(missing_ok=True)
        assert proc.wait(120) == 0
    # it stopped: its outputs are deleted, the sources answer as before
    assert sorted(p.name for p in (path / SEGMENTS).iterdir() if p.suffix == ".meta") == sorted(
        f"{s}.meta" for s in compaction.open_readers(path / SEGMENTS)
    )
    assert as_set(stored(path)) == as_set(truth)
    assert (path / SEGMENTS / LOCK_FILE).exists()


def test_retention_deletes_the_outputs_that_hold_only_old_rows(db_copy: tuple[Path, Rows]) -> None:
    """Outputs are deleted by their newest row, oldest first: every row kept is at least as new
    as the cut-off's output, and every row newer than the cut-off is kept."""
    path, truth = db_copy
    with Database.open(path) as db:
        db.compact(time_disjoint=True, output_rows=OUTPUT_ROWS)
    spans = _ranges(path)
    # the cut-off falls just after the third output's newest row (and long before the fourth's)
    max_age = time.time_ns() - (spans[2][1] + 1)
    with Database.open(path) as db:
        assert db.retain(max_age_ns=max_age) == 3
    kept = truth.take(np.flatnonzero(truth.start > spans[2][1]))
    assert as_set(stored(path)) == as_set(kept)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    for what, bad in (("output_rows", 0), ("small_rows", -1), ("slice_rows", True)):
        with pytest.raises(ValueError, match=what):
            disjoint.compact(tmp_path, **{what: bad})  # type: ignore[arg-type]
    proc = subprocess.run([sys.executable, "-m", "kronicler", "compact", "--path",
                           str(tmp_path), "--output-rows", "5"], env=writer_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "--time-disjoint" in proc.stderr
