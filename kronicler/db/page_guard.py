"""A page in memory and the guard that is the only way to reach it (after BusTub).

A guard is a context manager bound to one page key. Entering it asks the pool for the page,
pinning it so it cannot be evicted nor counted as free; leaving unpins it. ``data`` is the page
itself, shared with every other reader and read-only (the pool makes numpy pages read-only when it
takes them; other page objects must be treated as read-only). Pages never change once loaded, so
no latch is needed: a pin is the whole protocol. A guard is entered once and released once; using
``data`` outside that window, entering twice or releasing twice raises RuntimeError, because each
of those is a bug that would otherwise corrupt the pin counts.
"""

from __future__ import annotations

from collections.abc import Hashable
from types import TracebackType
from typing import Any, Protocol

CACHED, ONE_OFF, DROPPED = "cached", "one-off", "dropped"


class Frame:
    """One page in memory. The owning pool's lock protects every field but ``data`` and
    ``nbytes``, which never change."""

    __slots__ = ("accounted", "data", "key", "nbytes", "pins", "state")

    def __init__(self, key: Hashable, data: Any, state: str) -> None:
        self.key = key
        self.data = data
        self.nbytes = int(data.nbytes)
        self.pins = 0
        self.state = state  # CACHED in the page table, ONE_OFF never cached, DROPPED left it
        self.accounted = False  # counted in the pool's bytes in use


class GuardedPool(Protocol):
    """What a guard needs from its pool."""

    def _fetch(self, key: Hashable, *, count: bool = True) -> Frame: ...
    def _unpin(self, frame: Frame) -> None: ...


class ReadGuard:
    """Shared, read-only access to a pinned page."""

    __slots__ = ("_count", "_frame", "_key", "_pool", "_state")

    def __init__(self, pool: GuardedPool, key: Hashable, *, count: bool = True) -> None:
        self._pool = pool
        self._key = key
        self._count = count  # whether this use counts as an access for the replacer
        self._state = "new"
        self._frame: Frame | None = None

    @property
    def key(self) -> Hashable:
        return self._key

    @property
    def data(self) -> Any:
        """The page: a read-only numpy array, or the object the loader gave."""
        if self._frame is None:
            raise RuntimeError(f"the guard of page {self._key!r} is {self._state}, not held")
        return self._frame.data

    @property
    def nbytes(self) -> int:
        """What the page costs the pool (while held)."""
        if self._frame is None:
            raise RuntimeError(f"the guard of page {self._key!r} is {self._state}, not held")
        return self._frame.nbytes

    def __enter__(self) -> ReadGuard:
        if self._state != "new":
            raise RuntimeError(f"the guard of page {self._key!r} was already entered")
        self._frame = self._pool._fetch(self._key, count=self._count)
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
        """Unpin the page (what leaving the ``with`` block does)."""
        frame, self._frame = self._frame, None
        if frame is None:
            raise RuntimeError(f"the guard of page {self._key!r} is {self._state}, not held")
        self._state = "released"
        self._pool._unpin(frame)


class PinnedPages:
    """Guards held together: the pages of one chunk, or the pages a query keeps using past the
    chunk that brought them. Pinned until ``release`` (or the end of the ``with`` block);
    ``nbytes`` is what they cost the pool."""

    __slots__ = ("_guards", "nbytes")

    def __init__(self) -> None:
        self._guards: list[ReadGuard] = []
        self.nbytes = 0

    def pin(self, pool: GuardedPool, key: Hashable, *, count: bool = True) -> Any:
        """Pin one more page and return its data (valid while this set holds it). ``count``
        False: the use does not count as an access for the replacer (a page read again as part
        of the same work, which should not look as used as a page every query reads)."""
        guard = ReadGuard(pool, key, count=count)
        guard.__enter__()
        self._guards.append(guard)
        self.nbytes += guard.nbytes
        return guard.data

    def move_to(self, other: PinnedPages) -> None:
        """Hand every pin to ``other``, which releases them from now on."""
        other._guards.extend(self._guards)
        other.nbytes += self.nbytes
        self._guards, self.nbytes = [], 0

    def release(self) -> None:
        """Unpin every page held (nothing if none are)."""
        guards, self._guards, self.nbytes = self._guards, [], 0
        for guard in reversed(guards):
            guard.release()

    def __len__(self) -> int:
        return len(self._guards)

    def __enter__(self) -> PinnedPages:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
