"""The standard OTLP/gRPC ``TraceService``: any OpenTelemetry SDK or Collector can send spans.

``Export`` converts the request with :func:`kronicler.otel.otlp_rows.convert_resource_spans`
(pure) and appends the well-formed spans to the database's write queue. Malformed spans are
reported through ``partial_success`` and the rest stored, as the OTLP specification asks. When
the write queue is full the database drops the batch rather than block; the receiver then
answers ``UNAVAILABLE`` (nothing stored) so that exporters retry with backoff, or reports the
dropped part through ``partial_success`` if only some rows were taken.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

from kronicler.errors import ClosedError
from kronicler.otel.otlp_rows import convert_resource_spans
from kronicler.otel.records import split_batch

if TYPE_CHECKING:
    from kronicler.db import Database, SpanBatch

log = logging.getLogger("kronicler.otel.receiver")

PIECE_ROWS = 16_384  # rows handed to the write queue at a time

TRACE_SERVICE_NAME = otlp.DESCRIPTOR.services_by_name["TraceService"].full_name


class OTLPTraceReceiver(otlp_grpc.TraceServiceServicer):
    """Stores spans exported over OTLP/gRPC into ``db``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def Export(  # noqa: N802 - the OTLP method name
        self, request: otlp.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> otlp.ExportTraceServiceResponse:
        try:
            code, rejected, message = store_request(self._db, request)
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


def store_request(db: Database, request: otlp.ExportTraceServiceRequest) -> tuple[str, int, str]:
    """Store one request's well-formed spans: ``("ok", rejected, why)`` or ``("retry", 0, why)``.

    ``"retry"`` means nothing was stored (write queue full, database closing): the exporter
    should send the request again. Shared by the in-process receiver and the ingest workers.
    """
    converted = convert_resource_spans(request.resource_spans)
    batch = converted.batch
    try:
        accepted = _store(db, batch)
    except ClosedError:
        return "retry", 0, "the database is closed (shutting down)"
    if len(batch) and accepted == 0:
        return "retry", 0, "write queue full"
    rejected = converted.rejected + (len(batch) - accepted)
    message = converted.error_message
    if accepted < len(batch):
        dropped = f"{len(batch) - accepted} spans dropped: write queue full"
        message = f"{message}; {dropped}" if message else dropped
    return "ok", rejected, message


def _store(db: Database, batch: SpanBatch) -> int:
    """Append in pieces (a request may hold more spans than the write queue); returns rows
    taken. A refused first piece is not counted as dropped: the exporter will retry it."""
    accepted = 0
    rest = batch
    while len(rest):
        piece, rest = split_batch(rest, min(PIECE_ROWS, len(rest)))
        taken = db.append_batch(piece, count_drop=accepted > 0)
        if not taken and not accepted:
            return 0  # nothing stored: the whole request will be retried
        accepted += taken
    return accepted


def add_to_server(db: Database, server: Any) -> OTLPTraceReceiver:
    receiver = OTLPTraceReceiver(db)
    otlp_grpc.add_TraceServiceServicer_to_server(receiver, server)
    return receiver
