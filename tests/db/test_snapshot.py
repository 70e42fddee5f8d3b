"""Database.snapshot(): a view whose every read answers from one refresh of the segment set.

The stories: data appended after the view was taken stays out of every read of the view (and is in
the database's own reads); taking a view refreshes once and reading it never refreshes; a segment
that retention deletes while a view is open stays readable through the view, and its file is
closed once the view is let go (closed or collected); a closed view, or a view of a closed
database, refuses to read.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest

from kronicler.db import Database, ReadView
from kronicler.errors import ClosedError

BASE = 1_700_000_000_000_000_000


def _append(db: Database, n: int, *, first: int, names: tuple[str, ...] = ("a", "b")) -> None:
    i = np.arange(first, first + n)
    db.append(
        [names[k % len(names)] for k in i.tolist()], BASE + i * 1000, 1000 + i,
        service="svc", attributes=[{"k": int(k) % 7} for k in i.tolist()],
    )  # fmt: skip
    assert db.flush(timeout=30)


def _reads(source: Database | ReadView) -> dict[str, object]:
    scan = source.scan(["name", "duration", "attributes"])
    return {
        "functions": source.functions(),
        "services": source.services(),
        "time_range": source.time_range(),
        "counts": {n: fs.summary.count for n, fs in source.summaries().items()},
        "window": {n: fs.summary.count for n, fs in
                   source.summaries(since=BASE + 100_000, until=BASE + 250_000).items()},
        "rows": len(scan),
        "attributes": sorted({scan.attributes[c] for c in scan.columns["attributes"].tolist()}),
        "slowest": [(c.function, c.duration, c.attributes) for c in source.slowest(k=3)],
        "stats": {n: (s.count, s.max) for n, s in source.stats().items()},
        "exact": source.stats("a", exact=True).count,
    }  # fmt: skip


def test_a_view_reads_one_snapshot_while_the_database_moves_on(tmp_path: Path) -> None:
    with Database.open(tmp_path, chunk_rows=64) as db:
        _append(db, 200, first=0)
        before = _reads(db)
        with db.snapshot() as view:
            # New functions, services, attribute sets, rows in every time range and a slower
            # call: sealed into new chunks and the tail log while the view is open.
            _append(db, 300, first=100, names=("a", "b", "c"))
            assert _reads(view) == before
            assert view.rows == 200
            after = _reads(db)
            assert after != before and after["functions"] == ["a", "b", "c"]
        with db.snapshot() as fresh:
            assert _reads(fresh) == after


def test_taking_a_view_refreshes_once_and_reading_it_never(
    tmp_path: Path, refreshes: list[int]
) -> None:
    with Database.open(tmp_path, chunk_rows=64) as db:
        _append(db, 200, first=0)
        refreshes[0] = 0
        with db.snapshot() as view:
            assert refreshes[0] == 1
            _reads(view)
            assert view.snapshot() is view
            assert refreshes[0] == 1
        _reads(db)  # the database's own reads: one refresh each
        assert refreshes[0] == 1 + 9


def _open_files(path: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("let_go", ["close", "collect"])
def test_a_segment_deleted_under_an_open_view_stays_readable_through_it(
    tmp_path: Path, let_go: str
) -> None:
    with Database.open(tmp_path, chunk_rows=64) as old:
        _append(old, 200, first=0)  # a finished segment once closed: retention may delete it
    with Database.open(tmp_path, chunk_rows=64) as db:
        view = db.snapshot()
        want = _reads(view)
        assert db.retain(max_age_ns=0) == 1
        assert db.functions() == []  # a refresh: the set forgets the deleted segment
        # Pages are read again (the forgotten segment's cached pages were dropped): through the
        # reader the view pinned, whose file stays open although it is deleted.
        assert _reads(view) == want
        assert any(t.endswith(" (deleted)") for t in _open_files(tmp_path))
        if let_go == "close":
            view.close()
            assert view.closed
        else:
            del view
            gc.collect()
        assert _open_files(tmp_path) == []
        assert db.scan(["duration"]).columns["duration"].size == 0


def test_closed_views_and_views_of_closed_databases_refuse_to_read(tmp_path: Path) -> None:
    db = Database.open(tmp_path)
    _append(db, 10, first=0)
    with db.snapshot() as view:
        assert view.functions() == ["a", "b"]
    with pytest.raises(ClosedError):
        view.functions()
    view = db.snapshot()
    db.close()
    with pytest.raises(ClosedError):
        view.scan(["duration"])
    with pytest.raises(ClosedError):
        db.snapshot()
    view.close()
    view.close()  # idempotent
