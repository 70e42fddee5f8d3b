"""A bounded cache of decoded pages, reached only through guards that pin them (after CMU BusTub).

The pool knows nothing of files: the storage engine passes in ``load(key) -> page`` (read and
decode one page). A page is a numpy array, or any object with an int ``nbytes`` (a decoded summary
block, say); its cost is that ``nbytes``. The pool keeps the sum of its pages within
``capacity_bytes``, whatever the size of the database, by evicting unpinned pages in the order its
replacer chooses (LRU-K by default, see :mod:`kronicler.db.replacer`).

Pages are reached only through guards (:mod:`kronicler.db.page_guard`):
``with pool.read_page(key) as g: g.data`` pins the page on enter (it cannot be evicted while held)
and unpins it on exit. ``data`` is shared with every other reader and read-only. Whoever keeps
anything of a page past its guard keeps a copy of its own (a ``take``, a mask, a merge): that copy
belongs to the query that made it, not to the cache.

What ``capacity_bytes`` bounds: every page the pool has handed out or keeps, pinned or not, so a
page a query still holds is never counted as free. A page is cached when it fits beside the pinned
pages (evicting unpinned ones as needed). One that does not (larger than the whole capacity, or
wanted while pins fill the pool) is served as a one-off: loaded, counted while a guard holds it,
never cached, released with its last guard. Refusing it instead would make a small pool unable to
answer at all; growing silently would hide it: ``bytes_in_use`` above ``capacity_bytes`` shows
exactly this case. Kronicler's queries pin one chunk's columns plus at most half the
capacity (see :mod:`kronicler.db.reads`), so a one-off means a pool smaller than about two chunks'
columns. An array being loaded exists before the pool can count it (one per loading thread).

Decision: a read-only pool; the write half (write guards, dirty pages, ``store`` write-back,
``new_page``/``flush_page``/``flush_all_pages``, a readers-writer latch per page) was removed.
Measured and checked reasons:

- Nothing writes a page after it is written. Segments are append-only: the writer encodes a chunk
  from its tail arrays and appends it once (``SegmentWriter._seal``); compaction writes a new
  segment and retention deletes whole ones. A dirty page would have no file region to go back to,
  so ``store`` had no caller in the database and the write half ran only in its own tests.
- Putting the writer's open pages in pool frames instead would not bound anything new: the open
  data is the tail, under one chunk of rows between seals (62 bytes a row decoded, about 4 MiB at
  65,536 rows; four chunks at most while the disk refuses writes), already bounded, and it lives
  in the writing process, usually not the one whose pool serves queries. Sharing one budget would let a burst of writes evict what queries
  re-read, and a write-back path would need the latch, dirty versions and write-back under the
  pool lock that made eviction re-entrant.
- Reads got cheaper: with no writer the per-page latch, the dirty/version bookkeeping and the
  lock-releasing write-back inside eviction go, and a cache hit (guard enter, ``data``, exit)
  costs about half as much: 3.9-4.5 us against 6.9-10.4 us before (CPU time, best of 9 runs of
  100,000 hits, old and new alternated three times on the same busy 2-core machine).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import asdict
from typing import Any

import numpy as np

from kronicler._record import record
from kronicler.db.page_guard import CACHED, DROPPED, ONE_OFF, Frame, ReadGuard
from kronicler.db.replacer import LRUKReplacer

PageKey = Hashable
#: A page: a numpy array, or any object with an int ``nbytes`` (e.g. a decoded summary block).
Page = Any
Loader = Callable[[Any], Page]

__all__ = ["BufferPool", "BufferPoolStats", "PageKey", "ReadGuard"]


@record
class BufferPoolStats:
    """A snapshot of the pool's counters.

    hits/misses count guard entries served from the cache or by a load; evictions count pages
    pushed out to make room; bytes_in_use counts every page the pool keeps or a guard holds
    (cached pages, one-offs and dropped pages while held); pinned_bytes is the part of it that
    guards hold right now.
    """

    hits: int
    misses: int
    evictions: int
    bytes_in_use: int
    pinned_bytes: int
    pages: int
    capacity_bytes: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class _PendingLoad:
    """A load in progress; threads missing the same page wait on ``done`` instead of loading."""

    __slots__ = ("done", "dropped", "error", "frame")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.frame: Frame | None = None
        self.error: BaseException | None = None
        self.dropped = False


class BufferPool:
    """Bounded, thread-safe cache of read-only pages; see the module docstring for the contract."""

    def __init__(
        self, capacity_bytes: int, *, load: Loader, replacer: LRUKReplacer | None = None
    ) -> None:
        if isinstance(capacity_bytes, bool) or not isinstance(capacity_bytes, int):
            raise ValueError(f"capacity_bytes must be an int, got {capacity_bytes!r}")
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be > 0, got {capacity_bytes}")
        self._capacity = capacity_bytes
        self._load = load
        self._replacer = replacer if replacer is not None else LRUKReplacer(2)
        # _lock protects the page table, pending loads, every frame's bookkeeping fields, the
        # byte counters and the statistics. It is never held while loading or waiting for a load.
        self._lock = threading.Lock()
        self._frames: dict[PageKey, Frame] = {}
        self._pending: dict[PageKey, _PendingLoad] = {}
        self._bytes = 0  # accounted frames: cached, and one-offs or dropped frames while pinned
        self._evictable_bytes = 0  # cached frames with no pins
        self._hits = self._misses = self._evictions = 0

    # -- the surface ------------------------------------------------------------------------------

    @property
    def capacity_bytes(self) -> int:
        return self._capacity

    def read_page(self, key: PageKey) -> ReadGuard:
        """A guard giving shared, read-only access to the page; pins on enter, unpins on exit."""
        return ReadGuard(self, key)

    def drop_page(self, key: PageKey) -> bool:
        """Forget a page (its segment is gone); True if it was cached.

        A pinned page leaves the table at once (new guards load it afresh) and its memory is
        released when its last guard exits. A load in progress is not cached when it lands.
        """
        with self._lock:
            return self._drop(key)

    def drop(self, predicate: Callable[[PageKey], bool]) -> int:
        """Drop every cached or loading page whose key satisfies ``predicate`` (called under
        the pool lock, so keep it cheap); returns how many cached pages were dropped."""
        with self._lock:
            keys = [k for k in (*self._frames, *self._pending) if predicate(k)]
            return sum(self._drop(k) for k in keys)

    @property
    def stats(self) -> BufferPoolStats:
        with self._lock:
            return BufferPoolStats(
                self._hits, self._misses, self._evictions, self._bytes,
                self._bytes - self._evictable_bytes, len(self._frames), self._capacity,
            )  # fmt: skip

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._frames

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    # -- fetching (called by guards) ------------------------------------------------------------

    def _fetch(self, key: PageKey, *, count: bool = True) -> Frame:
        """The page's frame, pinned: from the cache, from another thread's load, or loaded;
        ``count`` False: a cache hit is not recorded as an access (see PinnedPages.pin)."""
        while True:
            with self._lock:
                frame = self._frames.get(key)
                if frame is not None:
                    self._hits += 1
                    self._pin(frame, record=count)
                    return frame
                pending = self._pending.get(key)
                loading = pending is None
                if pending is None:
                    pending = self._pending[key] = _PendingLoad()
                    self._misses += 1
            if loading:
                return self._load_into(key, pending)
            pending.done.wait()
            with self._lock:
                if pending.error is not None:
                    raise pending.error
                frame = pending.frame
                if frame is not None and (frame.state == ONE_OFF or self._frames.get(key) is frame):
                    self._hits += 1
                    self._pin(frame, record=count)
                    return frame
            # The page was evicted or dropped before this thread woke: try again.

    def _load_into(self, key: PageKey, pending: _PendingLoad) -> Frame:
        """Run the loader outside the lock, then cache and pin the page."""
        try:
            page = _readonly(key, self._load(key))
            with self._lock:
                pinned = self._bytes - self._evictable_bytes
                if pending.dropped or pinned + page.nbytes > self._capacity:
                    frame = Frame(key, page, state=ONE_OFF)
                else:
                    frame = self._admit(key, page)
                self._pin(frame, record=False)  # admission counted this access already
                pending.frame = frame
            return frame
        except BaseException as exc:
            pending.error = exc
            raise
        finally:
            with self._lock:
                if self._pending.get(key) is pending:
                    del self._pending[key]
            pending.done.set()

    def _unpin(self, frame: Frame) -> None:
        with self._lock:
            frame.pins -= 1
            if frame.pins:
                return
            if frame.state == CACHED:
                self._evictable_bytes += frame.nbytes
                self._replacer.set_evictable(frame.key, True)
            elif frame.accounted:  # a one-off, or dropped while pinned: its memory is free now
                frame.accounted = False
                self._bytes -= frame.nbytes

    # -- bookkeeping (pool lock held) -------------------------------------------------------------

    def _admit(self, key: PageKey, page: Page) -> Frame:
        """Cache a page that fits beside the pinned pages, evicting as needed; returns it
        unpinned and evictable, its admission recorded as one access."""
        frame = Frame(key, page, state=CACHED)
        self._make_room(frame.nbytes)
        frame.accounted = True
        self._frames[key] = frame
        self._bytes += frame.nbytes
        self._evictable_bytes += frame.nbytes
        self._replacer.record_access(key)
        self._replacer.set_evictable(key, True)
        return frame

    def _make_room(self, need: int) -> None:
        """Evict unpinned pages until ``need`` more bytes fit."""
        while self._bytes + need > self._capacity:
            victim = self._replacer.evict()
            if victim is None:
                raise AssertionError("the replacer has no victim but the pool has unpinned pages")
            self._remove(self._frames[victim])
            self._evictions += 1

    def _remove(self, frame: Frame) -> None:
        """Take an unpinned cached frame, already out of the replacer, out of the pool."""
        del self._frames[frame.key]
        frame.state = DROPPED
        frame.accounted = False
        self._bytes -= frame.nbytes
        self._evictable_bytes -= frame.nbytes

    def _drop(self, key: PageKey) -> bool:
        pending = self._pending.get(key)
        if pending is not None:
            pending.dropped = True
        frame = self._frames.get(key)
        if frame is None:
            return False
        if frame.pins:
            self._replacer.set_evictable(key, True)  # remove() takes evictable frames only
            self._replacer.remove(key)
            del self._frames[key]
            frame.state = DROPPED  # still accounted until its last guard exits
        else:
            self._replacer.remove(key)
            self._remove(frame)
        return True

    def _pin(self, frame: Frame, *, record: bool) -> None:
        frame.pins += 1
        if frame.state == ONE_OFF and frame.pins == 1:  # counted while a guard holds it
            frame.accounted = True
            self._bytes += frame.nbytes
        if frame.state != CACHED:
            return
        if frame.pins == 1:
            self._evictable_bytes -= frame.nbytes
            self._replacer.set_evictable(frame.key, False)
        if record:
            self._replacer.record_access(frame.key)


def _readonly(key: PageKey, page: object) -> Page:
    """Check a loaded page and make a numpy one read-only in place (the pool owns it now)."""
    nbytes = getattr(page, "nbytes", None)
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
        raise ValueError(
            f"page {key!r} must be a numpy array or have an int nbytes, got {type(page).__name__}"
        )
    if isinstance(page, np.ndarray):
        page.flags.writeable = False
    return page
