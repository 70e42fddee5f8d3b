"""A page in memory and the guards that are the only way to reach its bytes (after BusTub).

A guard is a context manager bound to one page key. Entering it asks the pool for the page
(pinning it, so it cannot be evicted) and takes the page's readers-writer latch; leaving releases
both. ``ReadGuard.data`` is a read-only view shared with other readers (for a page that is not a
numpy array, the object itself, which readers must treat as read-only); ``WriteGuard.data`` is
the page itself, exclusive, and the pool marks the page dirty. A guard is entered once and released
once; using ``data`` outside that window, entering twice or releasing twice raises RuntimeError,
because each of those is a bug that would otherwise corrupt the pin counts.

The latch lets readers in whenever no writer holds it, even if a writer is waiting: a thread may
then nest read guards on one page without deadlocking itself, at the price that a writer can
wait while readers keep overlapping (pages are read far more often than written here).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Hashable
from types import TracebackType
from typing import Any, Protocol, TypeVar

import numpy as np

CACHED, ONE_OFF, DROPPED = "cached", "one-off", "dropped"


class PageLatch:
    """Readers-writer latch of one page. Its own condition protects its two fields."""

    __slots__ = ("_cond", "_readers", "_writer")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class Frame:
    """One page in memory. The owning pool's lock protects every field but ``data``, whose
    contents ``latch`` protects."""

    __slots__ = (
        "accounted", "data", "dirty", "key", "latch", "nbytes", "pins", "state", "tracked",
        "version",
    )  # fmt: skip

    def __init__(self, key: Hashable, data: Any, dirty: bool, state: str) -> None:
        self.key = key
        self.data = data
        self.nbytes = int(data.nbytes)
        self.pins = 0
        self.dirty = dirty
        self.version = 0  # bumped by every write guard; a write-back clears only its own version
        self.state = state  # CACHED in the page table, ONE_OFF never cached, DROPPED left it
        self.accounted = False  # counted in the pool's bytes in use
        self.tracked = False  # known to the pool's replacer
        self.latch = PageLatch()


class GuardedPool(Protocol):
    """What guards need from their pool."""

    def _fetch(self, key: Hashable) -> Frame: ...
    def _unpin(self, frame: Frame) -> None: ...
    def _begin_write(self, frame: Frame) -> None: ...
    def _end_write(self, frame: Frame) -> None: ...


_G = TypeVar("_G", bound="_Guard")


class _Guard(ABC):
    """Common life cycle of page guards: entered once, released once, data only in between."""

    __slots__ = ("_frame", "_key", "_pool", "_state", "_view")

    def __init__(self, pool: GuardedPool, key: Hashable) -> None:
        self._pool = pool
        self._key = key
        self._state = "new"
        self._frame: Frame | None = None
        self._view: Any = None

    @property
    def key(self) -> Hashable:
        return self._key

    @property
    def data(self) -> Any:
        """The page: a numpy array (read-only in a read guard) or the object the loader gave."""
        if self._state != "held":
            raise RuntimeError(f"the guard of page {self._key!r} is {self._state}, not held")
        return self._view

    def __enter__(self: _G) -> _G:
        if self._state != "new":
            raise RuntimeError(f"the guard of page {self._key!r} was already entered")
        frame = self._pool._fetch(self._key)
        try:
            self._view = self._acquire(frame)
        except BaseException:
            self._pool._unpin(frame)
            raise
        self._frame = frame
        self._state = "held"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Unlatch and unpin the page (what leaving the ``with`` block does)."""
        if self._state != "held" or self._frame is None:
            raise RuntimeError(f"the guard of page {self._key!r} is {self._state}, not held")
        frame, self._frame, self._view = self._frame, None, None
        self._state = "released"
        try:
            self._release(frame)
        finally:
            self._pool._unpin(frame)

    @abstractmethod
    def _acquire(self, frame: Frame) -> Any:
        """Take the page's latch; returns the view handed out as ``data``."""

    @abstractmethod
    def _release(self, frame: Frame) -> None:
        """Give the page's latch back."""


class ReadGuard(_Guard):
    """Shared access to a pinned page; ``data`` is a read-only view."""

    __slots__ = ()

    def _acquire(self, frame: Frame) -> Any:
        frame.latch.acquire_read()
        return readonly_view(frame.data)

    def _release(self, frame: Frame) -> None:
        frame.latch.release_read()


class WriteGuard(_Guard):
    """Exclusive access to a pinned page; ``data`` is writable and the page is dirty."""

    __slots__ = ()

    def _acquire(self, frame: Frame) -> Any:
        frame.latch.acquire_write()
        try:
            self._pool._begin_write(frame)
        except BaseException:
            frame.latch.release_write()
            raise
        return frame.data

    def _release(self, frame: Frame) -> None:
        try:
            self._pool._end_write(frame)
        finally:
            frame.latch.release_write()


def readonly_view(page: Any) -> Any:
    """A read-only view of a numpy page; other page objects are returned as they are."""
    if not isinstance(page, np.ndarray):
        return page
    view = page.view()
    view.flags.writeable = False
    return view
