"""The value types every query returns: frozen, slotted, and plain enough to print or serialise.

The gRPC server, the CLI and the web dashboard all speak these types, so each has ``to_dict()``
giving JSON-ready data with explicit units: durations end in ``_ns`` (floats, ``None`` when there
is nothing to measure), times are Unix epoch nanoseconds, ids are lowercase hex (the form trace
viewers search for). Quantiles travel as ``(q, value)`` pairs so a caller may ask for any set of
them; ``quantile_label(0.99) == "p99"`` names them in tables and JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Quantiles reported when the caller names none.
DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99, 0.999)


def quantile_label(q: float) -> str:
    """``0.5 -> "p50"``, ``0.999 -> "p999"``, ``0.995 -> "p995"``, ``0.05 -> "p5"``."""
    return "p" + f"{q * 100:.10g}".replace(".", "")


def _q_dict(quantiles: tuple[tuple[float, float | None], ...]) -> dict[str, float | None]:
    return {f"{quantile_label(q)}_ns": v for q, v in quantiles}


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Latency statistics of one group of calls (a function, a service or an attribute value).

    Fields:
        key: the group's value (function name, service name or attribute value as text).
        count: number of calls; errors: calls whose status is error.
        mean, stddev, stderr, min, max: nanoseconds; ``None`` when ``count == 0``.
            ``stddev`` is the sample standard deviation and ``stderr = stddev / sqrt(count)``.
        quantiles: ``(q, value_ns)`` pairs in the order they were asked for.
    """

    key: str
    count: int
    errors: int
    mean: float | None
    stddev: float | None
    stderr: float | None
    min: float | None
    max: float | None
    quantiles: tuple[tuple[float, float | None], ...]

    def quantile(self, q: float) -> float | None:
        """The value of quantile ``q`` if it was computed; ``KeyError`` otherwise."""
        for have, value in self.quantiles:
            if abs(have - q) < 1e-12:
                return value
        raise KeyError(f"quantile {q} was not requested")

    def to_dict(self, key_name: str = "key") -> dict[str, Any]:
        """JSON-ready row; ``key_name`` names the key column (``"function"`` in stats tables)."""
        return {
            key_name: self.key,
            "count": self.count,
            "errors": self.errors,
            "mean_ns": self.mean,
            "stddev_ns": self.stddev,
            "stderr_ns": self.stderr,
            "min_ns": self.min,
            "max_ns": self.max,
            **_q_dict(self.quantiles),
        }


@dataclass(frozen=True, slots=True)
class StatsTable:
    """Result of :func:`kronicler.query.stats`: one :class:`GroupStats` per group.

    ``group_by`` is ``"function"``, ``"service"``, ``"attribute:<key>"`` or ``"resource:<key>"``; ``exact`` says whether
    quantiles come from raw durations (True) or from merged summaries (<= 1% relative error).
    """

    group_by: str
    quantiles: tuple[float, ...]
    exact: bool
    rows: tuple[GroupStats, ...]

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
class SlowCall:
    """One recorded call (an exemplar): enough to find the trace in any trace viewer.

    ``trace_id`` (128-bit), ``span_id`` and ``parent_span_id`` (64-bit) are ints, 0 = none;
    ``to_dict`` writes them as 32/16 lowercase hex digits. ``kind`` is OTLP's span kind number
    (0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer); ``status`` OTel's
    status code (0 unset, 1 ok, 2 error). ``resource`` holds the resource attributes of the
    process or service that sent the call (``service.version``, ``host.name``...), ``{}`` when
    none are known.
    """

    function: str
    service: str
    start: int
    duration: int
    status: int
    kind: int
    trace_id: int
    span_id: int
    parent_span_id: int
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    @property
    def span_id_hex(self) -> str:
        return f"{self.span_id:016x}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "service": self.service,
            "start_unix_nano": self.start,
            "duration_ns": self.duration,
            "status": self.status,
            "kind": self.kind,
            "trace_id": self.trace_id_hex,
            "span_id": self.span_id_hex,
            "parent_span_id": f"{self.parent_span_id:016x}",
            "attributes": dict(self.attributes),
            "resource": dict(self.resource),
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
    exemplars: tuple[SlowCall, ...]

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
