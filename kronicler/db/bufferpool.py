"""A bounded cache of decoded pages, reached only through guards that pin them (after CMU BusTub).

The pool knows nothing of files: the storage engine passes in ``load(key) -> page`` (read and
decode one page) and, if pages can change, ``store(key, page)`` (encode and write one back).
A page is a numpy array, or any object with an int ``nbytes`` (a decoded summary block, say);
its cost is that ``nbytes``; the pool keeps the sum of cached pages within ``capacity_bytes``,
whatever the size of the database, by evicting unpinned pages in the order its replacer chooses
(LRU-K by default, see :mod:`kronicler.db.replacer`).

Pages are reached only through guards (:mod:`kronicler.db.page_guard`):
``with pool.read_page(key) as g: g.data`` pins the page on enter (it cannot be evicted while held)
and unpins it on exit. A read guard's ``data`` is a read-only view shared with other readers; a
write guard's is writable, exclusive (a per-page readers-writer latch), and marks the page dirty
so it is written back through ``store`` before eviction and by ``flush_page``/``flush_all_pages``.

Trade-offs and choices:

- Loads and write-backs run outside the pool lock, so one slow disk read does not block hits on
  other pages. Two threads missing the same page share one load: the first registers a pending
  load, the others wait on it.
- When every cached page is pinned and a new page does not fit, the pool raises
  :class:`~kronicler.errors.BufferPoolFullError` instead of growing.
- A page larger than the whole capacity is served as a one-off: loaded, handed to the guard, not
  cached and not counted (it could never fit); a dirty one-off is written through on release.
  Refusing it instead would make a small pool unable to read a large page at all.
- ``bytes_in_use`` counts cached pages, plus pages dropped while still pinned until their last
  guard is released. An array being loaded exists before the pool can count it, so peak memory
  is the capacity plus the pages in flight (at most one per loading thread).
- Dropping a page (retention) discards it without writing it back, even if dirty.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kronicler.db.page_guard import (
    CACHED,
    DROPPED,
    ONE_OFF,
    Frame,
    ReadGuard,
    WriteGuard,
    readonly_view,
)
from kronicler.db.replacer import LRUKReplacer
from kronicler.errors import BufferPoolFullError

PageKey = Hashable
#: A page: a numpy array, or any object with an int ``nbytes`` (e.g. a decoded summary block).
Page = Any
Loader = Callable[[Any], Page]
Storer = Callable[[Any, Page], None]

__all__ = ["BufferPool", "BufferPoolStats", "PageKey", "ReadGuard", "WriteGuard"]


@dataclass(frozen=True, slots=True)
class BufferPoolStats:
    """A snapshot of the pool's counters.

    hits/misses count guard entries served from the cache or by a load; evictions count pages
    pushed out to make room; write_backs count calls of ``store``.
    """

    hits: int
    misses: int
    evictions: int
    write_backs: int
    bytes_in_use: int
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
    """Bounded, thread-safe page cache; see the module docstring for the contract."""

    def __init__(
        self,
        capacity_bytes: int,
        *,
        load: Loader,
        store: Storer | None = None,
        replacer: LRUKReplacer | None = None,
    ) -> None:
        if isinstance(capacity_bytes, bool) or not isinstance(capacity_bytes, int):
            raise ValueError(f"capacity_bytes must be an int, got {capacity_bytes!r}")
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be > 0, got {capacity_bytes}")
        self._capacity = capacity_bytes
        self._load = load
        self._store = store
        self._replacer = replacer if replacer is not None else LRUKReplacer(2)
        # _lock protects the page table, pending loads, every frame's bookkeeping fields, the
        # byte counters and the statistics. It is never held while loading, storing or waiting
        # for a page latch, and never taken while holding a latch's condition.
        self._lock = threading.Lock()
        self._frames: dict[PageKey, Frame] = {}
        self._pending: dict[PageKey, _PendingLoad] = {}
        self._bytes = 0  # accounted frames (cached, or dropped while pinned)
        self._evictable_bytes = 0  # cached frames with no pins
        self._hits = self._misses = self._evictions = self._write_backs = 0

    # -- the surface ------------------------------------------------------------------------------

    @property
    def capacity_bytes(self) -> int:
        return self._capacity

    def read_page(self, key: PageKey) -> ReadGuard:
        """A guard giving shared, read-only access to the page; pins on enter."""
        return ReadGuard(self, key)

    def write_page(self, key: PageKey) -> WriteGuard:
        """A guard giving exclusive, writable access; the page becomes dirty on enter."""
        self._require_store("write_page")
        return WriteGuard(self, key)

    def new_page(self, key: PageKey, array: Page, *, dirty: bool = True) -> WriteGuard:
        """Put a page the caller built into the pool (the pool takes ownership of ``array``).

        With ``dirty=True`` (the default) it will be written through ``store`` before it leaves
        the pool; ``dirty=False`` only fills the cache with a page already stored. Returns an
        unentered write guard on it. ValueError if the page is already cached or loading.
        """
        _check_page(key, array)
        if dirty:
            self._require_store("new_page")
        with self._lock:
            if key in self._frames or key in self._pending:
                raise ValueError(f"page {key!r} is already in the buffer pool")
            if array.nbytes > self._capacity:
                pending = None
            else:
                pending = self._pending[key] = _PendingLoad()
                try:
                    pending.frame = self._admit(key, array, dirty=dirty)
                finally:
                    del self._pending[key]
                    pending.done.set()
                if pending.dropped:  # dropped while _admit wrote back a victim
                    self._drop(key)
        if pending is None and dirty:  # too large to cache: write it through now
            self._call_store(key, array)
        return WriteGuard(self, key)

    def flush_page(self, key: PageKey) -> bool:
        """Write the page back if it is cached and dirty; True if it was written."""
        with self._lock:
            frame = self._frames.get(key)
            if frame is None or not frame.dirty:
                return False
            self._pin(frame, record=False)
        try:
            self._write_back(frame)
        finally:
            self._unpin(frame)
        return True

    def flush_all_pages(self) -> int:
        """Write back every dirty cached page; returns how many were written."""
        with self._lock:
            dirty = [key for key, frame in self._frames.items() if frame.dirty]
        return sum(self.flush_page(key) for key in dirty)

    def drop_page(self, key: PageKey) -> bool:
        """Forget a page without writing it back (retention); True if it was cached.

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
                self._hits, self._misses, self._evictions, self._write_backs,
                self._bytes, len(self._frames), self._capacity,
            )  # fmt: skip

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._frames

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    # -- fetching (called by guards) ------------------------------------------------------------

    def _fetch(self, key: PageKey) -> Frame:
        """The page's frame, pinned: from the cache, from another thread's load, or loaded."""
        while True:
            with self._lock:
                frame = self._frames.get(key)
                if frame is not None:
                    self._hits += 1
                    self._pin(frame)
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
                    self._pin(frame)
                    return frame
            # The page was evicted or dropped before this thread woke: try again.

    def _load_into(self, key: PageKey, pending: _PendingLoad) -> Frame:
        """Run the loader outside the lock, then cache and pin the page."""
        try:
            array = self._load(key)
            _check_page(key, array)
            with self._lock:
                if pending.dropped or array.nbytes > self._capacity:
                    frame = Frame(key, array, dirty=False, state=ONE_OFF)
                else:
                    frame = self._admit(key, array, dirty=False)
                self._pin(frame, record=False)  # admission already counted this access
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

    # -- bookkeeping (pool lock held unless said otherwise) ----------------------------------------

    def _admit(self, key: PageKey, array: Page, *, dirty: bool) -> Frame:
        """Cache a page that fits the capacity, evicting as needed; returns it unpinned, with
        its admission recorded as one access."""
        frame = Frame(key, array, dirty=dirty, state=CACHED)
        self._make_room(frame.nbytes)
        frame.accounted = True
        self._frames[key] = frame
        self._bytes += frame.nbytes
        self._evictable_bytes += frame.nbytes
        self._track(frame)
        self._replacer.set_evictable(key, True)
        return frame

    def _make_room(self, need: int) -> None:
        """Evict unpinned pages until ``need`` more bytes fit. Writing back a dirty victim
        releases the lock meanwhile, so callers must not rely on state read before the call."""
        while self._bytes + need > self._capacity:
            pinned = self._bytes - self._evictable_bytes
            if pinned + need > self._capacity:
                raise BufferPoolFullError(
                    f"a page of {need} bytes does not fit: {pinned} of the pool's "
                    f"{self._capacity} bytes are pinned"
                )
            victim = self._replacer.evict()
            if victim is None:
                raise AssertionError("the replacer has no victim but the pool has unpinned pages")
            frame = self._frames[victim]
            frame.tracked = False
            if frame.dirty:
                # Write it back first, holding a pin so it cannot vanish while the lock is free.
                frame.pins += 1
                self._evictable_bytes -= frame.nbytes
                self._lock.release()
                try:
                    self._write_back(frame)
                finally:
                    self._lock.acquire()
                    # Dropped, pinned or written to meanwhile (or the store failed): leave it.
                    leave = frame.state != CACHED or frame.pins > 1 or frame.dirty
                    if leave:
                        if frame.state == CACHED and not frame.tracked:
                            self._track(frame)
                        self._release_pin(frame)
                if leave:
                    continue
                frame.pins = 0
                self._evictable_bytes += frame.nbytes
                self._untrack(frame)  # a guard may have come and gone during the write
            self._remove(frame)
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
        self._untrack(frame)
        if frame.pins:
            del self._frames[key]
            frame.state = DROPPED  # still accounted until its last guard exits
        else:
            self._remove(frame)
        return True

    def _track(self, frame: Frame) -> None:
        """Record an access; the replacer registers the frame (non-evictable) if it is new."""
        self._replacer.record_access(frame.key)
        frame.tracked = True

    def _untrack(self, frame: Frame) -> None:
        if frame.tracked:
            self._replacer.set_evictable(frame.key, True)  # remove() takes evictable frames
            self._replacer.remove(frame.key)
            frame.tracked = False

    def _pin(self, frame: Frame, *, record: bool = True) -> None:
        """Pin a frame. A cached frame is always tracked here unless _make_room holds it, and
        then it is already pinned, so the 0 -> 1 transition can always reach the replacer."""
        frame.pins += 1
        if frame.state != CACHED:
            return
        if frame.pins == 1:
            self._evictable_bytes -= frame.nbytes
            self._replacer.set_evictable(frame.key, False)
        if record:
            self._track(frame)

    def _release_pin(self, frame: Frame) -> None:
        frame.pins -= 1
        if frame.pins:
            return
        if frame.state == CACHED:
            self._evictable_bytes += frame.nbytes
            self._replacer.set_evictable(frame.key, True)
        elif frame.accounted:  # dropped while pinned: its memory is free now
            frame.accounted = False
            self._bytes -= frame.nbytes

    # -- without the pool lock --------------------------------------------------------------------

    def _unpin(self, frame: Frame) -> None:
        with self._lock:
            self._release_pin(frame)

    def _write_back(self, frame: Frame) -> None:
        """Store a pinned dirty frame under its shared latch; clear dirty unless a writer has
        entered since (its change is then still unwritten)."""
        frame.latch.acquire_read()
        try:
            with self._lock:
                version = frame.version
            self._call_store(frame.key, frame.data)
        finally:
            frame.latch.release_read()
        with self._lock:
            if frame.version == version:
                frame.dirty = False

    def _call_store(self, key: PageKey, array: Page) -> None:
        assert self._store is not None
        self._store(key, readonly_view(array))
        with self._lock:
            self._write_backs += 1

    def _begin_write(self, frame: Frame) -> None:
        """A write guard took the page's latch: the page is dirty from now on."""
        self._require_store("a write guard")
        with self._lock:
            frame.dirty = True
            frame.version += 1

    def _end_write(self, frame: Frame) -> None:
        """A write guard is leaving: a one-off page is never cached, so write it through now."""
        if frame.state == ONE_OFF:
            self._call_store(frame.key, frame.data)

    def _require_store(self, what: str) -> None:
        if self._store is None:
            raise ValueError(
                f"{what} needs a buffer pool built with store=...; this one is read-only"
            )


def _check_page(key: PageKey, page: object) -> None:
    nbytes = getattr(page, "nbytes", None)
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
        raise ValueError(
            f"page {key!r} must be a numpy array or have an int nbytes, got {type(page).__name__}"
        )
