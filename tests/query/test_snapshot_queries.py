"""Every query-layer question reads one snapshot: one refresh per call, and its parts agree.

The stories: each public query function refreshes the segment set exactly once whatever road it
takes (and never when given a view); while a writer process appends, every part of one answer
(an anomaly's figures and its slowest calls; stats, series, histograms and function lists asked
of one view) describes the same rows; a page that fails to decode costs its chunk, not the
answer, when a question meets it through a view.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kronicler import query as q
from kronicler.db import Database
from kronicler.query import Filter, export
from kronicler.query.filters import resolve_functions, select
from tests.db.test_corruption import poison_page

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 2.0
BASE = 1_700_000_000_000_000_000

pytest.importorskip("pyarrow")


API, ROUTE_B = Filter.make(service="api"), Filter.make(attributes={"http.route": "/b"})
QUESTIONS: dict[str, Callable[[Any], object]] = {
    "stats": lambda db: q.stats(db),
    "stats globs": lambda db: q.stats(db, Filter.make("shop.*")),
    "stats service": lambda db: q.stats(db, API),
    "stats exact": lambda db: q.stats(db, exact=True),
    "stats by attribute": lambda db: q.stats(db, group_by="attribute:http.route"),
    "list_functions": lambda db: q.list_functions(db),
    "list_functions service": lambda db: q.list_functions(db, API),
    "series": lambda db: q.series(db),
    "series exact service": lambda db: q.series(db, Filter.make(service="worker"), exact=True),
    "histogram": lambda db: q.histogram(db, "shop.tail"),
    "histogram exact": lambda db: q.histogram(db, "shop.tail", exact=True),
    "slowest": lambda db: q.slowest(db, k=5),
    "slowest names": lambda db: q.slowest(db, Filter.make(["shop.fast", "shop.tail"]), k=5),
    "slowest attribute": lambda db: q.slowest(db, ROUTE_B, k=5),
    "anomalies": lambda db: q.anomalies(db),
    "anomalies service": lambda db: q.anomalies(db, Filter.make(service="worker"), min_count=10),
    "explain": lambda db: q.explain(db, "shop.tail"),
    "explain in a range": lambda db: q.explain(db, "shop.pay", since=BASE, slow=2_000_000),
    "resolve_functions": lambda db: resolve_functions(db, ["shop.*"]),
    "select": lambda db: len(select(db, Filter.make("shop.pay", since=BASE), ["duration"])),
    "total_rows": lambda db: export.total_rows(db, API),
    "pieces": lambda db: [len(p) for p in export.pieces(db, piece_rows=700)],
    "to_arrow": lambda db: export.to_arrow(db, ROUTE_B).num_rows,
    "export": lambda db: export.export(db, io.StringIO(), format="csv", piece_rows=700),
    "Database.to_arrow": lambda db: db.to_arrow(where=API).num_rows,
}


@pytest.mark.parametrize("name", list(QUESTIONS))
def test_every_question_refreshes_once_and_never_through_a_view(
    shop_db: Database, refreshes: list[int], name: str
) -> None:
    question = QUESTIONS[name]
    refreshes[0] = 0
    got = question(shop_db)
    assert refreshes[0] == 1, f"{name}: {refreshes[0]} refreshes"
    with shop_db.snapshot() as view:
        refreshes[0] = 0
        assert question(view) == got
        assert refreshes[0] == 0


WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from kronicler.db import Database
    db = Database.open(sys.argv[1], chunk_rows=150, flush_interval=0.005)
    rng = np.random.default_rng(os.getpid())
    i = 0
    print("started", flush=True)
    while True:
        n = int(rng.integers(20, 80))
        # Starts anywhere in one second (every time range gains rows), durations growing (every
        # batch holds a new slowest call), names fn0..fn3, service svc.
        db.append([f"fn{k % 4}" for k in range(i, i + n)],
                  1_700_000_000_000_000_000 + rng.integers(0, 10**9, n),
                  1000 + 10 * np.arange(i, i + n) + rng.integers(0, 1000, n),
                  service="svc", status=np.where(rng.random(n) < 0.1, 2, 1).astype(np.uint8))
        i += n
        time.sleep(0.01)
    """
)


@contextmanager
def writer(path: Path) -> Iterator[None]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        yield
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def loose_anomalies(source: Any, flt: Filter | None = None, *, exemplars: int) -> list[q.Anomaly]:
    """Anomalies with thresholds every function passes: one finding per function."""
    return q.anomalies(source, flt, min_count=1, tail_threshold=1.0001, spike_threshold=1.0001,
                       exemplars=exemplars)  # fmt: skip


def _wait_for_rows(db: Database, rows: int) -> None:
    deadline = time.monotonic() + 30
    while sum(s.count for s in db.stats().values()) < rows:
        assert time.monotonic() < deadline, "the writer stored nothing"
        time.sleep(0.02)


def test_an_anomaly_and_its_slowest_calls_describe_the_same_rows(tmp_path: Path) -> None:
    """Every batch brings a new slowest call: read at another moment, exemplars would hold a
    call slower than the finding's max."""
    Database.open(tmp_path).close()
    rounds = 0
    with writer(tmp_path), Database.open(tmp_path, readonly=True) as db:
        _wait_for_rows(db, 200)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline or rounds < 5:
            found = loose_anomalies(db, exemplars=1)
            assert sorted(a.function for a in found) == ["fn0", "fn1", "fn2", "fn3"]
            for a in found:
                assert a.exemplars[0].duration == a.max, a.function
            rounds += 1


def test_questions_asked_of_one_view_agree_while_a_writer_appends(tmp_path: Path) -> None:
    Database.open(tmp_path).close()
    rounds = 0
    svc = Filter.make(service="svc")  # the scan road: every row decoded
    with writer(tmp_path), Database.open(tmp_path, readonly=True) as db:
        _wait_for_rows(db, 200)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline or rounds < 5:
            with db.snapshot() as view:
                table = {r.key: r for r in q.stats(view).rows}
                time.sleep(0.01)  # the writer stores more meanwhile; the view does not see it
                assert sum(r.count for r in table.values()) == view.rows
                for flt in (Filter(), svc):
                    found = {a.function: a for a in loose_anomalies(view, flt, exemplars=2)}
                    assert {f: (a.count, a.errors, a.max) for f, a in found.items()} == {
                        f: (r.count, r.errors, r.max) for f, r in table.items()
                    }
                    assert all(a.exemplars[0].duration == a.max for a in found.values())
                series = q.series(view, svc, step=10**8)
                assert {s.key: sum(p.count for p in s.points) for s in series.series} == {
                    f: r.count for f, r in table.items()
                }
                listed = q.list_functions(view)
                assert {f.name: (f.count, f.errors) for f in listed} == {
                    f: (r.count, r.errors) for f, r in table.items()
                }
                assert q.histogram(view, "fn2").count == table["fn2"].count
                assert q.slowest(view, k=1)[0].duration == max(r.max or 0 for r in table.values())
                assert export.total_rows(view) == view.rows
            rounds += 1


def test_a_page_that_fails_to_decode_costs_its_chunk_not_the_answer(tmp_path: Path) -> None:
    """Garbage with a valid checksum, met by a question's view: asked again on a fresh view."""
    n = 640
    with Database.open(tmp_path, chunk_rows=64) as db:
        i = np.arange(n)
        db.append([f"f{k % 3}" for k in i.tolist()], BASE + i * 1000, 1000 + i,
                  attributes=[{"r": int(k) % 5} for k in i.tolist()])  # fmt: skip
        assert db.flush(timeout=30)
    segdir = tmp_path / "segments"
    (seg,) = {f[:-5] for f in os.listdir(segdir) if f.endswith(".kseg")}
    poison_page(segdir, seg, 1, "duration")
    with Database.open(tmp_path, readonly=True) as db:
        table = q.stats(db, Filter.make(attributes={"r": 2}), exact=True)
        survivors = np.r_[0:64, 128:n]  # chunk 1 (rows 64..127) is lost
        assert sum(r.count for r in table.rows) == int((survivors % 5 == 2).sum())
        assert db.damaged.chunk_rows == 64
