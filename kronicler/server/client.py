"""A typed client of ``kronicler.v1.QueryService`` that returns the query layer's dataclasses.

It is a :class:`~kronicler.query.backend.QueryBackend`: its methods mirror :mod:`kronicler.query`
(same names, same keyword arguments and defaults, same result types, minus the database
argument), so code written against a local database works against a server by swapping the object.

Errors are the query layer's too: a bad argument raises ``ValueError`` (status
``INVALID_ARGUMENT``) and an unknown function :class:`~kronicler.errors.NotFoundError`
(``NOT_FOUND``), each with the server's message and the ``grpc.RpcError`` as its ``__cause__``.
On the wire 0 and "" mean "the default", so values the server could not tell from a missing one
(``k=0``, ``step=0``, no quantiles...) are refused here with the local layer's message. Every other
failure (unreachable server, wrong token, ``RESOURCE_EXHAUSTED``, which the server also uses for
"too many concurrent calls") surfaces as ``grpc.RpcError`` with its status code and message.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kronicler import budget
from kronicler._config import DEFAULT_ADDRESS, DEFAULT_MAX_SEND_BYTES
from kronicler.errors import NotFoundError, shorten
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.proto.v1 import query_pb2_grpc as pb_grpc
from kronicler.query import (
    DEFAULT_QUANTILES,
    MAX_K,
    Anomaly,
    Call,
    Explanation,
    Filter,
    FunctionInfo,
    Histogram,
    SeriesTable,
    StatsTable,
)
from kronicler.query.anomalies import (
    DEFAULT_MIN_COUNT,
    DEFAULT_REGRESSION_THRESHOLD,
    DEFAULT_SPIKE_THRESHOLD,
    DEFAULT_TAIL_THRESHOLD,
)
from kronicler.query.backend import QueryBackend
from kronicler.query.defaults import ANOMALY_EXEMPLARS, ANOMALY_LIMIT, PER_DECADE, SLOWEST_K
from kronicler.query.explain import parse_slow
from kronicler.query.grouping import check_quantiles, parse_group_by
from kronicler.query.histogram import MAX_PER_DECADE
from kronicler.query.limits import MAX_EXEMPLARS, MAX_FINDINGS
from kronicler.query.stats import check_limit, check_order
from kronicler.server import convert
from kronicler.server.query_service import MISSING_PEER_KEY

#: Status codes that mean what the local query layer says with an exception of this type.
_LOCAL_ERRORS: dict[grpc.StatusCode, type[Exception]] = {
    grpc.StatusCode.INVALID_ARGUMENT: ValueError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
}


def _pem(path: Path | None, what: str) -> bytes | None:
    """The bytes of a PEM file, or None; ValueError naming a file that cannot be read."""
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {shorten(str(path))}: {exc.strerror}") from None


def as_local(exc: grpc.RpcError) -> Exception:
    """The query layer's exception for a failed call whose status has one, else ``exc``."""
    local = _LOCAL_ERRORS.get(exc.code()) if isinstance(exc, grpc.Call) else None
    return exc if local is None else local(exc.details())


class Client:
    """Connection to one Kronicler server.

    Args:
        address: ``host:port``.
        token: bearer token, sent with every call.
        tls: use TLS; ``ca_cert`` (PEM) verifies the server (default: the system roots).
        server_name: TLS name to verify when it differs from the address's host.
        client_cert, client_key: PEM files (both or neither) this client presents to a server
            that asks for a client certificate (mutual TLS); they imply ``tls``.
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
        client_cert: Path | None = None,
        client_key: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", DEFAULT_MAX_SEND_BYTES)
        ]
        if (client_cert is None) != (client_key is None):
            raise ValueError(
                f"a client certificate needs its key and the key its certificate, got "
                f"certificate {shorten(str(client_cert))} and key {shorten(str(client_key))}"
            )
        if tls or ca_cert is not None or client_cert is not None:
            roots = _pem(ca_cert, "CA certificate")
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            creds = grpc.ssl_channel_credentials(
                root_certificates=roots, private_key=_pem(client_key, "client key"),
                certificate_chain=_pem(client_cert, "client certificate"),
            )  # fmt: skip
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb_grpc.QueryServiceStub(self._channel)
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self.timeout = timeout
        self.address = address
        self._local = threading.local()  # per calling thread: the last answer's missing peers

    def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        self._local.missing = ()
        timeout = self.timeout if timeout is None else timeout
        left = budget.remaining()  # the caller's own budget (a dashboard request's), if any
        if left is not None:
            timeout = left if timeout is None else min(timeout, left)
        try:
            reply, call = method.with_call(request, timeout=timeout, metadata=self._metadata)
            self._local.missing = tuple(
                str(v) for k, v in call.trailing_metadata() or () if k == MISSING_PEER_KEY
            )
            return reply
        except grpc.RpcError as exc:
            raise as_local(exc) from exc

    def missing_peers(self) -> tuple[str, ...]:
        """Peers (``host:port: reason``) a cluster frontend named as missing from this thread's
        last answer; empty for a single server or a whole answer."""
        return tuple(getattr(self._local, "missing", ()))

    def partial(
        self, request: pb.PartialRequest, timeout: float | None = None
    ) -> pb.PartialResponse:
        """One node's mergeable part of an answer (what a cluster frontend asks its peers)."""
        reply: pb.PartialResponse = self._call(self._stub.Partial, request, timeout)
        return reply

    def partial_call(self, request: pb.PartialRequest, timeout: float) -> pb.PartialResponse:
        """:meth:`partial` as the frontend calls it: failures raise ``grpc.RpcError`` as they
        are (:func:`as_local` maps them), and no budget or missing peers are read."""
        reply: pb.PartialResponse = self._stub.Partial(
            request, timeout=timeout, metadata=self._metadata
        )
        return reply

    def partial_future(self, request: pb.PartialRequest, timeout: float) -> Any:
        """:meth:`partial` started without waiting: a ``grpc.Future`` whose ``result()`` is the
        reply (failures raise ``grpc.RpcError``; :func:`as_local` maps them)."""
        return self._stub.Partial.future(request, timeout=timeout, metadata=self._metadata)

    def health(self, service: str = "") -> str:
        """The health status name (``"SERVING"``...) of ``service`` ("" = the whole server)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def list_functions(self, flt: Filter | None = None) -> list[FunctionInfo]:
        req = pb.ListFunctionsRequest(filter=convert.filter_to_proto(flt))
        return convert.functions_from_proto(self._call(self._stub.ListFunctions, req))

    def time_range(self) -> tuple[int, int] | None:
        """(earliest, latest) start over every stored call, or None when nothing is stored."""
        reply = self._call(self._stub.ListFunctions, pb.ListFunctionsRequest())
        if not reply.HasField("first_start_unix_nano"):
            return None
        return reply.first_start_unix_nano, reply.last_start_unix_nano

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
        # Checked here: an empty group key, order or quantile list reaches the server as "unset"
        # (the default), and a 0 limit as "every row".
        check_order(order_by, check_quantiles(quantiles))
        parse_group_by(group_by)
        check_limit(limit)
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
        check_quantiles(quantiles)  # an empty list and "" are "unset" on the wire
        parse_group_by(group_by)
        if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step <= 0):
            raise ValueError(f"step must be a positive number of nanoseconds, got {step!r}")
        req = pb.GetSeriesRequest(
            filter=convert.filter_to_proto(flt), step_ns=step or 0, group_by=group_by,
            quantiles=list(quantiles), exact=exact,
        )  # fmt: skip
        return convert.series_from_proto(self._call(self._stub.GetSeries, req))

    def histogram(
        self, function: str, flt: Filter | None = None, *, per_decade: int = PER_DECADE,
        exact: bool = False,
    ) -> Histogram:  # fmt: skip
        if not isinstance(per_decade, int) or not 1 <= per_decade <= MAX_PER_DECADE:
            raise ValueError(
                f"per_decade must be between 1 and {MAX_PER_DECADE}, got {per_decade!r}"
            )  # 0 would reach the server as "unset"
        req = pb.GetHistogramRequest(
            function=function, filter=convert.filter_to_proto(flt), per_decade=per_decade,
            exact=exact,
        )  # fmt: skip
        return convert.histogram_from_proto(self._call(self._stub.GetHistogram, req))

    def slowest(self, flt: Filter | None = None, *, k: int = SLOWEST_K) -> list[Call]:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, got {k!r}")  # 0 = "unset"
        req = pb.GetSlowestRequest(filter=convert.filter_to_proto(flt), k=k)
        reply = self._call(self._stub.GetSlowest, req)
        return [convert.call_from_proto(c) for c in reply.calls]

    def anomalies(
        self,
        flt: Filter | None = None,
        *,
        min_count: int | None = DEFAULT_MIN_COUNT,
        tail_threshold: float = DEFAULT_TAIL_THRESHOLD,
        spike_threshold: float = DEFAULT_SPIKE_THRESHOLD,
        regression_threshold: float = DEFAULT_REGRESSION_THRESHOLD,
        recent: int | None = None,
        limit: int | None = ANOMALY_LIMIT,
        exemplars: int = ANOMALY_EXEMPLARS,
    ) -> list[Anomaly]:
        """As :func:`kronicler.query.anomalies`; None for ``min_count`` or ``limit`` also means
        the default.

        Values the wire cannot carry (a 0 count or limit, a threshold of 0, ``recent=0``: each
        means "the default" there) are refused here as locally, so both answer alike.
        """
        for label, t in (("tail_threshold", tail_threshold), ("spike_threshold", spike_threshold),
                         ("regression_threshold", regression_threshold)):  # fmt: skip
            if not t > 1.0:
                raise ValueError(f"{label} must be > 1, got {t}")
        if min_count is not None and (isinstance(min_count, bool) or not isinstance(min_count, int)
                                      or min_count < 1):  # fmt: skip
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or not 1 <= limit <= MAX_FINDINGS):  # fmt: skip
            raise ValueError(f"limit must be between 1 and {MAX_FINDINGS}, got {limit!r}")
        if (
            not isinstance(exemplars, int)
            or isinstance(exemplars, bool)
            or not (0 <= exemplars <= MAX_EXEMPLARS)
        ):  # unsigned on the wire
            raise ValueError(f"exemplars must be between 0 and {MAX_EXEMPLARS}, got {exemplars!r}")
        if recent is not None and recent <= 0:
            raise ValueError(f"recent must be a positive number of nanoseconds, got {recent}")
        req = pb.GetAnomaliesRequest(
            filter=convert.filter_to_proto(flt), min_count=min_count or 0,
            tail_threshold=tail_threshold, spike_threshold=spike_threshold,
            regression_threshold=regression_threshold, recent_ns=recent or 0, limit=limit or 0,
            exemplars=exemplars,
        )  # fmt: skip
        reply = self._call(self._stub.GetAnomalies, req)
        return [convert.anomaly_from_proto(a) for a in reply.anomalies]

    def explain(
        self,
        function: str,
        *,
        since: int | None = None,
        until: int | None = None,
        slow: int | str | None = None,
    ) -> Explanation:
        threshold = parse_slow(slow)  # 0 and "" would reach the server as "the default"
        req = pb.ExplainRequest(
            function=function, slow_ns=threshold.ns or 0,
            slow_quantile=slow if isinstance(slow, str) else "",
        )  # fmt: skip
        if since is not None:
            req.since_unix_nano = since
        if until is not None:
            req.until_unix_nano = until
        return convert.explain_from_proto(self._call(self._stub.Explain, req))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_: type[QueryBackend] = Client  # mypy holds the client to the QueryBackend contract
