"""Roll-ups: per-function summaries of runs of chunks, so any time range merges O(log n) summaries.

A time range over a segment of n chunks used to merge the summary of every chunk inside it (15,000
at a billion rows) and decode the chunks it cuts. Roll-ups add a tree over each segment's chunks:
the node at level L, index j summarises chunks ``j * FANOUT**L`` to ``(j + 1) * FANOUT**L - 1``
(level 0 is the chunk itself), and records the union of its chunks' time ranges. A query walks
down from the top: a node whose time range lies inside the window is merged whole, one outside is
skipped, and only a node the window's edge cuts is opened into its children. Within a segment the
chunks run roughly in time order, so each edge cuts about one node per level: a range costs at
most ``2 * (FANOUT - 1)`` summaries per level plus the chunks the edges actually cut. A window
that holds every chunk of a segment reads none of this: the segment's whole roll-up, which its
index records and the reader holds from open, answers for it (at 1B rows in 59 segments, a cold
57% range holds 24 segments whole, which took 5 records each).

Why chunk-aligned nodes and not wall-clock buckets (minute, hour, day). A chunk spans a time
range, so a bucket is only whole for a window when every chunk that fed it lies inside the window;
buckets would need the chunks sorted into them by their whole range, with stragglers falling back
to finer grains. A node made of whole chunks has no such problem: it is whole exactly when the
union of its chunks' ranges is, the same test a chunk passes, so counts stay exact for every range
by construction, and the tree adapts to any arrival rate (an idle hour costs nothing, a busy
minute is split as finely as its chunks). The price: a span whose start lies long before its
chunk's other rows widens that chunk's range and the nodes above it, so windows cut more of them.
Compaction writes rows in start order, which leaves no such stragglers.

Persistence. The writer appends a record to ``<segment>.roll`` whenever a node is complete (its
last chunk sealed), and at close the right-edge nodes clipped to the last chunk. Beside them, the
edge records: chunks 0 to ``k * FANOUT - 1`` as each level-1 node completes, and ``k * FANOUT``
to the last chunk at close (:func:`suffixes`), so a window holding a segment from one end reads
one record there instead of a few per level; segments from before them get them from
``kronicler upgrade`` (:func:`kronicler.db.backfill.add_edge_records`), and read without them. Records are pages
(:mod:`kronicler.db.page`: magic, version, checksum) whose payload is a chunk summary page
(:func:`kronicler.db.chunk.encode_summary`) and whose header names the chunks summarised (``min``
and ``max`` hold the first and last chunk number). A record is a fact about a run of chunks,
whatever the level that wrote it, so a reader uses it only for exactly that run. The file is only
appended and never fsynced: a record lost to a crash, torn, damaged or simply absent (a segment of
an older Kronicler, or a full disk) is rebuilt in memory from the node's children when a query
first needs it, and cached. Nodes holding a damaged chunk, or one with dropped rows, are never
used: the query opens them into children down to the chunks themselves.

Memory. A reader keeps only each record's offset; summaries are loaded through the bufferpool as
:class:`Block` pages, so the pool's byte budget covers them. The writer keeps at most
``FANOUT - 1`` pending summaries per level. On disk a node costs about one chunk summary page, and
there are ``n / (FANOUT - 1)`` nodes: with FANOUT 8, about 1/7 of a summary page (~1.5 KB) per
64k-row chunk, 0.02-0.03 bytes per row.

Merging. A :class:`Block` holds the per-function summaries of one node as columns (struct of
arrays, buckets in one CSR pair), so merging many blocks over many functions is a handful of
vectorised numpy calls instead of one ``Summary.merge_all`` per function and block.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Final

import numpy as np

from kronicler._record import record
from kronicler.db.chunk import (
    ChunkSummary,
    decode_summary,
    decode_summary_columns,
    encode_summary,
)
from kronicler.db.chunk_table import Chunks
from kronicler.db.fileio import append_all
from kronicler.db.page import HEADER_SIZE, build_page, parse_header, verified_payload
from kronicler.db.scan import FunctionSummary, TimeRange
from kronicler.db.schema import STATUS_ERROR
from kronicler.db.snapshot import Rollup
from kronicler.db.summary import Summary, summarize_runs
from kronicler.db.summary_codec import SummaryColumns
from kronicler.errors import CorruptPageError

log = logging.getLogger(__name__)

#: Children per node. 8 keeps a range at about 14 summaries per level while nodes cost 1/7 of
#: the chunk summaries on disk (4 would halve the summaries per level and double the bytes).
FANOUT: Final = 8
SUFFIX: Final = ".roll"
#: Page kind of a roll-up record, format 1 (a later format takes another kind; readers skip
#: kinds they do not know).
ROLLUP_PAGE: Final = 110

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
_EXACT_FLOAT = 1 << 53  # integers below this add exactly in float64


# -- blocks: many per-function summaries as columns --------------------------------------------


@record(eq=False)
class Block:
    """Per-function summaries of a run of rows, as columns. Immutable (arrays read-only).

    Fields:
        codes: function codes, ascending (a segment's name codes, or a query's own numbering).
        count, zero_count, errors, min, max, first_start, last_start: per code (int64).
        sum, m2: per code (float64), as in :class:`~kronicler.db.summary.Summary`.
        bounds: per code, its buckets are ``keys[bounds[i]:bounds[i + 1]]`` (int64, n + 1).
        keys, counts: bucket keys (int32, ascending per code) and counts (int64).
    """

    codes: np.ndarray
    count: np.ndarray
    zero_count: np.ndarray
    errors: np.ndarray
    min: np.ndarray
    max: np.ndarray
    first_start: np.ndarray
    last_start: np.ndarray
    sum: np.ndarray
    m2: np.ndarray
    bounds: np.ndarray
    keys: np.ndarray
    counts: np.ndarray
    key_range: tuple[int, int]  # smallest and largest key (0, -1 when there are none)

    @property
    def nbytes(self) -> int:
        """What the block costs a bufferpool."""
        return 128 + sum(getattr(self, f).nbytes for f in self.__match_args__ if f != "key_range")

    def __len__(self) -> int:
        return int(self.codes.size)

    @classmethod
    def of(cls, cs: ChunkSummary) -> Block:
        """The block of a chunk summary (functions with no calls are left out)."""
        rows = [i for i, s in enumerate(cs.summaries) if s.count]
        items = [cs.summaries[i] for i in rows]
        # One list per column (comprehensions: a segment's roll-up becomes a block on every
        # cold range that holds the segment whole, 59 of them at 1B)
        ints = np.array([[s.count, s.zero_count, s.min or 0, s.max or 0] for s in items],
                        np.int64).reshape(len(items), 4)  # fmt: skip
        floats = np.array([[s.sum, s.m2] for s in items], np.float64).reshape(len(items), 2)
        lens = np.array([s.keys.size for s in items], np.int64)
        return cls._frozen(
            codes=np.asarray(cs.codes, np.int64)[rows], count=ints[:, 0].copy(),
            zero_count=ints[:, 1].copy(), errors=np.asarray(cs.errors, np.int64)[rows],
            min=ints[:, 2].copy(), max=ints[:, 3].copy(),
            first_start=np.asarray(cs.first_start, np.int64)[rows],
            last_start=np.asarray(cs.last_start, np.int64)[rows],
            sum=floats[:, 0].copy(), m2=floats[:, 1].copy(),
            bounds=np.concatenate(([0], np.cumsum(lens))).astype(np.int64),
            keys=np.concatenate([s.keys for s in items] or [np.zeros(0, np.int32)]),
            counts=np.concatenate([s.counts for s in items] or [np.zeros(0, np.int64)]),
        )  # fmt: skip

    @classmethod
    def of_ordered(
        cls, cols: Mapping[str, np.ndarray], codes: np.ndarray, ends: np.ndarray, rows: np.ndarray
    ) -> Block:
        """The block of rows ``rows`` (ascending) of ``cols`` (start, duration, status) whose
        rows are ordered by function: code ``codes[i]`` holds rows ``ends[i-1]:ends[i]``.

        What ``Block.of(summarize(...))`` gives for the same rows, bit for bit, without the
        sort by function, the per-function ``Summary`` objects or the name column: the cost of
        a time range's edge chunks.
        """
        sizes = np.diff(np.searchsorted(rows, np.concatenate(([0], ends))))
        return cls._of_runs(np.asarray(codes, np.int64), sizes, {c: cols[c][rows] for c in
                            ("start", "duration", "status")})  # fmt: skip

    @classmethod
    def of_rows(cls, groups: np.ndarray, cols: Mapping[str, np.ndarray]) -> Block:
        """The block of rows in no order (``cols``: start, duration, status), per ``groups``
        (the code of each row, >= 0): the rows of many chunks' edges, summarised at once
        (one stable radix sort by code, then what :meth:`of_ordered` does)."""
        if not groups.size:
            return _EMPTY
        # codes are a query's numbering (small): a count per code, not a second sort
        per_code = np.bincount(groups)
        codes = np.flatnonzero(per_code)
        small = per_code.size <= 1 << 16
        order = np.argsort(groups.astype(np.uint16) if small else groups, kind="stable")
        return cls._of_runs(codes.astype(np.int64), per_code[codes], {c: cols[c].take(order)
                            for c in ("start", "duration", "status")})  # fmt: skip

    @classmethod
    def _of_runs(
        cls, codes: np.ndarray, sizes: np.ndarray, cols: Mapping[str, np.ndarray]
    ) -> Block:
        """The block of ``cols``' rows, in runs of ``sizes`` rows per code of ``codes``."""
        runs = summarize_runs(cols["duration"], sizes)
        if not runs.present.size:
            return _EMPTY
        starts = np.concatenate(([0], np.cumsum(runs.rows)[:-1]))
        errors = (cols["status"] == STATUS_ERROR).astype(np.int64)
        start = cols["start"]
        return cls._frozen(
            codes=codes[runs.present], count=runs.rows,
            zero_count=runs.zero_count, errors=np.add.reduceat(errors, starts),
            min=runs.min, max=runs.max, first_start=np.minimum.reduceat(start, starts),
            last_start=np.maximum.reduceat(start, starts), sum=runs.sum, m2=runs.m2,
            bounds=runs.bounds, keys=runs.keys, counts=runs.counts,
        )  # fmt: skip

    @classmethod
    def from_page(cls, payload: bytes | memoryview) -> Block:
        """The block of a stored summary page, decoded straight into columns."""
        (codes, errors, first, last), c = decode_summary_columns(payload)
        if not bool((c.count > 0).all()):  # never written so; take the general road
            return cls.of(decode_summary(payload))
        return cls.of_columns(codes, c, errors, first, last)

    @classmethod
    def of_columns(
        cls, codes: np.ndarray, c: SummaryColumns, errors: np.ndarray, first: np.ndarray,
        last: np.ndarray,
    ) -> Block:  # fmt: skip
        """The block of decoded summary columns (every count > 0), one per code of ``codes``
        (ascending), with their error counts and first and last starts."""
        return cls._frozen(
            codes=codes.astype(np.int64), count=c.count, zero_count=c.zero_count,
            errors=errors.astype(np.int64), min=c.min, max=c.max,
            first_start=first.astype(np.int64), last_start=last.astype(np.int64), sum=c.sum,
            m2=c.m2, bounds=c.bounds, keys=c.keys, counts=c.counts,
        )  # fmt: skip

    @classmethod
    def _frozen(cls, **arrays: np.ndarray) -> Block:
        keys = arrays["keys"]
        for a in arrays.values():
            a.flags.writeable = False
        key_range = (int(keys.min()), int(keys.max())) if keys.size else (0, -1)
        return cls(**arrays, key_range=key_range)

    def take(self, rows: np.ndarray) -> Block:
        """The block of rows ``rows`` (ascending positions): a function's buckets gathered
        as one run per row, one index built for every row at once."""
        lens = np.diff(self.bounds)[rows]
        bounds = np.concatenate(([0], np.cumsum(lens))).astype(np.int64)
        at = np.repeat(self.bounds[:-1][rows] - bounds[:-1], lens) + np.arange(int(bounds[-1]))
        return Block._frozen(
            codes=self.codes[rows], count=self.count[rows], zero_count=self.zero_count[rows],
            errors=self.errors[rows], min=self.min[rows], max=self.max[rows],
            first_start=self.first_start[rows], last_start=self.last_start[rows],
            sum=self.sum[rows], m2=self.m2[rows], bounds=bounds, keys=self.keys[at],
            counts=self.counts[at],
        )  # fmt: skip

    def rows(self, a: int, b: int) -> Block:
        """Rows ``a`` to ``b - 1`` (views of this block's arrays, read-only as they are)."""
        lo, hi = int(self.bounds[a]), int(self.bounds[b])
        bounds = self.bounds[a : b + 1] - lo
        bounds.flags.writeable = False
        keys = self.keys[lo:hi]
        return Block(
            codes=self.codes[a:b], count=self.count[a:b], zero_count=self.zero_count[a:b],
            errors=self.errors[a:b], min=self.min[a:b], max=self.max[a:b],
            first_start=self.first_start[a:b], last_start=self.last_start[a:b],
            sum=self.sum[a:b], m2=self.m2[a:b], bounds=bounds, keys=keys,
            counts=self.counts[lo:hi],
            key_range=(int(keys.min()), int(keys.max())) if keys.size else (0, -1),
        )  # fmt: skip

    def summary(self, i: int) -> Summary:
        """Row ``i`` as a Summary (sharing this block's read-only bucket arrays)."""
        a, b = int(self.bounds[i]), int(self.bounds[i + 1])
        return Summary(
            int(self.count[i]), float(self.sum[i]), float(self.m2[i]), int(self.min[i]),
            int(self.max[i]), int(self.zero_count[i]), self.keys[a:b], self.counts[a:b],
        )  # fmt: skip

    def function_summary(self, i: int) -> FunctionSummary:
        return FunctionSummary(self.summary(i), int(self.errors[i]), int(self.first_start[i]),
                               int(self.last_start[i]))  # fmt: skip

    def rollup(self) -> Rollup:
        """The same summaries as a segment's whole roll-up (the form its index records)."""
        codes = self.codes.tolist()
        return Rollup(
            {c: self.summary(i) for i, c in enumerate(codes)},
            dict(zip(codes, self.errors.tolist(), strict=True)),
            dict(zip(codes, self.first_start.tolist(), strict=True)),
            dict(zip(codes, self.last_start.tolist(), strict=True)),
        )

    def chunk_summary(self) -> ChunkSummary:
        """The same summaries as a ChunkSummary (the form records are stored in)."""
        return ChunkSummary(
            self.codes.astype(np.uint32), [self.summary(i) for i in range(len(self))],
            self.errors.copy(), self.first_start.copy(), self.last_start.copy(),
        )  # fmt: skip


#: Time slices of a chunk cut by a range's edge (see ChunkSlices): a cut then summarises the
#: rows of one slice, 1/16 of the chunk, instead of every row the range holds. At 10M rows a
#: 64k-row chunk's slices cost the pool 0.62 MB with 16 (8: 0.45 MB; 32: 0.85 MB) plus 75 KB
#: per slice a range cuts (8: 150 KB): the same ~0.77 MB for a chunk cut at both edges, and
#: half the edge rows to summarise (at 100M, the 25% range: 26k rows against 92k with 8).
SLICES: Final = 16


@record(eq=False)
class ChunkSlices:
    """The summaries of a sealed chunk's rows cut into time slices, for the ranges whose edges
    cut the chunk, and the chunk's rows in start order.

    A range's edge cuts about one chunk per segment, and summarising a cut chunk's rows in the
    range costs ~40 numpy passes over up to the whole chunk: at 10M rows in 9 segments, 18
    chunks of 64k rows per range, 100-200 ms. Slices bound that work: the chunk's start times
    are cut at ``SLICES`` values into runs of about equal rows (equal starts stay in one
    slice), each with its summaries as a Block; a range merges the slices it holds whole (a
    run of them merged once and kept, :meth:`joined`), and needs rows only of the (at most
    two) slices its edges cut: a contiguous run of ``rows``, found by two binary searches.
    Built once per chunk and kept in the bufferpool like a page.

    Keeping the rows here (19 bytes a row, 1.2 MB at 64k rows, beside 0.6 MB of slices) is the
    trade-off for a window that moves: its edges enter a new slice of some segment's chunk
    every question or two at a billion rows, and each such slice's rows were read from the
    chunk's three columns decoded again (1.1 MB, ~3 ms), as those do not stay in the pool.
    Every slice's summaries come from one pass over the chunk (rows ordered by slice, then by
    function as stored), not one pass per slice: the same values, bit for bit.

    Fields:
        edges: per slice, the smallest start it holds (int64, ascending); slice ``i`` holds
            the rows with ``edges[i] <= start < edges[i + 1]``, the last one every later start.
        hi: per slice, its largest start (int64).
        blocks: per slice, the summaries of its rows (the chunk's name codes).
        rows: the chunk's rows in start order; slice ``i``'s are ``at[i]:at[i + 1]``.
        at: per slice, where its rows begin in ``rows`` (int64, one more than the slices).
    """

    edges: np.ndarray
    hi: np.ndarray
    blocks: tuple[Block, ...]
    rows: SliceRows
    at: np.ndarray

    @property
    def nbytes(self) -> int:
        """What the slices cost a bufferpool."""
        return (128 + self.edges.nbytes + self.hi.nbytes + self.at.nbytes + self.rows.nbytes
                + sum(b.nbytes for b in self.blocks))  # fmt: skip

    @classmethod
    def of(
        cls, cols: Mapping[str, np.ndarray], codes: np.ndarray, ends: np.ndarray,
        slices: int = SLICES,
    ) -> ChunkSlices:  # fmt: skip
        """Slices of a chunk's rows ordered by function (``ends`` as in Block.of_ordered)."""
        start = cols["start"]
        n = start.size
        order = np.argsort(start, kind="stable")
        ordered = start[order]
        bounds = np.linspace(0, n, min(slices, max(1, n)) + 1).astype(np.int64)
        edges = np.unique(ordered[bounds[:-1]]).astype(np.int64)
        at = np.append(np.searchsorted(ordered, edges), n).astype(np.int64)
        hi = ordered[at[1:] - 1].astype(np.int64)
        # Each row's slice, then rows ordered by (slice, function): a stable sort of the slice
        # numbers keeps each function's rows in their stored order within a slice.
        k, m = int(edges.size), int(np.asarray(codes).size)
        slice_of = np.empty(n, np.int64)
        slice_of[order] = np.repeat(np.arange(k, dtype=np.int64), np.diff(at))
        by = np.argsort(slice_of.astype(np.uint8) if k <= 1 << 8 else slice_of, kind="stable")
        code_of = np.repeat(np.arange(m, dtype=np.int64), np.diff(ends, prepend=0))
        sizes = np.bincount(slice_of * m + code_of, minlength=k * m)
        every = Block._of_runs(np.tile(np.asarray(codes, np.int64), k), sizes,
                               {c: cols[c][by] for c in ("start", "duration", "status")})  # fmt: skip
        # the block's rows are its (slice, function) runs with rows, in order: cut per slice
        cuts = np.searchsorted(np.flatnonzero(sizes) // max(m, 1), np.arange(k + 1))
        blocks = tuple(every.rows(a, b) for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(),
                                                          strict=True))  # fmt: skip
        code = code_of[order]
        rows = SliceRows(ordered, cols["duration"][order], cols["status"][order],
                         code.astype(np.uint16) if ends.size <= 1 << 16 else code)  # fmt: skip
        for x in (edges, hi, at, *(getattr(rows, f) for f in SliceRows.__match_args__)):
            x.flags.writeable = False
        return cls(edges, hi, blocks, rows, at)

    def window(self, i: int) -> TimeRange:
        """The starts slice ``i`` holds."""
        return TimeRange(int(self.edges[i]),
                         int(self.edges[i + 1]) if i + 1 < self.edges.size else None)  # fmt: skip

    def slice_rows(self, i: int) -> SliceRows:
        """Slice ``i``'s rows, in start order (views of ``rows``)."""
        a, b = int(self.at[i]), int(self.at[i + 1])
        r = self.rows
        return SliceRows(r.start[a:b], r.duration[a:b], r.status[a:b], r.code[a:b])

    def cut(self, window: TimeRange) -> tuple[list[tuple[int, int]], list[int]]:
        """What ``window`` holds of the chunk: the runs ``[i, j)`` of slices it holds whole
        (their blocks are ``joined(i, j)``), and the slices it cuts (see :meth:`slice_rows`)."""
        runs: list[tuple[int, int]] = []
        cut: list[int] = []
        for i, (lo, hi) in enumerate(zip(self.edges.tolist(), self.hi.tolist(), strict=True)):
            cover = window.covers(lo, hi)
            if cover == 2:
                if runs and runs[-1][1] == i:
                    runs[-1] = (runs[-1][0], i + 1)
                else:
                    runs.append((i, i + 1))
            elif cover == 1:
                cut.append(i)
        return runs, cut

    def joined(self, i: int, j: int) -> Block:
        """Slices ``i`` to ``j - 1`` merged (a window holds a run of them whole; the reader
        keeps each run it merged in the pool, so a range merges one block per cut chunk)."""
        return self.blocks[i] if j == i + 1 else merge([(None, b) for b in self.blocks[i:j]])


@record(eq=False)
class SliceRows:
    """Rows of a chunk in start order (see ChunkSlices): what a range whose edge cuts a slice
    reads, a contiguous run found by two binary searches. 19 bytes a row.

    Fields:
        start, duration: per row (int64), start ascending.
        status: per row (uint8).
        code: per row, the index of its function in the chunk's ``codes`` (uint16 or int64).
    """

    start: np.ndarray
    duration: np.ndarray
    status: np.ndarray
    code: np.ndarray

    @property
    def nbytes(self) -> int:
        return 128 + sum(getattr(self, f).nbytes for f in self.__match_args__)

    def within(self, window: TimeRange) -> tuple[int, int]:
        """The run ``[a, b)`` of rows whose start lies in ``window``."""
        a = 0 if window.since is None else int(np.searchsorted(self.start, window.since))
        b = (self.start.size if window.until is None
             else int(np.searchsorted(self.start, window.until)))  # fmt: skip
        return a, max(a, b)


def merge(pieces: Sequence[tuple[np.ndarray | None, Block]]) -> Block:
    """One block of many, per code, exactly as ``Summary.merge_all`` would merge them.

    Each piece is ``(lookup, block)``: ``lookup[code]`` renumbers the block's codes (a segment's
    codes into a query's numbering; -1 leaves the function out), None keeps them. Counts, errors,
    min, max and bucket counts combine exactly; ``m2`` uses Chan et al.'s k-way form. A block
    whose lookup leaves functions out gives only its other rows to the merge (one function
    asked of a merge of every segment's: its buckets, not every function's).
    """
    parts: list[tuple[np.ndarray, Block]] = []
    for lk, b in pieces:
        if not len(b):
            continue
        g = b.codes if lk is None else lk[b.codes]
        if lk is not None and not bool((g >= 0).all()):
            rows = np.flatnonzero(g >= 0)
            if not rows.size:
                continue
            b, g = b.take(rows), g[rows]
        parts.append((g, b))
    if not parts:
        return _EMPTY
    if len(parts) == 1:  # one block (whole-history stats): renumber, nothing to add
        g, b = parts[0]
        if bool((np.diff(g) > 0).all()):
            g = g.astype(np.int64)
            g.flags.writeable = False
            return replace(b, codes=g)
    g_all = np.concatenate([g for g, _ in parts])

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for _, b in parts])

    scalars = {f: cat(f) for f in ("count", "zero_count", "errors", "min", "max", "first_start",
                                   "last_start", "sum", "m2")}  # fmt: skip
    groups, inv = np.unique(g_all, return_inverse=True)
    m = int(groups.size)
    out_keys, out_counts, bounds = _merge_buckets([b for _, b in parts], inv, m)
    count = _add_ints(inv, scalars["count"], m)
    total = np.bincount(inv, scalars["sum"], m)
    mean = total / count
    n = scalars["count"].astype(np.float64)
    spread = n * np.square(scalars["sum"] / n - mean[inv])
    m2 = np.bincount(inv, scalars["m2"], m) + np.bincount(inv, spread, m)
    lo = np.full(m, _INT64_MAX, np.int64)
    hi = np.full(m, _INT64_MIN, np.int64)
    first, last = lo.copy(), hi.copy()
    np.minimum.at(lo, inv, scalars["min"])
    np.maximum.at(hi, inv, scalars["max"])
    np.minimum.at(first, inv, scalars["first_start"])
    np.maximum.at(last, inv, scalars["last_start"])
    return Block._frozen(
        codes=groups.astype(np.int64), count=count,
        zero_count=_add_ints(inv, scalars["zero_count"], m),
        errors=_add_ints(inv, scalars["errors"], m), min=lo, max=hi, first_start=first,
        last_start=last, sum=total, m2=m2, bounds=bounds, keys=out_keys, counts=out_counts,
    )  # fmt: skip


def _add_ints(groups: np.ndarray, values: np.ndarray, m: int) -> np.ndarray:
    """Exact per-group sums of int64 values (bincount's float adds are exact below 2**53)."""
    if values.size and int(np.abs(values).sum()) < _EXACT_FLOAT:
        return np.rint(np.bincount(groups, values.astype(np.float64), m)).astype(np.int64)
    out = np.zeros(m, np.int64)
    np.add.at(out, groups, values)
    return out


def _merge_buckets(
    blocks: Sequence[Block], row_group: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bucket counts added per (group, key) over every block's rows (``row_group``: the group,
    below ``m``, of each row of the blocks in turn): keys ascending per group, and the CSR
    bounds. One dense table indexed ``group * span + key``, added into at once with
    ``bincount`` over every block's buckets (float adds, exact while the counts total below
    2**53; ``np.add.at`` past that)."""
    ranges = [b.key_range for b in blocks if b.keys.size]
    if not ranges:
        return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(m + 1, np.int64)
    kmin = min(r[0] for r in ranges)
    span = max(r[1] for r in ranges) - kmin + 1
    # Each bucket's table index: its row's base (group * span - kmin), repeated over the row's
    # buckets, plus its key; one repeat over every block, not a gather per block.
    sizes = np.concatenate([np.diff(b.bounds) for b in blocks])
    index = np.repeat(row_group * span - kmin, sizes)
    index += np.concatenate([b.keys for b in blocks])
    table: np.ndarray
    # A row's bucket counts add up to at most its count: the rows' counts bound the weights'
    # total without a pass over the buckets (bincount then takes float weights as they are).
    if sum(int(b.count.sum()) for b in blocks) < _EXACT_FLOAT:
        weights = np.concatenate([b.counts for b in blocks], dtype=np.float64)
        table = np.bincount(index, weights, m * span)
    else:
        table = np.zeros(m * span, np.int64)
        np.add.at(table, index, np.concatenate([b.counts for b in blocks]))
    pairs = np.flatnonzero(table)
    group = pairs // span
    out_keys = (pairs - group * span + kmin).astype(np.int32)
    bounds = np.searchsorted(group, np.arange(m + 1)).astype(np.int64)
    out_counts = table[pairs]
    if out_counts.dtype != np.int64:
        out_counts = np.rint(out_counts).astype(np.int64)
    return out_keys, out_counts, bounds


def _empty() -> Block:
    i64 = np.zeros(0, np.int64)
    return Block._frozen(
        codes=i64.copy(), count=i64.copy(), zero_count=i64.copy(), errors=i64.copy(),
        min=i64.copy(), max=i64.copy(), first_start=i64.copy(), last_start=i64.copy(),
        sum=np.zeros(0, np.float64), m2=np.zeros(0, np.float64), bounds=np.zeros(1, np.int64),
        keys=np.zeros(0, np.int32), counts=i64.copy(),
    )  # fmt: skip


_EMPTY = _empty()


# -- the tree over a segment's chunks ---------------------------------------------------------


@record
class Node:
    """A run of chunks merged as one: chunk numbers ``first`` to ``last``, at ``level`` >= 1."""

    level: int
    first: int
    last: int


@record
class Plan:
    """What a window needs from one segment: nodes merged whole, and chunks (positions in the
    view's chunk list) whole or cut by the window."""

    nodes: list[Node]
    whole: list[int]
    cut: list[int]


#: Plans a ChunkTree keeps, of the last windows asked (a few hundred bytes each).
_PLANS_KEPT: Final = 16


class ChunkTree:
    """The tree over one segment view's chunks (built once per view; immutable).

    A node is *usable* when every chunk number it covers is present and none had rows dropped,
    and either it is full or the segment is closed and it ends at the last chunk; only usable
    nodes are merged whole, so what a node's summary holds is exactly what its chunks hold.
    """

    def __init__(
        self, chunks: Chunks, *, closed: bool, fanout: int = FANOUT,
        records: Container[tuple[int, int]] = (),
    ) -> None:  # fmt: skip
        self.fanout = fanout
        self.closed = closed
        self.records = records  # the runs of chunks with a record (see _edged)
        # columns over every chunk: no ChunkInfo made (see chunk_table.py)
        self.seqs = chunks.column("seq")
        self.lo = chunks.column("start_min")
        self.hi = chunks.column("start_max")
        self._dirty = np.concatenate(([0], np.cumsum(~chunks.column("clean"))))
        n = self.seqs.size
        self.top = top_level(int(self.seqs[-1]), fanout) if n else 0
        self.start_min = int(self.lo.min()) if n else 0
        self.start_max = int(self.hi.max()) if n else 0
        # The nodes, found when a window first cuts the segment: a range holds most segments
        # whole or not at all (at 1B rows a cold 57% range plans 16 of 59), which need none.
        self._node_table: dict[tuple[int, int], tuple[int, int, int, int]] | None = None
        # The plans of the last windows asked (a dashboard asks the same ones again and again).
        self._plans: dict[TimeRange, Plan] = {}

    @property
    def _nodes(self) -> dict[tuple[int, int], tuple[int, int, int, int]]:
        """Per (level, index) of every node holding a chunk: its chunk positions [a, b) and
        the union of their time ranges, found for every node at once (a plan then compares)."""
        table = self._node_table
        if table is None:
            table = self._node_table = {}
            n, fanout = self.seqs.size, self.fanout
            for level in range(1, self.top + 1):
                j = self.seqs // fanout**level
                at = np.flatnonzero(np.diff(j, prepend=-1))
                ends = np.append(at[1:], n)
                lo, hi = np.minimum.reduceat(self.lo, at), np.maximum.reduceat(self.hi, at)
                for row in zip(j[at].tolist(), at.tolist(), ends.tolist(), lo.tolist(),
                               hi.tolist(), strict=True):  # fmt: skip
                    table[(level, row[0])] = row[1:]
        return table

    def holds_all(self, window: TimeRange) -> bool:
        """Whether ``window`` holds every chunk whole: the segment's own roll-up (its index
        records it, read at open) then answers with no record read, where the plan would merge
        every top-level node (5 records at 271 chunks, a third of a cold 25% range at 1B)."""
        return bool(self.seqs.size) and window.covers(self.start_min, self.start_max) == 2

    def plan(self, window: TimeRange) -> Plan:
        """What ``window`` needs of the segment (the same object for a window asked again:
        treat it as immutable)."""
        got = self._plans.get(window)
        if got is None:
            got = self._plan(window)
            if len(self._plans) >= _PLANS_KEPT:
                del self._plans[next(iter(self._plans))]
            self._plans[window] = got
        return got

    def _plan(self, window: TimeRange) -> Plan:
        out = Plan([], [], [])
        if not self.seqs.size:
            return out
        if self.top == 0:
            self._chunks(0, self.seqs.size, window, out)
            return self._joined(out)
        for j in range(int(self.seqs[-1]) // self.fanout**self.top + 1):
            self._visit(self.top, j, window, out)
        return self._edged(window, self._joined(out))

    def _edged(self, window: TimeRange, plan: Plan) -> Plan:
        """The plan with what the window holds from the segment's first chunk on, and from
        its last back, as one prefix and one suffix record (see :func:`suffixes`) where the
        segment has them: what they stand for is every node and chunk of the plan before
        (after) the record's end, which the plan holds whole. A record stands only for a run
        of present chunks with no rows dropped, and only replaces items wholly on its side."""
        n, f = self.seqs.size, self.fanout
        whole = window.mask(self.lo) & window.mask(self.hi)
        nodes, chunks = list(plan.nodes), list(plan.whole)
        seqs = self.seqs
        p = n if bool(whole.all()) else int(np.argmin(whole))  # chunks 0 .. p-1 held whole
        e = p // f * f  # the prefix record's end (exclusive)
        if (
            e >= 2 * f and int(seqs[e - 1]) == e - 1 and not self._dirty[e]
            and (0, e - 1) in self.records
        ):  # fmt: skip
            nodes, chunks = self._replace(nodes, chunks, edge_node(0, e - 1, f), 0, e)
        back = whole[::-1]
        q = n - (0 if not back[0] else n if bool(back.all()) else int(np.argmin(back)))
        if self.closed and q < n:  # chunks q .. n-1 held whole
            last = int(seqs[-1])
            s = -(-int(seqs[q]) // f) * f  # the suffix record's first chunk
            at = n - 1 - (last - s)  # its position, when every chunk after it is present
            if (
                0 < s < last and q <= at and int(seqs[at]) == s
                and self._dirty[n] == self._dirty[at] and (s, last) in self.records
            ):  # fmt: skip
                nodes, chunks = self._replace(nodes, chunks, edge_node(s, last, f), s, last + 1)
        if len(nodes) == len(plan.nodes) and chunks == plan.whole:
            return plan
        return Plan(nodes, chunks, plan.cut)

    def _replace(
        self, nodes: list[Node], chunks: list[int], edge: Node, a: int, b: int
    ) -> tuple[list[Node], list[int]]:
        """``nodes`` and ``chunks`` (positions) with those of chunk numbers ``a`` to ``b - 1``
        replaced by ``edge``; unchanged unless at least two go and none lies across ``a`` or
        ``b``."""
        keep = [x for x in nodes if x.last < a or x.first >= b]
        inside = [x for x in nodes if a <= x.first and x.last < b]
        stay = [pos for pos in chunks if not a <= int(self.seqs[pos]) < b]
        gone = len(inside) + len(chunks) - len(stay)
        if len(keep) + len(inside) != len(nodes) or gone < 2:
            return nodes, chunks
        return [edge, *keep] if a == 0 else [*keep, edge], stay

    def _joined(self, plan: Plan) -> Plan:
        """The plan with each run of whole siblings (nodes, or chunks) as one node: a window
        holds up to ``FANOUT - 1`` siblings per level and edge, and their buckets are the bulk
        of what a range merges (a million at 10M rows); as one node they are one block, merged
        from the siblings once and then kept in the pool. Only usable siblings are joined (the
        plan holds no other node; a chunk with dropped rows, or after a missing one, stays as
        it is), so the joined node stands for exactly the same chunks."""
        runs: list[list[Node]] = []
        for node in plan.nodes:
            run = runs[-1] if runs else None
            width = self.fanout ** (node.level + 1)
            if (
                run is not None
                and run[-1].level == node.level
                and run[-1].last + 1 == node.first
                and run[0].first // width == node.first // width
            ):
                run.append(node)
            else:
                runs.append([node])
        nodes = [r[0] if len(r) == 1 else Node(r[0].level + 1, r[0].first, r[-1].last)
                 for r in runs]  # fmt: skip
        chunks: list[list[int]] = []
        seqs, dirty = self.seqs, self._dirty
        for pos in plan.whole:
            run_ = chunks[-1] if chunks else None
            if (
                run_ is not None
                and run_[-1] == pos - 1
                and seqs[pos] == seqs[pos - 1] + 1
                and seqs[run_[0]] // self.fanout == seqs[pos] // self.fanout
                and dirty[pos + 1] == dirty[run_[0]]  # no dropped rows in the run
            ):
                run_.append(pos)
            else:
                chunks.append([pos])
        whole = [r[0] for r in chunks if len(r) == 1]
        nodes += [Node(1, int(seqs[r[0]]), int(seqs[r[-1]])) for r in chunks if len(r) > 1]
        return Plan(nodes, whole, plan.cut)

    def _visit(self, level: int, j: int, window: TimeRange, out: Plan) -> None:
        width = self.fanout**level
        node = self._nodes.get((level, j))
        if node is None:
            return  # no chunk of the node is readable
        a, b, lo, hi = node
        cover = window.covers(lo, hi)
        if cover == 0:
            return
        if cover == 2 and b - a > 1 and self._usable(j * width, width, a, b):
            out.nodes.append(Node(level, int(self.seqs[a]), int(self.seqs[b - 1])))
        elif level == 1:
            self._chunks(a, b, window, out)
        else:
            for k in range(j * self.fanout, (j + 1) * self.fanout):
                self._visit(level - 1, k, window, out)

    def _usable(self, first: int, width: int, a: int, b: int) -> bool:
        if self._dirty[b] != self._dirty[a]:
            return False
        if b - a == width:
            return True  # every chunk number of the node is present (they are unique)
        last = int(self.seqs[b - 1])
        return self.closed and b == self.seqs.size and last - first + 1 == b - a

    def _chunks(self, a: int, b: int, window: TimeRange, out: Plan) -> None:
        for pos in range(a, b):
            cover = window.covers(int(self.lo[pos]), int(self.hi[pos]))
            if cover == 2:
                out.whole.append(pos)
            elif cover == 1:
                out.cut.append(pos)


def edge_node(first: int, last: int, fanout: int = FANOUT) -> Node:
    """The node of an edge record (a prefix or a suffix of a segment's chunks, see
    :func:`suffixes`): at the level whose children (:func:`children`) are at least two shorter
    runs, which rebuild it when its record is unreadable (a pool entry is keyed by its run
    alone: a child of the same run would wait for itself)."""
    level = 1
    while first // fanout**level != last // fanout**level:
        level += 1
    return Node(level, first, last)


def suffixes(
    group: Callable[[int, int], Block | None], last: int, tail: Block | None,
    fanout: int = FANOUT,
) -> Iterator[tuple[Node, Block]]:  # fmt: skip
    """The suffix records of a closed segment whose last chunk is ``last``: chunks ``k *
    fanout`` to ``last`` for every ``k >= 1``, each merged from the next one and the level-1
    node before it (``group(first, last)``: a record's summaries, None when unreadable, which
    ends the chain); ``tail``: the summaries of the last, partial level-1 node's chunks (None:
    its record, or it is complete).

    Why prefixes and suffixes. A window that cuts a segment holds, at each edge, up to
    ``FANOUT - 1`` nodes per level of the tree, each a record to read and merge: 5-10 records
    per cut segment, a third of a cold 25% range at 1B rows. A window usually holds a segment
    from one of its ends: the records of chunks 0 to ``k * FANOUT - 1`` (written as the nodes
    complete) and of ``k * FANOUT`` to the last (at close) make that one record plus the
    chunks of one level-1 node. They cost two records per ``FANOUT`` chunks (~0.1 B/row).
    """
    top = last // fanout
    block = tail if tail is not None else group(top * fanout, last)
    for k in range(top - 1, 0, -1):
        part = group(k * fanout, k * fanout + fanout - 1)
        if block is None or part is None:
            return
        block = merge([(None, part), (None, block)])
        yield edge_node(k * fanout, last, fanout), block


def prefixes(
    group: Callable[[int, int], Block | None], last: int, fanout: int = FANOUT
) -> Iterator[tuple[Node, Block]]:
    """The prefix records of a segment whose last chunk is ``last`` (what the writer writes as
    each level-1 node completes, see :func:`suffixes`): chunks 0 to ``k * fanout - 1`` for
    every ``k >= 2`` with ``k * fanout - 1 <= last``."""
    block = group(0, fanout - 1)
    for k in range(2, (last + 1) // fanout + 1):
        part = group((k - 1) * fanout, k * fanout - 1)
        if block is None or part is None:
            return
        block = merge([(None, block), (None, part)])
        yield edge_node(0, k * fanout - 1, fanout), block


def top_level(last_seq: int, fanout: int = FANOUT) -> int:
    """The level a query starts from: the lowest with at most ``fanout`` nodes (0: one chunk)."""
    top = 0
    while last_seq // fanout ** (top + 1) > 0:
        top += 1
    return top


def children(node: Node, fanout: int = FANOUT) -> list[Node | int]:
    """What ``node`` is merged from when no record holds it: child nodes, or chunk numbers."""
    if node.level == 1:
        return list(range(node.first, node.last + 1))
    width = fanout ** (node.level - 1)
    out: list[Node | int] = []
    for k in range(node.first // width, node.last // width + 1):
        first, last = max(node.first, k * width), min(node.last, (k + 1) * width - 1)
        out.append(first if first == last else Node(node.level - 1, first, last))
    return out


# -- the roll-up file ---------------------------------------------------------------------------


def path_of(directory: Path, segment: str) -> Path:
    return directory / f"{segment}{SUFFIX}"


def record_page(node: Node, block: Block) -> bytes:
    """The record of ``node``'s summaries, as appended to the ``.roll`` file."""
    payload = encode_summary(block.chunk_summary())
    return build_page(ROLLUP_PAGE, node.level, node.last - node.first + 1, payload, node.first,
                      node.last)  # fmt: skip


class RollupWriter:
    """Appends a record for every node the writer's sealed chunks complete. One thread at a time.

    Failing to write a record never fails the seal: the record is left out (readers rebuild it)
    and the writer stops writing roll-ups for its segment.
    """

    def __init__(self, path: Path, *, fanout: int = FANOUT) -> None:
        self.path = path
        self.fanout = fanout
        self._fd = -1
        self._offset = 0
        self._broken = False
        # Per level: (first chunk, summary) of the completed nodes not yet merged into a parent.
        self._pending: list[list[tuple[int, Block]]] = [[]]
        self._chunks = 0
        self._prefix: Block | None = None  # every chunk of the completed level-1 nodes, merged
        #: (first, last) -> (offset, size) of every record written: the segment index keeps them
        self.records: dict[tuple[int, int], tuple[int, int]] = {}

    @property
    def end(self) -> int:
        """Bytes of the file the written records cover."""
        return self._offset

    def total(self) -> Block:
        """Every chunk added so far, merged: the pending nodes of all levels cover each once.

        What the segment index records as the whole roll-up, merged when it is saved (a few
        blocks) instead of per chunk (a ``Summary.merge_all`` per function: ~40 ms a chunk).
        """
        return merge([(None, b) for level in self._pending for _, b in level])

    def add(self, seq: int, summary: ChunkSummary) -> None:
        """Chunk ``seq`` (the next one) is sealed with ``summary``: write the nodes it completes."""
        if seq != self._chunks:
            raise ValueError(f"chunk {seq} sealed out of order; expected chunk {self._chunks}")
        self._chunks += 1
        self._pending[0].append((seq, Block.of(summary)))
        level = 0
        group: Block | None = None  # the level-1 node this chunk completes, if any
        while len(self._pending[level]) == self.fanout:
            items = self._pending[level]
            node = Node(level + 1, items[0][0], seq)
            block = merge([(None, b) for _, b in items])
            self._write(node, block)
            group = block if level == 0 else group
            items.clear()
            if len(self._pending) == level + 1:
                self._pending.append([])
            self._pending[level + 1].append((node.first, block))
            level += 1
        if group is not None and not self._broken:
            # the prefix record: chunks 0 to ``seq`` (after the nodes: an aligned node is one)
            self._prefix = group if self._prefix is None else merge([(None, self._prefix),
                                                                     (None, group)])  # fmt: skip
            if (0, seq) not in self.records:
                self._write(edge_node(0, seq, self.fanout), self._prefix)

    def close(self) -> None:
        """The segment is closing: write the right-edge nodes, clipped to its last chunk.

        Only up to the level a reader starts from (see :func:`top_level`), and each run of
        chunks once (a clipped node can cover the same run as its clipped child).
        """
        last = self._chunks - 1
        carry: tuple[int, Block] | None = None
        written: set[tuple[int, int]] = set()
        for level, items in enumerate(self._pending[: top_level(last, self.fanout)]):
            run = items + ([carry] if carry is not None else [])
            if not run:
                continue
            first = run[0][0]
            block = run[0][1] if len(run) == 1 else merge([(None, b) for _, b in run])
            carry = (first, block)
            if last > first and (first, last) not in written:
                self._write(Node(level + 1, first, last), block)
                written.add((first, last))
        if not self._broken and last >= self.fanout:
            tail = self._pending[0]  # the chunks after the last complete level-1 node
            first_block = merge([(None, b) for _, b in tail]) if tail else None
            for node, block in suffixes(self._read_record, last, first_block, self.fanout):
                if (node.first, node.last) not in self.records:
                    self._write(node, block)
        self.abandon()

    def _read_record(self, first: int, last: int) -> Block | None:
        """The summaries of a record this writer wrote (None: unreadable, or never written)."""
        where = self.records.get((first, last))
        if where is None:
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                raw = os.pread(fd, where[1], where[0])
            finally:
                os.close(fd)
            return Block.from_page(verified_payload(raw, f"{self.path}@{where[0]}")[1])
        except (CorruptPageError, OSError) as exc:
            log.warning("roll-up record %d-%d of %s unreadable: %s", first, last, self.path, exc)
            return None

    def abandon(self) -> None:
        """Let go of the file without writing more."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._broken = True

    def _write(self, node: Node, block: Block) -> None:
        if self._broken:
            return
        page = record_page(node, block)
        try:
            if self._fd < 0:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                self._offset = os.fstat(self._fd).st_size
            append_all(self._fd, page, self._offset)
            self.records[(node.first, node.last)] = (self._offset, len(page))
            self._offset += len(page)
        except OSError as exc:
            log.warning("roll-ups of %s not written (%s); queries rebuild them", self.path, exc)
            self.abandon()


class RollupIndex:
    """Where the records of one segment's roll-up file are: ``(first, last)`` -> byte range.

    ``refresh`` reads only the headers of records appended since the last one (a pread each);
    payloads are read and checked when a query loads them (:meth:`load`). A segment index that
    lists the records (:meth:`seed`) spares even those: a closed, indexed segment's roll-up file
    is never walked.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._end = 0
        self._size_seen = -1
        self._final = False
        self.records: Mapping[tuple[int, int], tuple[int, int]] = {}
        self.headers_read = 0  # record headers walked so far (what an index spares)

    def refresh(self, *, final: bool = False) -> None:
        """Index new records; ``final``: the segment is closed (read once more, then never)."""
        if self._final:
            return
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            self._final = final
            return
        if size != self._size_seen:
            self._size_seen = size
            self._walk(size)
        self._final = final

    def seed(
        self, records: Mapping[tuple[int, int], tuple[int, int]], end: int, *, final: bool
    ) -> None:
        """Take the records a segment index lists, covering the file's first ``end`` bytes;
        ``final``: they are all the segment has (it is closed), so the file is not walked.

        A listed record the file lost (a crash before the page cache reached the disk) fails
        its checksum when loaded and is rebuilt, like any damaged record.
        """
        # a closed segment's records are final: kept as given (an index's stay arrays until
        # looked up); a live one's grow as the file is walked
        self.records = records if final else dict(records)
        self._end = end
        self._final = final
        if self._fd < 0:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                pass  # no record is readable: queries rebuild them

    def _walk(self, size: int) -> None:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDONLY)
        records = self.records if isinstance(self.records, dict) else dict(self.records)
        self.records = records
        while self._end + HEADER_SIZE <= size:
            header = parse_header(os.pread(self._fd, HEADER_SIZE, self._end))
            self.headers_read += 1
            if header is None or self._end + header.size > size:
                return  # torn, damaged, or still being written: records past it are rebuilt
            if header.column == ROLLUP_PAGE and 0 <= header.min <= header.max:
                records[(header.min, header.max)] = (self._end, header.size)
            self._end += header.size

    def load(self, node: Node) -> Block | None:
        """The node's summaries from its record; None when no intact record holds them."""
        where = self.records.get((node.first, node.last))
        if where is None or self._fd < 0:
            return None
        offset, size = where
        try:
            raw = os.pread(self._fd, size, offset)
            _, payload = verified_payload(raw, f"{self.path}@{offset}")
            return Block.from_page(payload)
        except (CorruptPageError, OSError) as exc:
            log.warning("roll-up record of chunks %d-%d unreadable, rebuilt: %s",
                        node.first, node.last, exc)  # fmt: skip
            return None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def rollup_block(r: Rollup) -> Block:
    """A segment roll-up's figures of every function as one block (the stored one, when it was
    made from one)."""
    stored = r.stored_block()
    if stored is not None:
        return stored
    codes = list(r.codes)
    return Block.of(ChunkSummary(
        np.array(codes, dtype=np.uint32), [r.summaries[c] for c in codes],
        np.array([r.errors[c] for c in codes], dtype=np.int64),
        np.array([r.first_start[c] for c in codes], dtype=np.int64),
        np.array([r.last_start[c] for c in codes], dtype=np.int64),
    ))  # fmt: skip


def extend_rollup(r: Rollup, chunks: Sequence[ChunkSummary]) -> Rollup:
    """A new roll-up: ``r`` plus the per-function summaries of more chunks, merged as blocks in
    one vectorised pass (a live segment's refresh after each sealed chunk: a loop over functions
    and ``Summary`` objects took up to ~10 ms a seal under ingest)."""
    if not chunks:
        return r
    pieces: list[tuple[np.ndarray | None, Block]] = [(None, Block.of(cs)) for cs in chunks]
    if r.codes:
        pieces.insert(0, (None, rollup_block(r)))
    out = merge(pieces)
    extended = Rollup.stored(out.codes.tolist(), lambda: out)
    extended.stored_block()  # made now: nothing is left to fail later
    return extended
