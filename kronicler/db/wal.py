"""The tail log: rows not yet sealed into a chunk, made durable every flush.

Pages are written a whole chunk (64k rows) at a time, but a process writing slowly must still make
its rows durable within a second. Those rows go to a per-segment log: each flush appends one record
holding the rows since the previous record (and any dictionary entries they introduced). When a
chunk is sealed the log is rewritten, atomically, with only the rows after it.

Each record carries the segment-wide row number of its first row, so a reader can tell which log rows
already live in sealed chunks (a crash between sealing a chunk and rewriting the log leaves them in
both places; the reader keeps the chunk's copy). A record torn by a crash fails its checksum; it and
anything after it are ignored.

Records hold their columns raw, compressed by nothing but numpy: each integer column is stored as
``value - base`` in the fewest bytes (0, 1, 2 or 4) that hold its range within the record, else at
its own width, padded to 8 bytes; a CRC-32 covers the header and the payload. Every logged row is
encoded again when its chunk is sealed, and the log lives only until then (it is rewritten without
the sealed rows), so compressing it bought little and cost a second full encoding per row.
Narrowing keeps what compression mostly won: codes, kinds and statuses take a byte or nothing,
start times and durations four bytes; random ids stay eight. Measured side by side in one process
(thread CPU per row to encode, ``write`` and ``fdatasync`` a record of random-id rows, on a loaded
2-core VM): zstd level 1, the format before, ~250 ns (65,536 rows a record) to ~300 ns (8,192
rows) for ~40 bytes a row; raw at full width ~90 to ~130 ns for 66 bytes; narrowed ~85 to
~135 ns for 43 bytes. Below :data:`NARROW_FROM` rows the reductions that choose the widths cost
more than the bytes they save, so small records stay full width. ``bench/bench_wal.py`` compares
checkouts on whole commits. Readers take the columns with ``numpy.frombuffer`` (plus one add for
a narrowed column), no decompression.

Logs of the earlier format (records with magic ``KWAL`` whose payload is zstd-compressed, without
padding) are still read: a log written by an older process replays after an upgrade. A record is
one format or the other by its magic; only raw records are written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from struct import Struct
from typing import Final

import numpy as np
import zstandard

from kronicler._record import record
from kronicler.db import zstd
from kronicler.db.fileio import append_all, write_all
from kronicler.db.schema import COLUMNS, LATER_COLUMNS

#: A record of raw columns (the format written).
MAGIC: Final = b"KWLR"
#: A record whose payload is zstd-compressed, columns unpadded (written before; still read).
ZSTD_MAGIC: Final = b"KWAL"
#: Either magic: compiled (``re``'s cache) only when damage is skipped, not at import.
_ANY_MAGIC: Final = re.escape(MAGIC) + b"|" + re.escape(ZSTD_MAGIC)
#: magic, first row number, rows, payload length, crc32 (of the fields before it and the payload)
RECORD = Struct("<4sQIII")
assert RECORD.size == 24 and RECORD.size % 8 == 0  # so payload offsets align as file offsets do
_CRC_AT: Final = RECORD.size - 4

_LEN = Struct("<I")
_BASE = Struct("<Q")
_U64: Final = (1 << 64) - 1
_NARROW: Final = {w: np.dtype(f"<u{w}") for w in (1, 2, 4)}
#: Records of fewer rows are written at full width: narrowing costs two reductions per column
#: (tens of microseconds a record), which the bytes it saves repay from a few thousand rows on.
NARROW_FROM: Final = 4096
_DECODE_ERRORS = (zstandard.ZstdError, ValueError, KeyError, TypeError, AttributeError,
                  struct.error)  # fmt: skip


def _padded(n: int) -> int:
    return (n + 7) & ~7


@record
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


def _narrowing(parts: Sequence[np.ndarray], dtype: np.dtype) -> tuple[int, int]:
    """(width in bytes, base) storing ``parts`` as ``value - base``: 0 for one value, else the
    fewest bytes of 1, 2 or 4 that hold the range, else the dtype's own (base 0, bits as is)."""
    lo = min(int(p.min()) for p in parts if len(p))
    span = max(int(p.max()) for p in parts if len(p)) - lo
    for width in (0, *_NARROW):
        if width < dtype.itemsize and span < 1 << 8 * width:
            return width, lo
    return dtype.itemsize, 0


def encode_record(
    first_row: int,
    columns: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    entries: dict[str, list[tuple[int, str]]],
) -> bytearray:
    """One raw record of ``columns`` (an array, or the pieces that join into it, per column).

    The pieces are copied once, straight into the record (no joined copy of the tail first),
    each column narrowed on the way when the record holds :data:`NARROW_FROM` rows or more.
    """
    pieces = {c: [v] if isinstance(v, np.ndarray) else v for c, v in columns.items()}
    rows = sum(len(p) for p in pieces["start"])
    for name in COLUMNS:
        if sum(len(p) for p in pieces[name]) != rows:
            raise ValueError(f"column {name!r} has {sum(map(len, pieces[name]))} rows, not {rows}")
    meta = json.dumps(entries, separators=(",", ":")).encode()
    if rows >= NARROW_FROM:
        plan = [_narrowing(pieces[c], dtype) for c, dtype in COLUMNS.items()]
    else:
        plan = [(dtype.itemsize if rows else 0, 0) for dtype in COLUMNS.values()]
    at = RECORD.size + _padded(_LEN.size + len(meta))
    table, at = at, at + _table_size(len(COLUMNS))
    size = at + sum(_padded(rows * width) for width, _ in plan)
    record = bytearray(size)
    _LEN.pack_into(record, RECORD.size, len(meta))
    record[RECORD.size + _LEN.size : RECORD.size + _LEN.size + len(meta)] = meta
    record[table : table + 1 + len(COLUMNS)] = bytes([len(COLUMNS), *(w for w, _ in plan)])
    bases = table + _padded(1 + len(COLUMNS))
    for i, ((name, dtype), (width, base)) in enumerate(zip(COLUMNS.items(), plan, strict=True)):
        if base:  # its bits, as a uint64 (the record is zeroed: a base of 0 needs no write)
            _BASE.pack_into(record, bases + 8 * i, base & _U64)
        if width == 0:
            continue
        out = np.frombuffer(record, dtype if width == dtype.itemsize else _NARROW[width], rows, at)
        parts = pieces[name]
        if base:
            i0 = 0
            for part in parts:
                np.subtract(part, base, out=out[i0 : i0 + len(part)], casting="unsafe")
                i0 += len(part)
        elif len(parts) == 1:
            out[:] = parts[0]
        else:
            np.concatenate(parts, out=out, casting="unsafe")
        at += _padded(rows * width)
    RECORD.pack_into(record, 0, MAGIC, first_row, rows, size - RECORD.size, 0)
    with memoryview(record) as view:
        crc = zlib.crc32(view[RECORD.size :], zlib.crc32(view[:_CRC_AT]))
    record[_CRC_AT : RECORD.size] = crc.to_bytes(4, "little")
    return record


def _entries(meta: bytes) -> dict[str, list[tuple[int, str]]]:
    return {k: [(int(code), str(text)) for code, text in v] for k, v in json.loads(meta).items()}


def _table_size(columns: int) -> int:
    """Bytes of a raw record's column table: the count and widths (u8), then the bases (u64)."""
    return _padded(1 + columns) + 8 * columns


def _raw_columns(payload: memoryview, at: int, rows: int) -> dict[str, np.ndarray]:
    """The narrowed columns of a raw record, from its column table at ``at``."""
    stored = payload[at]
    if stored > len(COLUMNS) or any(c not in LATER_COLUMNS for c in list(COLUMNS)[stored:]):
        raise ValueError(f"a record of {stored} columns")
    widths = payload[at + 1 : at + 1 + stored]
    bases = np.frombuffer(payload, "<u8", stored, at + _padded(1 + stored))
    at += _table_size(stored)
    columns: dict[str, np.ndarray] = {}
    for i, (name, dtype) in enumerate(COLUMNS.items()):
        if i >= stored:  # a column added since the record was written
            columns[name] = np.zeros(rows, dtype)
            continue
        width, base = widths[i], bases[i : i + 1].astype(dtype)
        if width == 0:
            columns[name] = np.full(rows, base[0], dtype)
            continue
        if width not in (1, 2, 4, dtype.itemsize):
            raise ValueError(f"column {name!r} stored {width} bytes wide")
        values = np.frombuffer(
            payload, dtype if width == dtype.itemsize else _NARROW[width], rows, at
        )
        columns[name] = values if width == dtype.itemsize else np.add(values, base, dtype=dtype)
        at += _padded(rows * width)
    if at != len(payload):
        raise ValueError(f"a record of {rows} rows holds {len(payload)} bytes, not {at}")
    return columns


def _zstd_columns(raw: bytes, at: int, rows: int) -> dict[str, np.ndarray]:
    """The plain columns of a zstd record's decompressed payload (the format before)."""
    columns: dict[str, np.ndarray] = {}
    for name, dtype in COLUMNS.items():
        if at == len(raw) and rows and name in LATER_COLUMNS:
            # a record of an older schema: it ends before the columns added since
            columns[name] = np.zeros(rows, dtype=dtype)
            continue
        columns[name] = np.frombuffer(raw, dtype=dtype, count=rows, offset=at)
        at += rows * dtype.itemsize
    return columns


def _decode_payload(magic: bytes, first_row: int, rows: int, payload: memoryview) -> WalRecord:
    if magic == MAGIC:
        (meta_len,) = _LEN.unpack_from(payload, 0)
        entries = _entries(bytes(payload[_LEN.size : _LEN.size + meta_len]))
        at = _padded(_LEN.size + meta_len)
        return WalRecord(first_row, _raw_columns(payload, at, rows), entries)
    raw = zstd.decompressor().decompress(payload)
    (meta_len,) = _LEN.unpack_from(raw, 0)
    entries = _entries(raw[_LEN.size : _LEN.size + meta_len])
    return WalRecord(first_row, _zstd_columns(raw, _LEN.size + meta_len, rows), entries)


def read_records(path: Path) -> Iterator[WalRecord]:
    """Every valid record of the log (damaged ones skipped: see :func:`read_log`)."""
    yield from read_log(path).records


@record
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


def _record_at(data: memoryview, pos: int) -> tuple[WalRecord | None, bool, int, int]:
    """(record or None, magic ok, end offset, header row count) of the record at ``pos``."""
    magic, first_row, rows, length, crc = RECORD.unpack_from(data, pos)
    end = pos + RECORD.size + length
    magic_ok = magic in (MAGIC, ZSTD_MAGIC)
    if not magic_ok or end > len(data):
        return None, magic_ok, end, rows
    payload = data[pos + RECORD.size : end]
    if zlib.crc32(payload, zlib.crc32(data[pos : pos + _CRC_AT])) != crc:
        return None, True, end, rows
    try:
        return _decode_payload(magic, first_row, rows, payload), True, end, rows
    except _DECODE_ERRORS:
        return None, True, end, rows


def read_log(path: Path) -> WalLog:
    """Every valid record of the log, stepping over damaged ones.

    After a record that fails its check, the next record is found by searching for the next
    record magic (of either format) that starts a record passing its checksum (a chance match in
    a payload fails it). Raw records' columns are views of the file's bytes, read once.
    """
    try:
        data = memoryview(path.read_bytes())
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
        found = re.compile(_ANY_MAGIC).search(data, pos + 1)
        if found is None:
            break
        pos = found.start()
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

    def append(self, record: bytes | bytearray) -> None:
        append_all(self._fd, record, self._size)
        self._size += len(record)
        os.fdatasync(self._fd)

    def rewrite(self, record: bytes | bytearray | None) -> None:
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
