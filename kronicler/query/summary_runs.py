"""Cells' summaries with their buckets as dense runs: the compact wire road of a cluster partial.

A latency distribution fills most bucket keys between its lowest and its highest (on
bench/bench_cluster.py's GetStats by function, ~310 of a run of ~350 keys per function). So a
node sends each cell's bucket counts as one run of consecutive keys from the cell's lowest key
``lo``, zeros in the gaps, and no keys at all: ~2.3 bytes a bucket where the packed columns of
:mod:`.summary_table` take ~4 (keys of 2 bytes and counts of, there, 2). The frontend adds the
runs of every node into one dense table by position alone (one ``add.at`` over the counts),
where the sparse road first spreads each bucket's cell, bounds every cell's keys with ``.at``
reductions and places each key (~10 passes over every bucket instead of ~4).

Trade-off: a cell whose keys are scattered (a few durations from nanoseconds to hours) makes a
long run of zeros, so a node sends runs only when they take fewer bytes than the packed keys and
counts (:func:`runs_of`); the frontend merges runs when the merged table stays within
:data:`~.summary_table.DENSE_PER_ENTRY` entries per bucket received, else it takes the sparse
road for every part (the same merged summaries either way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from kronicler.db.summary import MAX_KEY
from kronicler.errors import CorruptPageError
from kronicler.query import summary_table
from kronicler.query.summary_table import SummaryTable

_LO_DTYPE = np.dtype("<u2")


@dataclass(frozen=True, slots=True)
class RunTable:
    """Non-empty summaries of many cells, each cell's buckets one dense run.

    Fields: as :class:`~.summary_table.SummaryTable`'s (one entry per cell: ``cell``,
    ``errors``, ``count``, ``sum``, ``m2``, ``min``, ``max``, ``zero``), but no keys: entry i
    counts the durations of bucket keys ``lo[i]``, ``lo[i] + 1``, ... in
    ``counts[bounds[i]:bounds[i + 1]]`` (int64, zeros where none fell; an entry of only zero
    durations has an empty run).
    """

    cell: np.ndarray
    errors: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray
    zero: np.ndarray
    lo: np.ndarray
    bounds: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return int(self.cell.size)

    def with_cells(self, cell: np.ndarray) -> RunTable:
        """The same entries under other cell ids (a part renumbered into the merged keys)."""
        return replace(self, cell=cell)


Table = SummaryTable | RunTable


def runs_of(table: SummaryTable, limit: int | None = None) -> RunTable | None:
    """``table``'s buckets as runs, or None when the runs would hold more than ``limit`` counts
    (default: as many bytes as the packed keys and counts take)."""
    lengths = table.lengths
    has = lengths > 0
    lo = np.zeros(len(table), np.int64)
    span = np.zeros(len(table), np.int64)
    lo[has] = table.keys[table.bounds[:-1][has]]  # keys are sorted within each entry
    span[has] = table.keys[table.bounds[1:][has] - 1] - lo[has] + 1
    total = int(span.sum())
    if limit is None:  # a key takes 2 bytes and a count the width of the largest
        width = summary_table.count_width(table.counts)
        limit = len(table.keys) * (2 + width) // width
    if total > limit:
        return None
    bounds = np.concatenate(([0], np.cumsum(span)))
    counts = np.zeros(total, np.int64)
    counts[np.repeat(bounds[:-1] - lo, lengths) + table.keys] = table.counts
    scalars = {f.name: getattr(table, f.name) for f in fields(RunTable)
               if f.name not in ("lo", "bounds", "counts")}  # fmt: skip
    return RunTable(**scalars, lo=lo, bounds=bounds, counts=counts)


def sparse(table: Table) -> SummaryTable:
    """The runs' non-zero buckets as a SummaryTable (a SummaryTable as it is)."""
    if isinstance(table, SummaryTable):
        return table
    span = np.diff(table.bounds)
    pair_cell, keys, counts = summary_table.nonzero_pairs(
        table.counts, table.bounds[:-1], span, table.lo
    )
    return SummaryTable(**_scalars(table), **summary_table.buckets(pair_cell, keys, counts,
                                                                  len(table)))  # fmt: skip


def _scalars(table: Table) -> dict[str, np.ndarray]:
    return {f.name: getattr(table, f.name) for f in fields(SummaryTable)
            if f.name not in ("bounds", "keys", "counts")}  # fmt: skip


def merge(tables: Sequence[Table]) -> SummaryTable:
    """Every table's entries merged per cell (cells may repeat within and across tables), as
    ``summary_table.merge(concat(...))`` of their sparse forms, by runs when they fit."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return SummaryTable.empty()
    if all(isinstance(t, SummaryTable) for t in tables):
        return summary_table.merge(summary_table.concat([sparse(t) for t in tables]))
    runs = [t if isinstance(t, RunTable) else runs_of(t, summary_table.DENSE_PER_ENTRY * len(t.keys))
            for t in tables]  # fmt: skip
    merged = None
    if all(r is not None for r in runs):
        merged = _merge_runs(_concat([r for r in runs if r is not None]))
    if merged is None:  # runs too far apart: the sparse road
        return summary_table.merge(summary_table.concat([sparse(t) for t in tables]))
    return merged


def _concat(tables: Sequence[RunTable]) -> RunTable:
    if len(tables) == 1:
        return tables[0]
    cols = {f.name: np.concatenate([getattr(t, f.name) for t in tables])
            for f in fields(RunTable) if f.name != "bounds"}  # fmt: skip
    spans = np.concatenate([np.diff(t.bounds) for t in tables])
    return RunTable(**cols, bounds=np.concatenate(([0], np.cumsum(spans))))


def _merge_runs(table: RunTable) -> SummaryTable | None:
    """The runs added per cell into one dense table (None when it would exceed the limit)."""
    cells, inv = np.unique(table.cell, return_inverse=True)
    m = len(cells)
    span = np.diff(table.bounds)
    has = span > 0
    lo = np.full(m, MAX_KEY + 1, np.int64)
    hi = np.full(m, -1, np.int64)
    np.minimum.at(lo, inv[has], table.lo[has])
    np.maximum.at(hi, inv[has], (table.lo + span - 1)[has])
    width = np.maximum(hi - lo + 1, 0)
    total = int(width.sum())
    if total > summary_table.DENSE_PER_ENTRY * len(table.counts):
        return None
    start = np.cumsum(width) - width
    # Each run moves by its cell's place in the merged table; within it, counts keep their order.
    shift = start[inv] + table.lo - lo[inv] - table.bounds[:-1]
    where = np.arange(len(table.counts)) + np.repeat(shift, span)
    # int64 positions and counts: numpy's fast path of add.at, exact (no float weights)
    dense = np.zeros(total, np.int64)
    np.add.at(dense, where, table.counts)
    pair_cell, keys, counts = summary_table.nonzero_pairs(dense, start, width, lo)
    return SummaryTable(**summary_table.merge_scalars(table, cells, inv),
                        **summary_table.buckets(pair_cell, keys, counts, m))  # fmt: skip


# ---- on the wire -----------------------------------------------------------------------------


def pack(table: Table) -> tuple[dict[str, bytes], int]:
    """As :func:`summary_table.pack`, the runs as ``lengths`` and ``counts`` and their lowest keys
    as ``lo`` (``keys`` empty)."""
    if isinstance(table, SummaryTable):
        return summary_table.pack(table)
    sparse_form = SummaryTable(**_scalars(table), bounds=table.bounds,
                               keys=np.empty(0, np.int32), counts=table.counts)  # fmt: skip
    out, width = summary_table.pack(sparse_form)
    out["lo"] = table.lo.astype(_LO_DTYPE).tobytes()
    return out, width


def unpack(columns: Mapping[str, bytes], count_width: int, n_cells: int) -> Table:
    """Inverse of :func:`pack` (runs when ``lo`` is sent, else the packed keys), checked:
    ``CorruptPageError`` for columns that do not line up, cell ids outside ``[0, n_cells)`` or
    repeated, runs beyond the largest key, or counts that disagree with the buckets."""
    if not columns.get("lo"):
        return summary_table.unpack(columns, count_width, n_cells)
    if columns.get("keys"):
        raise CorruptPageError("packed summaries carry both runs and keys")
    raw = columns["lo"]
    if len(raw) % _LO_DTYPE.itemsize:
        raise CorruptPageError(f"packed summary column lo has {len(raw)} bytes")
    lo = np.frombuffer(raw, _LO_DTYPE).astype(np.int64)
    # The per-cell columns are checked as the sparse road checks them; runs hold zeros, which
    # that road refuses as bucket counts, so the buckets are checked here.
    head = summary_table.unpack_cells(columns, n_cells)
    counts = summary_table.unpack_counts(columns["counts"], count_width)
    n, bounds = len(head["cell"]), head["bounds"]
    if len(lo) != n or len(counts) != int(bounds[-1]):
        raise CorruptPageError("packed summary runs do not line up with their cells")
    span = np.diff(bounds)
    if bool((lo + span - 1 > MAX_KEY).any()) or (len(counts) and int(counts.min()) < 0):
        raise CorruptPageError("packed summary runs hold a bad key or count")
    ends = np.concatenate((bounds[:-1][span > 0], bounds[1:][span > 0] - 1))
    if not bool((counts[ends] > 0).all()):  # a run goes from its lowest key to its highest
        raise CorruptPageError("packed summary runs start or end with an empty bucket")
    cumulative = np.concatenate(([0], np.cumsum(counts)))
    if not np.array_equal(cumulative[bounds[1:]] - cumulative[bounds[:-1]] + head["zero"],
                          head["count"]):  # fmt: skip
        raise CorruptPageError("packed summary counts disagree with their buckets")
    return RunTable(**head, lo=lo, counts=counts)
