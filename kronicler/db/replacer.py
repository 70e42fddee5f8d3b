"""Which cached page to evict next: LRU-K (O'Neil, O'Neil & Weikum, SIGMOD 1993), K = 2 by default.

LRU-K evicts the frame whose K-th most recent access lies furthest in the past (its "backward
K-distance"); frames seen fewer than K times have an infinite distance and go first, oldest first
access first. We pick it over plain LRU and over CLOCK for the way Kronicler reads: a query that
scans a long time range touches hundreds of pages once each, and under LRU or CLOCK that sweep
would push out the pages every dashboard refresh re-reads (recent pages, range edges). Under
LRU-K a page touched once stays "young" and is the first to go, while pages touched twice or more
keep their place. The cost is K timestamps per frame and a heap instead of CLOCK's single bit,
which is noise next to decoding a page.

The surface follows CMU BusTub's replacer: ``record_access``, ``set_evictable``, ``evict``,
``remove``, ``size``. Frames are identified by any hashable id; a frame is born non-evictable.
Eviction is O(log n): evictable frames sit in a heap keyed by (has K accesses, oldest remembered
access); stale heap entries are skipped lazily and the heap is rebuilt when they pile up.
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from collections.abc import Hashable


class _History:
    """Access times of one frame (the last K of them) and whether it may be evicted."""

    __slots__ = ("evictable", "stamp", "times")

    def __init__(self, k: int) -> None:
        self.times: deque[int] = deque(maxlen=k)
        self.evictable = False
        self.stamp = 0  # matches the frame's one live heap entry


class LRUKReplacer:
    """Thread-safe LRU-K replacement policy over hashable frame ids."""

    def __init__(self, k: int = 2) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        self._k = k
        # _lock protects every field below: the frames, the heap, the clock and the counters.
        self._lock = threading.Lock()
        self._frames: dict[Hashable, _History] = {}
        self._heap: list[tuple[int, int, int, Hashable]] = []  # (full, oldest time, stamp, id)
        self._clock = 0
        self._stamps = 0
        self._evictable = 0

    @property
    def k(self) -> int:
        return self._k

    def record_access(self, frame_id: Hashable) -> None:
        """Note an access to ``frame_id`` (registering it, non-evictable, if new)."""
        with self._lock:
            self._clock += 1
            history = self._frames.get(frame_id)
            if history is None:
                history = self._frames[frame_id] = _History(self._k)
            history.times.append(self._clock)
            if history.evictable:
                self._push(frame_id, history)

    def set_evictable(self, frame_id: Hashable, evictable: bool) -> None:
        """Allow or forbid evicting ``frame_id``; KeyError if the frame was never accessed."""
        with self._lock:
            history = self._frames.get(frame_id)
            if history is None:
                raise KeyError(f"frame {frame_id!r} is not tracked by the replacer")
            if history.evictable == evictable:
                return
            history.evictable = evictable
            if evictable:
                self._evictable += 1
                self._push(frame_id, history)
            else:
                self._evictable -= 1
                history.stamp = -1  # invalidates its heap entry

    def evict(self) -> Hashable | None:
        """Forget and return the evictable frame with the largest backward K-distance, or None."""
        with self._lock:
            while self._heap:
                _, _, stamp, frame_id = heapq.heappop(self._heap)
                history = self._frames.get(frame_id)
                if history is not None and history.evictable and history.stamp == stamp:
                    del self._frames[frame_id]
                    self._evictable -= 1
                    return frame_id
            return None

    def remove(self, frame_id: Hashable) -> None:
        """Forget an evictable frame (its page was dropped). Unknown ids are ignored;
        a non-evictable (pinned) frame raises ValueError."""
        with self._lock:
            history = self._frames.get(frame_id)
            if history is None:
                return
            if not history.evictable:
                raise ValueError(f"frame {frame_id!r} is not evictable and cannot be removed")
            del self._frames[frame_id]
            self._evictable -= 1

    def size(self) -> int:
        """Number of evictable frames."""
        with self._lock:
            return self._evictable

    def __len__(self) -> int:
        return self.size()

    def _push(self, frame_id: Hashable, history: _History) -> None:
        """Give an evictable frame a fresh heap entry (lock held)."""
        self._stamps += 1
        history.stamp = self._stamps
        full = 1 if len(history.times) == self._k else 0
        heapq.heappush(self._heap, (full, history.times[0], self._stamps, frame_id))
        if len(self._heap) > 2 * self._evictable + 64:
            self._heap = [
                (1 if len(h.times) == self._k else 0, h.times[0], h.stamp, fid)
                for fid, h in self._frames.items()
                if h.evictable
            ]
            heapq.heapify(self._heap)
