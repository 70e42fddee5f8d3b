"""The value types every layer speaks about calls: ``Stats`` (a set of calls) and ``Call`` (one).

``Stats`` is the one type for latency statistics, from ``Database.stats`` up to the query layer's
``StatsTable`` rows, the gRPC client and the dashboard. It is built either from a mergeable
summary (quantiles within 1% relative error, costs nothing to compute over any number of rows) or
from the raw durations (exact quantiles, at the cost of decoding and sorting every row). Both
give the same fields, in nanoseconds. ``quantiles`` holds the ``(q, value)`` pairs that were
asked for; a value built here also keeps its source (the summary or the sorted durations), so
:meth:`Stats.quantile` answers any other quantile too, while one rebuilt from the wire (the
gRPC client) knows only the quantiles it was sent.

Exact statistics of many groups come from one sort by (group, duration), after which every
group's min, max and any quantile are index arithmetic on the sorted array
(:func:`exact_group_stats`). The quantile q is the value at rank ``floor(q * (count - 1))``
(numpy's ``method="lower"``), the definition the summaries approximate, so both roads agree
within 1%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import field, replace
from typing import Any

import numpy as np

from kronicler._record import record
from kronicler.db.schema import STATUS_ERROR
from kronicler.db.summary import Summary

#: Quantiles reported when the caller names none.
DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99, 0.999)


def quantile_label(q: float) -> str:
    """``0.5 -> "p50"``, ``0.999 -> "p999"``, ``0.995 -> "p995"``, ``0.05 -> "p5"``."""
    return "p" + f"{q * 100:.10g}".replace(".", "")


@record
class Stats:
    """Latency statistics of one set of calls (a function, a service, an attribute value...).

    Fields:
        key: the group's value (function name, service name or attribute value as text).
        count: number of calls; errors: calls whose status is ERROR.
        mean, stddev, stderr, min, max: nanoseconds; ``None`` when ``count == 0``.
            ``stddev`` is the sample standard deviation and ``stderr = stddev / sqrt(count)``.
        quantiles: ``(q, value_ns)`` pairs in the order they were asked for
            (:data:`DEFAULT_QUANTILES` unless the caller named others).
        exact: True when quantiles come from the raw durations.
    ``p50``, ``p90``, ``p95``, ``p99``, ``p999`` read the default quantiles.
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
    exact: bool = False
    _summary: Summary | None = field(default=None, repr=False, compare=False)
    _sorted: np.ndarray | None = field(default=None, repr=False, compare=False)
    # the raw durations in any order, when no sorted copy was made (see exact_of_values)
    _values: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_summary(
        cls,
        summary: Summary | None,
        errors: int = 0,
        *,
        key: str = "",
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        values: Sequence[float | None] | None = None,
    ) -> Stats:
        """Statistics from a merged summary (``None`` or empty: count 0, every figure ``None``);
        ``values``: its ``quantiles`` computed already (for many, see ``summary.quantiles_of``)."""
        if summary is None or not summary.count:
            return cls.empty(key, quantiles, errors)
        if values is None:
            values = summary.quantiles(list(quantiles))
        return cls(
            key, int(summary.count), int(errors), _f(summary.mean), _f(summary.stddev),
            _f(summary.stderr), _f(summary.min), _f(summary.max),
            tuple((q, _f(v)) for q, v in zip(quantiles, values, strict=True)),
            exact=False, _summary=summary,
        )  # fmt: skip

    @classmethod
    def from_values(
        cls,
        durations: np.ndarray,
        errors: int = 0,
        *,
        key: str = "",
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> Stats:
        """Exact statistics of raw durations."""
        codes = np.zeros(len(durations), np.int64)
        status = np.zeros(len(durations), np.int8)
        (row,) = exact_group_stats([key], codes, durations, status, quantiles, keep_values=True)
        return replace(row, errors=int(errors))

    @classmethod
    def empty(
        cls, key: str = "", quantiles: Sequence[float] = DEFAULT_QUANTILES, errors: int = 0
    ) -> Stats:
        return cls(key, 0, int(errors), None, None, None, None, None,
                   tuple((q, None) for q in quantiles))  # fmt: skip

    def quantile(self, q: float) -> float | None:
        """Quantile ``q`` (0 <= q <= 1, ValueError otherwise); None when there are no calls.

        Any ``q`` when the statistics hold their source; otherwise (rebuilt from the wire) only
        the quantiles that were asked for, ``KeyError`` for another.
        """
        if not 0.0 <= q <= 1.0 or math.isnan(q):
            raise ValueError(f"quantile must be between 0 and 1, got {q!r}")
        for have, value in self.quantiles:
            if abs(have - q) < 1e-12:
                return value
        if self.count == 0:
            return None
        if self._sorted is not None:
            return float(self._sorted[int(math.floor(q * (len(self._sorted) - 1)))])
        if self._values is not None:
            rank = int(math.floor(q * (len(self._values) - 1)))
            return float(np.partition(self._values, rank)[rank])
        if self._summary is not None:
            return self._summary.quantile(q)
        raise KeyError(f"quantile {q} was not requested")

    @property
    def p50(self) -> float | None:
        return self.quantile(0.5)

    @property
    def p90(self) -> float | None:
        return self.quantile(0.9)

    @property
    def p95(self) -> float | None:
        return self.quantile(0.95)

    @property
    def p99(self) -> float | None:
        return self.quantile(0.99)

    @property
    def p999(self) -> float | None:
        return self.quantile(0.999)

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
            **{f"{quantile_label(q)}_ns": v for q, v in self.quantiles},
        }


def exact_group_stats(
    keys: Sequence[str],
    codes: np.ndarray,
    durations: np.ndarray,
    status: np.ndarray,
    quantiles: Sequence[float],
    *,
    keep_values: bool = False,
) -> list[Stats]:
    """Exact statistics of every group (row ``i`` belongs to group ``codes[i]``), one per key.

    One sort, then index arithmetic. ``keep_values`` keeps each group's sorted durations in its
    ``Stats`` (a view, no copy) so that any other quantile can be asked later.
    """
    n = len(keys)
    if n == 0:
        return []
    codes = codes.astype(np.int64, copy=False)
    counts = np.bincount(codes, minlength=n)
    errors = np.bincount(codes[status == STATUS_ERROR], minlength=n)
    sd = sorted_within_groups(codes, durations).astype(np.float64)
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    safe = np.maximum(counts, 1)
    mean = np.bincount(codes, weights=durations.astype(np.float64), minlength=n) / safe
    dev = durations - mean[codes]
    ss = np.bincount(codes, weights=dev * dev, minlength=n)
    var = np.where(counts > 1, ss / np.maximum(counts - 1, 1), 0.0)
    std = np.sqrt(var)
    stderr = std / np.sqrt(safe)
    last = offsets + safe - 1
    # An empty group (a series cell with no calls) after the last non-empty one has its offset
    # one past the sorted values; its figures are never read, so clip its index into range.
    top = max(len(sd) - 1, 0)
    qvals = []
    for q in quantiles:
        rank = np.floor(q * (safe - 1)).astype(np.int64)
        qvals.append(sd[np.minimum(offsets + rank, top)] if len(sd) else np.zeros(n))
    rows = []
    for i in range(n):
        if counts[i] == 0:
            rows.append(Stats.empty(keys[i], quantiles, int(errors[i])))
            continue
        kept = sd[offsets[i] : offsets[i] + counts[i]] if keep_values else None
        rows.append(
            Stats(
                keys[i], int(counts[i]), int(errors[i]), float(mean[i]), float(std[i]),
                float(stderr[i]), float(sd[offsets[i]]), float(sd[last[i]]),
                tuple((q, float(v[i])) for q, v in zip(quantiles, qvals, strict=True)),
                exact=True, _sorted=kept,
            )
        )  # fmt: skip
    return rows


def exact_of_values(
    runs: Sequence[np.ndarray],
    errors: int,
    key: str = "",
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
) -> Stats:
    """Exact statistics of one group's raw durations, given in pieces in any order, unsorted.

    The same figures as :func:`exact_group_stats` (quantiles at the same ranks, picked by one
    in-place ``partition`` of the joined pieces: linear, where a sort is not; the mean and the
    deviations summed piece by piece, in cache, rather than over a float copy of every value, so
    they may differ in the last bits). Many sorted runs of one function
    (:mod:`kronicler.db.durations`) are answered this way.
    """
    n = sum(len(r) for r in runs)
    if n == 0:
        return Stats.empty(key, quantiles, errors)
    mean = math.fsum(float(r.sum(dtype=np.float64)) for r in runs) / n
    ss = 0.0
    for r in runs:
        dev = r - mean  # float64, one piece at a time
        dev *= dev  # not np.dot: BLAS threads spin on a loaded machine for little
        ss += float(dev.sum())
    std = math.sqrt(ss / (n - 1)) if n > 1 else 0.0
    ranks = [int(math.floor(q * (n - 1))) for q in quantiles]
    values = np.concatenate(runs) if len(runs) > 1 else np.array(runs[0], copy=True)
    values.partition(sorted({0, n - 1, *ranks}))
    return Stats(
        key, n, int(errors), mean, std, std / math.sqrt(n), float(values[0]), float(values[n - 1]),
        tuple((q, float(values[r])) for q, r in zip(quantiles, ranks, strict=True)),
        exact=True, _values=values,
    )  # fmt: skip


def sorted_within_groups(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` ordered by (group code, value): one int64 sort of a packed key when both fit
    in 63 bits (about 5x faster than ``lexsort``), ``lexsort`` otherwise."""
    if values.size == 0:
        return values.copy()
    code_bits = int(codes.max()).bit_length()
    value_bits = int(values.max()).bit_length()
    if int(values.min()) >= 0 and int(codes.min()) >= 0 and code_bits + value_bits <= 63:
        key = (codes.astype(np.int64) << value_bits) | values.astype(np.int64)
        key.sort()
        return key & ((1 << value_bits) - 1)
    return values[np.lexsort((values, codes))]


def _f(v: float | int | None) -> float | None:
    return None if v is None else float(v)


@record
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
