"""A typed client of ``kronicler.v1.QueryService`` that returns the query layer's dataclasses.

Its methods mirror :mod:`kronicler.query` (same names, same keyword arguments, same result
types, minus the database argument), so code written against a local database works against a
server by swapping the object. Failures surface as ``grpc.RpcError`` with the server's status
code and message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kronicler.proto.v1 import query_pb2 as pb
from kronicler.proto.v1 import query_pb2_grpc as pb_grpc
from kronicler.query import (
    DEFAULT_QUANTILES,
    Anomaly,
    Filter,
    FunctionInfo,
    Histogram,
    SeriesTable,
    SlowCall,
    StatsTable,
)
from kronicler.query.stats import check_limit
from kronicler.server import convert
from kronicler.server.app import DEFAULT_ADDRESS, DEFAULT_MAX_SEND_BYTES


class Client:
    """Connection to one Kronicler server.

    Args:
        address: ``host:port``.
        token: bearer token, sent with every call.
        tls: use TLS; ``ca_cert`` (PEM) verifies the server (default: the system roots).
        server_name: TLS name to verify when it differs from the address's host.
        timeout: seconds per call.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        token: str | None = None,
        tls: bool = False,
        ca_cert: Path | None = None,
        server_name: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", DEFAULT_MAX_SEND_BYTES)
        ]
        if tls or ca_cert is not None:
            roots = Path(ca_cert).read_bytes() if ca_cert is not None else None
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            creds = grpc.ssl_channel_credentials(root_certificates=roots)
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb_grpc.QueryServiceStub(self._channel)
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self.timeout = timeout
        self.address = address

    def _call(self, method: Any, request: Any) -> Any:
        return method(request, timeout=self.timeout, metadata=self._metadata)

    def health(self, service: str = "") -> str:
        """The health status name (``"SERVING"``...) of ``service`` ("" = the whole server)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def list_functions(self, flt: Filter | None = None) -> list[FunctionInfo]:
        req = pb.ListFunctionsRequest(filter=convert.filter_to_proto(flt))
        return convert.functions_from_proto(self._call(self._stub.ListFunctions, req))

    def stats(
        self,
        flt: Filter | None = None,
        *,
        group_by: str = "function",
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        exact: bool = False,
        order_by: str = "key",
        limit: int | None = None,
    ) -> StatsTable:
        check_limit(limit)  # 0 would reach the server as "unset", i.e. every row
        req = pb.GetStatsRequest(
            filter=convert.filter_to_proto(flt), group_by=group_by, quantiles=list(quantiles),
            exact=exact, order_by=order_by, limit=limit or 0,
        )  # fmt: skip
        return convert.stats_from_proto(self._call(self._stub.GetStats, req))

    def series(
        self,
        flt: Filter | None = None,
        *,
        step: int | None = None,
        group_by: str = "function",
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        exact: bool = False,
    ) -> SeriesTable:
        req = pb.GetSeriesRequest(
            filter=convert.filter_to_proto(flt), step_ns=step or 0, group_by=group_by,
            quantiles=list(quantiles), exact=exact,
        )  # fmt: skip
        return convert.series_from_proto(self._call(self._stub.GetSeries, req))

    def histogram(
        self, function: str, flt: Filter | None = None, *, per_decade: int = 10,
        exact: bool = False,
    ) -> Histogram:  # fmt: skip
        req = pb.GetHistogramRequest(
            function=function, filter=convert.filter_to_proto(flt), per_decade=per_decade,
            exact=exact,
        )  # fmt: skip
        return convert.histogram_from_proto(self._call(self._stub.GetHistogram, req))

    def slowest(self, flt: Filter | None = None, *, k: int = 10) -> list[SlowCall]:
        req = pb.GetSlowestRequest(filter=convert.filter_to_proto(flt), k=k)
        reply = self._call(self._stub.GetSlowest, req)
        return [convert.call_from_proto(c) for c in reply.calls]

    def anomalies(
        self,
        flt: Filter | None = None,
        *,
        min_count: int | None = None,
        tail_threshold: float = 0.0,
        spike_threshold: float = 0.0,
        regression_threshold: float = 0.0,
        recent: int | None = None,
        limit: int | None = None,
        exemplars: int = 3,
    ) -> list[Anomaly]:
        """None (or 0 for a threshold) means the server's default (kronicler.query.anomalies).

        ``limit`` and ``min_count`` must be >= 1 when given, as locally: on the wire 0 means
        "the default", so a 0 would answer differently here and on a local database.
        """
        for label, value in (("limit", limit), ("min_count", min_count)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):  # fmt: skip
                raise ValueError(f"{label} must be >= 1, got {value!r}")
        req = pb.GetAnomaliesRequest(
            filter=convert.filter_to_proto(flt), min_count=min_count or 0,
            tail_threshold=tail_threshold, spike_threshold=spike_threshold,
            regression_threshold=regression_threshold, recent_ns=recent or 0, limit=limit or 0,
            exemplars=exemplars,
        )  # fmt: skip
        reply = self._call(self._stub.GetAnomalies, req)
        return [convert.anomaly_from_proto(a) for a in reply.anomalies]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
