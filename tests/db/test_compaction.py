"""Compaction: many small finished segments become one, invisibly to readers, crash-safely,
one maintainer at a time, never duplicating or resurrecting a row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kronicler.db import Database, compaction
from kronicler.db.lock import MaintenanceLock
from kronicler.db.schema import SpanBatch
from kronicler.db.writer import SegmentWriter
from kronicler.errors import MaintenanceBusyError

from .conftest import make_rows

ROOT = Path(__file__).resolve().parents[2]
BASE_NS = 1_700_000_000_000_000_000
_LONG = 60.0  # a bound on waits that end at once when things work


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _segments(path: Path) -> list[Path]:
    return sorted((path / "segments").glob("*.kseg"))


def _fingerprint(db: Database) -> dict:
    out = {k: (v.count, v.errors, v.min, v.max, v.p50, v.p99) for k, v in db.stats().items()}
    slow = [(c.function, c.duration, c.span_id, c.parent_span_id, c.trace_id, c.attributes)
            for c in db.slowest(k=5)]  # fmt: skip
    return {"stats": out, "slowest": slow}


def test_small_segments_merge_into_one_with_identical_answers(tmp_path):
    for i in range(5):
        with Database.open(tmp_path, chunk_rows=1000) as db:
            db.append(**make_rows(2500, seed=i))
    reader = Database.open(tmp_path)
    before = _fingerprint(reader)
    assert len(_segments(tmp_path)) == 5
    with Database.open(tmp_path) as db:
        assert db.compact() == 5
        assert _fingerprint(db) == before
    assert len(_segments(tmp_path)) == 1
    assert _fingerprint(reader) == before  # a reader opened before sees the same, no duplicates
    exact = reader.stats(exact=True)
    assert sum(s.count for s in exact.values()) == 12_500
    reader.close()
    with Database.open(tmp_path) as db:
        assert db.compact() == 0  # nothing small left to merge


def test_a_live_writers_segment_is_left_alone(tmp_path):
    for _ in range(2):
        with Database.open(tmp_path) as db:
            db.append(["done"] * 10, np.arange(10), np.ones(10, int))
    live = Database.open(tmp_path)
    live.append(["live"] * 7, np.arange(7), np.ones(7, int))
    live.flush()
    assert live.compact() == 2
    live.append(["live"] * 3, np.arange(3), np.ones(3, int))
    live.flush()
    assert {k: v.count for k, v in live.stats().items()} == {"done": 20, "live": 10}
    live.close()


ABANDON = textwrap.dedent(
    """
    import os, sys, numpy as np
    from pathlib import Path
    from kronicler.db.schema import SpanBatch
    from kronicler.db.writer import SegmentWriter
    seg = Path(sys.argv[1]) / "segments"
    old = [p.stem for p in seg.glob("*.kseg")]
    w = SegmentWriter(seg, chunk_rows=100, replaces=tuple(old))
    w.add(SpanBatch.build(["ghost"] * 500, np.arange(500), np.ones(500, int)))
    w.seal_full()
    w.commit()
    os.kill(os.getpid(), 9)  # die mid-compaction
    """
)

KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, numpy as np
    from kronicler.db import Database
    db = Database.open(sys.argv[1], chunk_rows=1000)
    db.append(["killed"] * 2500, np.arange(2500), np.arange(2500) + 100)
    db.flush()
    os.kill(os.getpid(), 9)  # a writer that never closes its segment
    """
)


def test_interrupted_compaction_is_ignored_then_cleaned_up(tmp_path):
    for i in range(3):
        with Database.open(tmp_path) as db:
            db.append([f"job{i}"] * 50, np.arange(50), np.full(50, i + 1))
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], env=_env())
    assert proc.returncode == -signal.SIGKILL
    with Database.open(tmp_path) as db:
        before = _fingerprint(db)
        assert before["stats"]["killed"][0] == 2500  # sealed chunks and the log tail
    proc = subprocess.run([sys.executable, "-c", ABANDON, str(tmp_path)], env=_env())
    assert proc.returncode == -signal.SIGKILL
    with Database.open(tmp_path) as db:
        assert _fingerprint(db) == before  # the half-written output is invisible
        assert "ghost" not in db.functions()
        assert db.compact() == 4  # three closed segments and the killed writer's
        assert _fingerprint(db) == before
    assert len(_segments(tmp_path)) == 1
    assert not list((tmp_path / "segments").glob("*.wal"))


# -- exclusive maintenance: the rules in compaction.py's docstring, one by one ---------------------


def _closed_segment(path: Path, name: str, n: int = 100, base: int = 0) -> None:
    with Database.open(path) as db:
        db.append([name] * n, base + np.arange(n), np.arange(n) + 1)


def _counts(path: Path) -> dict[str, int]:
    with Database.open(path) as db:
        return {k: v.count for k, v in db.stats(exact=True).items()}


def _publish_without_checks(segdir: Path, ids: list[str], rows: dict[str, int]) -> str:
    """An output written as a compaction without the lock or re-check would (an older Kronicler)."""
    w = SegmentWriter(segdir, replaces=tuple(ids))
    for name, n in rows.items():
        w.add(SpanBatch.build([name] * n, np.arange(n), np.arange(n) + 1))
    w.close()
    return w.id


def test_two_outputs_claiming_the_same_segments_never_both_count(tmp_path):
    for i in range(3):
        _closed_segment(tmp_path, f"job{i}")
    segdir = tmp_path / "segments"
    ids = [p.stem for p in _segments(tmp_path)]
    rows = {f"job{i}": 100 for i in range(3)}
    first = _publish_without_checks(segdir, ids, rows)
    second = _publish_without_checks(segdir, ids, rows)
    assert _counts(tmp_path) == rows  # one of them, never both
    for seg in ids:
        compaction.delete_segment(segdir, seg)  # as the older compactions' sweeps did
    assert _counts(tmp_path) == rows  # the first (smaller id) wins, whole
    with Database.open(tmp_path) as db:
        assert db.compact() == 0
    assert [p.stem for p in _segments(tmp_path)] == [first]  # the loser is swept
    assert second not in {p.stem for p in segdir.iterdir()}
    assert _counts(tmp_path) == rows


def test_a_compaction_re_checks_its_sources_before_publishing(tmp_path):
    for i in range(3):
        _closed_segment(tmp_path, f"job{i}")
    segdir = tmp_path / "segments"
    readers = compaction.open_readers(segdir)
    group = [readers[k] for k in sorted(readers)]
    assert compaction.rewrite(segdir, group) is not None
    files = sorted(p.name for p in segdir.iterdir())
    # The same group again (a second compaction that planned before the first published):
    assert compaction.rewrite(segdir, group) is None  # its output is deleted, not published
    assert sorted(p.name for p in segdir.iterdir()) == files
    assert _counts(tmp_path) == {f"job{i}": 100 for i in range(3)}
    for r in readers.values():
        r.close()

    _closed_segment(tmp_path, "job3")
    _closed_segment(tmp_path, "job4")
    readers = compaction.open_readers(segdir)
    group = [r for r in readers.values() if r.id not in {g.id for g in group} and not r.replaces]
    assert len(group) == 2
    compaction.delete_segment(segdir, group[0].id)  # retention, meanwhile (not sharing the lock)
    assert compaction.rewrite(segdir, group) is None  # would have resurrected it
    assert "job3" not in _counts(tmp_path) or "job4" not in _counts(tmp_path)
    assert sum(_counts(tmp_path).values()) == 400
    for r in readers.values():
        r.close()


def test_retention_deletes_a_compacted_segment_with_what_it_replaces(tmp_path):
    for i in range(3):
        _closed_segment(tmp_path, f"old{i}")  # starts near 1970
    segdir = tmp_path / "segments"
    ids = [p.stem for p in _segments(tmp_path)]
    # A compaction that published and died before deleting what it replaced:
    _publish_without_checks(segdir, ids, {f"old{i}": 100 for i in range(3)})
    assert sum(_counts(tmp_path).values()) == 300
    with Database.open(tmp_path) as db:
        assert db.retain(max_age_ns=10**9) == 1
        assert db.functions() == []  # nothing came back
    assert _segments(tmp_path) == []


def test_compaction_keeps_old_and_recent_rows_apart_so_retention_still_reaches_the_old(tmp_path):
    now = time.time_ns()
    for i in range(2):
        _closed_segment(tmp_path, "old", base=BASE_NS + i)
        _closed_segment(tmp_path, "new", base=now - 60 * 10**9 + i)
    with Database.open(tmp_path) as db:
        assert db.compact() == 4
        assert len(_segments(tmp_path)) == 2  # one per age
        assert db.retain(max_age_ns=86_400 * 10**9) == 1
        assert {k: v.count for k, v in db.stats().items()} == {"new": 200}


def test_a_second_maintainer_is_told_another_is_running_or_waits(tmp_path):
    for i in range(2):
        _closed_segment(tmp_path, f"job{i}")
    with Database.open(tmp_path) as db:
        holder = MaintenanceLock(tmp_path / "segments")
        holder.acquire()
        with pytest.raises(MaintenanceBusyError, match=f"another compaction.*pid {os.getpid()}"):
            db.compact()
        with pytest.raises(MaintenanceBusyError):
            db.retain(max_age_ns=0, wait=0)
        assert len(_segments(tmp_path)) == 2  # nothing done
        timer = threading.Timer(0.1, holder.release)
        timer.start()
        assert db.compact(wait=_LONG) == 2  # waited for the holder to finish
        timer.join()
        with pytest.raises(ValueError, match="wait"):
            db.compact(wait=-1)


def test_the_cli_says_another_compaction_is_running(tmp_path):
    for i in range(2):
        _closed_segment(tmp_path, f"job{i}")
    with MaintenanceLock(tmp_path / "segments"):
        proc = subprocess.run(
            [sys.executable, "-m", "kronicler", "compact", "--path", str(tmp_path)],
            env=_env(), capture_output=True, text=True,
        )  # fmt: skip
    assert proc.returncode == 1
    assert "another compaction or retention is running" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(_segments(tmp_path)) == 2


def test_a_forked_child_does_not_keep_its_parents_lock(tmp_path):
    segdir = tmp_path / "segments"
    segdir.mkdir()
    go, started = tmp_path / "go", tmp_path / "started"
    holder = MaintenanceLock(segdir)
    holder.acquire()
    pid = os.fork()
    if pid == 0:  # the child lives on after the parent's release
        started.touch()
        deadline = time.monotonic() + _LONG
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(0)
    try:
        deadline = time.monotonic() + _LONG
        while not started.exists():
            assert time.monotonic() < deadline
            time.sleep(0.005)
        holder.release()
        with MaintenanceLock(segdir):  # free although the child still runs
            pass
    finally:
        go.touch()
        os.waitpid(pid, 0)


def test_files_left_by_an_interrupted_deletion_are_swept(tmp_path):
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], env=_env())
    assert proc.returncode == -signal.SIGKILL
    segdir = tmp_path / "segments"
    (seg,) = _segments(tmp_path)
    assert seg.with_suffix(".wal").exists()
    seg.unlink()  # a deletion killed right after the data file went
    with Database.open(tmp_path) as db:
        assert db.compact() == 0
    assert sorted(p.name for p in segdir.iterdir()) == ["maintenance.lock"]


def test_retention_sweeps_a_killed_compactions_leftovers_and_keeps_live_writers(tmp_path):
    for i in range(2):
        _closed_segment(tmp_path, f"old{i}")  # starts near 1970
    proc = subprocess.run([sys.executable, "-c", ABANDON, str(tmp_path)], env=_env())
    assert proc.returncode == -signal.SIGKILL  # an unpublished output is left behind
    go, ready = tmp_path / "go", tmp_path / "ready"
    pid = os.fork()
    if pid == 0:  # a live writer in another process, its rows as old as the others
        code = 1
        try:
            db = Database.open(tmp_path)
            db.append(["live"] * 10, np.arange(10), np.ones(10, int))
            db.flush()
            ready.touch()
            deadline = time.monotonic() + _LONG
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            db.close()
            code = 0
        finally:
            os._exit(code)
    try:
        deadline = time.monotonic() + _LONG
        while not ready.exists():
            assert time.monotonic() < deadline
            time.sleep(0.005)
        with Database.open(tmp_path) as db:
            assert db.retain(max_age_ns=10**9) == 2  # the two old closed segments
            assert {k: v.count for k, v in db.stats().items()} == {"live": 10}
        assert len(_segments(tmp_path)) == 1  # and the leftover output is gone too
    finally:
        go.touch()
        os.waitpid(pid, 0)
    with Database.open(tmp_path) as db:
        assert db.retain(max_age_ns=10**9) == 1  # closed now, so old enough to go
    assert _segments(tmp_path) == []
