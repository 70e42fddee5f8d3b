"""Chunks: a run of rows written as one page per column, a dictionary page and a summary page.

Sealing a chunk computes, per function present, a mergeable summary of its durations plus its error
count and first/last start time (the "summary page"). Queries over whole chunks merge these and never
touch the column pages; only chunks cut by a time range are decoded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sized
from struct import Struct
from typing import TypeVar

import numpy as np

from kronicler._record import record
from kronicler.db import codec, zstd
from kronicler.db.page import DICT_PAGE, ORDERED_BY_FUNCTION, SUMMARY_PAGE, build_page
from kronicler.db.schema import COLUMN_IDS, COLUMNS, STATUS_ERROR
from kronicler.db.summary import Summary, summarize_groups
from kronicler.db.summary_codec import (
    SummaryColumns,
    decode_columns,
    decode_summaries,
    encode_summaries,
)
from kronicler.errors import CorruptPageError, SchemaVersionError

_SUMMARY_HEAD = Struct("<IIIII")  # entries, then byte lengths of codes, errors, first, last
S = TypeVar("S", bound=Sized)
#: Rows a column page block of an ordered chunk holds at least (but the last): see block_ends.
BLOCK_ROWS = 4096
#: Columns whose pages an ordered chunk cuts into blocks: what one function's queries read in
#: bulk. Ids stay whole pages: a trace id table per block would repeat each trace's ids in every
#: block its spans fall in (measured: trace_hi and trace_lo 6.8 B/row each in blocks, 2.7 whole).
BLOCK_COLUMNS = frozenset({"name", "start", "duration", "status", "kind", "service", "attributes"})
#: Id columns an ordered chunk stores in start order (see ``codec.encode_timed``): with random
#: trace ids, full spans took 21.4 B/row in function order against 16.75 in arrival order.
TIMED_COLUMNS = frozenset({"trace_hi", "trace_lo", "span_id", "parent_span_id"})


@record
class ChunkSummary:
    """Per-function statistics of one chunk, in local name codes.

    Fields:
        codes: name codes present in the chunk (uint32, ascending).
        summaries: one Summary per code.
        errors: calls with status ERROR per code.
        first_start, last_start: earliest and latest start time per code.
    """

    codes: np.ndarray
    summaries: list[Summary]
    errors: np.ndarray
    first_start: np.ndarray
    last_start: np.ndarray

    @property
    def max_duration(self) -> np.ndarray:
        return np.array([s.max for s in self.summaries], dtype=np.int64)

    @property
    def code_ends(self) -> np.ndarray:
        """End row of each code's rows, when the chunk's rows are ordered by function."""
        ends = np.cumsum([s.count for s in self.summaries], dtype=np.int64)
        ends.setflags(write=False)
        return ends


def summarize(columns: dict[str, np.ndarray]) -> ChunkSummary:
    """Per-function summary of a set of rows (local name codes)."""
    names = columns["name"].astype(np.int64)
    n_groups = int(names.max()) + 1 if names.size else 0
    per_group = summarize_groups(names, columns["duration"], n_groups)
    codes = np.array([g for g, s in enumerate(per_group) if s is not None], dtype=np.uint32)
    summaries = [s for s in per_group if s is not None]
    errors = np.bincount(names[columns["status"] == STATUS_ERROR], minlength=n_groups)[codes]
    start = columns["start"]
    first = np.full(n_groups, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n_groups, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, names, start)
    np.maximum.at(last, names, start)
    return ChunkSummary(codes, summaries, errors.astype(np.int64), first[codes], last[codes])


def encode_summary(cs: ChunkSummary) -> bytes:
    parts = [
        codec.encode(cs.codes, codec.CODEC_NARROW),
        codec.encode(cs.errors, codec.CODEC_NARROW),
        codec.encode(cs.first_start, codec.CODEC_RAW),
        codec.encode(cs.last_start, codec.CODEC_RAW),
    ]
    head = _SUMMARY_HEAD.pack(len(cs.codes), *(len(p) for p in parts))
    body = encode_summaries(list(zip(cs.codes.tolist(), cs.summaries, strict=True)))
    return head + b"".join(parts) + body


def decode_summary(data: bytes | memoryview) -> ChunkSummary:
    """Inverse of :func:`encode_summary`; bytes that do not decode raise CorruptPageError."""
    try:
        return _decode_summary(memoryview(data))
    except (*codec.BAD_BYTES, SchemaVersionError) as exc:  # a version byte is just bytes here
        raise CorruptPageError(f"summary page does not decode: {exc}") from None


def decode_summary_columns(data: bytes | memoryview) -> tuple[list[np.ndarray], SummaryColumns]:
    """A summary page as columns: ``[codes, errors, first_start, last_start]`` and the
    summaries' columns (no Summary objects built); bad bytes raise CorruptPageError."""
    try:
        return _decode_parts(memoryview(data), decode_columns)
    except (*codec.BAD_BYTES, SchemaVersionError) as exc:
        raise CorruptPageError(f"summary page does not decode: {exc}") from None


def _decode_summary(view: memoryview) -> ChunkSummary:
    arrays, summaries = _decode_parts(view, lambda b: [s for _, s in decode_summaries(b)])
    return ChunkSummary(arrays[0], summaries, arrays[1], arrays[2], arrays[3])


def _decode_parts(
    view: memoryview, body_of: Callable[[memoryview], S]
) -> tuple[list[np.ndarray], S]:
    n, *lengths = _SUMMARY_HEAD.unpack_from(view, 0)
    pos = _SUMMARY_HEAD.size
    body = pos + sum(lengths)
    if body > len(view):
        raise CorruptPageError(f"summary page of {len(view)} bytes, its header says more")
    # The summaries first: their block checks its own lengths, so ``n`` is known good before
    # the arrays that depend on it are allocated.
    summaries = body_of(view[body:])  # read in place, not copied
    if len(summaries) != n:
        raise CorruptPageError(f"summary page holds {len(summaries)} summaries, header says {n}")
    arrays = []
    for length, dtype in zip(lengths, (np.uint32, np.int64, np.int64, np.int64), strict=True):
        arrays.append(codec.decode(view[pos : pos + length], np.dtype(dtype), rows=n))
        pos += length
    codes = arrays[0]
    if n > 1 and bool((codes[1:] <= codes[:-1]).any()):
        raise CorruptPageError("summary page codes are not strictly ascending")
    return arrays, summaries


def encode_entries(entries: dict[str, list[tuple[int, str]]]) -> bytes:
    return zstd.compressor(3).compress(json.dumps(entries, separators=(",", ":")).encode())


def decode_entries(data: bytes | memoryview) -> dict[str, list[tuple[int, str]]]:
    """Inverse of :func:`encode_entries`; bytes that do not decode raise CorruptPageError."""
    try:
        raw = json.loads(zstd.decompressor().decompress(bytes(data)))
        out = {str(k): [(int(c), str(t)) for c, t in v] for k, v in raw.items()}
    except (*codec.BAD_BYTES, AttributeError, RecursionError) as exc:
        raise CorruptPageError(f"dictionary page does not decode: {exc}") from None
    if any(c < 0 for items in out.values() for c, _ in items):
        raise CorruptPageError("dictionary page defines a negative code")
    return out


def encode_chunk(
    seq: int,
    columns: dict[str, np.ndarray],
    entries: dict[str, list[tuple[int, str]]],
    summary: ChunkSummary,
    *,
    ordered: bool = False,
) -> list[bytes]:
    """All pages of one chunk, in file order: columns, dictionary, summary (last).

    ``ordered``: the rows are ordered by function (see :func:`by_function`); the dictionary
    page's header says so.
    """
    rows = len(columns["start"])
    blocks = block_ends(summary.code_ends) if ordered else None
    order = _StartOrder(columns["start"]) if ordered else None
    pages = []
    for name in COLUMNS:
        values = columns[name]
        if name == "parent_span_id":  # row references span the whole page: never in blocks
            if order is None:
                payload = codec.encode_parents(values, columns["span_id"])
            else:
                payload = codec.encode_parents_timed(values, columns["span_id"], order)
        elif order is not None and name in TIMED_COLUMNS:
            payload = codec.encode_timed(values, codec.COLUMN_CODECS[name], order)
        elif blocks is not None and name in BLOCK_COLUMNS:
            payload = codec.encode_blocks(values, codec.COLUMN_CODECS[name], blocks)
        else:
            payload = codec.encode(values, codec.COLUMN_CODECS[name])
        lo = hi = 0
        if name in ("start", "duration") and rows:
            lo, hi = int(values.min()), int(values.max())
        pages.append(build_page(COLUMN_IDS[name], seq, rows, payload, lo, hi))
    flag = ORDERED_BY_FUNCTION if ordered else 0
    pages.append(build_page(DICT_PAGE, seq, rows, encode_entries(entries), flag, flag))
    start = columns["start"]
    lo, hi = (int(start.min()), int(start.max())) if rows else (0, 0)
    pages.append(build_page(SUMMARY_PAGE, seq, rows, encode_summary(summary), lo, hi))
    return pages


class _StartOrder:
    """:func:`codec.start_order` of a chunk, sorted only if a page asks for it (constant id
    pages, as in timing-only rows, never do)."""

    __slots__ = ("_order", "_start")

    def __init__(self, start: np.ndarray) -> None:
        self._start = start
        self._order: np.ndarray | None = None

    def __call__(self) -> np.ndarray:
        if self._order is None:
            self._order = codec.start_order(self._start)
        return self._order


def block_ends(code_ends: np.ndarray) -> np.ndarray:
    """End rows of the blocks of an ordered chunk's column pages (see ``codec.encode_blocks``).

    A block ends at the first function boundary past each multiple of :data:`BLOCK_ROWS`, so a
    block holds whole functions, about ``BLOCK_ROWS`` rows or one big function. Writer and
    reader derive the cuts from the function row counts alone, so a query finds the blocks that
    hold one function's rows without reading any page first (the page records them too, and the
    two must agree).
    """
    if code_ends.size == 0:
        return code_ends
    q = code_ends // BLOCK_ROWS
    cut = np.empty(q.size, dtype=bool)  # the first function end past a multiple of BLOCK_ROWS
    cut[0] = q[0] > 0
    np.greater(q[1:], q[:-1], out=cut[1:])  # (not np.r_: its overhead, per chunk at open)
    cut[-1] = True
    return code_ends[cut]


def by_function(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rows reordered by (name code, start): one function's rows are then one run.

    A query for one function reads only its run of each page (the run's bounds are the cumulative
    counts of the chunk's summary, kept in the segment index), and the name page becomes a few
    runs. The start deltas grow within a run by about what the name page saves (the entropy of
    the function mix), so the bytes per row stay level (see bench/bench_db.py).
    """
    names, start = columns["name"], columns["start"]
    order = np.argsort(start, kind="stable")  # rows arrive nearly in start order: cheap
    if names.size and int(names.max()) < 1 << 16:
        # a stable radix sort of 16-bit codes keeps the start order within each function:
        # ~3x faster than lexsort on 65,536 rows (3.3 ms against 10 ms here)
        order = order[np.argsort(names[order].astype(np.uint16), kind="stable")]
    else:
        order = order[np.argsort(names[order], kind="stable")]
    # Constant columns (ids and texts of timing-only rows) need no gather: ~a third of the time.
    return {c: a if _constant(a) else a.take(order) for c, a in columns.items()}


def _constant(a: np.ndarray) -> bool:
    return a.size == 0 or bool((a == a[0]).all())


def decode_column(
    name: str,
    payload: bytes | memoryview,
    span_ids: np.ndarray | None,
    rows: int | None = None,
    start: Callable[[], np.ndarray] | None = None,
) -> np.ndarray:
    """Decode one column page; ``parent_span_id`` needs the chunk's span ids.

    ``rows``: the chunk's row count; a page holding another count raises CorruptPageError.
    ``start``: gives the chunk's stored start times, asked only for a page stored in start
    order (``codec.encode_timed``).
    """
    if codec.is_timed(payload):
        if start is None:
            raise ValueError(f"decoding this {name} page needs the chunk's start times")
        if name == "parent_span_id" and span_ids is None:
            raise ValueError("decoding parent_span_id needs the chunk's span ids")
        order = codec.start_order(start())
        parents = span_ids if name == "parent_span_id" else None
        return codec.decode_timed(payload, COLUMNS[name], order, parents, rows)
    if name == "parent_span_id":
        if span_ids is None:
            raise ValueError("decoding parent_span_id needs the chunk's span ids")
        return codec.decode_parents(payload, span_ids, rows)
    return codec.decode(payload, COLUMNS[name], rows)
