"""Conversion between query-layer values and ``kronicler.v1`` protobuf messages, both ways.

The server turns requests into :class:`kronicler.query.Filter` and keyword arguments and turns
results into messages; the client does the reverse, so the CLI prints the same dataclasses
whether it read a local database or asked a server. Nothing here computes anything: a field is
renamed or re-encoded (optional floats, hex ids, attribute text), never derived.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kronicler.proto.v1 import query_pb2 as pb
from kronicler.query import (
    Anomaly,
    Filter,
    FunctionInfo,
    GroupStats,
    Histogram,
    HistogramBucket,
    Series,
    SeriesPoint,
    SeriesTable,
    SlowCall,
    StatsTable,
)
from kronicler.query.filters import RESOURCE_PREFIX, attribute_text, split_conditions

# ---- requests -> query arguments (server side) ------------------------------------------------


def filter_from_proto(msg: pb.Filter) -> Filter:
    """A checked :class:`Filter` (``ValueError`` for a bad glob or since >= until).

    An ``attributes`` key ``resource:KEY`` is a resource condition, as everywhere.
    """
    attributes, resource = split_conditions(msg.attributes.items())
    flt = Filter(
        functions=tuple(msg.functions),
        service=msg.service or None,
        since=msg.since_unix_nano if msg.HasField("since_unix_nano") else None,
        until=msg.until_unix_nano if msg.HasField("until_unix_nano") else None,
        attributes=attributes,
        resource=tuple(sorted({**dict(resource), **dict(msg.resource)}.items())),
    )
    flt.check()
    return flt


def filter_to_proto(flt: Filter | None) -> pb.Filter:
    flt = flt or Filter()
    msg = pb.Filter(functions=list(flt.functions), service=flt.service or "")
    if flt.since is not None:
        msg.since_unix_nano = flt.since
    if flt.until is not None:
        msg.until_unix_nano = flt.until
    msg.attributes.update(dict(flt.attributes))
    # Resource conditions travel as "resource:KEY" attributes: a server from before resources
    # then selects nothing (no span has such an attribute) instead of ignoring the condition.
    msg.attributes.update({RESOURCE_PREFIX + k: v for k, v in flt.resource})
    return msg


# ---- results -> messages (server side) --------------------------------------------------------


def _opt(msg: Any, **values: float | int | None) -> None:
    for name, value in values.items():
        if value is not None:
            setattr(msg, name, value)


def group_to_proto(row: GroupStats) -> pb.GroupStats:
    msg = pb.GroupStats(key=row.key, count=row.count, errors=row.errors)
    _opt(msg, mean_ns=row.mean, stddev_ns=row.stddev, stderr_ns=row.stderr, min_ns=row.min,
         max_ns=row.max)  # fmt: skip
    for q, v in row.quantiles:
        qm = msg.quantiles.add(q=q)
        if v is not None:
            qm.value_ns = v
    return msg


def stats_to_proto(table: StatsTable) -> pb.GetStatsResponse:
    return pb.GetStatsResponse(
        group_by=table.group_by,
        quantiles=list(table.quantiles),
        exact=table.exact,
        groups=[group_to_proto(r) for r in table.rows],
    )


def function_to_proto(info: FunctionInfo) -> pb.FunctionInfo:
    msg = pb.FunctionInfo(name=info.name, count=info.count, errors=info.errors)
    _opt(msg, first_start_unix_nano=info.first_start, last_start_unix_nano=info.last_start)
    return msg


def series_to_proto(table: SeriesTable) -> pb.GetSeriesResponse:
    out = pb.GetSeriesResponse(
        group_by=table.group_by, step_ns=table.step, since_unix_nano=table.since,
        until_unix_nano=table.until, quantiles=list(table.quantiles), exact=table.exact,
    )  # fmt: skip
    for s in table.series:
        sm = out.series.add(key=s.key)
        for p in s.points:
            pm = sm.points.add(start_unix_nano=p.start, count=p.count, errors=p.errors)
            if p.count:
                _opt(pm, mean_ns=p.mean, min_ns=p.min, max_ns=p.max)
                pm.quantiles_ns.extend(float(v or 0.0) for _, v in p.quantiles)
    return out


def histogram_to_proto(h: Histogram) -> pb.GetHistogramResponse:
    return pb.GetHistogramResponse(
        function=h.function, count=h.count, per_decade=h.per_decade, exact=h.exact,
        buckets=[pb.HistogramBucket(lower_ns=b.lower, upper_ns=b.upper, count=b.count)
                 for b in h.buckets],
    )  # fmt: skip


def call_to_proto(c: SlowCall) -> pb.Call:
    return pb.Call(
        function=c.function, service=c.service, start_unix_nano=c.start,
        duration_ns=c.duration, status=c.status, kind=pb.SpanKind.ValueType(c.kind),
        trace_id=c.trace_id_hex,
        span_id=c.span_id_hex, parent_span_id=f"{c.parent_span_id:016x}",
        attributes={k: attribute_text(v) for k, v in c.attributes.items()},
        attributes_json=json.dumps(c.attributes, separators=(",", ":"), ensure_ascii=False),
        resource={k: attribute_text(v) for k, v in c.resource.items()},
        resource_json=json.dumps(c.resource, separators=(",", ":"), ensure_ascii=False),
    )  # fmt: skip


def anomaly_to_proto(a: Anomaly) -> pb.Anomaly:
    msg = pb.Anomaly(
        function=a.function, score=a.score, reasons=list(a.reasons), count=a.count,
        errors=a.errors, p50_ns=a.p50, p99_ns=a.p99, max_ns=a.max, tail_ratio=a.tail_ratio,
        spike_ratio=a.spike_ratio, recent_since_unix_nano=a.recent_since,
        recent_count=a.recent_count, exemplars=[call_to_proto(c) for c in a.exemplars],
    )  # fmt: skip
    _opt(msg, recent_p99_ns=a.recent_p99, baseline_p99_ns=a.baseline_p99,
         regression_ratio=a.regression_ratio)  # fmt: skip
    return msg


# ---- messages -> results (client side) --------------------------------------------------------


def _get(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def stats_from_proto(msg: pb.GetStatsResponse) -> StatsTable:
    rows = tuple(
        GroupStats(
            g.key, g.count, g.errors, _get(g, "mean_ns"), _get(g, "stddev_ns"),
            _get(g, "stderr_ns"), _get(g, "min_ns"), _get(g, "max_ns"),
            tuple((q.q, _get(q, "value_ns")) for q in g.quantiles),
        )
        for g in msg.groups
    )  # fmt: skip
    return StatsTable(msg.group_by, tuple(msg.quantiles), msg.exact, rows)


def functions_from_proto(msg: pb.ListFunctionsResponse) -> list[FunctionInfo]:
    return [
        FunctionInfo(f.name, f.count, f.errors, _get(f, "first_start_unix_nano"),
                     _get(f, "last_start_unix_nano"))
        for f in msg.functions
    ]  # fmt: skip


def series_from_proto(msg: pb.GetSeriesResponse) -> SeriesTable:
    qs = tuple(msg.quantiles)
    series = []
    for s in msg.series:
        points = []
        for p in s.points:
            values: Iterable[float | None] = p.quantiles_ns if p.count else [None] * len(qs)
            points.append(
                SeriesPoint(p.start_unix_nano, p.count, p.errors, _get(p, "mean_ns"),
                            _get(p, "min_ns"), _get(p, "max_ns"),
                            tuple(zip(qs, values, strict=True)))
            )  # fmt: skip
        series.append(Series(s.key, tuple(points)))
    return SeriesTable(msg.group_by, msg.step_ns, msg.since_unix_nano, msg.until_unix_nano, qs,
                       msg.exact, tuple(series))  # fmt: skip


def histogram_from_proto(msg: pb.GetHistogramResponse) -> Histogram:
    buckets = tuple(HistogramBucket(b.lower_ns, b.upper_ns, b.count) for b in msg.buckets)
    return Histogram(msg.function, msg.count, msg.per_decade, msg.exact, buckets)


def call_from_proto(c: pb.Call) -> SlowCall:
    return SlowCall(
        function=c.function, service=c.service, start=c.start_unix_nano, duration=c.duration_ns,
        status=c.status, kind=c.kind, trace_id=int(c.trace_id or "0", 16),
        span_id=int(c.span_id or "0", 16), parent_span_id=int(c.parent_span_id or "0", 16),
        attributes=_typed(c.attributes_json, c.attributes),
        resource=_typed(c.resource_json, c.resource),
    )  # fmt: skip


def _typed(blob: str, texts: Any) -> dict[str, Any]:
    """The typed values of a ``*_json`` field; servers before it sent only the text map."""
    if blob:
        try:
            parsed = json.loads(blob)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    return dict(texts)


def anomaly_from_proto(a: pb.Anomaly) -> Anomaly:
    return Anomaly(
        function=a.function, score=a.score, reasons=tuple(a.reasons), count=a.count,
        errors=a.errors, p50=a.p50_ns, p99=a.p99_ns, max=a.max_ns, tail_ratio=a.tail_ratio,
        spike_ratio=a.spike_ratio, recent_since=a.recent_since_unix_nano,
        recent_count=a.recent_count, recent_p99=_get(a, "recent_p99_ns"),
        baseline_p99=_get(a, "baseline_p99_ns"), regression_ratio=_get(a, "regression_ratio"),
        exemplars=tuple(call_from_proto(c) for c in a.exemplars),
    )  # fmt: skip
