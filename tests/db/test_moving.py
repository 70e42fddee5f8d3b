"""Windows that move, and live tails that grow between questions: the warm merge path.

A window asked once and then moved a little at every question (a dashboard's "last N hours")
keeps the merge of what changes only when an edge crosses a large roll-up node (the *stable*
parts of every closed segment) and merges it with the few small parts of its edges; a
whole-history question passes a live tail's summary so far and its rows since as pieces of its
one merge. Every answer equals the brute force over the same rows, and the merge made without
any kept set (each segment asked alone, merged the slow way), through segments whose time
ranges overlap, chunk edges, and pools tiny and roomy (retention, compaction and a damaged page
under a long-lived reader moving its window: ``test_merged.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kronicler.db import Database, merged, reads
from tests.db.test_merged import (
    CHUNK,
    DAY,
    FEW,
    FUNCTIONS,
    _ask,
    _kept,
    _rows,
    _same,
    _segment,
    _uncached,
    with_live,
)
from tests.oracle.truth import Rows

LANES = 3


@pytest.fixture(scope="module")
def lanes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Rows]]:
    """Nine closed segments from three lanes whose times overlap, each of 12-30 chunks of 16
    rows (so a window holds roll-up nodes of 8 chunks and more, and cuts chunks at its edges),
    and a live writer with sealed chunks and a tail."""
    rng = np.random.default_rng(23)
    path = tmp_path_factory.mktemp("moving") / "db"
    base = time.time_ns() - DAY
    parts = [_rows(rng, int(rng.integers(12, 30)) * CHUNK + int(rng.integers(0, CHUNK)),
                   i % LANES, base + (i // LANES) * 10**10, FUNCTIONS) for i in range(9)]  # fmt: skip
    yield from with_live(path, parts, _rows(rng, 20 * CHUNK + 7, LANES, base + 10**10, FUNCTIONS))


@FEW
@given(data=st.data(), tiny=st.booleans())
def test_a_moving_window_equals_the_brute_force_at_every_step(
    lanes: tuple[Path, Rows], data: st.DataObject, tiny: bool
) -> None:
    """A window of any width moved by a small step (crossing time slices, chunks and nodes of
    the segments it cuts) at every question, and sometimes asked twice: each answer equal to
    the brute force and to the merge without kept sets; with a roomy pool the stable parts are
    one kept merge from the first question on, although no window is asked twice."""
    path, truth = lanes
    starts = np.sort(truth.start)
    n = len(starts)
    width = data.draw(st.integers(n // 50, n - 2), label="width (rows)")
    first = data.draw(st.integers(0, n - width - 1), label="first row")
    span = int(starts[first + width] - starts[first])
    step = max(1, span // data.draw(st.sampled_from([3, 40, 400]), label="steps per width"))
    names = data.draw(st.sampled_from([(), ("a.one",), ("b.three", "d.five")]), label="names")
    wanted = list(names) or None
    pool = (48 << 10) if tiny else 64 << 20
    with (
        Database.open(path, readonly=True, bufferpool_bytes=pool) as db,
        Database.open(path, readonly=True) as ref,
    ):
        since = int(starts[first])
        for i in range(6):
            s, u = since + i * step, since + i * step + span
            for _ in range(1 + (i == 3)):  # the fourth window asked twice
                _ask(db, truth, s, u, names)
                _same(db.summaries(wanted, since=s, until=u), _uncached(ref, s, u, wanted),
                      f"step {i}: {s}..{u} {names}")  # fmt: skip
        if not tiny and width > n // 3:
            assert _kept(db)


def test_the_stable_parts_are_kept_once_and_reused_as_the_window_moves(
    lanes: tuple[Path, Rows],
) -> None:
    """A wide window moved by a few rows at a time: the merge of the closed segments' stable
    parts is made at the first question and read from the pool at the next ones (the same
    entry), each of which merges it with its edges' small parts only."""
    path, truth = lanes
    starts = np.sort(truth.start)
    n = len(starts)
    since, until = int(starts[n // 10]), int(starts[n - n // 10])
    step = int(starts[n // 10 + 3] - starts[n // 10])
    with Database.open(path, readonly=True) as db:
        kept: list[set[merged.SetKey]] = []
        for i in range(5):
            _ask(db, truth, since + i * step, until + i * step)
            kept.append(set(_kept(db)))
        # one stable root (or group) stays in the pool through every move
        assert set.intersection(*kept)
        root = max(set.intersection(*kept), key=lambda k: len(k.segments))
        assert len(root.segments) > 1


def test_a_growing_live_tail_is_merged_with_its_rows_since_in_one_pass(tmp_path: Path) -> None:
    """Closed segments and two live writers committing a few rows before each question: all of
    history, and a window moving with the tails, equal to the brute force and the merge without
    kept sets after every commit; for all of history the rows since a tail's last summary are
    summarised with the query's edge rows, so the view's own tail summary is not made, until
    the rows since it pass the bound."""
    rng = np.random.default_rng(5)
    path = tmp_path / "db"
    base = time.time_ns() - DAY
    closed = [_rows(rng, 60, i, base + i * 10**9, FUNCTIONS) for i in range(4)]
    for rows in closed:
        _segment(path, rows)
    writers = [Database.open(path, chunk_rows=1 << 12, flush_interval=0.05) for _ in range(2)]
    try:
        written: list[Rows] = []
        with Database.open(path, readonly=True) as db, Database.open(path, readonly=True) as ref:
            with db.snapshot() as view:
                view.warm()  # an empty tail: nothing to make
            for step in range(6):
                for lane, w in enumerate(writers):
                    rows = _rows(rng, int(rng.integers(1, 40)), 4 + lane,
                                 base + (10 + step) * 10**9, FUNCTIONS)  # fmt: skip
                    assert w.append(**rows.append_kwargs()) == len(rows)
                    assert w.flush(30)
                    written.append(rows)
                truth = Rows.concat(closed + written)
                _ask(db, truth, None, None)
                _same(db.summaries(), _uncached(ref, None, None), f"step {step}")
                _ask(db, truth, None, None, ("a.one", "c.four"))
                starts = np.sort(truth.start)  # a window moving with the tails' growth
                s, u = int(starts[len(starts) // 4 + step]), int(starts[-1]) + 1
                _ask(db, truth, s, u)
                _same(db.summaries(since=s, until=u), _uncached(ref, s, u), f"step {step} {s}..")
                tails = [s for s in db._reads.snapshot().segments if s.tail_rows]
                assert len(tails) == 2
                if step == 0:  # no summary yet: the first question makes the tails' own
                    continue
                assert not any(s.made("tail_block") for s in tails)
                if step == 3:
                    with db.snapshot() as view:  # between questions, as the server's warmer does
                        view.warm()
        # past the bound, the tail's own summary is made (and is the next view's base)
        big = _rows(rng, reads._TAIL_ROWS_PAST_BASE + 5, 4, base + 20 * 10**9, FUNCTIONS)
        assert writers[0].append(**big.append_kwargs()) == len(big)
        assert writers[0].flush(30)
        truth = Rows.concat([*closed, *written, big])
        with Database.open(path, readonly=True) as db:
            _ask(db, truth, None, None)
            _ask(db, truth, None, None)
    finally:
        for w in writers:
            w.close()
