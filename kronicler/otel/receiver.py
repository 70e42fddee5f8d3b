"""The standard OTLP/gRPC ``TraceService``: any OpenTelemetry SDK or Collector can send spans.

``Export`` converts the request with :func:`kronicler.otel.otlp_rows.convert_resource_spans`
(pure) and appends the well-formed spans to the database's write queue. Malformed spans are
reported through ``partial_success`` and the rest stored, as the OTLP specification asks.

A request is stored whole or not at all. When the write queue is full the receiver waits for room
briefly (at most ``QUEUE_WAIT`` seconds, and never past the client's deadline), so a burst is
absorbed; if the queue is still full it answers ``UNAVAILABLE`` with nothing stored, which OTLP
exporters retry with backoff. It never blocks a client indefinitely, and never drops spans it
has acknowledged. :func:`store_request` is that logic alone, shared with the ingest workers of
``kronicler serve`` (:mod:`kronicler.server.ingest`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

from kronicler.errors import ClosedError, WriteTimeoutError
from kronicler.otel.otlp_rows import Converted, convert_resource_spans

if TYPE_CHECKING:
    from kronicler.db.sink import SpanSink

log = logging.getLogger(__name__)

QUEUE_WAIT = 1.0  # seconds a request waits for room in a full write queue before UNAVAILABLE

TRACE_SERVICE_NAME = otlp.DESCRIPTOR.services_by_name["TraceService"].full_name


class OTLPTraceReceiver(otlp_grpc.TraceServiceServicer):
    """Stores spans exported over OTLP/gRPC into ``db`` (any :class:`SpanSink`)."""

    def __init__(self, db: SpanSink, *, queue_wait: float = QUEUE_WAIT) -> None:
        if not isinstance(queue_wait, (int, float)) or not queue_wait >= 0:
            raise ValueError(f"queue_wait must be >= 0 seconds, got {queue_wait!r}")
        self._db = db
        self._queue_wait = float(queue_wait)

    def Export(  # noqa: N802 - the OTLP method name
        self, request: otlp.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> otlp.ExportTraceServiceResponse:
        try:
            code, rejected, message = store_request(self._db, request, wait=self._wait(context))
        except Exception:  # a receiver must answer with a status, never a traceback
            log.exception("OTLP export failed")
            context.abort(grpc.StatusCode.INTERNAL, "internal error storing spans")
        if code == "retry":
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{message}; retry with backoff")
        response = otlp.ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = message
        return response

    def _wait(self, context: grpc.ServicerContext) -> float:
        """Seconds to wait for room: ``queue_wait``, but leaving the client time for our answer."""
        remaining = context.time_remaining()
        if remaining is None:
            return self._queue_wait
        return max(0.0, min(self._queue_wait, remaining / 2))


def store_request(
    db: SpanSink, request: otlp.ExportTraceServiceRequest, *, wait: float = QUEUE_WAIT
) -> tuple[str, int, str]:
    """Store one request's well-formed spans, whole or not at all.

    Returns ``("ok", rejected, why)`` (``rejected`` malformed spans left out) or
    ``("retry", 0, why)``: nothing was stored (the write queue stayed full for ``wait`` seconds,
    or the database is closing) and the exporter should send the request again.
    """
    return store_converted(db, convert_resource_spans(request.resource_spans), wait=wait)


def store_converted(
    db: SpanSink, converted: Converted, *, wait: float = QUEUE_WAIT
) -> tuple[str, int, str]:
    """:func:`store_request` for a request already converted (e.g. by
    :func:`kronicler.otel.otlp_rows.convert_request`, straight from its bytes)."""
    batch = converted.batch
    try:
        if len(batch) and not db.append_batch(batch, block=False):
            db.append_batch(batch, timeout=wait)
    except WriteTimeoutError:
        return "retry", 0, "write queue full"
    except ClosedError:
        return "retry", 0, "the database is closed (shutting down)"
    return "ok", converted.rejected, converted.error_message


def add_to_server(db: SpanSink, server: grpc.Server) -> OTLPTraceReceiver:
    receiver = OTLPTraceReceiver(db)
    otlp_grpc.add_TraceServiceServicer_to_server(receiver, server)
    return receiver
