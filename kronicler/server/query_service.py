"""``kronicler.v1.QueryService``: a thin servicer, request -> query backend -> response.

Every method converts its request (:mod:`kronicler.server.convert`), asks one method of a
:class:`~kronicler.query.backend.QueryBackend` (the local database, or a cluster frontend that
fans out to its peers), and converts the result back; errors become status codes through
:func:`kronicler.server.status.rpc_errors`. Zero-valued optional request fields mean "the
default", as proto3 cannot tell them from absent.

An answer that lacks some peers' data carries one ``kronicler-missing-peer`` trailing metadata
entry per peer that did not answer (``host:port: reason``); the client reads them back into
:meth:`~kronicler.server.Client.missing_peers`. ``Partial`` is a node's part of a cluster answer
(:mod:`kronicler.query.partials`); only a server over a database answers it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import grpc

from kronicler import query
from kronicler.db import Database
from kronicler.errors import KroniclerError
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.proto.v1 import query_pb2_grpc as pb_grpc
from kronicler.query.anomalies import (
    DEFAULT_MIN_COUNT,
    DEFAULT_REGRESSION_THRESHOLD,
    DEFAULT_SPIKE_THRESHOLD,
    DEFAULT_TAIL_THRESHOLD,
)
from kronicler.query.defaults import ANOMALY_EXEMPLARS, ANOMALY_LIMIT, PER_DECADE, SLOWEST_K
from kronicler.query.local import Local
from kronicler.query.partials import PARTIAL_VERSION
from kronicler.server import convert, partial
from kronicler.server.status import rpc_errors

if TYPE_CHECKING:
    from kronicler.query.backend import QueryBackend

#: Trailing metadata key naming a peer that did not answer (one entry per peer).
MISSING_PEER_KEY = "kronicler-missing-peer"
R = TypeVar("R")


class QueryServicer(pb_grpc.QueryServiceServicer):
    """Answers queries about one open database (shared, read-only use) or through a backend."""

    def __init__(self, source: Database | QueryBackend) -> None:
        self._db = source if isinstance(source, Database) else None
        self._backend: QueryBackend = Local(source) if isinstance(source, Database) else source

    def _reply(self, context: grpc.ServicerContext, reply: R) -> R:
        missing = self._backend.missing_peers()
        if missing:
            context.set_trailing_metadata(
                [
                    (MISSING_PEER_KEY, m.encode("ascii", "backslashreplace").decode())
                    for m in missing
                ]
            )
        return reply

    @rpc_errors
    def ListFunctions(
        self, request: pb.ListFunctionsRequest, context: grpc.ServicerContext
    ) -> pb.ListFunctionsResponse:
        flt = convert.filter_from_proto(request.filter)
        out = pb.ListFunctionsResponse(
            functions=[convert.function_to_proto(f) for f in self._backend.list_functions(flt)]
        )
        span = self._backend.time_range()
        if span is not None:
            out.first_start_unix_nano, out.last_start_unix_nano = span
        return self._reply(context, out)

    @rpc_errors
    def GetStats(
        self, request: pb.GetStatsRequest, context: grpc.ServicerContext
    ) -> pb.GetStatsResponse:
        table = self._backend.stats(
            convert.filter_from_proto(request.filter),
            group_by=request.group_by or "function",
            quantiles=tuple(request.quantiles) or query.DEFAULT_QUANTILES,
            exact=request.exact,
            order_by=request.order_by or "key",
            limit=request.limit or None,
        )
        return self._reply(context, convert.stats_to_proto(table))

    @rpc_errors
    def GetSeries(
        self, request: pb.GetSeriesRequest, context: grpc.ServicerContext
    ) -> pb.GetSeriesResponse:
        if request.step_ns < 0:
            raise ValueError(f"step_ns must be >= 0, got {request.step_ns}")
        table = self._backend.series(
            convert.filter_from_proto(request.filter),
            step=request.step_ns or None,
            group_by=request.group_by or "function",
            quantiles=tuple(request.quantiles) or query.DEFAULT_QUANTILES,
            exact=request.exact,
        )
        return self._reply(context, convert.series_to_proto(table))

    @rpc_errors
    def GetHistogram(
        self, request: pb.GetHistogramRequest, context: grpc.ServicerContext
    ) -> pb.GetHistogramResponse:
        h = self._backend.histogram(
            request.function,
            convert.filter_from_proto(request.filter),
            per_decade=request.per_decade or PER_DECADE,
            exact=request.exact,
        )
        return self._reply(context, convert.histogram_to_proto(h))

    @rpc_errors
    def GetSlowest(
        self, request: pb.GetSlowestRequest, context: grpc.ServicerContext
    ) -> pb.GetSlowestResponse:
        calls = self._backend.slowest(
            convert.filter_from_proto(request.filter), k=request.k or SLOWEST_K
        )
        return self._reply(
            context, pb.GetSlowestResponse(calls=[convert.call_to_proto(c) for c in calls])
        )

    @rpc_errors
    def GetAnomalies(
        self, request: pb.GetAnomaliesRequest, context: grpc.ServicerContext
    ) -> pb.GetAnomaliesResponse:
        if request.recent_ns < 0:
            raise ValueError(f"recent_ns must be >= 0, got {request.recent_ns}")
        found = self._backend.anomalies(
            convert.filter_from_proto(request.filter),
            min_count=request.min_count or DEFAULT_MIN_COUNT,
            tail_threshold=request.tail_threshold or DEFAULT_TAIL_THRESHOLD,
            spike_threshold=request.spike_threshold or DEFAULT_SPIKE_THRESHOLD,
            regression_threshold=request.regression_threshold or DEFAULT_REGRESSION_THRESHOLD,
            recent=request.recent_ns or None,
            limit=request.limit or ANOMALY_LIMIT,
            exemplars=request.exemplars if request.HasField("exemplars") else ANOMALY_EXEMPLARS,
        )
        return self._reply(
            context, pb.GetAnomaliesResponse(anomalies=[convert.anomaly_to_proto(a) for a in found])
        )

    @rpc_errors
    def Explain(
        self, request: pb.ExplainRequest, context: grpc.ServicerContext
    ) -> pb.ExplainResponse:
        if request.slow_quantile and request.slow_ns:
            raise ValueError("give slow_quantile or slow_ns, not both")
        found = self._backend.explain(
            request.function,
            since=request.since_unix_nano if request.HasField("since_unix_nano") else None,
            until=request.until_unix_nano if request.HasField("until_unix_nano") else None,
            slow=request.slow_ns or request.slow_quantile or None,
        )
        return self._reply(context, convert.explain_to_proto(found))

    @rpc_errors
    def Partial(
        self, request: pb.PartialRequest, context: grpc.ServicerContext
    ) -> pb.PartialResponse:
        if self._db is None:
            raise KroniclerError("this server is a frontend: it answers partials of no data")
        if request.version != PARTIAL_VERSION:
            raise KroniclerError(
                f"partial format version {request.version} is not spoken here "
                f"(this node speaks {PARTIAL_VERSION}); run the same Kronicler release"
            )
        return partial.answer(self._db, request)
