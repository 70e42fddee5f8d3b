"""The value types every query returns: frozen, slotted, and plain enough to print or serialise.

The gRPC server, the CLI and the web dashboard all speak these types, so each has ``to_dict()``
giving JSON-ready data with explicit units: durations end in ``_ns`` (floats, ``None`` when there
is nothing to measure), times are Unix epoch nanoseconds, ids are lowercase hex (the form trace
viewers search for). Quantiles travel as ``(q, value)`` pairs so a caller may ask for any set of
them; ``quantile_label(0.99) == "p99"`` names them in tables and JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kronicler.db.stats import Call, Stats, quantile_label


def _q_dict(quantiles: tuple[tuple[float, float | None], ...]) -> dict[str, float | None]:
    return {f"{quantile_label(q)}_ns": v for q, v in quantiles}


@dataclass(frozen=True, slots=True)
class StatsTable:
    """Result of :func:`kronicler.query.stats`: one :class:`Stats` per group.

    ``group_by`` is ``"function"``, ``"service"``, ``"attribute:<key>"`` or ``"resource:<key>"``; ``exact`` says whether
    quantiles come from raw durations (True) or from merged summaries (<= 1% relative error).
    """

    group_by: str
    quantiles: tuple[float, ...]
    exact: bool
    rows: tuple[Stats, ...]

    @property
    def key_name(self) -> str:
        """Column name for the group key: ``function``, ``service`` or the attribute key."""
        return self.group_by.split(":", 1)[1] if ":" in self.group_by else self.group_by

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_by": self.group_by,
            "quantiles": list(self.quantiles),
            "exact": self.exact,
            "rows": [r.to_dict(self.key_name) for r in self.rows],
        }


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """One function seen in the database: call and error counts and when it was first/last seen."""

    name: str
    count: int
    errors: int
    first_start: int | None
    last_start: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.name,
            "count": self.count,
            "errors": self.errors,
            "first_start_unix_nano": self.first_start,
            "last_start_unix_nano": self.last_start,
        }


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """Stats of the calls that started in ``[start, start + step)``; empty buckets have count 0."""

    start: int
    count: int
    errors: int
    mean: float | None
    min: float | None
    max: float | None
    quantiles: tuple[tuple[float, float | None], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_unix_nano": self.start,
            "count": self.count,
            "errors": self.errors,
            "mean_ns": self.mean,
            "min_ns": self.min,
            "max_ns": self.max,
            **_q_dict(self.quantiles),
        }


@dataclass(frozen=True, slots=True)
class Series:
    """The time series of one group: one point per bucket, every bucket present, in time order."""

    key: str
    points: tuple[SeriesPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "points": [p.to_dict() for p in self.points]}


@dataclass(frozen=True, slots=True)
class SeriesTable:
    """Result of :func:`kronicler.query.series`: bucket i is ``[since + i*step, +step)``."""

    group_by: str
    step: int
    since: int
    until: int
    quantiles: tuple[float, ...]
    exact: bool
    series: tuple[Series, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_by": self.group_by,
            "step_ns": self.step,
            "since_unix_nano": self.since,
            "until_unix_nano": self.until,
            "quantiles": list(self.quantiles),
            "exact": self.exact,
            "series": [s.to_dict() for s in self.series],
        }


@dataclass(frozen=True, slots=True)
class HistogramBucket:
    """Calls whose duration falls in ``[lower, upper)`` nanoseconds."""

    lower: float
    upper: float
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"lower_ns": self.lower, "upper_ns": self.upper, "count": self.count}


@dataclass(frozen=True, slots=True)
class Histogram:
    """Log-scale latency histogram of one function (``per_decade`` buckets per power of ten).

    Only non-empty buckets are listed, in increasing order. From summaries (``exact=False``) each
    call is placed within the summaries' 1% relative error, so a call very close to a bucket edge
    may land in its neighbour.
    """

    function: str
    count: int
    per_decade: int
    exact: bool
    buckets: tuple[HistogramBucket, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "count": self.count,
            "per_decade": self.per_decade,
            "exact": self.exact,
            "buckets": [b.to_dict() for b in self.buckets],
        }


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A function whose calls are sometimes much slower than usual, with the evidence.

    ``score`` is the strongest of three signals, each ``log(ratio) / log(threshold)`` so that 1.0
    means "exactly at its threshold" and 2.0 "the threshold squared" (see
    :mod:`kronicler.query.anomalies`):

    - tail: ``tail_ratio = p99 / p50``;
    - spike: ``spike_ratio = max / p50``;
    - regression: ``regression_ratio = recent p99 / baseline p99`` (``None`` without enough
      calls in both windows).

    ``reasons`` says in words which signals crossed their thresholds; ``exemplars`` are the
    slowest calls in the range, to open in a trace viewer.
    """

    function: str
    score: float
    reasons: tuple[str, ...]
    count: int
    errors: int
    p50: float
    p99: float
    max: float
    tail_ratio: float
    spike_ratio: float
    recent_since: int
    recent_count: int
    recent_p99: float | None
    baseline_p99: float | None
    regression_ratio: float | None
    exemplars: tuple[Call, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "score": self.score,
            "reasons": list(self.reasons),
            "count": self.count,
            "errors": self.errors,
            "p50_ns": self.p50,
            "p99_ns": self.p99,
            "max_ns": self.max,
            "tail_ratio": self.tail_ratio,
            "spike_ratio": self.spike_ratio,
            "recent_since_unix_nano": self.recent_since,
            "recent_count": self.recent_count,
            "recent_p99_ns": self.recent_p99,
            "baseline_p99_ns": self.baseline_p99,
            "regression_ratio": self.regression_ratio,
            "exemplars": [c.to_dict() for c in self.exemplars],
        }


@dataclass(frozen=True, slots=True)
class AttributeFinding:
    """An attribute value over-represented among a function's slow calls (see ``explain``).

    ``slow`` of the ``slow_total`` slow calls carry ``key = value`` (text, as filters compare
    it), and ``baseline`` of the ``baseline_total`` other calls. ``score`` is the difference of
    the shares (``slow_share - baseline_share``, from -1 to 1: the part of the slow calls the
    value explains beyond its usual share); ``lift = slow_share / baseline_share`` (``None``
    when no baseline call has it); ``z`` the two-proportion z statistic. ``examples``: the
    slowest slow calls carrying the value.
    """

    key: str
    value: str
    slow: int
    baseline: int
    slow_total: int
    baseline_total: int
    score: float
    lift: float | None
    z: float
    examples: tuple[Call, ...]

    @property
    def slow_share(self) -> float:
        return self.slow / self.slow_total if self.slow_total else 0.0

    @property
    def baseline_share(self) -> float:
        return self.baseline / self.baseline_total if self.baseline_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "slow": self.slow,
            "baseline": self.baseline,
            "slow_total": self.slow_total,
            "baseline_total": self.baseline_total,
            "slow_share": self.slow_share,
            "baseline_share": self.baseline_share,
            "score": self.score,
            "lift": self.lift,
            "z": self.z,
            "examples": [c.to_dict() for c in self.examples],
        }


@dataclass(frozen=True, slots=True)
class ChildFinding:
    """The time one child function took inside slow calls against inside the other calls.

    Children are the rows of the same trace whose parent span id is the call's span id.
    ``slow_calls`` / ``baseline_calls``: parent calls with at least one such child;
    ``slow_children`` / ``baseline_children``: child calls; ``slow_time`` / ``baseline_time``:
    the children's summed durations (ns), over ``slow_total`` / ``baseline_total`` parent calls
    whose durations sum to ``slow_parent_time`` / ``baseline_parent_time``. Derived:
    ``slow_mean`` / ``baseline_mean`` (child time per parent call, ns), ``slow_share`` /
    ``baseline_share`` (child time over parent time) and ``extra`` (``slow_mean -
    baseline_mean``: how much longer slow calls spend there). For the self time (the parent's
    duration minus its children's, at least 0) ``function`` is ``"(self time)"`` and
    ``slow_calls`` / ``baseline_calls`` count the calls with no recorded child at all.
    ``examples``: the slow calls that spent the most time there.
    """

    function: str
    slow_calls: int
    baseline_calls: int
    slow_children: int
    baseline_children: int
    slow_time: int
    baseline_time: int
    slow_total: int
    baseline_total: int
    slow_parent_time: int
    baseline_parent_time: int
    examples: tuple[Call, ...]

    @property
    def slow_mean(self) -> float | None:
        return self.slow_time / self.slow_total if self.slow_total else None

    @property
    def baseline_mean(self) -> float | None:
        return self.baseline_time / self.baseline_total if self.baseline_total else None

    @property
    def slow_share(self) -> float | None:
        return self.slow_time / self.slow_parent_time if self.slow_parent_time else None

    @property
    def baseline_share(self) -> float | None:
        return self.baseline_time / self.baseline_parent_time if self.baseline_parent_time else None

    @property
    def extra(self) -> float:
        return (self.slow_mean or 0.0) - (self.baseline_mean or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "slow_calls": self.slow_calls,
            "baseline_calls": self.baseline_calls,
            "slow_children": self.slow_children,
            "baseline_children": self.baseline_children,
            "slow_time_ns": self.slow_time,
            "baseline_time_ns": self.baseline_time,
            "slow_total": self.slow_total,
            "baseline_total": self.baseline_total,
            "slow_parent_time_ns": self.slow_parent_time,
            "baseline_parent_time_ns": self.baseline_parent_time,
            "slow_mean_ns": self.slow_mean,
            "baseline_mean_ns": self.baseline_mean,
            "slow_share": self.slow_share,
            "baseline_share": self.baseline_share,
            "extra_ns": self.extra,
            "examples": [c.to_dict() for c in self.examples],
        }


@dataclass(frozen=True, slots=True)
class SlowShareBucket:
    """Calls that started in ``[start, start + step)`` and how many of them were slow."""

    start: int
    calls: int
    slow: int

    def to_dict(self) -> dict[str, Any]:
        share = self.slow / self.calls if self.calls else None
        return {"start_unix_nano": self.start, "calls": self.calls, "slow": self.slow,
                "slow_share": share}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Release:
    """One value of a release key (``service.version``) and the slow share around it.

    ``calls`` / ``slow``: the function's calls with this version, and the slow ones among them;
    ``first_start`` / ``last_start``: when the version was first and last seen. ``before_*``
    count the calls (of any version) that started before ``first_start``, ``after_*`` those from
    it on; ``z`` compares the two slow shares. ``lines_up`` marks the one release (at most)
    after whose first call the slow share rose the most, significantly (``z >= 3``).
    """

    key: str
    version: str
    calls: int
    slow: int
    first_start: int
    last_start: int
    before_calls: int
    before_slow: int
    after_calls: int
    after_slow: int
    z: float
    lines_up: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "version": self.version,
            "calls": self.calls,
            "slow": self.slow,
            "first_start_unix_nano": self.first_start,
            "last_start_unix_nano": self.last_start,
            "before_calls": self.before_calls,
            "before_slow": self.before_slow,
            "before_slow_share": self.before_slow / self.before_calls if self.before_calls
            else None,
            "after_calls": self.after_calls,
            "after_slow": self.after_slow,
            "after_slow_share": self.after_slow / self.after_calls if self.after_calls else None,
            "z": self.z,
            "lines_up": self.lines_up,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Explanation:
    """Result of :func:`kronicler.query.explain`: why some calls of one function are slow.

    Slow calls (``duration > threshold`` ns; ``quantile`` names it when it is the function's
    exact quantile in the range, ``None`` for an absolute threshold) against the baseline (the
    other calls of the function in ``[since, until)``). Every figure is a count or a sum, so
    partial answers over the same threshold add up; shares and means are derived from them.

    Fields: ``count`` / ``slow_count`` calls, ``slow_time`` / ``baseline_time`` their summed
    durations (ns); ``attributes`` ranked by score; ``children`` ranked by ``extra``;
    ``self_time``; ``series`` the slow share per ``step`` ns and ``cluster_score`` (chi-square
    of the slow counts per bucket over its degrees of freedom: about 1 when slow calls are
    spread evenly, ``clustered`` when >= 3); ``releases`` in order of first appearance;
    ``examples`` the slowest calls. ``threshold_exact``: False when the threshold is the
    quantile estimated from merged summaries (within 1%), as a cluster frontend does over more
    rows than it gathers exactly; a quantile of one database is always exact.
    """

    function: str
    since: int | None
    until: int | None
    quantile: float | None
    threshold: float | None
    count: int
    slow_count: int
    slow_time: int
    baseline_time: int
    attributes: tuple[AttributeFinding, ...]
    children: tuple[ChildFinding, ...]
    self_time: ChildFinding | None
    step: int
    series: tuple[SlowShareBucket, ...]
    cluster_score: float
    releases: tuple[Release, ...]
    examples: tuple[Call, ...]
    threshold_exact: bool = True

    @property
    def baseline_count(self) -> int:
        return self.count - self.slow_count

    @property
    def clustered(self) -> bool:
        return self.cluster_score >= 3.0

    def to_dict(self) -> dict[str, Any]:
        base = self.baseline_count
        return {
            "function": self.function,
            "since_unix_nano": self.since,
            "until_unix_nano": self.until,
            "quantile": self.quantile,
            "threshold_ns": self.threshold,
            "threshold_exact": self.threshold_exact,
            "count": self.count,
            "slow_count": self.slow_count,
            "baseline_count": base,
            "slow_time_ns": self.slow_time,
            "baseline_time_ns": self.baseline_time,
            "slow_mean_ns": self.slow_time / self.slow_count if self.slow_count else None,
            "baseline_mean_ns": self.baseline_time / base if base else None,
            "attributes": [a.to_dict() for a in self.attributes],
            "children": [c.to_dict() for c in self.children],
            "self_time": None if self.self_time is None else self.self_time.to_dict(),
            "step_ns": self.step,
            "series": [b.to_dict() for b in self.series],
            "cluster_score": self.cluster_score,
            "clustered": self.clustered,
            "releases": [r.to_dict() for r in self.releases],
            "examples": [c.to_dict() for c in self.examples],
        }
