"""Failures that are not a full disk: every row lost is counted once and told to its source.

A batch that cannot be coded (a text that is not a ``str``, columns of different lengths), a
``MemoryError`` while coding, or a bug that makes every seal raise: the writer must keep going,
lose only what it has to, and tell each producer exactly its own share. Each producer's count
is checked against the rows the database then holds: ``stored + lost == produced``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kronicler.db import Database
from kronicler.db import database as database_module
from kronicler.db.schema import SpanBatch
from kronicler.db.site_batch import SiteBatch
from kronicler.db.writer import SegmentWriter

BASE = 1_700_000_000_000_000_000
# Each failure is also issued as a DataLossWarning; the tests read the log records instead.
pytestmark = pytest.mark.filterwarnings("ignore::kronicler.errors.DataLossWarning")


def _site_batch(name: object, rows: int, first: int) -> SiteBatch:
    i = np.arange(first, first + rows)
    return SiteBatch(
        site=np.zeros(rows, np.int64), names=[name], attributes=["{}"],  # type: ignore[list-item]
        service="svc", resource="", start=BASE + i, duration=i + 1,
        status=np.zeros(rows, np.uint8), kind=np.zeros(rows, np.uint8),
        trace_hi=np.zeros(rows, np.uint64), trace_lo=np.zeros(rows, np.uint64),
        span_id=(i + 1).astype(np.uint64), parent_span_id=np.zeros(rows, np.uint64),
    )  # fmt: skip


class Producer:
    """An attached source: a few batches per take, some of them marked ``bad``; it counts what
    it handed over and what the database told it was lost."""

    def __init__(self, name: str, bad: object, takes: int) -> None:
        self.name, self.bad = name, bad
        self.plan: Iterator[list[SiteBatch]] = self._plan(takes)
        self.produced = self.lost = self.bad_rows = 0
        self.done = False  # every batch was handed over

    def _plan(self, takes: int) -> Iterator[list[SiteBatch]]:
        row = 0
        for take in range(takes):
            batches = []
            for k, rows in enumerate((40, 7, 23)):
                bad = take % 3 == 1 and k == 1  # between two good batches of the same cycle
                batches.append(_site_batch(self.bad if bad else self.name, rows, row))
                self.produced += rows
                self.bad_rows += rows if bad else 0
                row += rows
            yield batches

    def __call__(self) -> list[SiteBatch]:
        batches = next(self.plan, None)
        self.done = batches is None
        return batches or []

    def on_loss(self, rows: int) -> None:
        self.lost += rows


def _held(db: Database, name: str) -> int:
    stats = db.stats(name)
    return 0 if stats is None else stats.count


def _drain(db: Database, producer: Producer, other: list[SpanBatch]) -> bool:
    """Attach ``producer``, append ``other`` meanwhile, until the producer runs dry; True if
    every flush said all was well."""
    clean = True
    db.attach_source(producer, interval=0.01, on_loss=producer.on_loss)
    for batch in other:
        db.append_batch(batch)
        clean = db.flush() and clean
    while not producer.done:  # each flush takes from the producer once more
        clean = db.flush() and clean
    db.detach_source(producer)
    return clean


def _appended(n: int, first: int, *, bad: bool = False) -> SpanBatch:
    batch = SpanBatch.build(["appended"] * n, BASE + first + np.arange(n), np.arange(n) + 1)
    if bad:  # made past validation: its columns disagree in length
        return dataclasses.replace(batch, duration=batch.duration[:-1])
    return batch


def test_a_batch_that_cannot_be_coded_is_lost_alone_and_told_to_its_source(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    producer = Producer("good", None, takes=9)  # None where a name must be a str
    other = [_appended(30, 10**6 + 100 * k, bad=k == 2) for k in range(5)]
    with Database(tmp_path, chunk_rows=64) as db:
        clean = _drain(db, producer, other)
        assert not clean  # the failures were reported by flush
        dropped = db.dropped
    with Database.open(tmp_path, readonly=True) as db:
        assert producer.lost == producer.bad_rows == 3 * 7
        assert _held(db, "good") == producer.produced - producer.lost
        assert _held(db, "appended") == 4 * 30  # the bad batch of the other producer alone
        assert dropped == producer.lost + 30
        assert db.functions() == ["appended", "good"]  # no text of a bad batch was stored
    [logged] = [r for r in caplog.records if "could not write a batch" in r.getMessage()]
    assert "holds None, not a str" in logged.getMessage()
    assert logged.exc_info is not None  # not an OSError: the traceback is what finds the cause


class _NoMemoryOnMarkedBatches(SegmentWriter):
    """A writer whose coding runs out of memory on the batches named ``oom``."""

    def add(self, batch: Any) -> None:
        if isinstance(batch, SiteBatch) and batch.names[0] == "oom":
            raise MemoryError
        super().add(batch)


class _SealBug(SegmentWriter):
    """A writer whose every seal raises while ``failing`` is set (a bug in the seal path)."""

    failing = True

    def _seal(self, rows: int) -> None:
        if _SealBug.failing:
            raise RuntimeError("a bug in the seal")
        super()._seal(rows)


@pytest.fixture
def writer_class(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def use(cls: type[SegmentWriter]) -> None:
        monkeypatch.setattr(database_module, "SegmentWriter", cls)

    yield use
    _SealBug.failing = True


def test_running_out_of_memory_while_coding_loses_only_that_batch(
    tmp_path: Path, writer_class: Any
) -> None:
    writer_class(_NoMemoryOnMarkedBatches)
    producer = Producer("good", "oom", takes=9)
    with Database(tmp_path, chunk_rows=64) as db:
        assert not _drain(db, producer, [])
        dropped = db.dropped
    with Database.open(tmp_path, readonly=True) as db:
        assert producer.lost == producer.bad_rows > 0
        assert _held(db, "good") == producer.produced - producer.lost
        assert dropped == producer.lost


def test_a_seal_that_keeps_raising_sheds_the_tail_and_tells_each_source(
    tmp_path: Path, writer_class: Any
) -> None:
    """Like a disk that stays full: the tail is given up once it holds four chunks; rows already
    in the tail log stay readable, the others are lost, told to their source; then the bug
    goes away and the writer stores again."""
    writer_class(_SealBug)
    producer = Producer("good", "good", takes=30)
    other = [_appended(50, 10**6 + 100 * k) for k in range(6)]
    with Database(tmp_path, chunk_rows=64) as db:
        db.attach_source(producer, interval=0.01, on_loss=producer.on_loss)
        for batch in other:
            db.append_batch(batch)
            db.flush()
        _SealBug.failing = False
        _drain(db, producer, [_appended(50, 2 * 10**6)])
        dropped = db.dropped
    with Database.open(tmp_path, readonly=True) as db:
        held_good, held_other = _held(db, "good"), _held(db, "appended")
        assert producer.lost > 0  # the case at hand: the bug cost rows
        assert held_good == producer.produced - producer.lost
        other_lost = 7 * 50 - held_other
        assert dropped == producer.lost + other_lost
