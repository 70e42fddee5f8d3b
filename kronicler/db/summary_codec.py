"""Compact binary blocks of many (group id, Summary) pairs, one block per stored page.

A 64k-row page with ~100 functions carries ~15,000 non-empty buckets, and the whole database must
stay within 6 bytes/row with the timing columns already taking ~5, so this block has to cost a
small fraction of a byte per row. Measured alternatives on that workload (bench/bench_summary.py;
65,536 rows, 100 Zipf functions, lognormal durations, sigma 1):

=====================================================  ==========  ===========
bucket streams only (scalars aside), then zstd-3         bytes        compress
=====================================================  ==========  ===========
sparse: key deltas (u8) + counts (u8), two frames        ~9.9 KB     0.1 ms
presence bitmap + (count - 1) (u8)                       ~9.0 KB     0.1 ms
dense counts as 4-bit nibbles + overflow  (chosen)       ~8.5 KB     0.1 ms
=====================================================  ==========  ===========

The whole block (scalars ~2.1 KB, header, checksums) comes to ~10.7 KB per page, 0.163 B/row;
naive int32 keys + int64 counts + u8 scalars cost 190 KB raw and 18 KB under zstd.

Dense nibbles win because most buckets hold 0-3 durations: a bucket costs half a byte before
compression, and zero runs in the tails of small functions compress to almost nothing; counts of
15 or more store 15 in the nibble and the rest in a width-minimised overflow column. Keys are not
stored at all: they are the positions of the non-zero nibbles, offset by each summary's first key.
zstd levels above 3 gained only ~2% for 3-10x the compression time, and zlib -9 was ~1% larger
and 3-4x slower to decompress, so the block uses zstd level 3 (each frame carries zstd's
checksum, so damage is detected even without the page checksum around it).

Scalars are stored as columns (struct of arrays), each integer column in the narrowest unsigned
width that fits its largest value, and multi-byte columns byte-shuffled (all first bytes, then all
second bytes, ...) so that the zero high bytes and float exponents sit together and compress.
``count`` is not stored: it is ``zero_count`` plus the bucket counts.

Layout: a fixed header (:data:`HEADER`) followed by three zstd frames: scalars, nibbles, overflow.
Decoding is exact (float fields are stored bit for bit) and vectorised across the whole block;
only the final construction of Summary objects loops in Python, once per entry. It is what a
cold time range pays per roll-up record and chunk summary page (about 120 of them for a quarter
of a billion rows over 16 segments), so it works on the nibbles as bytes: one 256-entry table
lookup unpacks them, only the non-zero ones are widened, and each entry's buckets are found by
one binary search per entry rather than one per bucket. Measured on the 1B database's records
and chunk pages (20-30k buckets, 100 functions), under load: 0.32-0.46 ms a page, against
0.69-0.94 ms for the first decoder (two strided passes over int64 nibbles and a search per
bucket), and ``Block.from_page`` 0.45 against 0.90 ms.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import zstandard

from kronicler._record import record
from kronicler.db import zstd
from kronicler.db.summary import MAX_KEY, Summary
from kronicler.errors import CorruptPageError, SchemaVersionError

MAGIC = b"KSUM"
VERSION = 1
_CODEC_ZSTD = 1
_ZSTD_LEVEL = 3
_NIBBLE_MAX = 15
#: Byte -> its low and high nibble as two bytes (little-endian uint16): unpacks in one gather.
_NIBBLE_PAIRS = (np.arange(256) & 0x0F | (np.arange(256) >> 4) << 8).astype("<u2")

#: magic, version, codec, 2 pad, entry count; widths of the six integer scalar columns
#: (group, zero_count, min, max, first key, key span) and of the overflow column, 1 pad;
#: compressed lengths of the scalars, nibbles and overflow frames.
HEADER = struct.Struct("<4sBB2xI6BBxIII")
assert HEADER.size == 32

_INT_COLUMNS = 6
_WIDTH_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    4: np.dtype("<u4"),
    8: np.dtype("<u8"),
}


def _width(max_value: int) -> int:
    for width in (1, 2, 4):
        if max_value < 1 << (8 * width):
            return width
    return 8


def _shuffle(column: np.ndarray) -> bytes:
    """Byte planes of a little-endian column, lowest byte plane first."""
    n, width = column.size, column.dtype.itemsize
    return column.view(np.uint8).reshape(n, width).T.tobytes()


def _unshuffle(raw: memoryview | bytes, n: int, dtype: np.dtype) -> np.ndarray:
    planes = np.frombuffer(raw, dtype=np.uint8, count=n * dtype.itemsize)
    return planes.reshape(dtype.itemsize, n).T.copy().view(dtype).reshape(n)


def _unshuffle_int(raw: memoryview | bytes, n: int, width: int) -> np.ndarray:
    """Little-endian unsigned integers of ``width`` bytes, stored as byte planes, as int64 (a
    value past 2**63 wraps, as ``astype`` would): the planes shifted and or-ed, which beats a
    transposed copy of narrow values by ~3x on thousands of values (the overflow counts)."""
    planes = np.frombuffer(raw, dtype=np.uint8, count=n * width).reshape(width, n)
    out = planes[0].astype(np.int64)
    for i in range(1, width):
        out |= planes[i].astype(np.int64) << (8 * i)
    return out


def encode_summaries(entries: Sequence[tuple[int, Summary]]) -> bytes:
    """Pack (group id >= 0, Summary) pairs into one compressed block; see the module docstring."""
    n = len(entries)
    groups = np.array([int(g) for g, _ in entries], dtype=np.int64).reshape(n)
    if n and int(groups.min()) < 0:
        raise ValueError(f"group ids must be >= 0, got {int(groups.min())}")
    summaries = [s for _, s in entries]
    lens = np.array([s.keys.size for s in summaries], dtype=np.int64).reshape(n)
    keys = np.concatenate([s.keys for s in summaries] or [np.empty(0, np.int32)]).astype(np.int64)
    counts = np.concatenate([s.counts for s in summaries] or [np.empty(0, np.int64)])
    if keys.size and int(keys.min()) < 0:
        raise ValueError(f"summary keys must be >= 0, got {int(keys.min())}")

    ends = np.cumsum(lens)
    starts = ends - lens
    # count is not stored but rebuilt from the buckets, so it must agree with them.
    cumulative = np.concatenate(([0], np.cumsum(counts)))
    zero_counts = np.array([s.zero_count for s in summaries], dtype=np.int64).reshape(n)
    totals = cumulative[ends] - cumulative[starts] + zero_counts
    if n and not np.array_equal(totals, [s.count for s in summaries]):
        raise ValueError("a summary's count differs from zero_count plus its bucket counts")
    has = lens > 0
    first = np.zeros(n, dtype=np.int64)
    span = np.zeros(n, dtype=np.int64)
    first[has] = keys[starts[has]]
    span[has] = keys[ends[has] - 1] - first[has] + 1
    dense_start = np.cumsum(span) - span
    owner = np.repeat(np.arange(n), lens)
    dense = np.zeros(int(span.sum()), dtype=np.int64)
    dense[keys - first[owner] + dense_start[owner]] = counts

    nibbles = np.minimum(dense, _NIBBLE_MAX).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    packed = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)
    overflow = dense[dense >= _NIBBLE_MAX] - _NIBBLE_MAX
    overflow_width = _width(int(overflow.max()) if overflow.size else 0)

    int_columns = [
        groups,
        zero_counts,
        np.array([s.min or 0 for s in summaries], dtype=np.int64).reshape(n),
        np.array([s.max or 0 for s in summaries], dtype=np.int64).reshape(n),
        first,
        span,
    ]
    widths = [_width(int(c.max()) if n else 0) for c in int_columns]
    scalar_parts = [
        _shuffle(c.astype(_WIDTH_DTYPES[w])) for c, w in zip(int_columns, widths, strict=True)
    ]
    floats = np.array([(s.sum, s.m2) for s in summaries], dtype="<f8").reshape(n, 2)
    scalar_parts += [
        _shuffle(np.ascontiguousarray(floats[:, 0])),
        _shuffle(np.ascontiguousarray(floats[:, 1])),
    ]

    compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=True)
    frames = [
        compressor.compress(raw) if raw else b""
        for raw in (
            b"".join(scalar_parts),
            packed.tobytes(),
            _shuffle(overflow.astype(_WIDTH_DTYPES[overflow_width])),
        )
    ]
    header = HEADER.pack(
        MAGIC, VERSION, _CODEC_ZSTD, n, *widths, overflow_width, *(len(f) for f in frames)
    )
    return header + b"".join(frames)


@record
class SummaryColumns:
    """A decoded block as columns, one entry per summary (no Summary objects built).

    Fields:
        groups, count, zero_count, min, max: per entry (int64; min/max 0 where count is 0).
        sum, m2: per entry (float64).
        bounds: entry i's buckets are ``keys[bounds[i]:bounds[i + 1]]`` (int64, n + 1).
        keys, counts: bucket keys (int32) and counts (int64), read-only.
    """

    groups: np.ndarray
    count: np.ndarray
    zero_count: np.ndarray
    min: np.ndarray
    max: np.ndarray
    sum: np.ndarray
    m2: np.ndarray
    bounds: np.ndarray
    keys: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return int(self.groups.size)


def decode_columns(data: bytes | bytearray | memoryview) -> SummaryColumns:
    """:func:`decode_summaries` as columns, for callers that merge many blocks vectorised."""
    try:
        return _decode_columns(memoryview(data))
    except (ValueError, IndexError, TypeError, OverflowError, MemoryError, struct.error) as exc:
        raise CorruptPageError(f"summary block does not decode: {exc}") from None


def decode_summaries(data: bytes | bytearray | memoryview) -> list[tuple[int, Summary]]:
    """Inverse of :func:`encode_summaries`: the same pairs, in the same order, bit for bit.

    Bytes that are not such a block raise CorruptPageError (SchemaVersionError for a block of an
    unknown version).
    """
    try:
        return _decode_summaries(memoryview(data))
    except (ValueError, IndexError, TypeError, OverflowError, MemoryError, struct.error) as exc:
        raise CorruptPageError(f"summary block does not decode: {exc}") from None


def _decode_columns(view: memoryview) -> SummaryColumns:
    if len(view) < HEADER.size:
        raise CorruptPageError(f"summary block of {len(view)} bytes is shorter than its header")
    magic, version, codec, n, *rest = HEADER.unpack_from(view, 0)
    widths, overflow_width, lengths = rest[:_INT_COLUMNS], rest[_INT_COLUMNS], rest[-3:]
    if magic != MAGIC:
        raise CorruptPageError(f"summary block has magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION or codec != _CODEC_ZSTD:
        raise SchemaVersionError(f"summary block version {version} codec {codec} is unknown")
    if HEADER.size + sum(lengths) != len(view):
        raise CorruptPageError(
            f"summary block is {len(view)} bytes, header says {HEADER.size + sum(lengths)}"
        )
    if any(w not in _WIDTH_DTYPES for w in (*widths, overflow_width)):
        raise CorruptPageError(f"summary block has bad column widths {widths}, {overflow_width}")

    decompressor = zstd.decompressor()
    raws: list[bytes] = []
    offset = HEADER.size
    try:
        for length in lengths:
            raws.append(decompressor.decompress(view[offset : offset + length]) if length else b"")
            offset += length
    except zstandard.ZstdError as exc:
        raise CorruptPageError(f"summary block does not decompress: {exc}") from None
    scalars, packed_raw, overflow_raw = raws
    if len(scalars) != n * (sum(widths) + 16):
        raise CorruptPageError("summary block scalars have the wrong length")

    columns = []
    pos = 0
    for w in widths:
        columns.append(_unshuffle(scalars[pos : pos + n * w], n, _WIDTH_DTYPES[w]).astype(np.int64))
        pos += n * w
    sums = _unshuffle(scalars[pos : pos + 8 * n], n, np.dtype("<f8"))
    m2s = _unshuffle(scalars[pos + 8 * n :], n, np.dtype("<f8"))
    groups, zeros, mins, maxs, first, span = columns

    packed = np.frombuffer(packed_raw, dtype=np.uint8)
    dense_end = np.cumsum(span)
    total_span = int(dense_end[-1]) if n else 0
    if packed.size != (total_span + 1) // 2:
        raise CorruptPageError("summary block bucket counts have the wrong length")
    if n and (int(np.minimum(first, span).min()) < 0 or int((first + span).max()) > MAX_KEY + 1):
        raise CorruptPageError("summary block has bucket keys out of range")
    # Each packed byte looked up as its two nibbles, one byte each (one gather, not two strided
    # passes); only the non-zero nibbles are widened: every pass over all nibbles in int64 cost
    # as much as the rest of the decode.
    dense = _NIBBLE_PAIRS.take(packed).view(np.uint8)[:total_span]
    present = np.flatnonzero(dense != 0)
    counts = dense[present].astype(np.int64)
    wide = np.flatnonzero(counts == _NIBBLE_MAX)
    overflow_dtype = _WIDTH_DTYPES[overflow_width]
    if len(overflow_raw) != wide.size * overflow_dtype.itemsize:
        raise CorruptPageError("summary block overflow counts have the wrong length")
    if wide.size:
        counts[wide] = _unshuffle_int(overflow_raw, wide.size, overflow_width) + _NIBBLE_MAX
    # Entry i owns the non-zero nibbles before dense_end[i]: n binary searches, not one per bucket.
    bounds = np.zeros(n + 1, dtype=np.int64)
    bounds[1:] = np.searchsorted(present, dense_end)
    keys = present + np.repeat(first - (dense_end - span), np.diff(bounds))
    keys = keys.astype(np.int32)
    keys.setflags(write=False)
    counts.setflags(write=False)
    cumulative = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=cumulative[1:])
    totals = cumulative[bounds[1:]] - cumulative[bounds[:-1]] + zeros
    return SummaryColumns(groups, totals, zeros, mins, maxs, sums, m2s, bounds, keys, counts)


def _decode_summaries(view: memoryview) -> list[tuple[int, Summary]]:
    c = _decode_columns(view)
    groups, totals, zeros, mins, maxs, sums, m2s = (
        c.groups, c.count, c.zero_count, c.min, c.max, c.sum, c.m2)  # fmt: skip
    bounds, keys, counts = c.bounds.tolist(), c.keys, c.counts
    out: list[tuple[int, Summary]] = []
    for i, (g, total, zc, lo, hi, s, m2) in enumerate(
        zip(
            groups.tolist(),
            totals.tolist(),
            zeros.tolist(),
            mins.tolist(),
            maxs.tolist(),
            sums.tolist(),
            m2s.tolist(),
            strict=True,
        )
    ):
        a, b = bounds[i], bounds[i + 1]
        if total:
            out.append((g, Summary(total, s, m2, lo, hi, zc, keys[a:b], counts[a:b])))
        else:
            out.append((g, Summary(0, s, m2, None, None, 0, keys[a:b], counts[a:b])))
    return out
