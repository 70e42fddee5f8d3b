"""The views a node holds for questions between their rounds: one per question, bounded in
number, in time and in what they memoise, and released by the last round."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kronicler.db import Database
from kronicler.errors import KroniclerError, LimitExceededError
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.server.held_views import HeldViews

BASE = 1_790_000_000_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _append(db: Database, n: int, first: int) -> None:
    start = BASE + np.arange(first, first + n, dtype=np.int64)
    db.append(["f"] * n, start, np.full(n, 1000, np.int64))
    assert db.flush(30)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with Database.open(tmp_path / "db", chunk_rows=64) as db:
        _append(db, 100, 0)
        yield db


def _q(qid: bytes, *, first: bool = False, last: bool = False, ms: int = 5000) -> pb.QuestionView:
    return pb.QuestionView(question_id=qid, first_round=first, last_round=last, hold_ms=ms)


def test_a_question_keeps_its_first_rounds_view(db: Database) -> None:
    table = HeldViews(sweep=False)
    held = table.view(db, _q(b"a", first=True))
    again = table.view(db, _q(b"a", first=True))  # a second request of the first round
    assert again is held and len(table) == 1
    _append(db, 50, 1000)
    later = table.view(db, _q(b"a"))
    assert later is held and later.view.rows == 100  # the arrivals are not in its view
    other = table.view(db, _q(b"b", first=True))
    assert other.view.rows == 150  # another question sees them
    table.release(b"a")
    assert held.view.closed and len(table) == 1
    with pytest.raises(KroniclerError, match="no longer holds the view"):
        table.view(db, _q(b"a"))
    table.close()
    assert other.view.closed and len(table) == 0


def test_views_are_bounded_in_number(db: Database) -> None:
    table = HeldViews(max_held=2, sweep=False)
    table.view(db, _q(b"a", first=True))
    table.view(db, _q(b"b", first=True))
    with pytest.raises(LimitExceededError, match="limit of 2"):
        table.view(db, _q(b"c", first=True))
    table.view(db, _q(b"a"))  # a held question still answers
    table.release(b"a")
    table.view(db, _q(b"c", first=True))
    assert len(table) == 2
    with pytest.raises(ValueError, match="1 to 64 bytes"):
        table.view(db, _q(b"", first=True))
    table.close()


def test_a_view_expires_at_its_questions_deadline(db: Database) -> None:
    clock = Clock()
    table = HeldViews(max_hold=10.0, clock=clock, sweep=False)
    held = table.view(db, _q(b"a", first=True, ms=2000))
    clock.now += 1.5
    assert table.view(db, _q(b"a", ms=2000)) is held  # renewed by the round: 2 s from now
    clock.now += 1.9
    assert table.view(db, _q(b"b", first=True, ms=60_000)) is not held
    assert not held.view.closed
    clock.now += 0.2
    with pytest.raises(KroniclerError, match="no longer holds the view"):
        table.view(db, _q(b"a"))
    assert held.view.closed
    # capped by the node, whatever the frontend asks
    clock.now += 10.0
    with pytest.raises(KroniclerError):
        table.view(db, _q(b"b"))
    assert len(table) == 0


def test_the_sweeper_closes_expired_views_without_requests(db: Database) -> None:
    table = HeldViews()
    held = table.view(db, _q(b"a", first=True, ms=1))
    for _ in range(500):  # polled, not timed: the sweeper wakes at the expiry
        if held.view.closed:
            break
        time.sleep(0.01)
    assert held.view.closed and len(table) == 0


def test_memos_are_bounded_and_freed_with_the_view(db: Database) -> None:
    table = HeldViews(memo_rows=100, sweep=False)
    a = table.view(db, _q(b"a", first=True))
    b = table.view(db, _q(b"b", first=True))
    assert table.memo_put(a, "k", 60, "calls of a")
    assert table.memo_get(a, "k") == "calls of a"
    assert not table.memo_put(b, "k", 60, "calls of b")  # 120 rows: over the bound
    assert table.memo_get(b, "k") is None
    assert table.memo_put(b, "k", 40, "fewer calls of b")
    table.release(b"a")
    assert table.memo_put(b, "j", 60, "more")  # a's rows were freed with its view
    assert not table.memo_put(a, "k", 1, "late")  # a released question keeps nothing
    table.close()


def test_a_nodes_partial_answers_from_the_held_view(db: Database) -> None:
    from kronicler.query.partials import PARTIAL_VERSION
    from kronicler.server import partial
    from kronicler.server.held_views import held_views

    def ask(view: pb.QuestionView | None, **question: object) -> pb.PartialResponse:
        req = pb.PartialRequest(version=PARTIAL_VERSION, **question)  # type: ignore[arg-type]
        if view is not None:
            req.view.CopyFrom(view)
        return partial.answer(db, req)

    stats = pb.GetStatsRequest(group_by="function")
    assert not ask(None, stats=stats).held_view  # no question named: a fresh snapshot
    first = ask(_q(b"a", first=True), time_range=pb.TimeRangeQuestion())
    assert first.held_view and len(held_views(db)) == 1
    _append(db, 50, 1000)
    later = ask(_q(b"a"), time_range=pb.TimeRangeQuestion())
    assert later.last_start_unix_nano == first.last_start_unix_nano == BASE + 99
    assert ask(None, time_range=pb.TimeRangeQuestion()).last_start_unix_nano == BASE + 1049
    with pytest.raises(ValueError):  # a refused last round still ends the question
        ask(_q(b"a", last=True), series=pb.GetSeriesRequest(step_ns=0))
    assert len(held_views(db)) == 0
