"""Compaction: many small finished segments become one, invisibly to readers, crash-safely."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from kronicler.db import Database

from .conftest import make_rows

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _segments(path: Path) -> list[Path]:
    return sorted((path / "segments").glob("*.kseg"))


def _fingerprint(db: Database) -> dict:
    out = {k: (v.count, v.errors, v.min, v.max, v.p50, v.p99) for k, v in db.stats().items()}
    slow = [(c.name, c.duration, c.span_id, c.parent_span_id, c.trace_id, c.attributes)
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
