"""Mergeable latency summaries with a guaranteed 1% relative error on quantiles.

The idea is DDSketch's (Masson, Rim & Lee, VLDB 2019): map every positive duration ``v`` to the
bucket ``k = ceil(log_gamma(v))`` with ``gamma = (1 + a) / (1 - a)`` and ``a = 0.01``, and keep only
a count per bucket. Every value in bucket ``k`` lies in ``(gamma**(k-1), gamma**k]``, so answering a
quantile with the bucket's representative ``2 * gamma**k / (gamma + 1)`` is off by at most ``a``
relative to the true value at that rank. Durations of exactly zero have no logarithm and are
counted on their own.

The trade-off: the summary forgets individual values (one count per 2% of value range), and in
return two summaries merge by adding counts per key. Merging is exact: the summary of a union is
the merge of the summaries, whatever the split, so per-page summaries answer any time range, any
set of pages and any number of nodes. Durations are integer nanoseconds, so keys stay within
``[0, MAX_KEY]`` (about 2,200 buckets span 1 ns to 2**63 ns), which lets merges count with
``np.bincount`` instead of sorting.

Next to the buckets a summary keeps count, sum, ``m2``, min and max, so mean, variance, min and max
are exact (up to float rounding) rather than estimated. ``m2`` is the sum of squared deviations
from the mean, ``sum((x - mean)**2)``; it carries the same information as a raw sum of squares
(``sumsq = m2 + sum**2 / count``) but merges with Chan et al.'s parallel formula without the
catastrophic cancellation that ``sumsq - sum**2 / n`` suffers for large, tightly spread durations.

The binary block format for many summaries lives in :mod:`kronicler.db.summary_codec`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from kronicler._record import record

#: The guarantee: every quantile is within this relative error of the exact one.
RELATIVE_ACCURACY = 0.01
# The mapping uses a hair less (1e-8 absolute) so that float rounding in log() and pow(), which
# can misplace a value sitting within ~1e-14 of a bucket boundary, never pushes the error past 1%.
_MAPPING_ACCURACY = RELATIVE_ACCURACY * (1.0 - 1e-6)
GAMMA = (1.0 + _MAPPING_ACCURACY) / (1.0 - _MAPPING_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
#: Largest bucket key an int64 duration can map to (2**63 - 1 ns).
MAX_KEY = math.ceil(math.log(2.0**63) / _LOG_GAMMA)
_INT64_MAX = np.iinfo(np.int64).max


def bucket_keys(values: np.ndarray) -> np.ndarray:
    """Bucket key of each positive duration: ``ceil(log(v) / log(gamma))`` as int32.

    The mapping is part of the on-disk format: changing it invalidates stored summaries.
    """
    return np.ceil(np.log(values.astype(np.float64)) / _LOG_GAMMA).astype(np.int32)


def bucket_representatives(keys: np.ndarray) -> np.ndarray:
    """Value reported for each bucket: ``2 * gamma**k / (gamma + 1)``, within 1% of any member.

    Durations are integers, so the representative is also clamped into the integers the bucket
    can hold; this only moves it closer to every member and makes tiny durations (1-50 ns) exact.
    """
    k = keys.astype(np.float64)
    upper = GAMMA**k
    rep = 2.0 * upper / (GAMMA + 1.0)
    lowest_int = np.floor(GAMMA ** (k - 1.0)) + 1.0
    highest_int = np.floor(upper)
    return np.minimum(np.maximum(rep, lowest_int), highest_int)


def as_durations(values: Any, what: str = "values") -> np.ndarray:
    """``values`` as a 1-d int64 array of durations >= 0; ValueError naming what is wrong."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integer nanoseconds, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and int(arr.max()) > _INT64_MAX:
        raise ValueError(f"{what} holds {int(arr.max())}, larger than the int64 maximum")
    arr = arr.astype(np.int64, copy=False)
    if int(arr.min()) < 0:
        raise ValueError(f"{what} must be >= 0, got {int(arr.min())}")
    return arr


def check_quantile(q: Any) -> float:
    """``q`` as a float in [0, 1]; ValueError naming ``q`` otherwise (NaN included)."""
    try:
        qf = float(q)
    except (TypeError, ValueError):
        raise ValueError(f"quantile q must be a number in [0, 1], got {q!r}") from None
    if not 0.0 <= qf <= 1.0:
        raise ValueError(f"quantile q must be in [0, 1], got {q!r}")
    return qf


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


_EMPTY_KEYS = _readonly(np.empty(0, dtype=np.int32))
_EMPTY_COUNTS = _readonly(np.empty(0, dtype=np.int64))


@record(eq=False)
class Summary:
    """A mergeable summary of durations (ns). Immutable; build with the class methods.

    Fields:
        count: number of durations summarised (zeros included).
        sum: their sum (float64; exact while below 2**53).
        m2: sum of squared deviations from the mean (see the module docstring).
        min, max: smallest and largest duration, or None when count == 0.
        zero_count: how many durations were exactly 0 (they have no bucket).
        keys: sorted unique bucket keys of the positive durations (int32, read-only).
        counts: durations per key (int64, same length as keys, all >= 1, read-only).
    """

    count: int
    sum: float
    m2: float
    min: int | None
    max: int | None
    zero_count: int
    keys: np.ndarray
    counts: np.ndarray

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> Summary:
        return cls(0, 0.0, 0.0, None, None, 0, _EMPTY_KEYS, _EMPTY_COUNTS)

    @classmethod
    def from_values(cls, values: Any) -> Summary:
        """Summary of integer durations >= 0 (any 1-d array-like), in one vectorised pass."""
        v = as_durations(values)
        n = int(v.size)
        if n == 0:
            return cls.empty()
        positive = v[v > 0]
        if positive.size:
            k = bucket_keys(positive)
            kmin = int(k.min())
            dense = np.bincount(k - kmin)
            present = np.flatnonzero(dense)
            keys = (present + kmin).astype(np.int32)
            counts = dense[present].astype(np.int64)
        else:
            keys, counts = _EMPTY_KEYS, _EMPTY_COUNTS
        vf = v.astype(np.float64)
        total = float(vf.sum())
        mean = total / n
        m2 = float(np.square(vf - mean).sum())
        return cls(
            n,
            total,
            m2,
            int(v.min()),
            int(v.max()),
            n - int(positive.size),
            _readonly(keys),
            _readonly(counts),
        )

    # -- merging --------------------------------------------------------------------------------

    def merge(self, other: Summary) -> Summary:
        """Summary of both inputs' durations together (a new object)."""
        return Summary.merge_all((self, other))

    @staticmethod
    def merge_all(summaries: Iterable[Summary | None]) -> Summary:
        """Merge many summaries in one vectorised step (None entries are skipped).

        Counts per key add exactly; count, sum, min, max and zero_count combine exactly; m2 uses
        the k-way form of Chan et al.: ``sum(m2_i) + sum(n_i * (mean_i - mean)**2)``.
        """
        items = [s for s in summaries if s is not None and s.count]
        if not items:
            return Summary.empty()
        if len(items) == 1:
            return items[0]
        # One pass to transpose the scalars; everything after it is numpy.
        counts_, sums_, m2s_, mins_, maxs_, zeros_, keys_, bucket_counts_ = zip(
            *[(s.count, s.sum, s.m2, s.min, s.max, s.zero_count, s.keys, s.counts) for s in items],
            strict=True,
        )
        n = sum(counts_)
        ns = np.array(counts_, dtype=np.float64)
        sums = np.array(sums_, dtype=np.float64)
        total = float(sums.sum())
        mean = total / n
        m2 = float(np.sum(m2s_) + (ns * np.square(sums / ns - mean)).sum())
        keys, counts = _merge_buckets(keys_, bucket_counts_)
        return Summary(n, total, m2, min(mins_), max(maxs_), sum(zeros_), keys, counts)

    # -- moments --------------------------------------------------------------------------------

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    @property
    def variance(self) -> float | None:
        """Sample variance (divides m2 by count - 1); 0.0 for a single duration."""
        if not self.count:
            return None
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0

    @property
    def stddev(self) -> float | None:
        """Sample standard deviation (the square root of :attr:`variance`)."""
        var = self.variance
        return None if var is None else math.sqrt(var)

    @property
    def stderr(self) -> float | None:
        """Standard error of the mean: ``stddev / sqrt(count)``."""
        sd = self.stddev
        return None if sd is None else sd / math.sqrt(self.count)

    # -- quantiles ------------------------------------------------------------------------------

    def quantile(self, q: float) -> float | None:
        """Duration at rank ``floor(q * (count - 1))``, within 1% of the exact one; None if empty.

        The exact counterpart is ``np.quantile(values, q, method="lower")``; q=0 gives min and q=1
        gives max exactly.
        """
        check_quantile(q)
        return self.quantiles([q])[0]

    def quantiles(self, qs: Sequence[float] | np.ndarray) -> list[float | None]:
        """:meth:`quantile` for many q at once (one searchsorted over the buckets)."""
        if not self.count:
            return [None] * len([check_quantile(q) for q in qs])
        return [float(x) for x in quantiles_of([self], qs)[0]]

    def buckets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Log-scale histogram: (lower bounds, upper bounds, counts); bucket k is (lower, upper].

        Zero durations, if any, come first as the bucket [0, 0].
        """
        k = self.keys.astype(np.float64)
        lower = GAMMA ** (k - 1.0)
        upper = GAMMA**k
        counts = self.counts.astype(np.int64)
        if self.zero_count:
            lower = np.concatenate(([0.0], lower))
            upper = np.concatenate(([0.0], upper))
            counts = np.concatenate(([self.zero_count], counts)).astype(np.int64)
        return lower, upper, counts

    # -- value semantics ------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Summary):
            return NotImplemented
        return (
            self.count == other.count
            and self.sum == other.sum
            and self.m2 == other.m2
            and self.min == other.min
            and self.max == other.max
            and self.zero_count == other.zero_count
            and np.array_equal(self.keys, other.keys)
            and np.array_equal(self.counts, other.counts)
        )

    __hash__ = None  # type: ignore[assignment]  # equality is by value over numpy arrays

    def __repr__(self) -> str:
        return (
            f"Summary(count={self.count}, sum={self.sum!r}, min={self.min}, max={self.max}, "
            f"zero_count={self.zero_count}, buckets={len(self.keys)})"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (for shipping a summary between nodes)."""
        return {
            "count": self.count,
            "sum": self.sum,
            "m2": self.m2,
            "min": self.min,
            "max": self.max,
            "zero_count": self.zero_count,
            "keys": self.keys.tolist(),
            "counts": self.counts.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Summary:
        keys = np.asarray(d["keys"], dtype=np.int32)
        counts = np.asarray(d["counts"], dtype=np.int64)
        if keys.ndim != 1 or keys.shape != counts.shape:
            raise ValueError(f"summary needs one count per key, got {keys.shape} {counts.shape}")
        if keys.size and (
            np.any(np.diff(keys) <= 0) or keys[0] < 0 or keys[-1] > MAX_KEY or counts.min() < 1
        ):
            raise ValueError(
                f"summary keys must increase strictly within [0, {MAX_KEY}] with counts >= 1"
            )
        if int(d["count"]) != int(d["zero_count"]) + int(counts.sum()):
            raise ValueError(f"summary count {d['count']} is not zero_count plus bucket counts")
        return cls(
            int(d["count"]),
            float(d["sum"]),
            float(d["m2"]),
            None if d["min"] is None else int(d["min"]),
            None if d["max"] is None else int(d["max"]),
            int(d["zero_count"]),
            _readonly(keys),
            _readonly(counts),
        )


def _merge_buckets(
    keys_list: Sequence[np.ndarray], counts_list: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Add counts per key over many (keys, counts) pairs; keys come back sorted and unique."""
    keys = np.concatenate(keys_list)
    if not keys.size:
        return _EMPTY_KEYS, _EMPTY_COUNTS
    # Keys lie in [0, MAX_KEY], so a dense table indexed by key beats sorting; np.add.at on
    # int64 stays exact for any count (bincount's float weights would not past 2**53).
    dense = np.zeros(max(MAX_KEY, int(keys.max())) + 1, dtype=np.int64)
    np.add.at(dense, keys, np.concatenate(counts_list))
    present = np.flatnonzero(dense)
    return _readonly(present.astype(np.int32)), _readonly(dense[present])


def quantiles_of(summaries: Sequence[Summary], qs: Sequence[float] | np.ndarray) -> np.ndarray:
    """:meth:`Summary.quantiles` of many summaries at once: row i holds summary i's values for
    ``qs``, the same floats (NaN for an empty summary), in one searchsorted over all their
    buckets: statistics of every function cost one numpy pass, not ~20 calls per function."""
    qarr = np.array([check_quantile(q) for q in qs], dtype=np.float64)
    n = len(summaries)
    count = np.fromiter((s.count for s in summaries), np.int64, n)
    zero = np.fromiter((s.zero_count for s in summaries), np.int64, n)
    lo = np.fromiter((s.min or 0 for s in summaries), np.int64, n).astype(np.float64)
    hi = np.fromiter((s.max or 0 for s in summaries), np.int64, n).astype(np.float64)
    sizes = np.fromiter((s.keys.size for s in summaries), np.int64, n)
    keys = np.concatenate([s.keys for s in summaries] or [_EMPTY_KEYS])
    cumulative = np.cumsum(np.concatenate([s.counts for s in summaries] or [_EMPTY_COUNTS]))
    # Summary i's buckets follow ``before[i]`` counts of the earlier ones: rank r within it is
    # rank ``before[i] + r`` of the concatenation, whose bucket is found by one searchsorted.
    before = np.concatenate(([0], cumulative))[np.cumsum(sizes) - sizes]
    ranks = np.floor((count - 1)[:, None] * qarr[None, :]).astype(np.int64) - zero[:, None]
    out = np.zeros((n, qarr.size), dtype=np.float64)
    in_buckets = (ranks >= 0) & (count > 0)[:, None]
    if in_buckets.any():
        idx = np.searchsorted(cumulative, (ranks + before[:, None])[in_buckets], side="right")
        reps = bucket_representatives(keys[idx])
        rows = np.nonzero(in_buckets)[0]
        out[in_buckets] = np.minimum(np.maximum(reps, lo[rows]), hi[rows])
    out[:, qarr == 0.0] = lo[:, None]
    out[:, qarr == 1.0] = hi[:, None]
    out[count == 0] = np.nan
    return out


def summarize_groups(
    group_codes: np.ndarray, values: np.ndarray, n_groups: int
) -> list[Summary | None]:
    """One Summary per group code in ``range(n_groups)`` (None where a group has no rows).

    One vectorised pass: a radix argsort by group gives contiguous runs for min/max/sum/m2 via
    ``reduceat``, and (group, key) pairs folded into one int64 are counted with ``bincount``.
    Only the final construction loops in Python, once per non-empty group.
    """
    if isinstance(n_groups, bool) or not isinstance(n_groups, (int, np.integer)) or n_groups < 0:
        raise ValueError(f"n_groups must be an int >= 0, got {n_groups!r}")
    n_groups = int(n_groups)
    v = as_durations(values, "values")
    codes = np.asarray(group_codes)
    if codes.ndim != 1 or codes.shape != v.shape:
        raise ValueError(
            f"group_codes has shape {codes.shape}, values has shape {v.shape}; they must match"
        )
    out: list[Summary | None] = [None] * n_groups
    if not v.size:
        return out
    if codes.dtype.kind not in "iu":
        raise ValueError(f"group_codes must be integers, got dtype {codes.dtype}")
    lo, hi = int(codes.min()), int(codes.max())
    if lo < 0 or hi >= n_groups:
        bad = lo if lo < 0 else hi
        raise ValueError(f"group_codes must be in [0, {n_groups}), got {bad}")
    codes = codes.astype(np.int64, copy=False)

    # Contiguous runs per group; a stable sort of 16-bit codes is a radix sort in numpy.
    sort_codes = codes.astype(np.uint16) if n_groups <= 1 << 16 else codes
    order = np.argsort(sort_codes, kind="stable")
    runs = summarize_runs(v[order], np.bincount(codes, minlength=n_groups))
    present, sizes, sums, m2s, mins, maxs = (runs.present, runs.rows, runs.sum, runs.m2,
                                             runs.min, runs.max)  # fmt: skip
    zeros, bounds, all_keys, all_counts = runs.zero_count, runs.bounds, runs.keys, runs.counts
    for i, g in enumerate(present.tolist()):
        a, b = int(bounds[i]), int(bounds[i + 1])
        out[g] = Summary(
            int(sizes[i]),
            float(sums[i]),
            float(m2s[i]),
            int(mins[i]),
            int(maxs[i]),
            int(zeros[i]),
            all_keys[a:b],
            all_counts[a:b],
        )
    return out


@record(eq=False)
class Runs:
    """Summaries of consecutive runs of values, as columns (the non-empty runs only).

    Fields: present: which runs have values (their positions among all runs); count, sum, m2,
    min, max, zero_count: per present run; bounds: run i's buckets are
    ``keys[bounds[i]:bounds[i + 1]]``; keys (int32, ascending per run, read-only) and counts
    (int64, read-only).
    """

    present: np.ndarray
    rows: np.ndarray
    sum: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray
    zero_count: np.ndarray
    bounds: np.ndarray
    keys: np.ndarray
    counts: np.ndarray


def summarize_runs(values: np.ndarray, sizes: np.ndarray) -> Runs:
    """Per-run summaries of ``values`` (int64 durations >= 0) cut into consecutive runs of
    ``sizes`` values: what ``summarize_groups`` computes once its rows are sorted by group, so
    rows already ordered by function (a sealed chunk's) are summarised with no sort.

    Vectorised: min/max/sum/m2 by ``reduceat`` over the run starts, and (run, key) pairs folded
    into one int64 counted with ``bincount``. The keys are :func:`bucket_keys`' values, worked
    out in one float buffer over every row (a zero duration, taken as 0.5 there, lands below
    every positive key and is counted in slot 0): at a billion rows a cold range summarises
    ~0.5M edge rows, and the gathers and scatters of the positive rows (a mask, a gather, a
    scatter, a where) cost a third of the time.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    present = np.flatnonzero(sizes)
    counts_p = sizes[present]
    if not present.size:
        i64 = np.zeros(0, np.int64)
        return Runs(present, i64, np.zeros(0), np.zeros(0), i64, i64, i64,
                    np.zeros(1, np.int64), _EMPTY_KEYS, _EMPTY_COUNTS)  # fmt: skip
    starts = np.concatenate(([0], np.cumsum(counts_p)[:-1]))
    vf = values.astype(np.float64)
    sums = np.add.reduceat(vf, starts)
    mins = np.minimum.reduceat(values, starts)
    maxs = np.maximum.reduceat(values, starts)
    means = sums / counts_p
    dev = vf - np.repeat(means, counts_p)
    m2s = np.add.reduceat(np.square(dev, out=dev), starts)

    # Bucket keys as floats (exact: |key| < 2**12): ceil(log(v) / log(gamma)), as bucket_keys.
    buf = np.maximum(vf, 0.5, out=vf)
    np.log(buf, out=buf)
    np.divide(buf, _LOG_GAMMA, out=buf)
    np.ceil(buf, out=buf)
    smallest = int(mins.min())
    if smallest > 0:  # no zero duration: keys rise with values, the smallest is min's key
        kmin = int(bucket_keys(np.array([smallest], np.int64))[0])
    elif int(maxs.max()) > 0:
        kmin = int(np.min(buf, where=values > 0, initial=np.inf))
    else:
        kmin = 0
    # slot: key - kmin + 1 for positive durations, 0 for zeros (whose keys lie below kmin)
    np.subtract(buf, kmin - 1, out=buf)
    np.maximum(buf, 0.0, out=buf)
    span = int(buf.max()) + 1
    m = int(present.size)
    combined = np.repeat(np.arange(m, dtype=np.int64) * span, counts_p)
    combined += buf.astype(np.int64)
    # A dense table costs a pass over each of its slots, a sort ~20 ns per value: the table
    # wins up to ~8 slots a value. (A chunk's time slices, 1,600 runs x ~700 keys for 65,536
    # values, took 8 ms as a table, most of it ``flatnonzero`` over int64 counts, 1.1 ms
    # sorted; testing the counts as booleans first is ~5x faster than on the counts.)
    if m * span <= max(1 << 16, 8 * values.size):
        dense = np.bincount(combined)
        pairs = np.flatnonzero(dense != 0)
        pair_counts = dense[pairs]
    else:  # very many runs: a dense table would be larger than sorting
        pairs, pair_counts = np.unique(combined, return_counts=True)
    pair_run = pairs // span
    pair_slot = pairs - pair_run * span
    zeros = np.zeros(m, dtype=np.int64)
    is_zero = pair_slot == 0
    zeros[pair_run[is_zero]] = pair_counts[is_zero]
    positive = ~is_zero
    all_keys = _readonly((pair_slot[positive] - 1 + kmin).astype(np.int32))
    all_counts = _readonly(pair_counts[positive].astype(np.int64))
    bounds = np.searchsorted(pair_run[positive], np.arange(m + 1)).astype(np.int64)
    return Runs(present, counts_p, sums, m2s, mins, maxs, zeros, bounds, all_keys, all_counts)


__all__ = [
    "GAMMA",
    "MAX_KEY",
    "RELATIVE_ACCURACY",
    "Summary",
    "bucket_keys",
    "bucket_representatives",
    "quantiles_of",
    "summarize_groups",
    "summarize_runs",
]
