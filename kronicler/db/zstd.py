"""Per-thread zstandard contexts.

A ``ZstdCompressor`` or ``ZstdDecompressor`` must not be used by two threads at once (python-
zstandard says so; sharing one crashed processes with two writer threads, or compaction beside
a writer, and wrote corrupt pages). Creating a context costs tens of microseconds, too much per
page, so each thread keeps its own, made on first use.
"""

from __future__ import annotations

import threading

import zstandard

_local = threading.local()


def compressor(level: int) -> zstandard.ZstdCompressor:
    """This thread's compressor at ``level``."""
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    found = cache.get(level)
    if found is None:
        found = cache[level] = zstandard.ZstdCompressor(level=level)
    return found


def decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor."""
    found: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if found is None:
        found = _local.decompressor = zstandard.ZstdDecompressor()
    return found
