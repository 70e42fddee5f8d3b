"""A worker's group commit: a request is answered only once a flush that began after its rows
were appended has ended, so a reader opened then sees every row of every answered request."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import grpc

from kronicler.db import Database, SpanBatch
from kronicler.server.ingest_worker import (
    GroupCommit,
    Listen,
    Outcome,
    _Direct,
    _listen,
    committed,
)


def test_every_row_of_an_answered_request_is_visible_to_a_reader_opened_then(
    tmp_path: Path,
) -> None:
    rounds: list[int] = []
    failures: list[str] = []
    with Database.open(tmp_path / "db", flush_interval=60) as db:
        commit = GroupCommit(db, after=lambda r: rounds.append(r.members))

        def client(t: int) -> None:
            for i in range(25):
                first = (t * 25 + i) * 4
                commit.begin()
                db.append_batch(SpanBatch.build([f"f{t}"] * 4, list(range(first, first + 4)),
                                                [1, 2, 3, 4]))  # fmt: skip
                outcome = committed(Outcome("ok"), commit.join(direct=t == 0), 30.0)
                if outcome.code != "ok":
                    failures.append(outcome.message)
                    continue
                with Database.open(tmp_path / "db", readonly=True) as reader:
                    seen = reader.stats(f"f{t}").count
                if seen < 4 * (i + 1):  # flush_interval=60: only the round's flush wrote them
                    failures.append(f"client {t} request {i}: {seen} rows visible")

        threads = [threading.Thread(target=client, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        commit.close()
    assert not failures, failures[:5]
    assert sum(rounds) == 100  # every request was in exactly one round
    assert committed(Outcome("invalid", message="x"), None, 0.0) == Outcome("invalid", message="x")


def test_a_flush_waits_for_the_requests_being_stored_then_covers_them(tmp_path: Path) -> None:
    # A flush costs CPU of its own: one due while another request is being stored waits for
    # that request (up to ``gather``), so both are answered by the one flush.
    rounds: list[int] = []
    with Database.open(tmp_path / "db", flush_interval=60) as db:
        commit = GroupCommit(db, after=lambda r: rounds.append(r.members), gather=30.0)
        commit.begin()
        commit.begin()
        db.append_batch(SpanBatch.build(["f"], [1], [1]))
        first = commit.join()
        assert first is not None
        # the flush is due now; without the wait it would cover the first request alone
        assert not first.done.wait(0.2)
        db.append_batch(SpanBatch.build(["f"], [2], [1]))
        second = commit.join()
        assert second is first
        assert committed(Outcome("ok"), second, 30.0) == Outcome("ok")
        with Database.open(tmp_path / "db", readonly=True) as reader:
            assert reader.stats("f").count == 2
        commit.close()
    assert rounds == [2]


def test_the_wait_is_bounded_and_a_request_that_stored_nothing_is_not_waited_on(
    tmp_path: Path,
) -> None:
    with Database.open(tmp_path / "db", flush_interval=60) as db:
        commit = GroupCommit(db, gather=0.05)
        commit.begin()
        assert commit.join(False) is None  # rejected whole: nothing to flush, nothing to wait
        commit.begin()  # a request that never joins (its store is stuck)
        commit.begin()
        db.append_batch(SpanBatch.build(["f"], [1], [1]))
        round_ = commit.join()
        # the flush went ahead after ``gather`` although a request was still being stored
        assert committed(Outcome("ok"), round_, 30.0) == Outcome("ok")
        commit.close()


class _Overlaps(Database):
    """A database that counts how many appends ran at once (a real one: the rows are stored)."""

    active = 0
    most = 0
    guard = threading.Lock()

    def append_batch(self, *args: Any, **kwargs: Any) -> int:
        cls = type(self)
        with cls.guard:
            cls.active += 1
            cls.most = max(cls.most, cls.active)
        try:
            time.sleep(0.005)  # a conversion's length: others would come in meanwhile
            return super().append_batch(*args, **kwargs)
        finally:
            with cls.guard:
                cls.active -= 1


def test_a_worker_converts_one_request_at_a_time_and_answers_them_all(tmp_path: Path) -> None:
    # Concurrent calls (up to the in-flight bound) wait for the one being converted, so the
    # conversions do not interleave under the interpreter lock; every call is still stored.
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

    from tests.server.test_ingest import request

    with _Overlaps.open(tmp_path / "db", flush_interval=60) as db:
        commit = GroupCommit(db)
        server, port = _listen(Listen("127.0.0.1:0", max_in_flight=4), _Direct(db, commit, 4))
        errors: list[str] = []

        def client(t: int) -> None:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = otlp_grpc.TraceServiceStub(channel)
                for i in range(8):
                    try:
                        stub.Export(request(1 + (t * 8 + i) * 5, 5), timeout=30)
                    except grpc.RpcError as exc:
                        errors.append(str(exc.code()))

        threads = [threading.Thread(target=client, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        server.stop(None).wait()
        commit.close()
    assert errors == []
    assert _Overlaps.most == 1
    with Database.open(tmp_path / "db", readonly=True) as reader:
        assert reader.stats("ingest.f").count == 4 * 8 * 5
