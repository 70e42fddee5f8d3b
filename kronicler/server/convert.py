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

import numpy as np
import zstandard

from kronicler.db.summary_codec import decode_summaries, encode_summaries
from kronicler.errors import CorruptPageError
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.query import (
    Anomaly,
    AttributeFinding,
    Call,
    ChildFinding,
    Explanation,
    Filter,
    FunctionInfo,
    Histogram,
    HistogramBucket,
    Release,
    Series,
    SeriesPoint,
    SeriesTable,
    SlowShareBucket,
    Stats,
    StatsTable,
    summary_table,
)
from kronicler.query.filters import RESOURCE_PREFIX, attribute_text, split_conditions
from kronicler.query.partials import Cells
from kronicler.query.summary_table import SummaryTable

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


def group_to_proto(row: Stats) -> pb.GroupStats:
    # Every field given to the constructor at once: setting them one by one after (an
    # attribute or an ``add()`` each) cost ~3x as much, ~0.5 ms of a 50-group reply.
    quantiles = [pb.Quantile(q=q) if v is None else pb.Quantile(q=q, value_ns=v)
                 for q, v in row.quantiles]  # fmt: skip
    figures = (row.mean, row.stddev, row.stderr, row.min, row.max)
    if None in figures:  # absent on the wire (an empty row's, or a single call's stddev)
        msg = pb.GroupStats(key=row.key, count=row.count, errors=row.errors, quantiles=quantiles)
        _opt(msg, **dict(zip(_FIGURES, figures, strict=True)))
        return msg
    return pb.GroupStats(key=row.key, count=row.count, errors=row.errors,
                         quantiles=quantiles, **dict(zip(_FIGURES, figures, strict=True)))  # fmt: skip


_FIGURES = ("mean_ns", "stddev_ns", "stderr_ns", "min_ns", "max_ns")


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


def call_to_proto(c: Call) -> pb.Call:
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


def child_to_proto(c: ChildFinding) -> pb.ChildFinding:
    return pb.ChildFinding(
        function=c.function, slow_calls=c.slow_calls, baseline_calls=c.baseline_calls,
        slow_children=c.slow_children, baseline_children=c.baseline_children,
        slow_time_ns=c.slow_time, baseline_time_ns=c.baseline_time, slow_total=c.slow_total,
        baseline_total=c.baseline_total, slow_parent_time_ns=c.slow_parent_time,
        baseline_parent_time_ns=c.baseline_parent_time,
        examples=[call_to_proto(x) for x in c.examples],
    )  # fmt: skip


def release_to_proto(r: Release) -> pb.Release:
    return pb.Release(
        key=r.key, version=r.version, calls=r.calls, slow=r.slow,
        first_start_unix_nano=r.first_start, last_start_unix_nano=r.last_start,
        before_calls=r.before_calls, before_slow=r.before_slow, after_calls=r.after_calls,
        after_slow=r.after_slow, z=r.z, lines_up=r.lines_up,
    )  # fmt: skip


def explain_to_proto(e: Explanation) -> pb.ExplainResponse:
    msg = pb.ExplainResponse(
        function=e.function, count=e.count, slow_count=e.slow_count, slow_time_ns=e.slow_time,
        baseline_time_ns=e.baseline_time, step_ns=e.step, cluster_score=e.cluster_score,
        attributes=[
            pb.AttributeFinding(
                key=a.key, value=a.value, slow=a.slow, baseline=a.baseline,
                slow_total=a.slow_total, baseline_total=a.baseline_total, score=a.score, z=a.z,
                examples=[call_to_proto(x) for x in a.examples],
            )
            for a in e.attributes
        ],
        children=[child_to_proto(c) for c in e.children],
        series=[pb.SlowShareBucket(start_unix_nano=b.start, calls=b.calls, slow=b.slow)
                for b in e.series],
        releases=[release_to_proto(r) for r in e.releases],
        examples=[call_to_proto(x) for x in e.examples],
        threshold_approximate=not e.threshold_exact,
    )  # fmt: skip
    for a, am in zip(e.attributes, msg.attributes, strict=True):
        _opt(am, lift=a.lift)
    if e.self_time is not None:
        msg.self_time.CopyFrom(child_to_proto(e.self_time))
    _opt(msg, since_unix_nano=e.since, until_unix_nano=e.until, quantile=e.quantile,
         threshold_ns=e.threshold)  # fmt: skip
    return msg


# ---- messages -> results (client side) --------------------------------------------------------


def _get(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def stats_from_proto(msg: pb.GetStatsResponse) -> StatsTable:
    rows = tuple(
        Stats(
            g.key, g.count, g.errors, _get(g, "mean_ns"), _get(g, "stddev_ns"),
            _get(g, "stderr_ns"), _get(g, "min_ns"), _get(g, "max_ns"),
            tuple((q.q, _get(q, "value_ns")) for q in g.quantiles), exact=msg.exact,
        )
        for g in msg.groups
    )  # fmt: skip
    return StatsTable(msg.group_by, tuple(msg.quantiles), msg.exact, rows)


def functions_from_proto(
    msg: pb.ListFunctionsResponse | pb.PartialResponse,
) -> list[FunctionInfo]:
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


def call_from_proto(c: pb.Call) -> Call:
    return Call(
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


def child_from_proto(c: pb.ChildFinding) -> ChildFinding:
    return ChildFinding(
        c.function, c.slow_calls, c.baseline_calls, c.slow_children, c.baseline_children,
        c.slow_time_ns, c.baseline_time_ns, c.slow_total, c.baseline_total,
        c.slow_parent_time_ns, c.baseline_parent_time_ns,
        tuple(call_from_proto(x) for x in c.examples),
    )  # fmt: skip


def release_from_proto(r: pb.Release) -> Release:
    return Release(r.key, r.version, r.calls, r.slow, r.first_start_unix_nano,
                   r.last_start_unix_nano, r.before_calls, r.before_slow, r.after_calls,
                   r.after_slow, r.z, r.lines_up)  # fmt: skip


def explain_from_proto(m: pb.ExplainResponse) -> Explanation:
    return Explanation(
        function=m.function, since=_get(m, "since_unix_nano"), until=_get(m, "until_unix_nano"),
        quantile=_get(m, "quantile"), threshold=_get(m, "threshold_ns"), count=m.count,
        slow_count=m.slow_count, slow_time=m.slow_time_ns, baseline_time=m.baseline_time_ns,
        attributes=tuple(
            AttributeFinding(a.key, a.value, a.slow, a.baseline, a.slow_total, a.baseline_total,
                             a.score, _get(a, "lift"), a.z,
                             tuple(call_from_proto(x) for x in a.examples))
            for a in m.attributes
        ),
        children=tuple(child_from_proto(c) for c in m.children),
        self_time=child_from_proto(m.self_time) if m.HasField("self_time") else None,
        step=m.step_ns,
        series=tuple(SlowShareBucket(b.start_unix_nano, b.calls, b.slow) for b in m.series),
        cluster_score=m.cluster_score,
        releases=tuple(release_from_proto(r) for r in m.releases),
        examples=tuple(call_from_proto(x) for x in m.examples),
        threshold_exact=not m.threshold_approximate,
    )  # fmt: skip


# ---- cluster partials (both sides) ------------------------------------------------------------

_RAW_COLUMNS = (("cell_ids", "<i8"), ("durations", "<i8"), ("statuses", "u1"))


def cells_to_proto(cells: Cells, *, packed: bool = False) -> pb.PartialCells:
    """A node's cells; summaries as packed columns when ``packed`` (the frontend asked for
    ``summary_encoding`` 1), else as a summary block (what every frontend reads)."""
    msg = pb.PartialCells(keys=list(cells.keys), per_key=cells.per_key, exact=cells.exact)
    table = cells.table
    if cells.rows is not None:
        msg.rows = len(cells.rows[0])
        compressor = zstandard.ZstdCompressor(level=1)
        for (field, dtype), column in zip(_RAW_COLUMNS, cells.rows, strict=True):
            setattr(msg, field, compressor.compress(column.astype(dtype).tobytes()))
    elif packed:
        columns, width = summary_table.pack(table)
        msg.packed.CopyFrom(pb.PackedSummaries(count_width=width, **columns))
    elif len(table):
        cell = table.cell.tolist()
        msg.summaries = encode_summaries([(c, table.summary(i)) for i, c in enumerate(cell)])
        msg.errors.extend(table.errors.tolist())
    return msg


def cells_from_proto(msg: pb.PartialCells) -> Cells:
    """The cells a node sent; ``CorruptPageError`` for bytes that do not decode."""
    keys, per_key = tuple(msg.keys), max(msg.per_key, 1)
    n_cells = len(keys) * per_key
    if msg.exact:
        columns = []
        decompressor = zstandard.ZstdDecompressor()
        for field, dtype in _RAW_COLUMNS:
            size = msg.rows * np.dtype(dtype).itemsize
            try:
                raw = decompressor.decompress(getattr(msg, field), max_output_size=size)
            except zstandard.ZstdError as exc:
                raise CorruptPageError(
                    f"partial column {field} does not decompress: {exc}"
                ) from None
            if len(raw) != size:
                raise CorruptPageError(f"partial column {field} has {len(raw)} bytes, not {size}")
            columns.append(
                np.frombuffer(raw, dtype=dtype).astype(np.dtype(dtype).newbyteorder("="))
            )
        cell = columns[0]
        if len(cell) and (int(cell.min()) < 0 or int(cell.max()) >= n_cells):
            raise CorruptPageError("partial cell ids out of range")
        return Cells(keys, per_key, rows=(cell, columns[1], columns[2]))
    if msg.HasField("packed"):
        p = msg.packed
        packed = {f: getattr(p, f) for f in _PACKED_FIELDS}
        return Cells(keys, per_key, summary_table.unpack(packed, p.count_width, n_cells))
    entries = decode_summaries(msg.summaries) if msg.summaries else []
    if len(entries) != len(msg.errors) or any(not 0 <= c < n_cells for c, _ in entries):
        raise CorruptPageError("partial summaries and error counts do not line up")
    return Cells(keys, per_key, SummaryTable.of(
        [(c, s, int(e)) for (c, s), e in zip(entries, msg.errors, strict=True) if s.count]))  # fmt: skip


_PACKED_FIELDS = tuple(f.name for f in pb.PackedSummaries.DESCRIPTOR.fields
                       if f.name != "count_width")  # fmt: skip
