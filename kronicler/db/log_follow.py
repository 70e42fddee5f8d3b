"""Following a segment's tail log: each read decodes only the records appended since the last.

A writer appends one record to its tail log per commit (several a second under ingest) and
replaces the whole log, atomically, when it seals a chunk. A reader that re-read the whole log
on every change would decompress up to a chunk's worth of rows per query, again and again
(measured: ~20 ms of a 45 ms GetStats under 100k spans/s of ingest). A :class:`LogFollower`
remembers where the last clean record it decoded ends; when the log is the same file, only
longer, it reads and decodes from there on.

"The same file" is checked by its inode and by its first record's header (which carries the
record's first row number and checksum): a rewrite moves the first row forward, so even a
rewrite that happens to reuse the old inode is told apart. Appends never change the bytes
before the end of the last record (a failed append is cut back to that end), so the records
already decoded stay valid. Anything unusual (a damaged record, a log not yet read cleanly)
reads the whole log with :func:`kronicler.db.wal.read_log`, which steps over damage and counts
it; the next clean read starts incremental following again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kronicler.db import wal


class LogFollower:
    """What one segment's tail log holds, re-read incrementally. Not thread-safe.

    After :meth:`read`: ``log`` is every valid record (as :func:`wal.read_log` gives), and
    ``appended`` is the records that read added after the previous ones, or None when the log
    was read whole (then ``log`` may hold fewer or other records than before).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.log = wal.WalLog((), 0, 0)
        self.appended: list[wal.WalRecord] | None = None
        self._sig: tuple[int, int, int] | None = None  # size, mtime, inode at the last read
        # Where the last valid record ends and the first record's header, when the log was read
        # cleanly from its start (no damage): only then may a later read resume at _end.
        self._end = 0
        self._head = b""

    @property
    def inode(self) -> int:
        """The inode of the log file last read (0: none)."""
        return self._sig[2] if self._sig else 0

    def read(self) -> bool:
        """Pick up the log's changes; True when it changed since the last read."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._reset(None)
        if (st.st_size, st.st_mtime_ns, st.st_ino) == self._sig:
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return self._reset(None)
        try:
            st = os.fstat(fd)  # the file read, whatever the path names by now
            sig = (st.st_size, st.st_mtime_ns, st.st_ino)
            follows = (
                self._end > 0
                and self._sig is not None
                and sig[2] == self._sig[2]
                and st.st_size >= self._end
                and os.pread(fd, len(self._head), 0) == self._head
            )
            start = self._end if follows else 0
            data = os.pread(fd, st.st_size - start, start) if st.st_size > start else b""
        finally:
            os.close(fd)
        records, end = _clean_records(data)
        if end < 0:  # damage: the whole log, damage stepped over and counted
            self._reset(sig)
            self.log = wal.read_log(self.path)
            return True
        if follows:
            self.appended = records
            self.log = wal.WalLog(self.log.records + tuple(records), 0, 0)
        else:
            self.appended = None
            self.log = wal.WalLog(tuple(records), 0, 0)
            self._head = bytes(data[: wal.RECORD.size]) if records else b""
        self._end = start + end if self._head else 0
        self._sig = sig
        return True

    def _reset(self, sig: tuple[int, int, int] | None) -> bool:
        changed = sig != self._sig
        self._sig, self._end, self._head = sig, 0, b""
        self.appended = None
        if sig is None:
            self.log = wal.WalLog((), 0, 0)
        return changed


def _clean_records(data: bytes) -> tuple[list[wal.WalRecord], int]:
    """The records ``data`` holds back to back, and where the last one ends; ``-1`` for the end
    when a record fails its check. A last record reaching past the end of ``data`` is an append
    in progress (or cut short by a crash: never acknowledged), left for the next read."""
    records: list[wal.WalRecord] = []
    pos = 0
    view = memoryview(data)
    while pos + wal.RECORD.size <= len(data):
        record, magic_ok, end, _ = wal._record_at(view, pos)
        if record is None:
            return records, (pos if magic_ok and end > len(data) else -1)
        records.append(record)
        pos = end
    return records, pos


#: Rows of room a rebuilt tail gets at least: a few commits' worth under ingest.
MIN_ROOM = 4096


class GrowingColumns:
    """Columns that grow by appending, each an array with spare room at its end.

    :meth:`take` returns views of the rows so far; later appends write only past them, so a view
    handed out earlier never changes. Appending ``m`` rows costs ``O(m)`` (amortised), where
    concatenating would copy every row again. :meth:`of` builds the columns from pieces with room
    to spare, so the first appends after a rebuild (a reader rebuilds its tail at every seal) do
    not copy the rows it just joined.
    """

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        self._rows = len(next(iter(columns.values()))) if columns else 0
        self._buf = dict(columns)

    @classmethod
    def of(cls, pieces: dict[str, list[np.ndarray]], dtypes: dict[str, np.dtype]) -> GrowingColumns:
        """Columns holding the pieces joined, each of dtype ``dtypes[c]``, with as much room
        again (at least :data:`MIN_ROOM` rows) for later appends."""
        rows = sum(len(p) for p in next(iter(pieces.values()), []))
        room = max(2 * rows, MIN_ROOM)
        grown = cls({c: np.empty(room, dtype=dtypes[c]) for c in pieces})
        grown._rows = 0
        grown.append(pieces)
        return grown

    def append(self, pieces: dict[str, list[np.ndarray]]) -> None:
        added = sum(len(p) for p in next(iter(pieces.values()), []))
        need = self._rows + added
        for c, parts in pieces.items():
            buf = self._buf[c]
            if need > len(buf) or not buf.flags.writeable:
                grown = np.empty(max(need, 2 * len(buf)), dtype=buf.dtype)
                grown[: self._rows] = buf[: self._rows]
                self._buf[c] = buf = grown
            at = self._rows
            for p in parts:
                buf[at : at + len(p)] = p
                at += len(p)
        self._rows = need

    def take(self) -> dict[str, np.ndarray]:
        return {c: b[: self._rows] for c, b in self._buf.items()}
