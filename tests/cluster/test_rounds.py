"""A frontend question of several rounds sees one snapshot per node, however fast data arrives.

Three real nodes (gRPC servers on loopback over real databases) hold seeded rows split by trace
id. A frontend whose rounds are interleaved with arrivals (after every round, each node's
database is appended new calls of the same functions, inside the question's range, most of them
slow, and flushed) asks the questions that take several rounds: explain (bounds, exact
durations, counts, details), a series without bounds (range, cells) and anomalies (range, both
windows, exemplars). Each answer must equal that of one database holding only the rows stored
before the question began, and explain's counts the brute force over those rows: every round
answered from the view its first round took. Without held views the later rounds count the
arrivals, and the answers disagree.

Then the bounds: the views are released when the question ends, a node that lost a question's
view between rounds is named missing (never merged from another snapshot), and the details
round reads no calls again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kronicler import query as q
from kronicler.db import Database
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.query.explain import Calls
from kronicler.query.local import Local
from kronicler.server import KroniclerServer, ServerOptions
from kronicler.server.frontend import Frontend
from kronicler.server.held_views import held_views
from tests.cluster.nodes import shard_of
from tests.contracts.test_query_backend import plain, same
from tests.oracle.truth import Rows, generate

BASE = 1_790_000_000_000_000_000
SPAN = 60 * 1_000_000_000
FUNCTIONS = ("api.get", "db.query")


class Arriving(Frontend):
    """A frontend that runs ``between`` after each round of a question it asks."""

    between: Callable[[], None] = staticmethod(lambda: None)
    rounds = 0

    def _ask(self, *requests: pb.PartialRequest, **kw: Any) -> list[list[pb.PartialResponse]]:
        got = super()._ask(*requests, **kw)
        self.rounds += 1
        self.between()
        return got


@dataclass
class Nodes:
    dbs: list[Database]
    servers: list[KroniclerServer]
    before: Database  # the rows stored before any question: the one-database answer
    arrivals: Rows
    truth: Rows

    @property
    def peers(self) -> list[str]:
        return [s.address for s in self.servers]

    def feeder(self, batches: int) -> Callable[[], None]:
        """Appends the next of ``batches`` slices of the arrivals to every node."""
        parts = iter(np.array_split(np.arange(len(self.arrivals)), batches))

        def feed() -> None:
            idx = next(parts, None)
            if idx is None:
                return
            rows = self.arrivals.take(idx)
            shards = np.array([shard_of(rows.trace_id(i), 3) for i in range(len(rows))])
            for n, db in enumerate(self.dbs):
                part = rows.take(np.flatnonzero(shards == n))
                if len(part):
                    db.append(**part.append_kwargs())
                assert db.flush(30)

        return feed


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    rng = np.random.default_rng(14)
    truth = generate(rng, 1500, FUNCTIONS, base=BASE, span=SPAN, lane=0)
    # Arrivals land inside the same range, slower than the first rows' tail.
    arrivals = generate(rng, 600, FUNCTIONS, base=BASE, span=SPAN, lane=1)
    arrivals.duration[:] = arrivals.duration * 50 + 10_000_000
    shards = np.array([shard_of(truth.trace_id(i), 3) for i in range(len(truth))])
    dbs = [Database.open(tmp_path / f"node{n}", chunk_rows=128) for n in range(3)]
    before = Database.open(tmp_path / "before", chunk_rows=128)
    try:
        for n, db in enumerate(dbs):
            db.append(**truth.take(np.flatnonzero(shards == n)).append_kwargs())
        before.append(**truth.append_kwargs())
        for db in (*dbs, before):
            assert db.flush(30)
        servers = [KroniclerServer(db, ServerOptions(address="127.0.0.1:0")).start()
                   for db in dbs]  # fmt: skip
        try:
            yield Nodes(dbs, servers, before, arrivals, truth)
        finally:
            for s in servers:
                s.stop()
    finally:
        for db in (*dbs, before):
            db.close()


def _brute_explain(truth: Rows, fn: str) -> tuple[int, int, float]:
    d = np.sort(truth.duration[truth.name == fn])
    limit = float(d[int(np.floor(0.99 * (len(d) - 1)))])
    return len(d), int((d > limit).sum()), limit


@pytest.mark.parametrize("function", FUNCTIONS)
def test_explain_rounds_see_the_rows_of_one_snapshot(nodes: Nodes, function: str) -> None:
    front = Arriving(nodes.peers, timeout=30)
    with front:
        front.between = nodes.feeder(batches=6)
        got = front.explain(function)
        assert front.missing_peers() == ()
        assert front.rounds >= 4  # bounds, durations, counts and details, each before arrivals
    want = q.explain(nodes.before, function)
    assert (got.count, got.slow_count, got.threshold) == _brute_explain(nodes.truth, function)
    assert got.to_dict() == want.to_dict()
    # the arrivals were stored: a question asked now counts them
    with Frontend(nodes.peers, timeout=30) as after:
        assert after.explain(function).count > got.count
    assert all(len(held_views(db)) == 0 for db in nodes.dbs)  # released by the last round


QUESTIONS: dict[str, tuple[Callable[[Any], Any], int]] = {
    # (the question, its rounds): both ask the range first; anomalies ask the two windows in
    # one round, then the exemplars
    "series": (lambda b: b.series(step=5_000_000_000), 2),
    "anomalies": (lambda b: b.anomalies(min_count=5, recent=SPAN // 4), 3),
}


@pytest.mark.parametrize("question", list(QUESTIONS))
def test_series_and_anomalies_rounds_see_one_snapshot(nodes: Nodes, question: str) -> None:
    ask, rounds = QUESTIONS[question]
    front = Arriving(nodes.peers, timeout=30)
    with front:
        front.between = nodes.feeder(batches=8)
        got = ask(front)
        assert front.rounds == rounds
        assert front.missing_peers() == ()
    want = ask(Local(nodes.before))
    assert got and same(plain(got), plain(want), 1e-9)
    assert all(len(held_views(db)) == 0 for db in nodes.dbs)  # the last round released them


def _released(nodes: Nodes) -> bool:
    """Whether every node released its views (polled: the release is not waited for)."""
    for _ in range(1000):
        if all(len(held_views(db)) == 0 for db in nodes.dbs):
            return True
        time.sleep(0.01)
    return False


def test_a_question_ending_before_its_last_round_releases_the_views(nodes: Nodes) -> None:
    with Frontend(nodes.peers, timeout=30) as front:
        # no call in the range: explain ends after its first round
        got = front.explain("api.get", since=BASE - 10_000, until=BASE - 1)
        assert got.count == 0
        assert _released(nodes)
        with pytest.raises(ValueError):  # refused by the nodes in the second round
            front.series(step=1)
        assert _released(nodes)


def test_a_node_that_lost_the_view_is_named_missing(nodes: Nodes) -> None:
    """A later round whose view the node no longer holds fails there: that node is named
    missing and the answer is the other nodes' over their first snapshot."""
    front = Arriving(nodes.peers, timeout=30)
    with front:
        lost = nodes.dbs[0]

        def drop() -> None:
            if front.rounds == 1:
                held_views(lost).close()

        front.between = drop
        got = front.explain("api.get")
        (missing,) = front.missing_peers()
    assert missing.startswith(f"{nodes.peers[0]}: FAILED_PRECONDITION")
    assert "no longer holds the view" in missing
    shards = np.array([shard_of(nodes.truth.trace_id(i), 3) for i in range(len(nodes.truth))])
    others = nodes.truth.take(np.flatnonzero(shards != 0))
    assert got.count == int((others.name == "api.get").sum())


def test_the_details_round_reads_no_calls_again(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = Calls.read.__func__  # type: ignore[attr-defined]

    def counted(cls: type, db: Any, function: str, *args: Any, **kw: Any) -> Any:
        reads.append("bounds" if kw.get("columns") else "calls")
        return real(cls, db, function, *args, **kw)

    monkeypatch.setattr(Calls, "read", classmethod(counted))
    with Frontend(nodes.peers, timeout=30) as front:
        got = front.explain("db.query")
        assert got.attributes or got.children or got.releases  # a details round was asked
    assert reads.count("calls") == 3  # one per node, by the counting round
    assert reads.count("bounds") == 3
    assert all(len(held_views(db)) == 0 for db in nodes.dbs)
