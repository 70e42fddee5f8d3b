"""The write queue: application threads hand batches to one background writer thread.

``put`` has two modes, one per kind of caller:

* ``block=False`` (the capture path, the OTLP receiver): never waits; when the queue already holds
  ``capacity_rows`` rows the item is refused and ``put`` returns False. The queue does not count a
  refusal as a loss: the caller still holds the item and decides (keep it and offer it again,
  answer "retry later", or count it as dropped).
* blocking (``Database.append``): waits until there is room (backpressure), at most ``timeout``
  seconds when one is given. A database API must not lose rows because its caller is fast.

Either way an item is taken whole or not at all. An item larger than the whole capacity is taken
when the queue is empty (its caller already holds it in memory), so no item can wait forever.
The writer thread takes everything queued at once, so it works in large, cheap steps however small
the batches.

A producer that must never wait (the capture path) can instead *attach* a source: a callable the
writer thread calls itself, every ``interval`` seconds and on every flush and close, which returns
the items to write. Then the records are handed over once (application thread -> the source's
buffer -> the writer), with no queue in between to fill up, refuse, split or retry; the source keeps
its own buffer bounded and counts what it drops.

Durability is tracked with sequence numbers: every accepted batch gets one; ``flush`` asks the writer
to commit and waits until the committed sequence reaches the one it saw (with sources attached a
flush takes a number of its own, so the cycle that satisfies it takes from them after the flush
began). The writer also commits on its own at least every ``flush_interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Generic, TypeVar

from kronicler._log import LogOnce

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CAPACITY_ROWS = 250_000  # ~25 MB of queued spans with every column set
DEFAULT_FLUSH_INTERVAL = 1.0


class WriteQueue(Generic[T]):
    """Bounded hand-off to a writer thread that calls ``consume(items)`` then ``commit()``.

    ``consume`` receives every item queued since its last call; ``commit`` must make them durable.
    Exceptions from either are logged (once per kind) and the items are counted in ``lost``: the
    queue cannot know which of them were stored, nor whom to tell, so a consumer that owes each
    producer its own count (the database, see :mod:`kronicler.db.origins`) catches them itself.
    """

    def __init__(
        self,
        consume: Callable[[list[T]], None],
        commit: Callable[[], None],
        *,
        size_of: Callable[[T], int] = len,  # type: ignore[assignment]
        capacity_rows: int = DEFAULT_CAPACITY_ROWS,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        name: str = "kronicler-writer",
    ) -> None:
        if capacity_rows <= 0:
            raise ValueError(f"capacity_rows must be positive, got {capacity_rows}")
        if flush_interval <= 0:
            raise ValueError(f"flush_interval must be positive, got {flush_interval}")
        self._consume = consume
        self._commit = commit
        self._size_of = size_of
        self.capacity_rows = capacity_rows
        self.flush_interval = flush_interval
        self._name = name
        # _lock protects every field below it.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)  # signalled when the writer empties the queue
        self._items: list[T] = []
        self._queued_rows = 0
        self._seq = 0  # sequence number of the last accepted item
        self._committed = 0  # every item up to this sequence number is durable
        self._flush_wanted = False
        self._closing = False
        self._thread: threading.Thread | None = None
        # source -> seconds between its takes
        self._sources: dict[Callable[[], Sequence[T]], float] = {}
        self.lost = 0  # rows whose consume raised
        self._log_once = LogOnce(log)

    def attach(self, source: Callable[[], Sequence[T]], *, interval: float) -> bool:
        """Have the writer call ``source()`` every ``interval`` seconds and on each flush/close.

        ``source`` returns the items to write now (it must not raise, block or call back into
        this queue). Attaching again changes the interval. False once the queue is closing.
        """
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        with self._lock:
            if self._closing:
                return False
            self._sources[source] = float(interval)
            if self._thread is None or not self._thread.is_alive():
                self._start()
            self._wake.notify()
        return True

    def detach(self, source: Callable[[], Sequence[T]]) -> None:
        """Stop calling ``source`` (what it still holds stays with it)."""
        with self._lock:
            self._sources.pop(source, None)

    def attached(self, source: Callable[[], Sequence[T]]) -> bool:
        """True while the writer takes from ``source`` (False after detach or close)."""
        with self._lock:
            return source in self._sources

    def put(self, item: T, *, block: bool = True, timeout: float | None = None) -> bool:
        """Queue ``item`` whole; False when it was not taken (nothing of it is queued).

        ``block=False`` returns at once when there is no room. Otherwise waits for room, at most
        ``timeout`` seconds (None: as long as it takes). Always False once the queue is closing.
        """
        rows = self._size_of(item)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._closing and not self._fits(rows):
                if not block:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if self._thread is None or not self._thread.is_alive():
                    self._start()  # the writer makes the room we wait for
                self._wake.notify()
                # Bounded waits: a writer thread that died must not leave us waiting forever.
                self._room.wait(1.0 if remaining is None else min(remaining, 1.0))
            if self._closing:
                return False
            self._items.append(item)
            self._queued_rows += rows
            self._seq += 1
            if self._thread is None:
                self._start()
            elif self._queued_rows >= self.capacity_rows // 4:
                self._wake.notify()
        return True

    def _fits(self, rows: int) -> bool:
        return self._queued_rows == 0 or self._queued_rows + rows <= self.capacity_rows

    @property
    def running(self) -> bool:
        """True while the writer thread runs (after ``close``: still finishing its work)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending_rows(self) -> int:
        """Rows queued and not yet taken by the writer thread."""
        with self._lock:
            return self._queued_rows

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before the call is durable; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._sources:
                self._seq += 1  # whatever the sources hold now is taken by a cycle after this
            target = self._seq
            if self._committed >= target:
                return True
            if self._thread is None:
                self._start()
            self._flush_wanted = True
            self._wake.notify()
            while self._committed < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if self._thread is None or not self._thread.is_alive():
                    return False
                self._done.wait(remaining if remaining is not None else 1.0)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush, stop the writer thread; later puts are refused. Idempotent."""
        ok = self.flush(timeout)
        with self._lock:
            self._closing = True
            self._wake.notify()
            self._room.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return ok

    def _run(self) -> None:
        next_commit = time.monotonic() + self.flush_interval
        next_take = time.monotonic()
        while True:
            with self._lock:
                take_every = min(self._sources.values(), default=None)
                while not (self._items or self._flush_wanted or self._closing):
                    due = next_commit if take_every is None else min(next_commit, next_take)
                    wait = due - time.monotonic()
                    if wait <= 0:
                        break
                    self._wake.wait(wait)
                    take_every = min(self._sources.values(), default=None)
                items, self._items = self._items, []
                self._queued_rows = 0
                if items:
                    self._room.notify_all()
                seq = self._seq
                want_commit = self._flush_wanted or self._closing
                self._flush_wanted = False
                closing = self._closing and not items
                sources = list(self._sources)
                if closing:
                    self._sources.clear()  # this is their last take
            now = time.monotonic()
            if sources and (want_commit or now >= next_take):
                for source in sources:
                    # Outside the lock: a source converts its records here, and producers
                    # must be able to put meanwhile.
                    items.extend(self._take(source))
                next_take = now + (take_every or 0.0)
            if items:
                rows = sum(map(self._size_of, items))
                self._guard("write", partial(self._consume, items), rows)
            now = time.monotonic()
            if want_commit or now >= next_commit:
                self._guard("commit", self._commit, 0)
                next_commit = now + self.flush_interval
                with self._lock:
                    self._committed = max(self._committed, seq)
                    self._done.notify_all()
            if closing:
                return

    def _take(self, source: Callable[[], Sequence[T]]) -> Sequence[T]:
        try:
            return source()
        except Exception as exc:  # a source must not raise; if it does, it kept its records
            self._log_once("take", logging.ERROR, "kronicler could not take records from %r: %s",
                           source, exc, exc_info=True, loss=True)  # fmt: skip
            return []

    def _guard(self, what: str, fn: Callable[[], None], items: int) -> None:
        try:
            fn()
        except Exception as exc:  # the writer thread must survive a full disk or a bad directory
            self.lost += items
            self._log_once(what, logging.ERROR, "kronicler could not %s spans: %s", what, exc,
                           exc_info=True, loss=True)  # fmt: skip
