"""Latency statistics per group, and the list of functions: the two questions asked most.

``stats`` takes the summary road (merged per-function summaries straight from the database's
index, no durations decoded) whenever it can: grouping by function, no service/attribute filter,
not exact. Anything else scans the selected rows once and aggregates them vectorised
(:mod:`kronicler.query.grouping`). Both roads give the same figures within the summaries'
1% relative error on quantiles; counts, errors, min and max agree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from kronicler.db.schema import STATUS_ERROR
from kronicler.db.stats import DEFAULT_QUANTILES, Stats, quantile_label
from kronicler.db.view import answer, exact_one
from kronicler.query.filters import Filter, resolve_functions, select
from kronicler.query.grouping import (
    MAX_GROUPS,
    check_quantiles,
    compact,
    exact_stats,
    group_rows,
    parse_group_by,
    stats_of_summaries,
    summary_stats,
)
from kronicler.query.results import FunctionInfo, StatsTable

if TYPE_CHECKING:
    from kronicler.db.view import ReadAPI, ReadView

#: Orderings accepted by ``stats(order_by=...)`` besides quantile labels such as ``"p99"``.
ORDERS = ("key", "count", "errors", "mean", "stddev", "min", "max", "total")


def stats(
    db: ReadAPI,
    flt: Filter | None = None,
    *,
    group_by: str = "function",
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    exact: bool = False,
    order_by: str = "key",
    limit: int | None = None,
    max_groups: int = MAX_GROUPS,
) -> StatsTable:
    """Count, errors, mean, stddev, stderr, min, max and ``quantiles`` for each group.

    Args:
        db: an open database, or a view of one (every read of the query uses one snapshot).
        flt: which calls (default: all).
        group_by: ``"function"``, ``"service"``, ``"attribute:<key>"`` or ``"resource:<key>"`` (calls without that
            attribute are left out).
        quantiles: each in [0, 1]; reported in this order.
        exact: decode raw durations and compute exact quantiles instead of merging summaries.
        order_by: ``"key"`` (ascending) or, descending, ``count``/``errors``/``mean``/``stddev``/
            ``min``/``max``/``total`` (mean * count) or a requested quantile label (``"p99"``).
        limit: keep only the first ``limit`` rows (>= 1) after ordering; ``None`` keeps all.
        max_groups: refuse (``ValueError``) a query that would return more groups.

    Raises:
        ValueError: a bad argument (named in the message); NotFoundError: an unknown function.
    """
    flt = flt or Filter()
    flt.check()
    qs = check_quantiles(quantiles)
    kind, _ = parse_group_by(group_by)
    check_order(order_by, qs)
    check_limit(limit)

    def ask(view: ReadView) -> list[Stats]:
        if kind == "function" and not exact and not flt.needs_scan:
            names = resolve_functions(view, flt.functions)
            sums = {} if names == [] else view.summaries(names, since=flt.since, until=flt.until)
            if len(sums) > max_groups:
                raise ValueError(
                    f"query would return {len(sums)} groups, more than the limit of "
                    f"{max_groups}; narrow the filter"
                )
            filled = [(name, fs) for name, fs in sorted(sums.items())
                      if fs.summary is not None and fs.summary.count]  # fmt: skip
            return stats_of_summaries([name for name, _ in filled], [fs.summary for _, fs in filled],
                                      [fs.errors for _, fs in filled], qs)  # fmt: skip
        if kind == "function" and exact and not flt.needs_scan and _whole(flt):
            # A few functions over all time: each from its sorted runs (.kdur), not a scan.
            names = resolve_functions(view, flt.functions)
            if names is not None and len(names) <= EXACT_BY_RUNS:
                found = [exact_one(view, name, qs) for name in names]
                return [st for st in found if st.count]
        grouped = compact(group_rows(view, flt, group_by), max_groups)
        return exact_stats(grouped, qs) if exact else summary_stats(grouped, qs)

    rows = order_rows(answer(db, ask), order_by)
    if limit is not None:
        rows = rows[:limit]
    return StatsTable(group_by, qs, exact, tuple(rows))


#: Up to this many functions, exact stats over all time read each function's sorted runs; more
#: are answered by one scan of the selected rows (fewer reads per row than one pass per name).
EXACT_BY_RUNS = 8


def _whole(flt: Filter) -> bool:
    return flt.since is None and flt.until is None


def check_limit(limit: int | None) -> None:
    """``limit`` is ``None`` (all rows) or >= 1: on the wire (gRPC) 0 means "all", so a 0 here
    would answer differently locally and through a server."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive number of rows, got {limit!r}")


def check_order(order_by: str, quantiles: Sequence[float]) -> None:
    labels = [quantile_label(q) for q in quantiles]
    if order_by not in ORDERS and order_by not in labels:
        raise ValueError(
            f"unknown order {order_by!r}: use one of {', '.join(ORDERS)} or a requested "
            f"quantile ({', '.join(labels)})"
        )


def order_rows(rows: list[Stats], order_by: str) -> list[Stats]:
    """Sort rows by key (ascending) or by a figure (descending, missing figures last)."""
    if order_by == "key":
        return sorted(rows, key=lambda r: r.key)

    def figure(r: Stats) -> float:
        if order_by == "total":
            v: float | int | None = None if r.mean is None else r.mean * r.count
        elif order_by in ("count", "errors", "mean", "stddev", "min", "max"):
            v = getattr(r, order_by)
        else:
            v = next((val for q, val in r.quantiles if quantile_label(q) == order_by), None)
        return float("-inf") if v is None else float(v)

    return sorted(rows, key=lambda r: (-figure(r), r.key))


def list_functions(db: ReadAPI, flt: Filter | None = None) -> list[FunctionInfo]:
    """Every function with calls in the filter, sorted by name: counts and first/last start."""
    flt = flt or Filter()
    flt.check()
    return answer(db, lambda view: _list_functions(view, flt))


def _list_functions(db: ReadView, flt: Filter) -> list[FunctionInfo]:
    if not flt.needs_scan:
        names = resolve_functions(db, flt.functions)
        if names == []:
            return []
        sums = db.summaries(names, since=flt.since, until=flt.until)
        return [
            FunctionInfo(name, int(fs.summary.count), int(fs.errors), fs.first_start,
                         fs.last_start)
            for name, fs in sorted(sums.items())
            if fs.summary is not None and fs.summary.count
        ]  # fmt: skip
    sel = select(db, flt, ("name", "start", "status"))
    codes = sel.columns["name"].astype(np.int64)
    n = len(sel.names)
    if n == 0 or len(codes) == 0:
        return []
    counts = np.bincount(codes, minlength=n)
    errors = np.bincount(codes[sel.columns["status"] == STATUS_ERROR], minlength=n)
    start = sel.columns["start"]
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, codes, start)
    np.maximum.at(last, codes, start)
    out = [
        FunctionInfo(sel.names[i], int(counts[i]), int(errors[i]), int(first[i]), int(last[i]))
        for i in np.flatnonzero(counts)
    ]
    return sorted(out, key=lambda f: f.name)
