"""Log-scale latency histograms: where a function's calls spend their time, tail included.

Bucket ``i`` holds durations in ``[10**(i/per_decade), 10**((i+1)/per_decade))`` ns, so every
power of ten gets the same number of buckets and a 3 ms tail is as visible as a 30 us body.
Durations of 0 ns get the bucket ``[0, 1)``.

From summaries (the default) the fine log buckets of the merged summary (<= 1% wide) are
re-binned by their geometric midpoint: cheap, and a call can only move to a neighbour when it is
within 1% of an edge. ``exact=True`` (or a service/attribute filter) bins the raw durations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kronicler.db.view import answer
from kronicler.query.defaults import PER_DECADE
from kronicler.query.filters import Filter, is_glob, resolve_functions, select
from kronicler.query.results import Histogram, HistogramBucket

if TYPE_CHECKING:
    from kronicler.db.view import ReadAPI, ReadView

MAX_PER_DECADE = 100


def histogram(
    db: ReadAPI,
    function: str,
    flt: Filter | None = None,
    *,
    per_decade: int = PER_DECADE,
    exact: bool = False,
) -> Histogram:
    """Log-scale histogram of one function's durations.

    Args:
        function: a function name (not a pattern); ``NotFoundError`` if never seen.
        flt: service, time range and attribute filters; its ``functions`` must be empty.
        per_decade: buckets per power of ten, 1..100.
        exact: bin raw durations instead of the summaries' buckets.
    """
    flt = check_histogram(function, flt, per_decade)
    return answer(db, lambda view: _histogram(view, function, flt, per_decade, exact))


def check_histogram(function: str, flt: Filter | None, per_decade: int) -> Filter:
    """The checked filter, or ``ValueError`` naming the bad argument."""
    flt = flt or Filter()
    flt.check()
    if flt.functions:
        raise ValueError("histogram takes one function; leave the filter's functions empty")
    if not isinstance(function, str) or not function or is_glob(function):
        raise ValueError(f"histogram needs one function name, not a pattern: {function!r}")
    if not isinstance(per_decade, int) or not 1 <= per_decade <= MAX_PER_DECADE:
        raise ValueError(f"per_decade must be between 1 and {MAX_PER_DECADE}, got {per_decade!r}")
    return flt


def _histogram(db: ReadView, function: str, flt: Filter, per_decade: int, exact: bool) -> Histogram:
    resolve_functions(db, [function])  # NotFoundError for an unknown name
    if exact or flt.needs_scan:
        sel = select(db, flt.with_functions((function,)),
                     ("duration",))  # fmt: skip
        values = sel.columns["duration"].astype(np.float64)
        weights = np.ones(len(values), dtype=np.int64)
    else:
        fs = db.summaries([function], since=flt.since, until=flt.until).get(function)
        if fs is None or fs.summary is None or not fs.summary.count:
            return Histogram(function, 0, per_decade, exact, ())
        lower, upper, counts = fs.summary.buckets()
        lower = np.asarray(lower, dtype=np.float64)
        upper = np.asarray(upper, dtype=np.float64)
        values = np.where(lower > 0, np.sqrt(np.maximum(lower, 0) * upper), 0.0)
        weights = np.asarray(counts, dtype=np.int64)
    return Histogram(function, int(weights.sum()), per_decade, exact or flt.needs_scan,
                     rebin(values, weights, per_decade))  # fmt: skip


def rebin(values: np.ndarray, weights: np.ndarray, per_decade: int) -> tuple[HistogramBucket, ...]:
    """Sum ``weights`` into log-scale buckets by ``values``; zero and sub-1 ns values -> [0, 1)."""
    if len(values) == 0:
        return ()
    idx = np.full(len(values), -1, dtype=np.int64)
    pos = values >= 1
    idx[pos] = np.floor(np.log10(values[pos]) * per_decade + 1e-9).astype(np.int64)
    keys, inverse = np.unique(idx, return_inverse=True)
    sums = np.bincount(inverse.ravel(), weights=weights, minlength=len(keys)).astype(np.int64)
    out = []
    for k, c in zip(keys.tolist(), sums.tolist(), strict=True):
        if c == 0:
            continue
        if k < 0:
            out.append(HistogramBucket(0.0, 1.0, c))
        else:
            out.append(HistogramBucket(10 ** (k / per_decade), 10 ** ((k + 1) / per_decade), c))
    return tuple(out)
