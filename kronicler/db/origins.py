"""Whose rows the segment writer still holds in memory, so that each loss is told to its owner.

A source attached to the database (the capture pipeline, :meth:`Database.attach_source`) counts
its own calls: stored or dropped, and the two must add up to what it recorded. The writer can
still lose rows after it took them (a full disk that outlasts the tail's bound, a segment that
cannot be closed, a batch it cannot code, any other exception on its thread), and only the writer
knows how many. Instead of the source reading the
database's total loss counter and reconciling it against a base (which mixes in rows of every
other producer), the writer reports each loss to the callback the rows came with.

The writer's tail is first in, first out: rows are added at the end, sealed into chunks from the
front, and a loss always takes the newest rows (those not yet in the tail log). So the tail's
origins are a run-length list, ``[(on_loss, rows), ...]`` oldest first, kept in step with
``SegmentWriter.tail_rows``: O(batches) work per cycle, nothing per row.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from kronicler._record import record

LossCallback = Callable[[int], None]
"""Told the number of rows of its source that the writer lost (called on the writer thread)."""

B = TypeVar("B")


@record
class Tagged(Generic[B]):
    """A batch taken from an attached source, with the callback its losses are reported to."""

    batch: B
    on_loss: LossCallback | None

    def __len__(self) -> int:
        return len(self.batch)  # type: ignore[arg-type]


@dataclass(slots=True)
class _Run:
    on_loss: LossCallback | None
    rows: int


class TailOrigins:
    """Run-length origins of the rows in the writer's tail, oldest first (see module docstring).

    Only the writer thread uses it (and ``close`` once that thread has stopped): no lock.
    """

    __slots__ = ("_runs", "rows")

    def __init__(self) -> None:
        self._runs: deque[_Run] = deque()  # oldest first
        self.rows = 0

    def add(self, on_loss: LossCallback | None, rows: int) -> None:
        """``rows`` new rows at the end of the tail, from the source of ``on_loss``."""
        if rows <= 0:
            return
        self.rows += rows
        if self._runs and self._runs[-1].on_loss is on_loss:
            self._runs[-1].rows += rows
        else:
            self._runs.append(_Run(on_loss, rows))

    def keep_newest(self, rows: int) -> None:
        """The writer sealed rows from the front: only the newest ``rows`` are left in memory."""
        drop = self.rows - max(rows, 0)
        while drop > 0 and self._runs:
            run = self._runs[0]
            if run.rows > drop:
                run.rows -= drop
                self.rows -= drop
                return
            self._runs.popleft()
            self.rows -= run.rows
            drop -= run.rows

    def take_newest(self, rows: int) -> Iterator[tuple[LossCallback | None, int]]:
        """Remove the newest ``rows`` rows, yielding ``(on_loss, count)`` for each origin."""
        while rows > 0 and self._runs:
            run = self._runs[-1]
            taken = min(run.rows, rows)
            run.rows -= taken
            if not run.rows:
                self._runs.pop()
            self.rows -= taken
            rows -= taken
            yield run.on_loss, taken

    def clear(self) -> None:
        self._runs.clear()
        self.rows = 0
