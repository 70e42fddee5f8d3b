"""Read views a node holds for a cluster question between its rounds.

A frontend asks some questions in several rounds of ``Partial`` (a series: the time range, then
the cells; anomalies: the range, both windows, the exemplars; explain: up to five). Answered from
a fresh snapshot each, the rounds disagree while data arrives: explain would count calls under a
threshold computed over other calls, a series would bucket rows outside the range it was given.
So the frontend names the question (``QuestionView``) and the node keeps the ``db.snapshot()``
view of the question's first round for the later ones: every round reads the same rows.

Bounds, because a view pins its segments (their files stay open, and a compaction's old segments
are deleted only once no view holds them) and sees no newer data:

- at most :data:`MAX_HELD` views per database; a first round beyond that is refused
  (``LimitExceededError``, RESOURCE_EXHAUSTED) rather than answered from a snapshot that the
  next round would not see;
- each view until its question's deadline (``hold_ms``, renewed by every round, capped at
  :data:`MAX_HOLD_S`), or its last round, whichever comes first; a sweeper thread closes expired
  views even when no request arrives;
- a later round whose view is gone (expired, closed, the node restarted) fails with
  ``KroniclerError`` (FAILED_PRECONDITION): the frontend names the node missing, never merging
  an answer from another snapshot.

A held question may also keep what one round computed for a later one (``memo_put``):
explain's calls, split under the agreed threshold, so its details round does not scan again.
Memos are bounded by :data:`MAX_MEMO_ROWS` rows over all held questions of a database and freed
with the view.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kronicler.errors import KroniclerError, LimitExceededError

if TYPE_CHECKING:
    from kronicler.db.view import ReadAPI, ReadView
    from kronicler.proto.v1 import query_pb2 as pb

#: Views one database holds for questions at once.
MAX_HELD = 64
#: Longest a view is held after a round, whatever the frontend asks.
MAX_HOLD_S = 120.0
#: Rows kept in memos over all the questions held on one database: explain's calls take ~230
#: bytes each with their attributes and children (bench_explain's workload), so ~230 MB at most.
MAX_MEMO_ROWS = 1_000_000


@dataclass
class Held:
    """One question's view, its expiry (the table's clock) and its memos."""

    question_id: bytes
    view: ReadView
    ends: float
    memos: dict[Hashable, tuple[int, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards memos


class HeldViews:
    """The views held for one database's questions, by question id (thread-safe).

    ``clock``: seconds, monotonic; passed in so tests can move time.
    """

    def __init__(
        self,
        *,
        max_held: int = MAX_HELD,
        max_hold: float = MAX_HOLD_S,
        memo_rows: int = MAX_MEMO_ROWS,
        clock: Callable[[], float] = time.monotonic,
        sweep: bool = True,
    ) -> None:
        self.max_held, self.max_hold, self.memo_rows = max_held, max_hold, memo_rows
        self._clock = clock
        self._sweep = sweep
        self._cond = threading.Condition()  # guards everything below
        self._held: dict[bytes, Held] = {}
        self._memo_used = 0
        self._sweeper: threading.Thread | None = None

    def __len__(self) -> int:
        with self._cond:
            return len(self._held)

    def view(self, db: ReadAPI, q: pb.QuestionView) -> Held:
        """The view of question ``q``: taken of ``db`` on its first round, else the one held."""
        qid = bytes(q.question_id)
        if not 1 <= len(qid) <= 64:
            raise ValueError(f"a question id has 1 to 64 bytes, got {len(qid)}")
        hold = min(max(q.hold_ms, 1) / 1000.0, self.max_hold)
        with self._cond:
            self._expire()
            held = self._held.get(qid)
            if held is None:
                if not q.first_round:
                    raise KroniclerError(
                        "this node no longer holds the view of the question (it expired or the "
                        "node restarted); ask again"
                    )
                if len(self._held) >= self.max_held:
                    raise LimitExceededError(
                        f"this node holds the views of {len(self._held)} questions, the limit "
                        f"of {self.max_held}; ask again later"
                    )
                held = Held(qid, db.snapshot(), 0.0)
                self._held[qid] = held
            held.ends = max(held.ends, self._clock() + hold)
            if self._sweep and self._sweeper is None:
                self._sweeper = threading.Thread(
                    target=self._run_sweeper, name="kronicler-held-views", daemon=True
                )
                self._sweeper.start()
            self._cond.notify_all()
            return held

    def memo_get(self, held: Held, key: Hashable) -> Any:
        """What :meth:`memo_put` kept under ``key``, or None."""
        with held.lock:
            found = held.memos.get(key)
        return None if found is None else found[1]

    def memo_put(self, held: Held, key: Hashable, rows: int, value: Any) -> bool:
        """Keep ``value`` under ``key`` when its ``rows`` fit; whether it was kept."""
        with self._cond, held.lock:
            alive = self._held.get(held.question_id) is held
            if not alive or key in held.memos or self._memo_used + rows > self.memo_rows:
                return False
            held.memos[key] = (rows, value)
            self._memo_used += rows
            return True

    def release(self, question_id: bytes) -> None:
        """Close the question's view and free its memos (nothing when none is held)."""
        with self._cond:
            held = self._held.pop(bytes(question_id), None)
            if held is not None:
                self._drop(held)

    def close(self) -> None:
        """Close every held view."""
        with self._cond:
            for held in self._held.values():
                self._drop(held)
            self._held.clear()
            self._cond.notify_all()

    # ---- under self._cond ----------------------------------------------------------------------

    def _drop(self, held: Held) -> None:
        with held.lock:
            self._memo_used -= sum(rows for rows, _ in held.memos.values())
            held.memos.clear()
        held.view.close()

    def _expire(self) -> None:
        now = self._clock()
        for qid in [q for q, h in self._held.items() if h.ends <= now]:
            self._drop(self._held.pop(qid))

    def _run_sweeper(self) -> None:
        with self._cond:
            while self._held:
                self._expire()
                if not self._held:
                    break
                wait = min(h.ends for h in self._held.values()) - self._clock()
                self._cond.wait(timeout=max(wait, 0.0) + 0.01)
            self._sweeper = None


_tables: weakref.WeakKeyDictionary[Any, HeldViews] = weakref.WeakKeyDictionary()
_tables_lock = threading.Lock()


def held_views(db: ReadAPI) -> HeldViews:
    """The table of views held for ``db``'s questions (one per database, made on first use;
    it refers to ``db`` only through the views it holds, so a closed database is collected once
    they are released)."""
    with _tables_lock:
        table = _tables.get(db)
        if table is None:
            table = _tables[db] = HeldViews()
        return table
