"""A node's answer to ``Partial``: the request's question, asked of the local database, as
mergeable pieces (:mod:`kronicler.query.partials`) in a ``PartialResponse``.

Each question takes the same arguments and checks as its ordinary RPC, and asks the query layer
on one snapshot; plain function names this node never saw are left out and listed in
``unknown_functions`` instead of failing, since another node may hold them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kronicler import query
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.query.grouping import check_quantiles, parse_group_by
from kronicler.query.limits import MAX_CALLS
from kronicler.query.partials import (
    PARTIAL_VERSION,
    SUMMARY_PACKED,
    Cells,
    on_node,
    series_cells,
    stats_cells,
)
from kronicler.server import convert

if TYPE_CHECKING:
    from kronicler.db import Database


_NO_CALLS: list[query.Call] = []


def answer(db: Database, request: pb.PartialRequest) -> pb.PartialResponse:
    out = pb.PartialResponse(version=PARTIAL_VERSION)
    which = request.WhichOneof("question")
    unknown: tuple[str, ...] = ()
    packed = request.summary_encoding == SUMMARY_PACKED
    if which == "time_range":
        span = db.time_range()
        if span is not None:
            out.first_start_unix_nano, out.last_start_unix_nano = span
    elif which == "list_functions":
        flt = convert.filter_from_proto(request.list_functions.filter)
        no_functions: list[query.FunctionInfo] = []
        found, unknown = on_node(
            db, flt, lambda view, f: query.list_functions(view, f), no_functions
        )
        out.functions.extend(convert.function_to_proto(f) for f in found)
    elif which == "stats":
        req = request.stats
        group_by = req.group_by or "function"
        parse_group_by(group_by)
        cells, unknown = on_node(
            db, convert.filter_from_proto(req.filter),
            lambda view, flt: stats_cells(view, flt, group_by, req.exact),
            empty_cells(1, req.exact),
        )  # fmt: skip
        out.cells.CopyFrom(convert.cells_to_proto(cells, packed=packed))
    elif which == "series":
        cells, unknown = _series(db, request.series)
        out.cells.CopyFrom(convert.cells_to_proto(cells, packed=packed))
    elif which == "histogram":
        _histogram(db, request.histogram, out)
        return out
    elif which == "slowest":
        unknown = _slowest(db, request, out)
    else:
        raise ValueError("a partial request needs a question")
    out.unknown_functions.extend(unknown)
    return out


def empty_cells(per_key: int, exact: bool) -> Cells:
    """A node's cells when it holds nothing that matches (the shape the others send)."""
    if not exact:
        return Cells((), per_key)
    none = np.empty(0, np.int64)
    return Cells((), per_key, rows=(none, none, np.empty(0, np.uint8)))


def _series(db: Database, req: pb.GetSeriesRequest) -> tuple[Cells, tuple[str, ...]]:
    flt = convert.filter_from_proto(req.filter)
    group_by = req.group_by or "function"
    parse_group_by(group_by)
    check_quantiles(tuple(req.quantiles) or query.DEFAULT_QUANTILES)
    if req.step_ns <= 0 or flt.since is None or flt.until is None or flt.until <= flt.since:
        raise ValueError("a series partial needs step_ns > 0 and since < until")
    n_buckets = -(-(flt.until - flt.since) // req.step_ns)
    return on_node(
        db, flt, lambda view, f: series_cells(view, f, req.step_ns, group_by, req.exact),
        empty_cells(n_buckets, req.exact),
    )  # fmt: skip


def _histogram(db: Database, req: pb.GetHistogramRequest, out: pb.PartialResponse) -> None:
    flt = convert.filter_from_proto(req.filter)
    per_decade = req.per_decade or 10
    one = query.Filter((req.function,), flt.service, flt.since, flt.until, flt.attributes)
    empty = query.Histogram(req.function, 0, per_decade, req.exact or flt.needs_scan, ())
    h, unknown = on_node(
        db, one if req.function else flt,
        lambda view, _: query.histogram(view, req.function, flt, per_decade=per_decade,
                                        exact=req.exact),
        empty,
    )  # fmt: skip
    out.histogram.CopyFrom(convert.histogram_to_proto(h))
    out.unknown_functions.extend(unknown)


def _slowest(db: Database, request: pb.PartialRequest, out: pb.PartialResponse) -> tuple[str, ...]:
    flt = convert.filter_from_proto(request.slowest.filter)
    k = request.slowest.k or 10
    if not request.per_function:
        calls, unknown = on_node(db, flt, lambda view, f: query.slowest(view, f, k=k), _NO_CALLS)
        out.calls.extend(convert.call_to_proto(c) for c in calls)
        return unknown
    if len(request.per_function) * k > MAX_CALLS:
        raise ValueError(
            f"{len(request.per_function)} functions x k={k} is more than {MAX_CALLS} calls"
        )
    for name in request.per_function:
        one = query.Filter((name,), flt.service, flt.since, flt.until, flt.attributes)
        calls, _ = on_node(db, one, lambda view, f: query.slowest(view, f, k=k), _NO_CALLS)
        out.per_function.add().calls.extend(convert.call_to_proto(c) for c in calls)
    return ()
