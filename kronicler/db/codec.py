"""Column encodings: integer arrays in, compact bytes out, and back, all vectorised.

Every codec is a pipeline of cheap numpy transforms followed by zstandard:

* ``narrow``: store integers in the fewest whole bytes that hold the largest value (1, 2, 4 or 8);
* ``delta``: consecutive differences, zig-zag mapped so small negative steps stay small (start times);
* ``shuffle``: transpose the bytes of a fixed-width array so that byte 0 of every value comes first,
  then byte 1, and so on; high bytes are mostly zero and compress to nothing (the Blosc idea);
  from a kilobyte on, each byte plane is compressed on its own (see :func:`_squeeze_planes`);
* ``table``: distinct values once, plus a small per-row index (trace ids shared by a trace's spans);
* ``const``: one value for the whole page;
* ``ids``: span and trace ids, whichever of three forms the page's values suit (see
  :func:`encode_ids`): *counter* ids (Kronicler's own, a keyless 64-bit mix of a per-process
  counter, see :mod:`kronicler.otel.ids`) are unmixed and stored as XOR steps, a byte or two a row;
  ids shared by several rows go to the ``table``; random, distinct ids stay ``raw``;
* ``timed``: an id page of a chunk ordered by function, stored in the order of its start times,
  where a trace's spans are neighbours again (see :func:`encode_timed`);
* ``blocks``: the page cut into row blocks, each encoded on its own by one of the above, so that a
  query wanting some rows decodes only the blocks that hold them (see :func:`encode_blocks`).

Zstandard at a low level decodes at memory speed, so encoded pages cost little to read back.
What does cost is the Python around it: a blocks page of byte planes is ~16 blocks of a dozen
numpy calls each. Where the optional C loop ``kronicler/db/_fastdecode.c`` is built, the integer
forms (raw, constant, narrow, delta, in planes or not, and blocks of them) are decoded in one pass
per page, zstandard called back per compressed part (a chunk's start page: 0.5-0.7 ms against
1.2-1.8); the Python decoder below stays the reference, decodes every other form, and runs alone
with ``KRONICLER_PURE_PYTHON=1``. Tests hold the two to identical arrays, and damaged pages to
the same refusal.
Decoding trusts nothing: bytes that do not decode (a page damaged in a way its checksum missed)
raise :class:`~kronicler.errors.CorruptPageError`, and the item count is checked against the rows
the page header promises before anything is allocated. The codec
is chosen per column (see :data:`COLUMN_CODECS`) from measurements on realistic spans; a codec falls
back to the plain form when compression does not pay.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import zstandard

from kronicler._config import pure_python
from kronicler.db import zstd
from kronicler.db.idmix import mix64, unmix64
from kronicler.errors import CorruptPageError


def _load_fast() -> Any:
    """The C decoding loop's module, or None (not built, or ``KRONICLER_PURE_PYTHON`` set)."""
    if pure_python():
        return None
    try:
        import kronicler.db._fastdecode as module
    except ImportError:
        return None
    return module


_fast = _load_fast()
#: True when integer pages are decoded by the C loop (``kronicler/db/_fastdecode.c``).
ACCELERATED = _fast is not None

CODEC_RAW: Final = 0
CODEC_CONST: Final = 1
CODEC_NARROW: Final = 2
CODEC_DELTA: Final = 3
CODEC_TABLE: Final = 4
CODEC_REF: Final = 5  # parent span ids as references to rows of the same page (see encode_parents)
CODEC_BLOCKS: Final = 6  # row blocks, each encoded alone (see encode_blocks)
CODEC_IDS: Final = 7  # a column choice, not a page form: the best of SEQ, TABLE, RAW (encode_ids)
CODEC_SEQ: Final = 8  # unmixed counter ids as XOR steps (see encode_ids)
CODEC_TIMED: Final = 9  # a page of an ordered chunk stored in start order (see encode_timed)
CODEC_NARROW_PLANES: Final = 10  # NARROW with each byte plane compressed alone (_squeeze_planes)
CODEC_DELTA_PLANES: Final = 11  # DELTA likewise
_BLOCK_COUNT = struct.Struct("<I")

_ZSTD_LEVEL = 3
_WIDTHS = (1, 2, 4, 8)
# Flags byte that follows the codec id: bit 0 = zstd-compressed, bits 4..7 = byte width.
_HEAD = struct.Struct("<BBxxI")  # codec, flags, item count
assert _HEAD.size == 8


def _width(max_value: int) -> int:
    for w in _WIDTHS:
        if max_value < (1 << (8 * w)):
            return w
    return 8


def _pack_uint(values: np.ndarray) -> tuple[int, bytes]:
    """Narrow non-negative integers to their byte width and shuffle the bytes; returns (width, raw)."""
    if values.size == 0:
        return 1, b""
    width = _width(int(values.max()))
    narrow = values.astype(f"<u{width}", copy=False)
    if width == 1:
        return 1, narrow.tobytes()
    shuffled = narrow.view(np.uint8).reshape(-1, width).T
    return width, np.ascontiguousarray(shuffled).tobytes()


def _unpack_narrow(raw: bytes, width: int, count: int) -> np.ndarray:
    """Undo the shuffle; the values stay in their stored width (no widening copy).

    Each byte plane is written into its column of a ``(count, width)`` byte table: 2-5x faster
    than numpy's copy of the transposed planes, which moves one byte at a time (a chunk's start
    page, 8 planes of 64k bytes: 0.3 ms against 1.4).
    """
    planes = np.frombuffer(raw, dtype=np.uint8, count=count * width)
    if width == 1:
        return planes
    table = np.empty((count, width), dtype=np.uint8)
    for i, plane in enumerate(planes.reshape(width, count)):
        table[:, i] = plane
    return table.view(f"<u{width}").reshape(count)


def _unpack_uint(raw: bytes, width: int, count: int) -> np.ndarray:
    return _unpack_narrow(raw, width, count).astype(np.uint64)


def _unzigzag_narrow(steps: np.ndarray) -> np.ndarray:
    """unzigzag for values stored narrower than 8 bytes, widening to int64 in the same pass."""
    if steps.dtype.itemsize == 8:
        return unzigzag(steps)
    s = steps.astype(np.int64)
    s_low = s & 1
    s >>= 1
    s ^= -s_low
    return s


def _squeeze(raw: bytes, level: int = _ZSTD_LEVEL) -> tuple[int, bytes]:
    """Compress when it pays; returns (flag, payload)."""
    if len(raw) < 64:
        return 0, raw
    packed = zstd.compressor(level).compress(raw)
    return (1, packed) if len(packed) < len(raw) else (0, raw)


def _unsqueeze(flag: int, payload: bytes | memoryview, size: int) -> bytes:
    if flag & 1:
        return zstd.decompressor().decompress(payload, max_output_size=size)
    return bytes(payload)


#: Shuffled bytes from which NARROW and DELTA pages compress each byte plane alone.
_PLANES_FROM = 1024
#: zstd level of byte planes and of one-byte NARROW pages: level 1 is both faster and smaller
#: than 3 on them (bench_scale.py's chunks: start 4.830 -> 4.820 B/row in 2.2 ms instead of
#: 3.5, duration 2.719 -> 2.710, status 0.041 -> 0.032), where its lazier matching finds
#: nothing worse; id tables and parent references lose ~1% at level 1, so they keep 3.
_PLANE_LEVEL = 1
_PLANE_MASK = struct.Struct("<B")


def _squeeze_planes(raw: bytes, width: int) -> bytes:
    """The ``width`` byte planes of shuffled ``raw``, each compressed alone when that pays.

    Why: one zstd frame over all planes shares one Huffman table between planes of random low
    bytes and skewed high bytes; a frame per plane gives each its own, and stores random planes
    as they are. Measured on bench_scale.py's rows (65,536-row chunks ordered by function, ~14
    blocks a page): start 5.11 -> 4.82 B/row, duration 2.82 -> 2.71 (the split of Parquet's
    BYTE_STREAM_SPLIT; the planes' own entropies sum to 4.82 and 2.70).

    Layout: a mask byte (bit i: plane i is compressed), the byte length of each plane (u32),
    then the planes.
    """
    n = len(raw) // width
    mask, parts = 0, []
    compressor = zstd.compressor(_PLANE_LEVEL)
    for i in range(width):
        plane = raw[i * n : (i + 1) * n]
        packed = compressor.compress(plane)
        if len(packed) < len(plane):
            mask |= 1 << i
            plane = packed
        parts.append(plane)
    lengths = struct.pack(f"<{width}I", *(len(p) for p in parts))
    return _PLANE_MASK.pack(mask) + lengths + b"".join(parts)


def _unsqueeze_planes(payload: bytes | memoryview, width: int, n: int) -> bytes:
    """Inverse of :func:`_squeeze_planes`: ``width`` planes of ``n`` bytes, checked."""
    (mask,) = _PLANE_MASK.unpack_from(payload, 0)
    lengths = struct.unpack_from(f"<{width}I", payload, 1)
    view = memoryview(payload)
    pos, planes = 1 + 4 * width, []
    for i, length in enumerate(lengths):
        part = view[pos : pos + length]
        plane = zstd.decompressor().decompress(part, max_output_size=n) if mask >> i & 1 else part
        if len(plane) != n or len(part) != length:
            raise CorruptPageError(f"byte plane {i} holds {len(plane)} bytes, not {n}")
        planes.append(plane)
        pos += length
    if pos != len(view) or mask >> width:
        raise CorruptPageError("byte planes of a column page do not add up")
    return b"".join(planes)


def zigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.int64, copy=False)
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def unzigzag(values: np.ndarray) -> np.ndarray:
    u = values.astype(np.uint64, copy=False)
    return ((u >> np.uint64(1)).view(np.int64)) ^ -((u & np.uint64(1)).view(np.int64))


def _as_u64(values: np.ndarray) -> np.ndarray:
    """Reinterpret any integer array as uint64 bit patterns (lossless)."""
    if values.dtype.kind == "i":
        return values.astype(np.int64, copy=False).view(np.uint64)
    return values.astype(np.uint64, copy=False)


def encode(values: np.ndarray, codec: int) -> bytes:
    """Encode a 1-D integer array with ``codec`` (or CONST when every value is equal)."""
    if codec == CODEC_IDS:
        return encode_ids(values)
    n = int(values.size)
    u = _as_u64(values)
    if n and bool((u == u[0]).all()):
        return _HEAD.pack(CODEC_CONST, 0, n) + struct.pack("<Q", int(u[0]))
    if codec == CODEC_SEQ:
        return _encode_seq(unmix64(u))
    if codec == CODEC_RAW:
        return _HEAD.pack(CODEC_RAW, 0, n) + u.astype("<u8").tobytes()
    if codec == CODEC_NARROW:
        width, raw = _pack_uint(u)
        if width > 1 and len(raw) >= _PLANES_FROM:
            return _HEAD.pack(CODEC_NARROW_PLANES, width << 4, n) + _squeeze_planes(raw, width)
        flag, body = _squeeze(raw, _PLANE_LEVEL)
        return _HEAD.pack(CODEC_NARROW, flag | width << 4, n) + body
    if codec == CODEC_DELTA:
        first = struct.pack("<Q", int(u[0]) if n else 0)
        steps = zigzag(np.diff(u.view(np.int64))) if n > 1 else np.zeros(0, np.uint64)
        width, raw = _pack_uint(steps)
        if width > 1 and len(raw) >= _PLANES_FROM:
            body = _squeeze_planes(raw, width)
            return _HEAD.pack(CODEC_DELTA_PLANES, width << 4, n) + first + body
        flag, body = _squeeze(raw)
        return _HEAD.pack(CODEC_DELTA, flag | width << 4, n) + first + body
    if codec == CODEC_TABLE:
        table, first_pos, inverse = np.unique(u, return_index=True, return_inverse=True)
        # Renumber distinct values by first appearance so the index mostly counts up by 0 or 1.
        order = np.argsort(first_pos, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        index = rank[inverse.reshape(-1)].astype(np.int64)
        steps = zigzag(np.diff(index, prepend=0))
        width, raw_index = _pack_uint(steps)
        table_raw = table[order].astype("<u8").tobytes()
        flag, body = _squeeze(table_raw + raw_index)
        head = _HEAD.pack(CODEC_TABLE, flag | width << 4, n)
        return head + struct.pack("<II", order.size, len(table_raw) + len(raw_index)) + body
    raise ValueError(f"unknown codec {codec!r}")


#: XOR steps this large make a counter-id page wide; ids with more than 1/16 of their steps
#: this large are not from one counter (random ids: nearly every step is).
_SEQ_BIG = np.uint64(1 << 32)
#: Ids probed to decide the form of an id page (see encode_ids).
_ID_SAMPLE = 4096


def encode_ids(values: np.ndarray) -> bytes:
    """Span or trace ids in the cheapest of three forms, chosen from cheap statistics.

    * SEQ: Kronicler's own ids are ``mix64(counter ^ key)`` (see :mod:`kronicler.otel.ids`), so
      ``unmix64`` gives back ``counter ^ key``, and the XOR of consecutive values cancels the
      (unknown) key: what is left is the XOR of two nearby counter values, a few low bits. The
      steps are stored narrowed, shuffled and compressed: ~1 B/row instead of 8, for ~12 numpy
      passes and no sort. Chosen when at most 1/16 of the steps reach 2**32.
    * TABLE: ids shared by several rows (a trace's spans), when neighbouring rows or a strided
      sample of the page repeat an id; np.unique sorts the page, so it is paid only then.
    * RAW: distinct random ids (the OTel SDK's span ids), where a table would only add an index.

    Any uint64 values round-trip exactly in each form; the choice only changes the size.
    """
    u = _as_u64(values)
    n = int(u.size)
    if n < 2 or bool((u == u[0]).all()):
        return encode(u, CODEC_RAW)
    if _counter_like(unmix64(u[:_ID_SAMPLE])):  # a prefix first: random ids stop here
        y = unmix64(u)
        steps = y[1:] ^ y[:-1]
        if _counter_like(y, steps):
            return _encode_seq(y, steps)
    # Repeats next to each other (a trace's spans in arrival order), or anywhere in a strided
    # sample (a trace's spans scattered over functions in an ordered chunk).
    sample = np.sort(u[:: max(1, n // _ID_SAMPLE)])
    if bool((u[1:] == u[:-1]).any()) or bool((sample[1:] == sample[:-1]).any()):
        return encode(u, CODEC_TABLE)
    return encode(u, CODEC_RAW)


def _counter_like(y: np.ndarray, steps: np.ndarray | None = None) -> bool:
    """True when at most 1/16 of the XOR steps of unmixed ids ``y`` reach 2**32."""
    if steps is None:
        steps = y[1:] ^ y[:-1]
    return int(np.count_nonzero(steps >= _SEQ_BIG)) <= y.size // 16


def _encode_seq(y: np.ndarray, steps: np.ndarray | None = None) -> bytes:
    """A SEQ page of unmixed ids ``y`` (not constant); ``steps``: their XOR steps if known."""
    width, raw = _pack_uint(y[1:] ^ y[:-1] if steps is None else steps)
    flag, body = _squeeze(raw)
    first = int(y[0]) if y.size else 0
    return _HEAD.pack(CODEC_SEQ, flag | width << 4, y.size) + struct.pack("<Q", first) + body


#: What numpy, struct and zstandard raise on bytes that are not a valid encoding.
BAD_BYTES = (
    ValueError, IndexError, KeyError, TypeError, OverflowError, MemoryError, struct.error,
    zstandard.ZstdError,
)  # fmt: skip


def decode(data: bytes | memoryview, dtype: np.dtype, rows: int | None = None) -> np.ndarray:
    """Inverse of :func:`encode`; returns an array of ``dtype``.

    ``rows``: the item count the caller expects (from the page header); bytes that say otherwise,
    or that do not decode, raise CorruptPageError.
    """
    try:
        _check_count(data, rows)
        return _decode(data, dtype)
    except BAD_BYTES as exc:
        raise CorruptPageError(f"column page does not decode: {exc}") from None


def _check_count(data: bytes | memoryview, rows: int | None) -> None:
    _, _, n = _HEAD.unpack_from(data, 0)
    if rows is not None and n != rows:
        raise CorruptPageError(f"column page holds {n} values, its header says {rows}")


#: Page forms the C loop decodes (the others, and empty pages, are decoded in Python).
_FAST_FORMS = frozenset({CODEC_RAW, CODEC_CONST, CODEC_NARROW, CODEC_DELTA, CODEC_BLOCKS,
                         CODEC_NARROW_PLANES, CODEC_DELTA_PLANES})  # fmt: skip


def decode_into(data: bytes | memoryview, out: np.ndarray) -> None:
    """:func:`decode` written into ``out``, a contiguous integer array of the page's length (a
    slice of a bigger array: many pages decoded side by side with no copy). Bad bytes, or a
    page of another length, raise CorruptPageError (``out`` then holds anything)."""
    try:
        _check_count(data, out.size)
        if not _fast_into(data, out):
            out[...] = _decode_py(data, out.dtype)
    except BAD_BYTES as exc:
        raise CorruptPageError(f"column page does not decode: {exc}") from None


def _decode(data: bytes | memoryview, dtype: np.dtype) -> np.ndarray:
    """One page by the C loop where it is built and takes the page's form, else in Python."""
    if _fast is not None and dtype.kind in "iu":
        out = np.empty(_HEAD.unpack_from(data, 0)[2], dtype=dtype)
        if _fast_into(data, out):
            return out
    return _decode_py(data, dtype)


def _fast_into(data: bytes | memoryview, out: np.ndarray) -> bool:
    """Whether the C loop decoded the page into ``out`` (of its length): False where it is not
    built, or leaves the page's form (or an empty page) to Python."""
    if _fast is None or out.dtype.kind not in "iu" or not out.size:
        return False
    if _HEAD.unpack_from(data, 0)[0] not in _FAST_FORMS:
        return False
    return bool(_fast.decode(data, out, zstd.decompressor().decompress))


def _decode_py(data: bytes | memoryview, dtype: np.dtype) -> np.ndarray:
    """The reference decoder (and the only one where the C loop is not built)."""
    codec, flags, n = _HEAD.unpack_from(data, 0)
    body = memoryview(data)[_HEAD.size :]
    if codec == CODEC_BLOCKS:
        ends, spans = _block_table(data)
        out = np.empty(n, dtype=dtype)
        lo = 0
        for (a, b), hi in zip(spans, ends, strict=True):
            out[lo:hi] = _decode_py(_block(body[a:b], hi - lo), dtype)
            lo = hi
        return out
    width = flags >> 4
    if codec == CODEC_CONST:
        (value,) = struct.unpack_from("<Q", body, 0)
        out = np.full(n, value, dtype=np.uint64)
    elif codec == CODEC_RAW:
        out = np.frombuffer(body, dtype="<u8", count=n).astype(np.uint64)
    elif codec in (CODEC_NARROW, CODEC_NARROW_PLANES):
        if codec == CODEC_NARROW:
            raw = _unsqueeze(flags, body, n * width)
        else:
            raw = _unsqueeze_planes(body, width, n)
        narrow = _unpack_narrow(raw, width, n)
        return narrow.astype(dtype)  # one widening copy, wrapping like a C cast
    elif codec in (CODEC_DELTA, CODEC_DELTA_PLANES):
        (first,) = struct.unpack_from("<Q", body, 0)
        if codec == CODEC_DELTA:
            raw = _unsqueeze(flags, body[8:], (n - 1) * width)
        else:
            raw = _unsqueeze_planes(body[8:], width, max(n - 1, 0))
        steps = _unpack_narrow(raw, width, max(n - 1, 0))
        start = np.empty(n, dtype=np.int64)
        if n:
            start[0] = np.uint64(first).view(np.int64)
            np.cumsum(_unzigzag_narrow(steps), out=start[1:])
            start[1:] += start[0]
        return start.astype(dtype, copy=False)
    elif codec == CODEC_TABLE:
        distinct, size = struct.unpack_from("<II", body, 0)
        raw = _unsqueeze(flags, body[8:], size)
        table = np.frombuffer(raw, dtype="<u8", count=distinct)
        steps = _unpack_uint(raw[distinct * 8 :], width, n)
        index = np.cumsum(unzigzag(steps))
        out = table[index].astype(np.uint64)
    elif codec == CODEC_TIMED:
        raise CorruptPageError("a page stored in start order decoded without the start times")
    elif codec == CODEC_SEQ:
        (first,) = struct.unpack_from("<Q", body, 0)
        raw = _unsqueeze(flags, body[8:], (n - 1) * width)
        y = np.empty(n, dtype=np.uint64)
        if n:
            y[0] = first
            y[1:] = _unpack_narrow(raw, width, n - 1)
            np.bitwise_xor.accumulate(y, out=y)
        out = mix64(y)
    else:
        raise CorruptPageError(f"unknown codec id {codec} in page")
    if dtype.kind == "i":
        return out.view(np.int64).astype(dtype, copy=False)
    return out.astype(dtype, copy=False)


def encode_blocks(values: np.ndarray, codec: int, ends: np.ndarray) -> bytes:
    """``values`` as row blocks ending at ``ends`` (ascending, the last = ``len(values)``), each
    encoded alone with ``codec``; one block is just ``encode(values, codec)``.

    Layout: the usual head, the block count, the end row and the byte length of each block (u32),
    then the blocks. Measured on bench_db.py's workload (65,536-row chunks, 100 Zipf functions,
    timing columns): start + duration + name + status take 5.08 B/row as whole pages ordered by
    function and 5.37 with ~14 blocks a page (8 blocks: 5.34; 4: 5.32), so most of the cost is
    zstd's per-frame tables on smaller inputs, not the block count. One zstd frame over all
    blocks would keep 5.08 but make every block read decompress the whole page; separate frames
    let a query for one function decode ~1/14 of each page it reads.
    """
    n = int(values.size)
    if len(ends) <= 1 or (n and bool((values == values[0]).all())):
        return encode(values, codec)  # one block, or a constant page: any block is a slice of it
    bounds = [0, *ends.tolist()]
    parts = [encode(values[lo:hi], codec) for lo, hi in zip(bounds, bounds[1:], strict=False)]
    return join_blocks(ends.tolist(), parts)


def join_blocks(ends: list[int], parts: list[bytes]) -> bytes:
    """A blocks page of encoded ``parts`` (two or more) holding rows up to ``ends`` (ascending):
    for blocks made one at a time, where the whole array is never held (see
    :mod:`kronicler.db.durations_merge`)."""
    n = ends[-1]
    table = np.array([ends, [len(p) for p in parts]], dtype="<u4").tobytes()
    head = _HEAD.pack(CODEC_BLOCKS, 0, n) + _BLOCK_COUNT.pack(len(parts))
    return head + table + b"".join(parts)


def _block_table(data: bytes | memoryview) -> tuple[list[int], list[tuple[int, int]]]:
    """(end rows, byte span of each block in the body) of a blocks page; checked.

    Plain Python over the few (~16) entries: numpy's per-call overhead would cost more.
    """
    _, _, n = _HEAD.unpack_from(data, 0)
    (count,) = _BLOCK_COUNT.unpack_from(data, _HEAD.size)
    at = _HEAD.size + _BLOCK_COUNT.size
    table = struct.unpack_from(f"<{2 * count}I", data, at)
    ends, lengths = table[:count], table[count:]
    pos = at + 8 * count - _HEAD.size  # the blocks, relative to the body
    spans, prev = [], 0
    for end, length in zip(ends, lengths, strict=True):
        if end <= prev:
            raise CorruptPageError("block table of a column page is not ascending")
        spans.append((pos, pos + length))
        pos, prev = pos + length, end
    if count == 0 or prev != n or pos != len(data) - _HEAD.size:
        raise CorruptPageError("block table of a column page does not add up")
    return list(ends), spans


def _block(part: memoryview, rows: int) -> memoryview:
    """One block of a blocks page, checked: ``rows`` values, not itself cut into blocks."""
    _check_count(part, rows)
    if _HEAD.unpack_from(part, 0)[0] == CODEC_BLOCKS:
        raise CorruptPageError("a block of a column page is cut into blocks again")
    return part


def decode_block(
    data: bytes | memoryview, dtype: np.dtype, lo: int, hi: int, rows: int | None = None
) -> np.ndarray:
    """Rows ``lo:hi`` of a page, where ``[lo, hi)`` is one of its blocks: only that block is
    decoded. A page not cut into blocks is decoded whole and sliced; a page whose blocks are
    cut elsewhere raises CorruptPageError (as do bytes that do not decode)."""
    try:
        _check_count(data, rows)
        codec = _HEAD.unpack_from(data, 0)[0]
        if codec != CODEC_BLOCKS:
            return _decode(data, dtype)[lo:hi].copy()
        ends, spans = _block_table(data)
        b = bisect.bisect_left(ends, hi)
        if b >= len(ends) or ends[b] != hi or (ends[b - 1] if b else 0) != lo:
            raise CorruptPageError(f"column page has no block of rows {lo}:{hi}")
        part = memoryview(data)[_HEAD.size :][spans[b][0] : spans[b][1]]
        return _decode(_block(part, hi - lo), dtype)
    except BAD_BYTES as exc:
        raise CorruptPageError(f"column page does not decode: {exc}") from None


def encode_parents(parents: np.ndarray, span_ids: np.ndarray) -> bytes:
    """Parent span ids as signed row distances to the parent's row within the same page.

    A child span usually sits a few rows from its parent (children end, and are exported, just
    before their parent), so the distance takes a byte where the id takes eight. Code 0 means no
    parent; parents not found in the page go to an exception list. A page of root spans only
    (every parent 0: top-level captured calls) is a constant page, without sorting the ids.
    """
    n = int(parents.size)
    parents = parents.astype(np.uint64, copy=False)
    if not parents.any():
        return encode(parents, CODEC_RAW)
    order = np.argsort(span_ids, kind="stable")
    sorted_ids = span_ids[order]
    pos = np.searchsorted(sorted_ids, parents)
    pos_clipped = np.minimum(pos, max(n - 1, 0))
    found = (
        (n > 0) & (sorted_ids[pos_clipped] == parents) & (parents != 0) if n else np.zeros(0, bool)
    )
    rows = np.arange(n, dtype=np.int64)
    codes = np.zeros(n, dtype=np.uint64)
    dist = rows - order[pos_clipped].astype(np.int64)
    codes[found] = zigzag(dist[found]) + np.uint64(2)
    missing = (parents != 0) & ~found
    codes[missing] = 1
    exceptions = parents[missing].astype("<u8").tobytes()
    width, raw = _pack_uint(codes)
    flag, body = _squeeze(raw + exceptions)
    head = _HEAD.pack(CODEC_REF, flag | width << 4, n)
    return head + struct.pack("<II", int(missing.sum()), len(raw) + len(exceptions)) + body


def decode_parents(
    data: bytes | memoryview, span_ids: np.ndarray, rows: int | None = None
) -> np.ndarray:
    """Inverse of :func:`encode_parents` (CorruptPageError on bad bytes, as :func:`decode`)."""
    try:
        _check_count(data, rows)
        if rows is None and _HEAD.unpack_from(data, 0)[2] != span_ids.size:
            raise CorruptPageError("parent page and span ids differ in length")
        return _decode_parents(data, span_ids)
    except BAD_BYTES as exc:
        raise CorruptPageError(f"parent span page does not decode: {exc}") from None


def _decode_parents(data: bytes | memoryview, span_ids: np.ndarray) -> np.ndarray:
    codec, flags, n = _HEAD.unpack_from(data, 0)
    if codec == CODEC_TIMED:
        raise CorruptPageError("a page stored in start order decoded without the start times")
    if codec != CODEC_REF:
        return _decode(data, np.dtype(np.uint64))
    if n != span_ids.size:
        raise CorruptPageError(f"parent page holds {n} values for {span_ids.size} span ids")
    body = memoryview(data)[_HEAD.size :]
    n_missing, size = struct.unpack_from("<II", body, 0)
    width = flags >> 4
    raw = _unsqueeze(flags, body[8:], size)
    codes = _unpack_uint(raw, width, n)
    out = np.zeros(n, dtype=np.uint64)
    is_ref = codes >= 2
    rows = np.nonzero(is_ref)[0]
    out[is_ref] = span_ids[rows - unzigzag(codes[is_ref] - np.uint64(2))]
    out[codes == 1] = np.frombuffer(raw, dtype="<u8", count=n_missing, offset=n * width)
    return out


def start_order(start: np.ndarray) -> np.ndarray:
    """The rows of a chunk in the order of their start times (ties: stored order).

    A stable sort gives one answer for given start times, so the writer and every reader derive
    the same order from the stored start column alone: nothing about it is stored.
    """
    return np.argsort(start, kind="stable")


def encode_timed(values: np.ndarray, codec: int, order: Callable[[], np.ndarray]) -> bytes:
    """``values`` encoded with ``codec`` in the row order ``order()`` (see :func:`start_order`;
    asked only when the page is not constant).

    Why: a chunk ordered by function scatters a trace's spans over the functions' runs, so a
    trace id table's per-row index jumps at random (~2 B/row for each of trace_hi and trace_lo
    on bench_db.py's workload); in start order the spans of a trace are neighbours again and
    the index steps by 0 or 1. The reader rebuilds the order from the start column (one stable
    argsort), so the order costs no bytes. Pages whose form gains nothing from an order (a
    constant, or random distinct ids stored raw) are stored as they are, and decode without it.

    Layout: the usual head (``CODEC_TIMED``, row count), then the page of the reordered values.
    """
    u = _as_u64(values)
    n = int(u.size)
    if n < 2 or bool((u == u[0]).all()):
        return encode(u, codec)
    inner = encode(u.take(order()), codec)
    if _HEAD.unpack_from(inner, 0)[0] == CODEC_RAW:
        return encode(u, CODEC_RAW)
    return _HEAD.pack(CODEC_TIMED, 0, n) + inner


def encode_parents_timed(
    parents: np.ndarray, span_ids: np.ndarray, order: Callable[[], np.ndarray]
) -> bytes:
    """:func:`encode_parents` in the row order ``order()``: a child's row is near its parent's
    in start order, not in function order."""
    if not parents.any():
        return encode_parents(parents, span_ids)
    rows = order()
    inner = encode_parents(parents.take(rows), span_ids.take(rows))
    return _HEAD.pack(CODEC_TIMED, 0, int(parents.size)) + inner


def is_timed(data: bytes | memoryview) -> bool:
    """True when the page was stored in start order (its decoding needs the start times)."""
    return len(data) >= _HEAD.size and _HEAD.unpack_from(data, 0)[0] == CODEC_TIMED


def decode_timed(
    data: bytes | memoryview,
    dtype: np.dtype,
    order: np.ndarray,
    span_ids: np.ndarray | None = None,
    rows: int | None = None,
) -> np.ndarray:
    """Inverse of :func:`encode_timed` (or of :func:`encode_parents_timed` when ``span_ids``,
    the chunk's span ids in stored order, are given); ``order``: :func:`start_order` of the
    chunk's stored start times. Bad bytes raise CorruptPageError, as :func:`decode`."""
    try:
        _check_count(data, rows)
        _, _, n = _HEAD.unpack_from(data, 0)
        if order.size != n:
            raise CorruptPageError(f"page stored in start order holds {n} rows, not {order.size}")
        inner = memoryview(data)[_HEAD.size :]
        _check_count(inner, n)
        if span_ids is not None:
            if span_ids.size != n:
                raise CorruptPageError(f"parent page holds {n} values for {span_ids.size} ids")
            got = _decode_parents(inner, span_ids.take(order))
        else:
            got = _decode(inner, dtype)
        out = np.empty(n, dtype=got.dtype)
        out[order] = got
        return out
    except BAD_BYTES as exc:
        raise CorruptPageError(f"column page does not decode: {exc}") from None


#: The codec chosen for each physical column (measured with bench/bench_codecs.py).
COLUMN_CODECS: dict[str, int] = {
    "name": CODEC_NARROW,
    "start": CODEC_DELTA,
    "duration": CODEC_NARROW,
    "status": CODEC_NARROW,
    "kind": CODEC_NARROW,
    "service": CODEC_NARROW,
    "trace_hi": CODEC_IDS,
    "trace_lo": CODEC_IDS,
    "span_id": CODEC_IDS,
    "parent_span_id": CODEC_REF,
    "attributes": CODEC_NARROW,
    "resource": CODEC_NARROW,
}
