"""Statistics values returned by queries: ``Stats`` (one function) and ``Call`` (one row).

``Stats`` is built either from a mergeable summary (quantiles within 1% relative error, costs
nothing to compute over any number of rows) or from the raw durations (``exact=True``: quantiles are
exact, at the cost of decoding every row). Both give the same fields, in nanoseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kronicler.db.summary import Summary

QUANTILE_FIELDS = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999))


@dataclass(frozen=True, slots=True)
class Stats:
    """Latency statistics of a set of calls; durations in ns, None when there are no calls.

    Fields:
        count: number of calls; errors: calls whose status is ERROR.
        mean, stddev (sample), stderr (stddev / sqrt(count)), min, max.
        p50, p90, p95, p99, p999: quantiles (within 1% unless built exactly).
        exact: True when quantiles come from the raw durations.
    """

    count: int
    errors: int
    mean: float | None
    stddev: float | None
    stderr: float | None
    min: float | None
    max: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    p999: float | None
    exact: bool = False
    _summary: Summary | None = field(default=None, repr=False, compare=False)
    _sorted: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_summary(cls, summary: Summary, errors: int = 0) -> Stats:
        if summary.count == 0:
            return cls.empty()
        qs = summary.quantiles([q for _, q in QUANTILE_FIELDS])
        p50, p90, p95, p99, p999 = qs
        return cls(
            summary.count, errors, summary.mean, summary.stddev, summary.stderr,
            float(summary.min or 0), float(summary.max or 0), p50, p90, p95, p99, p999,
            exact=False, _summary=summary,
        )  # fmt: skip

    @classmethod
    def from_values(cls, durations: np.ndarray, errors: int = 0) -> Stats:
        """Exact statistics of raw durations."""
        return cls.from_sorted(np.sort(durations), errors)

    @classmethod
    def from_sorted(cls, durations: np.ndarray, errors: int = 0) -> Stats:
        """Exact statistics of raw durations already in ascending order."""
        n = int(durations.size)
        if n == 0:
            return cls.empty()
        values = durations.astype(np.float64)
        mean = float(values.mean())
        stddev = float(values.std(ddof=1)) if n > 1 else 0.0
        qs = [_exact_quantile(values, q) for _, q in QUANTILE_FIELDS]
        p50, p90, p95, p99, p999 = qs
        return cls(
            n, errors, mean, stddev, stddev / math.sqrt(n), float(values[0]), float(values[-1]),
            p50, p90, p95, p99, p999, exact=True, _sorted=values,
        )  # fmt: skip

    @classmethod
    def empty(cls) -> Stats:
        return cls(0, 0, None, None, None, None, None, None, None, None, None, None)

    def quantile(self, q: float) -> float | None:
        """Any quantile, 0 <= q <= 1 (ValueError otherwise); None when there are no calls."""
        if not 0.0 <= q <= 1.0 or math.isnan(q):
            raise ValueError(f"quantile must be between 0 and 1, got {q!r}")
        if self.count == 0:
            return None
        if self._sorted is not None:
            return _exact_quantile(self._sorted, q)
        assert self._summary is not None
        return self._summary.quantile(q)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count, "errors": self.errors, "mean": self.mean, "stddev": self.stddev,
            "stderr": self.stderr, "min": self.min, "max": self.max, "p50": self.p50,
            "p90": self.p90, "p95": self.p95, "p99": self.p99, "p999": self.p999,
            "exact": self.exact,
        }  # fmt: skip


def _exact_quantile(sorted_values: np.ndarray, q: float) -> float:
    """The value at rank floor(q * (n - 1)) (the "lower" method), matching the summaries' rank."""
    return float(sorted_values[int(math.floor(q * (len(sorted_values) - 1)))])


@dataclass(frozen=True, slots=True)
class Call:
    """One stored call (a span row, or an exemplar): enough to find the trace in any trace viewer.

    The one type for a call in every layer: ``Database.slowest`` returns it, and so do the query
    layer's ``slowest``, anomaly exemplars and ``explain`` examples, the gRPC client and the CLI.

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
