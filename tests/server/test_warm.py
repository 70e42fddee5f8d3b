"""The server summarises the ingest workers' new rows between queries, and only then.

Real worker processes store real OTLP requests; the warmer runs after a worker acknowledged rows
and a query ended, and leaves each live segment's tail summary made for the next query's
snapshot. With no query asked, or while one runs, it does nothing. Answers stay brute force
over what was stored (see also test_ingest_queries.py, where queries and warms interleave).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from kronicler.db import Database, SpanBatch
from kronicler.server import Client, KroniclerServer
from kronicler.server.ingest import EXPORT_METHOD
from kronicler.server.warm import Warmer
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
        segments = view._open().segments
        return [(s.tail_rows, "tail_block" in s._cache) for s in segments if s.tail_rows]


def test_stored_rows_are_summarised_after_a_query_for_the_next(
    served: tuple[Database, KroniclerServer],
) -> None:
    db, server = served
    warmer = server.warmer
    assert warmer is not None
    with grpc.insecure_channel(server.address) as channel:
        export = channel.unary_unary(EXPORT_METHOD)
        export(request(1, 50).SerializeToString(), timeout=30)
        time.sleep(0.3)
        assert warmer.warms == 0  # no query asked yet: nothing to warm for
        with Client(server.address) as client:
            assert client.stats().rows[0].count == 50
            _until(lambda: warmer.warms == 1, "a warm of the rows stored before the query")
            assert client.stats().rows[0].count == 50  # a query ends with nothing new stored
            export(request(51, 70).SerializeToString(), timeout=30)
            _until(lambda: warmer.warms == 2, "a warm of the rows stored after it")
            tails = _live_tails(db)
            assert sum(rows for rows, _ in tails) == 120
            assert all(made for _, made in tails), tails  # the next query finds them made
            row = client.stats().rows[0]
            assert (row.count, row.min, row.max) == (120, 1, 120)


def test_a_warm_waits_for_the_query_and_runs_once_per_query(tmp_path: Path) -> None:
    writer = Database.open(tmp_path / "db")  # a segment written elsewhere, as a worker's
    with Database.open(tmp_path / "db", readonly=True) as db:
        warmer = Warmer(db).start()
        try:

            def store(first: int) -> None:
                names = ["w.f"] * 10
                writer.append_batch(
                    SpanBatch.build(names, list(range(first, first + 10)), [5] * 10)
                )
                writer.flush()
                warmer.stored()

            with warmer.asking():
                store(0)
                time.sleep(0.3)
                assert warmer.warms == 0  # never while a query runs
            _until(lambda: warmer.warms == 1, "the warm after the query")
            assert _live_tails(db) == [(10, True)]
            for first in (10, 20, 30):  # rows stored, but no query since the last warm
                store(first)
            time.sleep(0.3)
            assert warmer.warms == 1
            assert _live_tails(db) == [(40, False)]  # left for the next query to summarise
            with warmer.asking():
                pass
            _until(lambda: warmer.warms == 2, "the warm after the second query")
            assert _live_tails(db) == [(40, True)]
            assert db.stats("w.f").count == 40
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
