"""The tail log: rows not yet sealed into a chunk, made durable every flush.

Pages are written a whole chunk (64k rows) at a time, but a process writing slowly must still make
its rows durable within a second. Those rows go to a per-segment log: each flush appends one record
holding the rows since the previous record (and any dictionary entries they introduced). When a
chunk is sealed the log is rewritten, atomically, with only the rows after it.

Each record carries the segment-wide row number of its first row, so a reader can tell which log rows
already live in sealed chunks (a crash between sealing a chunk and rewriting the log leaves them in
both places; the reader keeps the chunk's copy). A record torn by a crash fails its checksum; it and
anything after it are ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from struct import Struct
from typing import Final

import numpy as np
import zstandard

from kronicler.db import zstd
from kronicler.db.fileio import append_all, write_all
from kronicler.db.schema import COLUMNS, LATER_COLUMNS

MAGIC: Final = b"KWAL"
#: magic, first row number, rows, payload length, crc32 (of the fields before it and the payload)
RECORD = Struct("<4sQIII")
assert RECORD.size == 24
_CRC_AT: Final = RECORD.size - 4

_LEN = Struct("<I")


@dataclass(frozen=True, slots=True)
class WalRecord:
    """One decoded log record.

    Fields:
        first_row: segment-wide number of the record's first row.
        columns: physical column name -> array (dictionary codes for text columns).
        entries: dictionary name -> list of (code, text) first defined by this record.
    """

    first_row: int
    columns: dict[str, np.ndarray]
    entries: dict[str, list[tuple[int, str]]]

    def __len__(self) -> int:
        return len(self.columns["start"])


def encode_record(
    first_row: int, columns: dict[str, np.ndarray], entries: dict[str, list[tuple[int, str]]]
) -> bytes:
    rows = len(columns["start"])
    meta = json.dumps(entries, separators=(",", ":")).encode()
    parts = [_LEN.pack(len(meta)), meta]
    parts += [np.ascontiguousarray(columns[c], dtype=dt).tobytes() for c, dt in COLUMNS.items()]
    payload = zstd.compressor(1).compress(b"".join(parts))
    head = RECORD.pack(MAGIC, first_row, rows, len(payload), 0)[:_CRC_AT]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + crc.to_bytes(4, "little") + payload


def _decode_payload(first_row: int, rows: int, payload: bytes) -> WalRecord:
    raw = zstd.decompressor().decompress(payload)
    (meta_len,) = _LEN.unpack_from(raw, 0)
    entries = {
        k: [(int(code), str(text)) for code, text in v]
        for k, v in json.loads(raw[4 : 4 + meta_len]).items()
    }
    offset = 4 + meta_len
    columns: dict[str, np.ndarray] = {}
    for name, dtype in COLUMNS.items():
        if offset == len(raw) and rows and name in LATER_COLUMNS:
            # a record of an older schema: it ends before the columns added since
            columns[name] = np.zeros(rows, dtype=dtype)
            continue
        columns[name] = np.frombuffer(raw, dtype=dtype, count=rows, offset=offset)
        offset += rows * dtype.itemsize
    return WalRecord(first_row, columns, entries)


def read_records(path: Path) -> Iterator[WalRecord]:
    """Every valid record of the log (damaged ones skipped: see :func:`read_log`)."""
    yield from read_log(path).records


@dataclass(frozen=True, slots=True)
class WalLog:
    """What a read of the log found.

    Fields:
        records: the valid records, in file order. Rows missing between them (and before the
            first) belonged to damaged records: the reader, which knows where the log starts,
            counts them from the row numbers.
        trailing_rows: rows of a damaged last record (from its header), with no valid record
            after it. A record cut short by a crash at the end of the log was never durable and
            is neither counted nor reported as damage.
        damaged: how many damaged stretches were skipped.
    """

    records: tuple[WalRecord, ...]
    trailing_rows: int
    damaged: int


def _record_at(data: bytes, pos: int) -> tuple[WalRecord | None, bool, int, int]:
    """(record or None, magic ok, end offset, header row count) of the record at ``pos``."""
    magic, first_row, rows, length, crc = RECORD.unpack_from(data, pos)
    end = pos + RECORD.size + length
    if magic != MAGIC or end > len(data):
        return None, magic == MAGIC, end, rows
    payload = data[pos + RECORD.size : end]
    if zlib.crc32(payload, zlib.crc32(data[pos : pos + _CRC_AT])) != crc:
        return None, True, end, rows
    try:
        return _decode_payload(first_row, rows, payload), True, end, rows
    except (zstandard.ZstdError, ValueError, KeyError, TypeError, AttributeError):
        return None, True, end, rows


def read_log(path: Path) -> WalLog:
    """Every valid record of the log, stepping over damaged ones.

    After a record that fails its check, the next record is found by searching for the next
    record magic that starts a record passing its checksum (a chance match in a payload fails it).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return WalLog((), 0, 0)
    records: list[WalRecord] = []
    damaged = 0
    bad: tuple[bool, int, int] | None = None  # (magic ok, end, rows) of the damage being skipped
    pos = 0
    while pos + RECORD.size <= len(data):
        record, magic_ok, end, rows = _record_at(data, pos)
        if record is not None:
            damaged += bad is not None
            bad = None
            records.append(record)
            pos = end
            continue
        if bad is None:
            bad = (magic_ok, end, rows)
        nxt = data.find(MAGIC, pos + 1)
        if nxt < 0:
            break
        pos = nxt
    trailing = 0
    if bad is not None:
        magic_ok, end, rows = bad
        if end <= len(data):
            damaged += 1
            trailing = rows
        elif not magic_ok:
            damaged += 1  # garbage where a record should start: its rows cannot be known
        # else: a record whose extent passes the end of the file: an append cut short
    return WalLog(tuple(records), trailing, damaged)


class WalWriter:
    """Appends records to a segment's log; owned by the segment writer's thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size

    def append(self, record: bytes) -> None:
        append_all(self._fd, record, self._size)
        self._size += len(record)
        os.fdatasync(self._fd)

    def rewrite(self, record: bytes | None) -> None:
        """Atomically replace the log with ``record`` (or an empty log)."""
        tmp = self.path.with_suffix(".wal.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                if record:
                    write_all(fd, record)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:  # a full disk: the old log stays whole, the partial copy goes
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = len(record) if record else 0

    def close(self, *, remove: bool = False) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if remove:
            self.path.unlink(missing_ok=True)

    def abandon(self) -> None:
        """Forget the descriptor without touching the file (used in a forked child)."""
        try:
            os.close(self._fd)
        except OSError:
            pass
        self._fd = -1
