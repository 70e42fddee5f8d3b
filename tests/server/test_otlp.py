"""The OTLP receiver: the stock OTel exporter sends spans that the QueryService then reports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from kronicler import query as q
from kronicler.db import Database
from kronicler.otel.contract import attributes_text
from kronicler.otel.otlp_rows import (
    AttributeTexts,
    convert_request,
    convert_resource_spans,
)
from kronicler.server import Client, KroniclerServer, ServerOptions


@pytest.fixture
def db(tmp_path) -> Iterator[Database]:
    with Database.open(tmp_path / "otlp") as database:
        yield database


@pytest.fixture
def server(db: Database) -> Iterator[KroniclerServer]:
    with KroniclerServer(db, ServerOptions(address="127.0.0.1:0", token="tok")) as srv:
        yield srv


def test_stock_exporter_spans_are_queryable(db: Database, server: KroniclerServer) -> None:
    exporter = OTLPSpanExporter(
        endpoint=server.address, insecure=True, headers={"authorization": "Bearer tok"}
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "otlp-test"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=128))
    tracer = provider.get_tracer("tests")
    ids = []
    for i in range(300):
        with tracer.start_as_current_span("checkout.pay", kind=SpanKind.SERVER,
                                          attributes={"route": "/pay", "n": i % 3}) as span:  # fmt: skip
            if i % 10 == 0:
                span.set_status(Status(StatusCode.ERROR))
            with tracer.start_as_current_span("checkout.db"):
                pass
            ids.append(span.get_span_context())
    assert provider.force_flush(10_000)
    provider.shutdown()
    assert db.flush(timeout=10)
    with Client(server.address, token="tok", timeout=10) as c:
        rows = {r.key: r for r in c.stats().rows}
        assert rows["checkout.pay"].count == 300 and rows["checkout.pay"].errors == 30
        assert rows["checkout.db"].count == 300 and rows["checkout.db"].errors == 0
        assert [r.key for r in c.stats(group_by="service").rows] == ["otlp-test"]
        by_n = c.stats(q.Filter.make("checkout.pay", attributes={"n": 1}))
        assert by_n.rows[0].count == 100
        slow = c.slowest(q.Filter.make("checkout.pay"), k=300)
    by_span = {ctx.span_id: ctx.trace_id for ctx in ids}
    assert {s.span_id for s in slow} == set(by_span)
    s = slow[0]
    assert s.trace_id == by_span[s.span_id]
    # kinds come back in OTLP's numbering: 2 = SPAN_KIND_SERVER
    assert s.kind == 2 and s.service == "otlp-test" and s.attributes["route"] == "/pay"


def _span(name: str = "ok", **over: Any) -> trace_pb2.Span:
    fields: dict[str, Any] = dict(
        trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name=name,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_000_500_000, kind=trace_pb2.Span.SPAN_KIND_CLIENT,
    )  # fmt: skip
    fields.update(over)
    return trace_pb2.Span(**fields)


def _request(*spans: trace_pb2.Span, service: str = "svc") -> otlp.ExportTraceServiceRequest:
    resource = resource_pb2.Resource(attributes=[common_pb2.KeyValue(
        key="service.name", value=common_pb2.AnyValue(string_value=service))])  # fmt: skip
    return otlp.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=resource, scope_spans=[trace_pb2.ScopeSpans(spans=list(spans))])])  # fmt: skip


def test_malformed_spans_are_reported_and_the_rest_stored(db: Database, server) -> None:
    bad = [
        _span(trace_id=b"\x01\x02\x03"),
        _span(trace_id=bytes(16)),
        _span(span_id=bytes(8)),
        _span(parent_span_id=b"\x01"),
        _span(name=""),
        _span(end_time_unix_nano=1),
        _span(start_time_unix_nano=0),
    ]
    good = [_span("good.one"), _span("good.two", parent_span_id=bytes(range(9, 17)))]
    with grpc.insecure_channel(server.address) as channel:
        stub = otlp_grpc.TraceServiceStub(channel)
        reply = stub.Export(_request(*good, *bad), timeout=10,
                            metadata=[("authorization", "Bearer tok")])  # fmt: skip
    assert reply.partial_success.rejected_spans == len(bad)
    msg = reply.partial_success.error_message
    for reason in ("trace_id", "span_id", "parent_span_id", "name is empty", "before start",
                   "start time is 0"):  # fmt: skip
        assert reason in msg
    assert db.flush(timeout=10)
    assert db.functions() == ["good.one", "good.two"]
    call = q.slowest(db, q.Filter.make("good.two"))[0]
    assert call.duration == 500_000 and call.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    assert call.service == "svc"
    assert call.trace_id == int.from_bytes(bytes(range(1, 17)), "big")
    assert call.parent_span_id == int.from_bytes(bytes(range(9, 17)), "big")


def test_a_fully_good_request_has_no_partial_success(db: Database, server) -> None:
    with grpc.insecure_channel(server.address) as channel:
        reply = otlp_grpc.TraceServiceStub(channel).Export(
            _request(_span()), timeout=10, metadata=[("authorization", "Bearer tok")]
        )
    assert not reply.HasField("partial_success")


def test_conversion_maps_every_field() -> None:
    attrs = [
        common_pb2.KeyValue(key="s", value=common_pb2.AnyValue(string_value="x")),
        common_pb2.KeyValue(key="i", value=common_pb2.AnyValue(int_value=7)),
        common_pb2.KeyValue(key="b", value=common_pb2.AnyValue(bool_value=True)),
        common_pb2.KeyValue(key="d", value=common_pb2.AnyValue(double_value=1.5)),
        common_pb2.KeyValue(key="a", value=common_pb2.AnyValue(array_value=common_pb2.ArrayValue(
            values=[common_pb2.AnyValue(int_value=1), common_pb2.AnyValue(int_value=2)]))),
    ]  # fmt: skip
    error, ok = trace_pb2.Status.STATUS_CODE_ERROR, trace_pb2.Status.STATUS_CODE_OK
    spans = [
        _span("f", attributes=attrs, status=trace_pb2.Status(code=error),
              kind=trace_pb2.Span.SPAN_KIND_UNSPECIFIED),
        _span("g", kind=trace_pb2.Span.SPAN_KIND_CONSUMER, status=trace_pb2.Status(code=ok)),
    ]  # fmt: skip
    out = convert_resource_spans(_request(*spans, service="shop").resource_spans)
    b = out.batch
    assert out.rejected == 0 and out.error_message == ""
    assert b.names == ["f", "g"] and b.services == ["shop", "shop"]
    assert b.status.tolist() == [2, 1] and b.kind.tolist() == [0, 4]
    assert b.duration.tolist() == [500_000, 500_000]
    assert int(b.trace_hi[0]) << 64 | int(b.trace_lo[0]) == int.from_bytes(bytes(range(1, 17)),
                                                                           "big")  # fmt: skip
    from kronicler.db.schema import parse_attributes

    assert parse_attributes(b.attributes[0]) == {"s": "x", "i": 7, "b": True, "d": 1.5,
                                                 "a": [1, 2]}  # fmt: skip
    assert b.attributes[1] == ""
    assert len(convert_resource_spans([]).batch) == 0


def test_a_request_larger_than_the_write_queue_is_stored_whole(tmp_path) -> None:
    n = 60_000
    spans = [_span(f"bulk.{i % 3}", span_id=(i + 1).to_bytes(8, "big")) for i in range(n)]
    with Database.open(tmp_path / "small-queue", queue_rows=40_000) as small, KroniclerServer(
        small, ServerOptions(address="127.0.0.1:0")
    ) as srv, grpc.insecure_channel(srv.address, options=[
        ("grpc.max_send_message_length", 64 << 20)]) as channel:  # fmt: skip
        reply = otlp_grpc.TraceServiceStub(channel).Export(_request(*spans), timeout=60)
        assert not reply.HasField("partial_success") or reply.partial_success.rejected_spans == 0
        assert small.flush(timeout=30)
        assert sum(s.count for s in small.stats().values()) == n
        assert small.dropped == 0


def test_a_full_write_queue_answers_retry_later_and_loses_no_acknowledged_span(tmp_path) -> None:
    import threading

    senders, requests, per_request = 4, 25, 300
    with (
        Database.open(tmp_path / "tiny-queue", queue_rows=100) as tiny,
        KroniclerServer(tiny, ServerOptions(address="127.0.0.1:0")) as srv,
    ):
        answers: list[str] = []

        def send(who: int) -> None:
            with grpc.insecure_channel(srv.address) as channel:
                stub = otlp_grpc.TraceServiceStub(channel)
                for r in range(requests):
                    request = _request(
                        *[
                            _span(f"s{who}", span_id=(r * per_request + i + 1).to_bytes(8, "big"))
                            for i in range(per_request)
                        ]
                    )
                    while True:  # what an OTLP exporter does: retry UNAVAILABLE with backoff
                        try:
                            stub.Export(request, timeout=30)
                            answers.append("OK")
                            break
                        except grpc.RpcError as exc:
                            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                            answers.append("UNAVAILABLE")

        threads = [threading.Thread(target=send, args=(w,)) for w in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert answers.count("OK") == senders * requests
        assert tiny.flush(timeout=30)
        counts = {k: v.count for k, v in tiny.stats().items()}
        assert counts == {f"s{w}": requests * per_request for w in range(senders)}
        assert tiny.dropped == 0


def test_attribute_texts_are_cached_across_requests_within_a_byte_bound() -> None:
    def req(values: list[str]) -> bytes:
        spans = [
            trace_pb2.Span(trace_id=b"\x01" * 16, span_id=(i + 1).to_bytes(8, "big"), name="f",
                           start_time_unix_nano=10, end_time_unix_nano=20,
                           attributes=[common_pb2.KeyValue(
                               key="k", value=common_pb2.AnyValue(string_value=v))])
            for i, v in enumerate(values)
        ]  # fmt: skip
        return otlp.ExportTraceServiceRequest(
            resource_spans=[
                trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=spans)])
            ]
        ).SerializeToString()

    values = [f"v{i % 5}" * (1 + i % 40) for i in range(200)]
    expected = [attributes_text({"k": v}) for v in values]
    texts = AttributeTexts(max_bytes=2_000)  # far less than the distinct sets need
    keys = [  # a span's attribute records, as the scan slices them from the request
        trace_pb2.Span(attributes=[common_pb2.KeyValue(
            key="k", value=common_pb2.AnyValue(string_value=v))]).SerializeToString()
        for v in values
    ]  # fmt: skip
    for _ in range(3):
        assert texts.of(keys) == expected
        assert texts._bytes <= texts.max_bytes
    assert convert_request(req(values)).batch.attributes == expected
    assert convert_request(req(values[:3])).batch.attributes == expected[:3]  # warm cache
