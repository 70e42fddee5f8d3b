"""Statistics per time bucket, for charts: the same figures as ``stats``, once per ``step``.

Each selected row gets one cell code, ``group * n_buckets + bucket``, and the cells are
aggregated in one vectorised pass like any other grouping, so the cost is one scan of the range
whatever the number of buckets. Every bucket is returned, empty ones with count 0, so a chart
shows gaps where nothing ran. The number of buckets and of points (groups x buckets) is capped
so that a careless ``step`` cannot ask the server for millions of points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from kronicler import budget
from kronicler.db.stats import DEFAULT_QUANTILES, Stats
from kronicler.db.view import answer
from kronicler.errors import LimitExceededError
from kronicler.query.filters import Filter
from kronicler.query.grouping import (
    MAX_GROUPS,
    Grouped,
    check_quantiles,
    compact,
    exact_stats,
    group_rows,
    parse_group_by,
    summary_stats,
)
from kronicler.query.limits import MAX_SERIES_VALUES
from kronicler.query.results import Series, SeriesPoint, SeriesTable

if TYPE_CHECKING:
    from kronicler.db.view import ReadAPI, ReadView

#: Most buckets one series may have.
MAX_BUCKETS = 10_000
#: Most points (groups x buckets) one query may return.
MAX_POINTS = 100_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: Round steps (ns) chosen when the caller gives none: the smallest giving at most the target.
NICE_STEPS_NS: tuple[int, ...] = tuple(
    int(s * 1_000_000_000)
    for s in (
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
        60, 120, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600,
        86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400,
    )
)  # fmt: skip
TARGET_BUCKETS = 60


def series(
    db: ReadAPI,
    flt: Filter | None = None,
    *,
    step: int | None = None,
    group_by: str = "function",
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    exact: bool = False,
    max_buckets: int = MAX_BUCKETS,
    max_points: int = MAX_POINTS,
    max_groups: int = MAX_GROUPS,
) -> SeriesTable:
    """Per-group stats in buckets ``[since + i*step, since + (i+1)*step)``.

    Args:
        flt: which calls; its ``since``/``until`` bound the buckets. When missing they come from
            the data, and ``since`` is then aligned down to a multiple of ``step``.
        step: bucket width in ns; default: a round step giving at most 60 buckets.
        group_by, quantiles, exact: as in :func:`kronicler.query.stats`.

    Raises ``ValueError`` for a bad step or when the buckets or points exceed their caps.
    """
    flt, qs = check_series(flt, step, group_by, quantiles)
    return answer(db, lambda view: _series(
        view, flt, step, group_by, qs, exact, max_buckets, max_points, max_groups))  # fmt: skip


def check_series(
    flt: Filter | None, step: int | None, group_by: str, quantiles: Sequence[float]
) -> tuple[Filter, tuple[float, ...]]:
    """The checked filter and quantiles, or ``ValueError`` naming the bad argument."""
    flt = flt or Filter()
    flt.check()
    qs = check_quantiles(quantiles)
    parse_group_by(group_by)
    if step is not None and (not isinstance(step, int) or step <= 0):
        raise ValueError(f"step must be a positive number of nanoseconds, got {step!r}")
    return flt, qs


def _series(
    db: ReadView,
    flt: Filter,
    step: int | None,
    group_by: str,
    qs: tuple[float, ...],
    exact: bool,
    max_buckets: int,
    max_points: int,
    max_groups: int,
) -> SeriesTable:
    bounds = series_bounds(db.time_range(), flt, step)
    if isinstance(bounds, tuple):
        since, until, step = bounds
    else:
        return replace(bounds, group_by=group_by, quantiles=qs, exact=exact)
    n_buckets = check_buckets(since, until, step, max_buckets)
    grouped = compact(
        group_rows(db, flt.with_range(since, until), group_by, ("duration", "status", "start")),
        max_groups,
    )
    check_points(grouped.n_groups, n_buckets, len(qs), max_points)
    cells = Grouped(
        [""] * (grouped.n_groups * n_buckets),
        cell_codes(grouped, since, step, n_buckets),
        grouped.columns,
    )
    rows = exact_stats(cells, qs) if exact else summary_stats(cells, qs)
    return assemble(grouped.keys, rows, (group_by, step, since, until, qs, exact), n_buckets)


def series_bounds(
    span: tuple[int, int] | None, flt: Filter, step: int | None
) -> tuple[int, int, int] | SeriesTable:
    """``(since, until, step)`` of the buckets, given the data's ``span``; or the empty table
    (its group key, quantiles and ``exact`` to be filled in) when there is nothing to bucket.

    A frontend merging many nodes calls this with the merged span, so every node buckets alike.
    """
    since, until = flt.since, flt.until
    if since is None or until is None:
        lo = since if since is not None else (until if until is not None else 0)
        if span is None or (since is None and lo <= _INT64_MIN):
            return SeriesTable("", step or NICE_STEPS_NS[3], lo,
                               until if until is not None else lo, (), False, ())  # fmt: skip
        # Bounds derived from the data stay within int64, as every time on the wire must.
        if until is None:
            until = min(span[1] + 1, _INT64_MAX)
            if since is not None:
                until = max(until, since)  # an empty series, never since > until
        if since is None:
            since = min(span[0], until - 1)
            step = step or pick_step(until - since)
            if since - since % step >= _INT64_MIN:
                since -= since % step
    step = step or pick_step(until - since)
    if until <= since:
        return SeriesTable("", step, since, until, (), False, ())
    return since, until, step


def check_buckets(since: int, until: int, step: int, max_buckets: int = MAX_BUCKETS) -> int:
    """The number of buckets, or ``ValueError`` when there are more than ``max_buckets``."""
    budget.check()
    n_buckets = -(-(until - since) // step)
    if n_buckets > max_buckets:
        raise ValueError(
            f"step {step} ns over {until - since} ns gives {n_buckets} buckets, more than the "
            f"limit of {max_buckets}; use a larger step"
        )
    return n_buckets


def check_points(n_groups: int, n_buckets: int, n_quantiles: int, max_points: int) -> None:
    """Refuse an answer with too many numbers or points (checked on the groups found)."""
    values = n_groups * n_buckets * (5 + n_quantiles)
    if values > MAX_SERIES_VALUES:
        raise LimitExceededError(
            f"{n_groups} groups x {n_buckets} buckets x {5 + n_quantiles} figures = "
            f"{values} numbers, more than the limit of {MAX_SERIES_VALUES}; "
            "use a larger step, fewer quantiles or a narrower filter"
        )
    if n_groups * n_buckets > max_points:
        raise ValueError(
            f"{n_groups} groups x {n_buckets} buckets = "
            f"{n_groups * n_buckets} points, more than the limit of {max_points}; "
            "use a larger step or a narrower filter"
        )


def cell_codes(grouped: Grouped, since: int, step: int, n_buckets: int) -> np.ndarray:
    """Each row's cell, ``group * n_buckets + bucket``."""
    # start - since may not fit in int64 (since near -2**63) but always fits in uint64.
    offset = grouped.columns["start"].astype(np.int64).view(np.uint64) - np.uint64(since % 2**64)
    bucket = offset // np.uint64(step)
    return np.asarray(grouped.codes * n_buckets + bucket.astype(np.int64))


def assemble(
    keys: Sequence[str],
    rows: Sequence[Stats],
    head: tuple[str, int, int, int, tuple[float, ...], bool],
    n_buckets: int,
) -> SeriesTable:
    """The table from one stats row per cell (``rows[g * n_buckets + b]``)."""
    group_by, step, since, until, qs, exact = head
    out = []
    for g, key in enumerate(keys):
        points = tuple(
            SeriesPoint(since + b * step, r.count, r.errors, r.mean, r.min, r.max, r.quantiles)
            for b, r in enumerate(rows[g * n_buckets : (g + 1) * n_buckets])
        )
        out.append(Series(key, points))
    return SeriesTable(group_by, step, since, until, qs, exact, tuple(out))


def pick_step(width: int, target: int = TARGET_BUCKETS) -> int:
    """The smallest round step that splits ``width`` ns into at most ``target`` buckets."""
    width = max(width, 1)
    for s in NICE_STEPS_NS:
        if width <= s * target:
            return s
    return -(-width // target)
