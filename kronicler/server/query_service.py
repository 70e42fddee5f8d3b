"""``kronicler.v1.QueryService``: a thin servicer, request -> query function -> response.

Every method converts its request (:mod:`kronicler.server.convert`), calls one function of
:mod:`kronicler.query` on the database, and converts the result back; errors become status
codes through :func:`kronicler.server.status.rpc_errors`. Zero-valued optional request fields
mean "the default", as proto3 cannot tell them from absent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from kronicler import query
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.proto.v1 import query_pb2_grpc as pb_grpc
from kronicler.query.anomalies import (
    DEFAULT_MIN_COUNT,
    DEFAULT_REGRESSION_THRESHOLD,
    DEFAULT_SPIKE_THRESHOLD,
    DEFAULT_TAIL_THRESHOLD,
)
from kronicler.query.defaults import ANOMALY_EXEMPLARS, ANOMALY_LIMIT, PER_DECADE, SLOWEST_K
from kronicler.server import convert
from kronicler.server.status import rpc_errors

if TYPE_CHECKING:
    from kronicler.db import Database


class QueryServicer(pb_grpc.QueryServiceServicer):
    """Answers queries about one open database (shared, read-only use)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @rpc_errors
    def ListFunctions(
        self, request: pb.ListFunctionsRequest, context: grpc.ServicerContext
    ) -> pb.ListFunctionsResponse:
        flt = convert.filter_from_proto(request.filter)
        out = pb.ListFunctionsResponse(
            functions=[convert.function_to_proto(f) for f in query.list_functions(self._db, flt)]
        )
        span = self._db.time_range()
        if span is not None:
            out.first_start_unix_nano, out.last_start_unix_nano = span
        return out

    @rpc_errors
    def GetStats(
        self, request: pb.GetStatsRequest, context: grpc.ServicerContext
    ) -> pb.GetStatsResponse:
        table = query.stats(
            self._db,
            convert.filter_from_proto(request.filter),
            group_by=request.group_by or "function",
            quantiles=tuple(request.quantiles) or query.DEFAULT_QUANTILES,
            exact=request.exact,
            order_by=request.order_by or "key",
            limit=request.limit or None,
        )
        return convert.stats_to_proto(table)

    @rpc_errors
    def GetSeries(
        self, request: pb.GetSeriesRequest, context: grpc.ServicerContext
    ) -> pb.GetSeriesResponse:
        if request.step_ns < 0:
            raise ValueError(f"step_ns must be >= 0, got {request.step_ns}")
        table = query.series(
            self._db,
            convert.filter_from_proto(request.filter),
            step=request.step_ns or None,
            group_by=request.group_by or "function",
            quantiles=tuple(request.quantiles) or query.DEFAULT_QUANTILES,
            exact=request.exact,
        )
        return convert.series_to_proto(table)

    @rpc_errors
    def GetHistogram(
        self, request: pb.GetHistogramRequest, context: grpc.ServicerContext
    ) -> pb.GetHistogramResponse:
        h = query.histogram(
            self._db,
            request.function,
            convert.filter_from_proto(request.filter),
            per_decade=request.per_decade or PER_DECADE,
            exact=request.exact,
        )
        return convert.histogram_to_proto(h)

    @rpc_errors
    def GetSlowest(
        self, request: pb.GetSlowestRequest, context: grpc.ServicerContext
    ) -> pb.GetSlowestResponse:
        calls = query.slowest(
            self._db, convert.filter_from_proto(request.filter), k=request.k or SLOWEST_K
        )
        return pb.GetSlowestResponse(calls=[convert.call_to_proto(c) for c in calls])

    @rpc_errors
    def GetAnomalies(
        self, request: pb.GetAnomaliesRequest, context: grpc.ServicerContext
    ) -> pb.GetAnomaliesResponse:
        if request.recent_ns < 0:
            raise ValueError(f"recent_ns must be >= 0, got {request.recent_ns}")
        found = query.anomalies(
            self._db,
            convert.filter_from_proto(request.filter),
            min_count=request.min_count or DEFAULT_MIN_COUNT,
            tail_threshold=request.tail_threshold or DEFAULT_TAIL_THRESHOLD,
            spike_threshold=request.spike_threshold or DEFAULT_SPIKE_THRESHOLD,
            regression_threshold=request.regression_threshold or DEFAULT_REGRESSION_THRESHOLD,
            recent=request.recent_ns or None,
            limit=request.limit or ANOMALY_LIMIT,
            exemplars=request.exemplars if request.HasField("exemplars") else ANOMALY_EXEMPLARS,
        )
        return pb.GetAnomaliesResponse(anomalies=[convert.anomaly_to_proto(a) for a in found])

    @rpc_errors
    def Explain(
        self, request: pb.ExplainRequest, context: grpc.ServicerContext
    ) -> pb.ExplainResponse:
        if request.slow_quantile and request.slow_ns:
            raise ValueError("give slow_quantile or slow_ns, not both")
        found = query.explain(
            self._db,
            request.function,
            since=request.since_unix_nano if request.HasField("since_unix_nano") else None,
            until=request.until_unix_nano if request.HasField("until_unix_nano") else None,
            slow=request.slow_ns or request.slow_quantile or None,
        )
        return convert.explain_to_proto(found)
