"""Functions whose calls are occasionally much slower than usual, ranked, with the evidence.

Three signals, each a ratio of latencies of the same function, so they need no absolute
thresholds in milliseconds and compare fairly between a 20 us parser and a 2 s report:

- **tail**       ``p99 / p50``: a heavy tail; 1 call in 100 is far slower than the typical call;
- **spike**      ``max / p50``: at least one call far slower than typical (rare stalls);
- **regression** ``recent p99 / baseline p99``: the tail got worse in the most recent window
  (default: the last tenth of the range) compared with everything before it.

Each signal becomes ``log(ratio) / log(threshold)`` (0 when ratio <= 1): 1.0 means "exactly at its
threshold", 2.0 "the threshold squared". The **score** is the largest of the three, a function is
reported when its score is >= 1, and findings are ranked by score. Functions with fewer than
``min_count`` calls are skipped (their p99 is just their max); the regression signal also needs
``min_count`` baseline calls and ``max(10, min_count // 5)`` recent calls.

Trade-off: ratios of quantiles from summaries carry the summaries' 1% relative error, far below
the thresholds. Two merged summaries per function (recent and baseline) keep this as cheap as a
stats query: the whole range is their merge (summaries merge exactly), not a third read. Every read
of one question (the ranges, the summaries, the exemplars) comes from one snapshot, so a finding's
count is the sum of its recent and baseline counts even while writers append.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from kronicler.db.summary import Summary, summarize_groups
from kronicler.db.view import answer
from kronicler.query.defaults import ANOMALY_EXEMPLARS, ANOMALY_LIMIT
from kronicler.query.filters import Filter, resolve_functions
from kronicler.query.grouping import compact, error_counts, group_rows
from kronicler.query.limits import MAX_CALLS, MAX_EXEMPLARS, MAX_FINDINGS
from kronicler.query.results import Anomaly
from kronicler.query.slowest import slowest

if TYPE_CHECKING:
    from kronicler.db.view import ReadAPI, ReadView

DEFAULT_MIN_COUNT = 50
DEFAULT_TAIL_THRESHOLD = 4.0
DEFAULT_SPIKE_THRESHOLD = 20.0
DEFAULT_REGRESSION_THRESHOLD = 2.0
DEFAULT_RECENT_FRACTION = 0.1


def anomalies(
    db: ReadAPI,
    flt: Filter | None = None,
    *,
    min_count: int = DEFAULT_MIN_COUNT,
    tail_threshold: float = DEFAULT_TAIL_THRESHOLD,
    spike_threshold: float = DEFAULT_SPIKE_THRESHOLD,
    regression_threshold: float = DEFAULT_REGRESSION_THRESHOLD,
    recent: int | None = None,
    limit: int = ANOMALY_LIMIT,
    exemplars: int = ANOMALY_EXEMPLARS,
) -> list[Anomaly]:
    """Rank functions by how much slower than usual their slow calls are (see module doc).

    Args:
        flt: which calls; its time range (default: all data) is split into baseline and recent.
        min_count: functions with fewer calls in the range are not judged.
        tail_threshold, spike_threshold, regression_threshold: ratios (> 1) that score 1.0.
        recent: width in ns of the recent window at the end of the range (default: a tenth).
        limit: most findings returned; exemplars: slowest calls attached to each finding.
    """
    thresholds = (tail_threshold, spike_threshold, regression_threshold)
    flt = check_anomalies(flt, min_count, thresholds, recent, limit, exemplars)
    return answer(db, lambda view: _anomalies(
        view, flt, min_count, thresholds, recent, limit, exemplars))  # fmt: skip


def check_anomalies(
    flt: Filter | None,
    min_count: int,
    thresholds: tuple[float, float, float],
    recent: int | None,
    limit: int,
    exemplars: int,
) -> Filter:
    """The checked filter, or ``ValueError`` naming the bad argument."""
    tail_threshold, spike_threshold, regression_threshold = thresholds
    flt = flt or Filter()
    flt.check()
    for label, t in (("tail_threshold", tail_threshold), ("spike_threshold", spike_threshold),
                     ("regression_threshold", regression_threshold)):  # fmt: skip
        if not t > 1.0:
            raise ValueError(f"{label} must be > 1, got {t}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    # limit 0 would answer nothing here but "the default" through gRPC (proto3 zero): refused
    for label, value, low, cap in (("limit", limit, 1, MAX_FINDINGS),
                                   ("exemplars", exemplars, 0, MAX_EXEMPLARS)):  # fmt: skip
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= cap:
            raise ValueError(f"{label} must be between {low} and {cap}, got {value!r}")
    if limit * exemplars > MAX_CALLS:
        raise ValueError(
            f"limit x exemplars = {limit * exemplars} calls, more than the limit of {MAX_CALLS} "
            "calls per query; ask for fewer findings or fewer exemplars"
        )
    if recent is not None and recent <= 0:
        raise ValueError(f"recent must be a positive number of nanoseconds, got {recent}")
    return flt


def _anomalies(
    db: ReadView,
    flt: Filter,
    min_count: int,
    thresholds: tuple[float, float, float],
    recent: int | None,
    limit: int,
    exemplars: int,
) -> list[Anomaly]:
    span = db.time_range()
    if span is None or resolve_functions(db, flt.functions) == []:
        return []
    window = anomaly_window(span, flt, recent)
    if window is None:
        return []
    since, split, until = window
    if split > since:
        recent_s = function_summaries(db, flt.with_range(split, until))
        base_s = function_summaries(db, flt.with_range(since, split))
    else:  # the recent window is the whole range: no baseline, no regression signal
        recent_s, base_s = function_summaries(db, flt.with_range(since, until)), {}
    found = judge(recent_s, base_s, split > since, split, min_count, thresholds, limit)
    if exemplars:
        found = [_with_exemplars(db, flt.with_range(since, until), a, exemplars) for a in found]
    return found


def anomaly_window(
    span: tuple[int, int], flt: Filter, recent: int | None
) -> tuple[int, int, int] | None:
    """``(since, split, until)``: the range judged and where its recent window starts, given
    the data's ``span``; None for an empty range. A frontend passes the merged span."""
    since = flt.since if flt.since is not None else span[0]
    until = flt.until if flt.until is not None else span[1] + 1
    if until <= since:
        return None
    width = recent if recent is not None else max(1, int((until - since) * DEFAULT_RECENT_FRACTION))
    return since, max(since, until - width), until


def judge(
    recent_s: dict[str, tuple[Summary | None, int]],
    base_s: dict[str, tuple[Summary | None, int]],
    has_baseline: bool,
    split: int,
    min_count: int,
    thresholds: tuple[float, float, float],
    limit: int,
) -> list[Anomaly]:
    """The findings (without exemplars), ranked and cut to ``limit``, from merged summaries.

    ``recent_s`` covers the whole range when there is no baseline (``has_baseline`` False).
    """
    tail_threshold, spike_threshold, regression_threshold = thresholds
    if has_baseline:
        whole = merge_summaries(recent_s, base_s)
    else:
        whole, recent_s = recent_s, {}
    min_recent = max(10, min_count // 5)
    found = []
    for name, (s, errors) in whole.items():
        if s is None or s.count < min_count:
            continue
        p50, p99 = (float(v or 0.0) for v in s.quantiles([0.5, 0.99]))
        mx = float(s.max or 0.0)
        typical = max(p50, 1.0)
        tail_ratio, spike_ratio = max(p99, 1.0) / typical, max(mx, 1.0) / typical
        rs, bs = recent_s.get(name, (None, 0))[0], base_s.get(name, (None, 0))[0]
        recent_count = int(rs.count) if rs is not None else 0
        recent_p99 = rs.quantile(0.99) if rs is not None and rs.count else None
        base_p99 = bs.quantile(0.99) if bs is not None and bs.count else None
        reg_ratio = None
        if recent_p99 is not None and base_p99 is not None and recent_count >= min_recent \
                and bs is not None and bs.count >= min_count:  # fmt: skip
            reg_ratio = max(float(recent_p99), 1.0) / max(float(base_p99), 1.0)
        signals = {
            "tail": (_signal(tail_ratio, tail_threshold),
                     f"p99 is {tail_ratio:.1f}x the median (threshold {tail_threshold:g}x)"),
            "spike": (_signal(spike_ratio, spike_threshold),
                      f"slowest call is {spike_ratio:.1f}x the median "
                      f"(threshold {spike_threshold:g}x)"),
            "regression": (_signal(reg_ratio, regression_threshold),
                           f"recent p99 is {reg_ratio or 0:.1f}x the baseline p99 "
                           f"(threshold {regression_threshold:g}x)"),
        }  # fmt: skip
        score = max(v[0] for v in signals.values())
        if score < 1.0:
            continue
        reasons = tuple(text for sc, text in signals.values() if sc >= 1.0)
        found.append(
            Anomaly(
                function=name, score=round(score, 6), reasons=reasons, count=int(s.count),
                errors=int(errors), p50=p50, p99=p99, max=mx, tail_ratio=tail_ratio,
                spike_ratio=spike_ratio, recent_since=split, recent_count=recent_count,
                recent_p99=None if recent_p99 is None else float(recent_p99),
                baseline_p99=None if base_p99 is None else float(base_p99),
                regression_ratio=reg_ratio, exemplars=(),
            )
        )  # fmt: skip
    found.sort(key=lambda a: (-a.score, -a.count, a.function))
    return found[:limit]


def _signal(ratio: float | None, threshold: float) -> float:
    if ratio is None or ratio <= 1.0:
        return 0.0
    return math.log(ratio) / math.log(threshold)


def _with_exemplars(db: ReadView, flt: Filter, a: Anomaly, k: int) -> Anomaly:
    one = flt.with_functions((a.function,))
    calls = tuple(slowest(db, one, k=k))
    return replace(a, exemplars=calls)


def merge_summaries(
    *parts: dict[str, tuple[Summary | None, int]],
) -> dict[str, tuple[Summary | None, int]]:
    """Per function, the summaries of disjoint ranges merged and their error counts added."""
    out: dict[str, tuple[Summary | None, int]] = {}
    for name in sorted({n for part in parts for n in part}):
        items = [part[name] for part in parts if name in part]
        out[name] = (Summary.merge_all(s for s, _ in items), sum(e for _, e in items))
    return out


def function_summaries(db: ReadAPI, flt: Filter) -> dict[str, tuple[Summary | None, int]]:
    """Merged summary and error count per function: from the index when possible, else a scan."""
    return answer(db, lambda view: _function_summaries(view, flt))


def _function_summaries(db: ReadView, flt: Filter) -> dict[str, tuple[Summary | None, int]]:
    if not flt.needs_scan:
        names = resolve_functions(db, flt.functions)
        if names == []:
            return {}
        sums = db.summaries(names, since=flt.since, until=flt.until)
        return {n: (fs.summary, int(fs.errors)) for n, fs in sums.items()}
    g = compact(group_rows(db, flt, "function"))
    if not g.n_groups:
        return {}
    sums_list = summarize_groups(g.codes, g.columns["duration"], g.n_groups)
    errs = error_counts(g.codes, g.columns["status"], g.n_groups)
    return {k: (sums_list[i], int(errs[i])) for i, k in enumerate(g.keys)}
