"""Bounded cache of decoded pages (LRU by bytes); pages are reached through pinning guards."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class _ReadGuard:
    def __init__(self, pool: BufferPool, key: Hashable, data: Any) -> None:
        self._pool, self._key, self.data = pool, key, data

    def __enter__(self) -> _ReadGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool._unpin(self._key)


class BufferPool:
    def __init__(self, capacity_bytes: int, *, load: Callable[[Any], Any]) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self._load = load
        # _lock protects _pages, _pins and _bytes.
        self._lock = threading.Lock()
        self._pages: OrderedDict[Any, Any] = OrderedDict()
        self._pins: dict[Any, int] = {}
        self._bytes = 0

    def read_page(self, key: Any) -> _ReadGuard:
        with self._lock:
            data = self._pages.get(key)
            if data is not None:
                self._pages.move_to_end(key)
                self._pins[key] = self._pins.get(key, 0) + 1
                return _ReadGuard(self, key, data)
        data = self._load(key)
        with self._lock:
            if key not in self._pages:
                self._pages[key] = data
                self._bytes += int(data.nbytes)
            self._pins[key] = self._pins.get(key, 0) + 1
            self._evict()
            return _ReadGuard(self, key, self._pages.get(key, data))

    def _unpin(self, key: Any) -> None:
        with self._lock:
            left = self._pins.get(key, 1) - 1
            if left:
                self._pins[key] = left
            else:
                self._pins.pop(key, None)
            self._evict()

    def _evict(self) -> None:
        for key in list(self._pages):
            if self._bytes <= self.capacity_bytes:
                return
            if key not in self._pins:
                self._bytes -= int(self._pages.pop(key).nbytes)

    def drop(self, predicate: Callable[[Any], bool]) -> None:
        with self._lock:
            for key in [k for k in self._pages if predicate(k)]:
                self._bytes -= int(self._pages.pop(key).nbytes)
