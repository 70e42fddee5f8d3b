"""Many cells' summaries as one table of columns: what a cluster frontend merges.

A frontend merges every node's summary per cell (a group, or a group's time bucket) and reads
quantiles from the merged ones. Done one :class:`~kronicler.db.summary.Summary` object at a time
that costs more than the nodes' own answers, so the summary road keeps the cells as columns from
the wire to the quantiles: per cell the scalars (count, sum, m2, min, max, zeros, errors), and all
cells' buckets concatenated (keys and counts, ``bounds`` marking each cell's run). Merging is the
same k-way arithmetic as :meth:`Summary.merge_all` (counts and sums add, Chan et al.'s formula for
``m2``, min/max combine, bucket counts add per key), batched over every cell at once.

On the wire (:func:`pack` and :func:`unpack`) each column is a little-endian array read back with
``numpy.frombuffer``: no per-cell message and no per-bucket varint. Bucket keys fit 16 bits
(``MAX_KEY`` < 65,536) and counts take the narrowest of 1, 2, 4 or 8 bytes that holds the largest.
Measured on bench/bench_cluster.py's GetStats by function (50 cells, ~15,000 buckets per node):
the disk summary block (zstd level 3 over nibble-packed counts, :mod:`kronicler.db.summary_codec`)
is ~16 KB but cost a node ~2-3 ms to encode and the frontend ~1 ms per node to decode into
Summary objects; the packed arrays are ~75 KB and encode and decode in ~0.1 ms each. A frame of
zstd level 1 over them brought ~20 KB for ~0.3 ms more on each side; the bytes matter less than the
milliseconds on the networks a cluster runs on, so the columns travel uncompressed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from kronicler.db.summary import MAX_KEY, Summary, bucket_representatives
from kronicler.errors import CorruptPageError

_KEY_SPAN = MAX_KEY + 1
#: Largest dense bucket table, per bucket entry added, that :func:`merge` fills instead of
#: sorting: cells' key ranges are usually close to their entries (one latency distribution).
_DENSE_PER_ENTRY = 8
#: Wire dtypes of the per-cell columns (all but the buckets'), little-endian.
_CELL_DTYPES: dict[str, Any] = {
    "cell": "<u4", "errors": "<i8", "count": "<i8", "sum": "<f8", "m2": "<f8", "min": "<i8",
    "max": "<i8", "zero": "<i8", "lengths": "<u4",
}  # fmt: skip
_KEY_DTYPE = np.dtype("<u2")
_COUNT_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    4: np.dtype("<u4"),
    8: np.dtype("<i8"),
}


@dataclass(frozen=True, slots=True)
class SummaryTable:
    """Non-empty summaries of many cells, as columns (one entry per cell unless noted).

    Fields:
        cell: the cell id (int64); errors: calls with status ERROR (int64).
        count, min, max, zero: calls, smallest and largest duration, zero durations (int64).
        sum, m2: as in :class:`Summary` (float64).
        bounds: cell i's buckets are ``keys[bounds[i]:bounds[i + 1]]`` (int64, n + 1).
        keys, counts: every cell's bucket keys (int32) and counts (int64), concatenated.
    """

    cell: np.ndarray
    errors: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray
    zero: np.ndarray
    bounds: np.ndarray
    keys: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return int(self.cell.size)

    @classmethod
    def empty(cls) -> SummaryTable:
        i64 = np.empty(0, np.int64)
        return cls(i64, i64, i64, i64.astype(np.float64), i64.astype(np.float64), i64, i64, i64,
                   np.zeros(1, np.int64), i64.astype(np.int32), i64)  # fmt: skip

    @classmethod
    def of(cls, entries: Sequence[tuple[int, Summary, int]]) -> SummaryTable:
        """The table of ``(cell id, non-empty summary, errors)`` entries, in their order."""
        if not entries:
            return cls.empty()
        n = len(entries)
        sums = [s for _, s, _ in entries]

        def col(values: object, dtype: type) -> np.ndarray:
            return np.fromiter(values, dtype, n)  # type: ignore[call-overload]

        return cls(
            col((c for c, _, _ in entries), np.int64), col((e for _, _, e in entries), np.int64),
            col((s.count for s in sums), np.int64), col((s.sum for s in sums), np.float64),
            col((s.m2 for s in sums), np.float64), col((s.min or 0 for s in sums), np.int64),
            col((s.max or 0 for s in sums), np.int64), col((s.zero_count for s in sums), np.int64),
            np.concatenate(([0], np.cumsum(col((s.keys.size for s in sums), np.int64)))),
            np.concatenate([s.keys for s in sums]).astype(np.int32, copy=False),
            np.concatenate([s.counts for s in sums]).astype(np.int64, copy=False),
        )  # fmt: skip

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.bounds)

    def summary(self, i: int) -> Summary:
        """Entry ``i`` as a Summary (sharing this table's bucket arrays, made read-only)."""
        a, b = int(self.bounds[i]), int(self.bounds[i + 1])
        keys, counts = self.keys[a:b], self.counts[a:b]
        keys.setflags(write=False)
        counts.setflags(write=False)
        return Summary(int(self.count[i]), float(self.sum[i]), float(self.m2[i]),
                       int(self.min[i]), int(self.max[i]), int(self.zero[i]), keys, counts)  # fmt: skip

    def summaries(self) -> list[Summary]:
        """Every entry as a Summary, as :meth:`summary` gives them one by one (a batch: the
        columns are read once, not entry by entry)."""
        keys, counts = self.keys.view(), self.counts.view()
        keys.setflags(write=False)
        counts.setflags(write=False)
        bounds = self.bounds.tolist()
        return [
            Summary(n, total, m2, lo, hi, zero, keys[a:b], counts[a:b])
            for n, total, m2, lo, hi, zero, a, b in zip(
                self.count.tolist(), self.sum.tolist(), self.m2.tolist(), self.min.tolist(),
                self.max.tolist(), self.zero.tolist(), bounds, bounds[1:], strict=False,
            )
        ]  # fmt: skip

    def with_cells(self, cell: np.ndarray) -> SummaryTable:
        """The same entries under other cell ids (a part renumbered into the merged keys)."""
        return _replace(self, cell=cell)


def _replace(table: SummaryTable, **changed: np.ndarray) -> SummaryTable:
    return SummaryTable(**{f.name: changed.get(f.name, getattr(table, f.name))
                           for f in fields(SummaryTable)})  # fmt: skip


def concat(tables: Sequence[SummaryTable]) -> SummaryTable:
    """Every table's entries, one after another (cells may repeat: :func:`merge` adds them)."""
    tables = [t for t in tables if len(t)] or [SummaryTable.empty()]
    if len(tables) == 1:
        return tables[0]
    cols = {f.name: np.concatenate([getattr(t, f.name) for t in tables])
            for f in fields(SummaryTable) if f.name != "bounds"}  # fmt: skip
    lengths = np.concatenate([t.lengths for t in tables])
    return SummaryTable(**cols, bounds=np.concatenate(([0], np.cumsum(lengths))))


def merge(table: SummaryTable) -> SummaryTable:
    """Every entry merged into its cell, cells in ascending order, all in one numpy pass."""
    if not len(table):
        return table
    cells, inv = np.unique(table.cell, return_inverse=True)
    if len(cells) == len(table) and bool((np.diff(table.cell) > 0).all()):
        return table  # one entry per cell already, in order
    m = len(cells)
    count_f = table.count.astype(np.float64)
    n = np.bincount(inv, weights=count_f, minlength=m)
    total = np.bincount(inv, weights=table.sum, minlength=m)
    spread = count_f * np.square(table.sum / count_f - (total / n)[inv])
    m2 = np.bincount(inv, weights=table.m2, minlength=m) + np.bincount(
        inv, weights=spread, minlength=m
    )
    lo = np.full(m, np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(m, -1, dtype=np.int64)
    np.minimum.at(lo, inv, table.min)
    np.maximum.at(hi, inv, table.max)

    def added(column: np.ndarray) -> np.ndarray:  # exact integers, unlike float weights
        out = np.zeros(m, dtype=np.int64)
        np.add.at(out, inv, column)
        return out

    bounds, keys, counts = _add_buckets(inv, m, table)
    return SummaryTable(cells.astype(np.int64), added(table.errors), added(table.count), total,
                        m2, lo, hi, added(table.zero), bounds, keys, counts)  # fmt: skip


def _add_buckets(
    inv: np.ndarray, n_cells: int, table: SummaryTable
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bucket counts added per (cell, key): the merged cells' ``bounds`` (n_cells + 1) and the
    key and count of every non-empty pair, by cell then key.

    Each cell's keys span a short range (one latency distribution), so the pairs are added into
    one dense table of every cell's range (by position, no sort); a table much larger than the
    entries (a cell spanning nanoseconds to hours) falls back to sorting the pairs. An entry's
    keys are sorted, so its first and last bound its cell's range (no pass over every bucket),
    and each bucket's place is its key moved by its cell's offset (one ``repeat``). A cell's
    pairs are the non-empty places of its range, so their running count gives the bounds (no
    search for each pair's cell).
    """
    lengths = table.lengths
    if not len(table.keys):
        empty = np.empty(0, np.int64)
        return np.zeros(n_cells + 1, np.int64), empty.astype(np.int32), empty
    has = lengths > 0
    lo = np.full(n_cells, MAX_KEY, dtype=np.int64)
    hi = np.zeros(n_cells, dtype=np.int64)
    np.minimum.at(lo, inv[has], table.keys[table.bounds[:-1][has]])
    np.maximum.at(hi, inv[has], table.keys[table.bounds[1:][has] - 1])
    span = np.maximum(hi - lo + 1, 0)
    total = int(span.sum())
    if total <= _DENSE_PER_ENTRY * len(table.keys):
        ends = np.cumsum(span)
        shift = ends - span - lo  # a cell's key k sits at place k + shift
        where = np.repeat(shift[inv], lengths) + table.keys
        # int64 positions and counts: numpy's fast path of add.at, exact (no float weights)
        dense = np.zeros(total, np.int64)
        np.add.at(dense, where, table.counts)
        present = np.flatnonzero(dense)
        running = np.zeros(total + 1, np.int64)
        np.cumsum(dense != 0, out=running[1:])
        bounds = running[np.concatenate(([0], ends))]
        pair_keys = (present - np.repeat(shift, np.diff(bounds))).astype(np.int32)
        return bounds, pair_keys, dense[present]
    owner = np.repeat(inv.astype(np.int64), lengths)  # the merged cell of every bucket
    keys = table.keys.astype(np.int64)
    # (cell, key) pairs folded into one int64 and added (keys lie in [0, MAX_KEY]).
    pairs, where = np.unique(owner * _KEY_SPAN + keys, return_inverse=True)
    pair_counts = np.zeros(len(pairs), dtype=np.int64)
    np.add.at(pair_counts, where, table.counts)
    bounds = np.searchsorted(pairs // _KEY_SPAN, np.arange(n_cells + 1)).astype(np.int64)
    return bounds, (pairs % _KEY_SPAN).astype(np.int32), pair_counts


def quantiles(table: SummaryTable, qs: Sequence[float]) -> np.ndarray:
    """``[table.summary(i).quantiles(qs) for i in ...]`` as one (entries x qs) array, one pass.

    The batched form of :meth:`Summary.quantile` (rank ``floor(q * (count - 1))``, zeros first,
    then the bucket holding the rank, its representative clipped to [min, max]); every entry
    must be non-empty.
    """
    cumulative = np.cumsum(table.counts)
    # Buckets before each entry's first: the cumulative count its ranks start from.
    base = np.concatenate(([0], cumulative))[table.bounds[:-1]]
    out = np.zeros((len(table), len(qs)), dtype=np.float64)
    for j, q in enumerate(qs):
        rank = np.floor((table.count - 1) * q).astype(np.int64)
        inside = rank >= table.zero
        if inside.any():
            idx = np.searchsorted(cumulative, (base + rank - table.zero)[inside], side="right")
            reps = bucket_representatives(table.keys[idx])
            out[inside, j] = np.clip(reps, table.min[inside], table.max[inside])
        if q == 0.0:
            out[:, j] = table.min
        elif q == 1.0:
            out[:, j] = table.max
    return out


# ---- on the wire -----------------------------------------------------------------------------


def pack(table: SummaryTable) -> tuple[dict[str, bytes], int]:
    """The table's columns as little-endian bytes by name, and the byte width of the counts."""
    out = {name: getattr(table, name).astype(dtype).tobytes()
           for name, dtype in _CELL_DTYPES.items() if name != "lengths"}  # fmt: skip
    out["lengths"] = table.lengths.astype(_CELL_DTYPES["lengths"]).tobytes()
    out["keys"] = table.keys.astype(_KEY_DTYPE).tobytes()
    top = int(table.counts.max()) if len(table.counts) else 0
    width = next(w for w in (1, 2, 4, 8) if w == 8 or top < 1 << (8 * w))
    out["counts"] = table.counts.astype(_COUNT_DTYPES[width]).tobytes()
    return out, width


def unpack(columns: Mapping[str, bytes], count_width: int, n_cells: int) -> SummaryTable:
    """Inverse of :func:`pack`, checked: ``CorruptPageError`` for columns that do not line up,
    cell ids outside ``[0, n_cells)`` or repeated, or counts that disagree with the buckets."""
    if count_width not in _COUNT_DTYPES:
        raise CorruptPageError(f"packed summaries have count width {count_width}")
    cols: dict[str, np.ndarray] = {}
    wire: list[tuple[str, Any]] = [*_CELL_DTYPES.items(), ("keys", _KEY_DTYPE),
                                   ("counts", _COUNT_DTYPES[count_width])]  # fmt: skip
    for name, dtype in wire:
        raw = columns[name]
        size = np.dtype(dtype).itemsize
        if len(raw) % size:
            raise CorruptPageError(f"packed summary column {name} has {len(raw)} bytes")
        cols[name] = np.frombuffer(raw, dtype)
    n = len(cols["cell"])
    lengths = cols.pop("lengths").astype(np.int64)
    if any(len(cols[k]) != n for k in _CELL_DTYPES if k != "lengths") or len(lengths) != n:
        raise CorruptPageError("packed summary columns have different lengths")
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    keys, counts = cols.pop("keys").astype(np.int32), cols.pop("counts").astype(np.int64)
    if len(keys) != int(bounds[-1]) or len(counts) != len(keys):
        raise CorruptPageError("packed summary buckets do not line up with their cells")
    cell = cols.pop("cell").astype(np.int64)
    table = SummaryTable(cell=cell, bounds=bounds, keys=keys, counts=counts,
                         **{k: v.astype(v.dtype.newbyteorder("="), copy=False)
                            for k, v in cols.items()})  # fmt: skip
    if n and (int(cell[-1]) >= n_cells or not bool((np.diff(cell) > 0).all())):
        raise CorruptPageError("packed summary cell ids are out of range or out of order")
    cumulative = np.concatenate(([0], np.cumsum(counts)))
    in_buckets = cumulative[bounds[1:]] - cumulative[bounds[:-1]]
    if not np.array_equal(in_buckets + table.zero, table.count) or bool((table.count <= 0).any()):
        raise CorruptPageError("packed summary counts disagree with their buckets")
    if len(keys) and (int(keys.max()) > MAX_KEY or int(counts.min()) < 1):
        raise CorruptPageError("packed summary buckets hold a bad key or count")
    rising = np.ones(len(keys), dtype=bool)
    rising[1:] = np.diff(keys) > 0
    rising[bounds[:-1][lengths > 0]] = True  # each cell's first key starts afresh
    if not bool(rising.all()):
        raise CorruptPageError("packed summary bucket keys are not sorted within their cell")
    return table
