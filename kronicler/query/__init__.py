"""Query layer: pure functions over a :class:`kronicler.db.Database`, no transport inside.

Everything that answers a question about latency lives here, so the gRPC server, the CLI and
the web dashboard give the same answers. Each function takes an open database (or a view of one,
``Database.snapshot()``) and a :class:`Filter`, reads only the public read methods (``functions``,
``time_range``, ``summaries``, ``slowest``, ``scan``) of one snapshot, taken once at its start, so
every part of an answer sees the same data, and returns frozen dataclasses with ``to_dict()``.
Bad arguments raise ``ValueError`` naming the value; an unknown function name raises
``kronicler.errors.NotFoundError``.
"""

from __future__ import annotations

from kronicler.db.stats import DEFAULT_QUANTILES, Call, Stats, quantile_label
from kronicler.query.anomalies import anomalies
from kronicler.query.explain import explain
from kronicler.query.filters import Filter, resolve_functions
from kronicler.query.grouping import MAX_GROUPS, MAX_QUANTILES, parse_group_by
from kronicler.query.histogram import histogram
from kronicler.query.results import (
    Anomaly,
    AttributeFinding,
    ChildFinding,
    Explanation,
    FunctionInfo,
    Histogram,
    HistogramBucket,
    Release,
    Series,
    SeriesPoint,
    SeriesTable,
    SlowShareBucket,
    StatsTable,
)
from kronicler.query.series import MAX_BUCKETS, MAX_POINTS, series
from kronicler.query.slowest import MAX_K, slowest
from kronicler.query.stats import list_functions, stats

__all__ = [
    "DEFAULT_QUANTILES", "MAX_BUCKETS", "MAX_GROUPS", "MAX_K", "MAX_POINTS", "MAX_QUANTILES",
    "Anomaly", "AttributeFinding", "ChildFinding", "Explanation", "Filter", "FunctionInfo",
    "Stats", "Histogram", "HistogramBucket", "Release", "Series", "SeriesPoint",
    "SeriesTable", "Call", "SlowShareBucket", "StatsTable",
    "anomalies", "explain", "histogram", "list_functions", "parse_group_by", "quantile_label",
    "resolve_functions", "series", "slowest", "stats",
]  # fmt: skip
