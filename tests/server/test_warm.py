"""The server refreshes and summarises the ingest workers' new rows between queries.

Real worker processes store real OTLP requests; the warmer runs once a worker acknowledged rows,
with no query needed, never while a query runs and at most once per interval, and leaves each
live segment's tail summary made for the next query's snapshot. What it makes is what a query
would: answers taken while it runs equal brute force over what the same snapshot holds (see also
test_ingest_queries.py, where queries and warms interleave).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from kronicler.db import Database, SpanBatch
from kronicler.db.chunk import summarize
from kronicler.db.rollup import Block
from kronicler.server import Client, KroniclerServer
from kronicler.server.ingest import EXPORT_METHOD
from kronicler.server.warm import AFTER_QUERY, SWITCH_INTERVAL, Warmer
from tests.db.test_log_follow import _blocks_equal
from tests.server.test_ingest import request


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _live_tails(db: Database) -> list[tuple[int, bool]]:
    """(tail rows, tail summary made) of each segment holding tail rows, in a fresh snapshot."""
    with db.snapshot() as view:
        return [(s.tail_rows, s.made("tail_block")) for s in view.segments if s.tail_rows]


def test_stored_rows_are_summarised_for_the_next_query_without_one_asked(
    served: tuple[Database, KroniclerServer],
) -> None:
    db, server = served
    warmer = server.warmer
    assert warmer is not None
    with grpc.insecure_channel(server.address) as channel:
        export = channel.unary_unary(EXPORT_METHOD)
        export(request(1, 50).SerializeToString(), timeout=30)
        # no query asked: the first one after a quiet spell finds the rows summarised
        _until(lambda: _live_tails(db) == [(50, True)], "a warm of the rows stored")
        with Client(server.address) as client:
            assert client.stats().rows[0].count == 50
            export(request(51, 70).SerializeToString(), timeout=30)
            _until(lambda: sum(r for r, _ in _live_tails(db)) == 120, "the rows stored")
            _until(lambda: all(made for _, made in _live_tails(db)), "a warm of the new rows")
            row = client.stats().rows[0]
            assert (row.count, row.min, row.max) == (120, 1, 120)


def _store(writer: Database, first: int, n: int = 10) -> None:
    writer.append_batch(SpanBatch.build(["w.f"] * n, list(range(first, first + n)), [5] * n))
    writer.flush()


@contextmanager
def _warming(path: Path, **pace: float) -> Iterator[tuple[Database, Database, Warmer]]:
    """A writer (a segment written elsewhere, as a worker's), a read-only database over the same
    folder and a started warmer of it, paced as given."""
    writer = Database.open(path)
    try:
        with Database.open(path, readonly=True) as db:
            warmer = Warmer(db, **pace).start()
            try:
                yield writer, db, warmer
            finally:
                warmer.stop()
    finally:
        writer.close()


def test_a_warm_waits_for_the_query_and_for_its_interval(tmp_path: Path) -> None:
    every = 0.2
    with _warming(tmp_path / "db", every=every) as (writer, db, warmer):
        with warmer.asking():
            _store(writer, 0)
            warmer.stored()
            time.sleep(0.3)
            assert warmer.warms == 0  # never while a query runs
        _until(lambda: warmer.warms == 1, "the warm after the query")
        assert _live_tails(db) == [(10, True)]
        began, warms = time.monotonic(), warmer.warms
        for first in range(10, 400, 10):  # rows stored all the time
            _store(writer, first)
            warmer.stored()
            time.sleep(0.01)
        _until(lambda: _live_tails(db) == [(400, True)], "a warm of the last rows")
        spent = time.monotonic() - began
        # at most one warm per interval (a bound the code keeps, however slow the machine)
        assert 1 <= warmer.warms - warms <= spent / every + 1
        assert db.stats("w.f").count == 400


def test_with_no_query_asked_warms_slow_down_until_one_is(tmp_path: Path) -> None:
    pace = {"every": 0.0, "every_quiet": 60.0, "quiet_after": 0.0}
    with _warming(tmp_path / "db", **pace) as (writer, db, warmer):
        _store(writer, 0)
        warmer.stored()
        _until(lambda: warmer.warms == 1, "the first warm")
        for first in range(10, 100, 10):
            _store(writer, first)
            warmer.stored()
        time.sleep(0.3)
        assert warmer.warms == 1  # quiet: the next waits for the slow pace...
        assert _live_tails(db) == [(100, False)]
        with warmer.asking():
            pass
        _until(lambda: warmer.warms == 2, "the warm after a query")  # ...or a query
        assert _live_tails(db) == [(100, True)]


def test_the_switch_interval_is_short_while_warmers_run_and_put_back_after(
    tmp_path: Path,
) -> None:
    """A query's threads wait at most this long for the interpreter lock a warm holds."""
    original = sys.getswitchinterval()
    sys.setswitchinterval(0.004)
    try:
        with Database.open(tmp_path / "db") as db:
            first, second = Warmer(db).start(), Warmer(db).start()
            try:
                assert sys.getswitchinterval() == SWITCH_INTERVAL
                first.stop()
                assert sys.getswitchinterval() == SWITCH_INTERVAL  # the second still runs
                first.stop()  # stopping twice leaves the count alone
                assert sys.getswitchinterval() == SWITCH_INTERVAL
            finally:
                second.stop()
        assert sys.getswitchinterval() == 0.004
    finally:
        sys.setswitchinterval(original)


def test_no_warm_starts_while_the_last_query_s_reply_may_be_on_its_way(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        warmer = Warmer(db)
        assert warmer._replied(time.monotonic()) == 0.0  # no query yet
        with warmer.asking():
            pass
        ended = warmer._last_query
        assert ended > -float("inf")
        assert warmer._replied(ended) == pytest.approx(AFTER_QUERY)
        assert warmer._replied(ended + AFTER_QUERY / 2) == pytest.approx(AFTER_QUERY / 2)
        assert warmer._replied(ended + 2 * AFTER_QUERY) == 0.0


def test_a_query_stops_a_warm_and_it_is_finished_later(tmp_path: Path) -> None:
    writer = Database.open(tmp_path / "db")
    with Database.open(tmp_path / "db", readonly=True) as db:
        _store(writer, 0)
        warmer = Warmer(db, every=0.0)
        asked = [False, True]  # the first step goes on, the second finds a query begun
        warmer._asked = lambda: asked.pop(0) if asked else False  # type: ignore[method-assign]
        assert warmer._warm() is False
        assert _live_tails(db) == [(10, False)]
        assert warmer._warm() is True  # nothing asked now
        assert _live_tails(db) == [(10, True)]
        writer.close()


def test_answers_taken_while_the_warmer_runs_equal_brute_force_over_their_snapshot(
    tmp_path: Path,
) -> None:
    """A writer commits and seals small chunks all the time, the warmer walks ahead, refreshes
    and summarises as often as it can, and queries take snapshots meanwhile: every statistic a
    snapshot answers (through tail summaries the warmer may have made) equals brute force over
    the rows that same snapshot holds, and every kept tail summary is that of its tail."""
    writer = Database.open(tmp_path / "db", chunk_rows=64, flush_interval=60)
    stop = threading.Event()

    def write() -> None:
        first = 0
        while not stop.is_set() and first < 2000:
            names = [f"f{(first + i) % 3}" for i in range(7)]
            writer.append_batch(SpanBatch.build(names, list(range(first, first + 7)),
                                                [first + i for i in range(7)]))  # fmt: skip
            writer.flush()
            warmer.stored()
            first += 7

    with Database.open(tmp_path / "db", readonly=True) as db:
        warmer = Warmer(db, every=0.0).start()
        thread = threading.Thread(target=write)
        thread.start()
        try:
            checked = 0
            while thread.is_alive() or checked < 10:
                with warmer.asking(), db.snapshot() as view:
                    got = {n: (s.count, s.min, s.max) for n, s in view.stats().items()}
                    scan = view.scan(("name", "duration"))
                    names = np.array(view.functions())
                    brute: dict[str, tuple[int, float, float]] = {}
                    codes, durations = scan.columns["name"], scan.columns["duration"]
                    for code in np.unique(codes):
                        d = durations[codes == code]
                        brute[str(scan.names[int(code)])] = (len(d), d.min(), d.max())
                    assert got == brute
                    assert set(names) == set(brute)
                    for seg in view.segments:
                        if seg.made("tail_block"):
                            _blocks_equal(seg.tail_block(), Block.of(summarize(dict(seg.tail))))
                checked += 1
                time.sleep(0.005)  # room for warms between the queries
        finally:
            stop.set()
            thread.join()
            warmer.stop()
            writer.close()
    assert warmer.warms >= 3 and checked >= 10


def test_after_a_seal_a_warm_makes_the_merge_the_next_query_reads(tmp_path: Path) -> None:
    """A writer seals chunks; with no query asked, the warm after it makes each segment's roll-up
    block and the kept whole-history merge, and the answers equal brute force."""
    writer = Database.open(tmp_path / "db", chunk_rows=16, flush_interval=60)
    durations: list[int] = []
    with Database.open(tmp_path / "db", readonly=True) as db:
        warmer = Warmer(db, every=0.0).start()
        try:
            for first in (0, 40, 80):  # each store seals two chunks (and leaves 8 tail rows)
                durations += [3 * (first + i) + 1 for i in range(40)]
                writer.append_batch(SpanBatch.build(["w.f"] * 40, list(range(first, first + 40)),
                                                    durations[-40:]))  # fmt: skip
                writer.flush()
                merges = warmer.merges
                warmer.stored()
                _until(lambda: warmer.merges > merges, "a merge after the seal")  # noqa: B023
                with db.snapshot() as view:
                    segs = [s for s in view.segments if len(s.chunks)]
                    assert segs and all(s.made("rollup_block") for s in segs)
                    st = view.stats("w.f")
                assert (st.count, st.min, st.max) == (len(durations), min(durations),
                                                      max(durations))  # fmt: skip
                assert st.mean == pytest.approx(np.mean(durations), rel=1e-12)
        finally:
            warmer.stop()
            writer.close()


def test_a_sealed_chunk_ends_the_pause_between_warms(tmp_path: Path) -> None:
    """Between queries, a warm comes at once when a worker seals a chunk (its walk ahead then
    done before the next query), not after the interval; commits alone wait for it."""
    writer = Database.open(tmp_path / "db", chunk_rows=64, flush_interval=60)
    with Database.open(tmp_path / "db", readonly=True) as db:
        warmer = Warmer(db, every=60.0, quiet_after=600.0).start()
        try:
            with warmer.asking():  # a query came: the fast pace
                _store(writer, 0)
            warmer.stored()
            _until(lambda: warmer.warms == 1, "the first warm")
            _store(writer, 10)  # a commit, no seal: waits for the interval
            warmer.stored()
            time.sleep(0.3)
            assert warmer.warms == 1 and warmer.sealed == 0
            _store(writer, 20, n=60)  # seals a chunk of 64 rows
            warmer.stored()
            _until(lambda: warmer.warms == 2, "the warm after the seal")
            assert warmer.sealed == 1 and warmer.merges >= 1
            # the warm may have come between the chunk's pages and the commit after them; the
            # roll-up block of the chunks it saw is made either way, with no query asked
            with db.snapshot() as view:
                assert [(len(s.chunks), s.made("rollup_block")) for s in view.segments] == [
                    (1, True)
                ]
                assert view.stats("w.f").count == 80
        finally:
            warmer.stop()
            writer.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_only_a_server_with_ingest_workers_warms(tmp_path: Path, workers: int) -> None:
    from kronicler.server import ServerOptions

    with Database.open(tmp_path / "db") as db:
        server = KroniclerServer(db, ServerOptions("127.0.0.1:0", ingest_workers=workers))
        try:
            assert (server.warmer is not None) == bool(workers)
        finally:
            server.stop()
