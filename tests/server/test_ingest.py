"""OTLP ingest in worker processes: every span the server acknowledged is stored, workers that
die are replaced, and the stock exporter's retries cover a worker killed mid-request."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import numpy as np
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

from kronicler.db import Database
from kronicler.server import KroniclerServer, ServerOptions


def request(first: int, n: int, *, name: str = "ingest.f") -> otlp.ExportTraceServiceRequest:
    """``n`` spans with span ids ``first .. first + n - 1`` and durations equal to their ids."""
    spans = [
        trace_pb2.Span(
            trace_id=(1).to_bytes(16, "big"), span_id=(first + i).to_bytes(8, "big"), name=name,
            start_time_unix_nano=1_000_000 + first + i,
            end_time_unix_nano=1_000_000 + 2 * (first + i),
        )
        for i in range(n)
    ]  # fmt: skip
    resource = resource_pb2.Resource(
        attributes=[common_pb2.KeyValue(key="service.name",
                                        value=common_pb2.AnyValue(string_value="svc"))]
    )  # fmt: skip
    return otlp.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(resource=resource,
                                    scope_spans=[trace_pb2.ScopeSpans(spans=spans)])
        ]
    )  # fmt: skip


def export_until_taken(stub: otlp_grpc.TraceServiceStub, req: otlp.ExportTraceServiceRequest,
                       tries: int = 400) -> None:  # fmt: skip
    """The exporter's retry loop, without its backoff: again while the answer is UNAVAILABLE."""
    for _ in range(tries):
        try:
            stub.Export(req, timeout=30)
            return
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
            time.sleep(0.05)
    pytest.fail("the server never took the request again")


def stored_span_ids(path: Path) -> np.ndarray:
    with Database.open(path) as db:
        return np.sort(db.scan(["span_id"]).columns["span_id"].astype(np.int64))


def test_the_stock_exporter_stores_exact_counts_through_workers(
    served: tuple[Database, KroniclerServer],
) -> None:
    db, server = served
    assert server.ingest is not None and server.ingest.alive() == 2
    exporter = OTLPSpanExporter(endpoint=server.address, insecure=True)
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=8192, max_export_batch_size=256)
    )
    tracer = provider.get_tracer("tests")
    for _ in range(3000):
        with tracer.start_as_current_span("shop.checkout"), tracer.start_as_current_span("shop.db"):
            pass
    assert provider.force_flush(30_000)
    provider.shutdown()
    server.stop()  # the workers flush and exit
    with Database.open(db.path) as again:
        counts = {name: fs.summary.count for name, fs in again.summaries().items()}
        services = again.services()
    assert counts == {"shop.checkout": 3000, "shop.db": 3000}
    assert services == ["shop"]


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_workers_take_the_cores_queries_leave(served: tuple[Database, KroniclerServer]) -> None:
    """Ingest workers run at the lowest priority (nice 19), so a query waits for no worker."""
    _, server = served
    assert server.ingest is not None
    assert [_nice(pid) for pid in server.ingest.pids] == [19, 19]


def test_the_workers_priority_is_an_option(tmp_path: Path) -> None:
    own = os.nice(0)
    with Database.open(tmp_path / "db") as db:
        server = KroniclerServer(db, ServerOptions("127.0.0.1:0", ingest_workers=1, ingest_nice=3))
        with server:
            assert server.ingest is not None
            assert [_nice(pid) for pid in server.ingest.pids] == [min(own + 3, 19)]
    for bad in (-1, 20, 2.5, True):
        with pytest.raises(ValueError, match="ingest nice"):
            ServerOptions(ingest_workers=1, ingest_nice=bad).check()  # type: ignore[arg-type]


def test_malformed_and_partial_requests(served: tuple[Database, KroniclerServer]) -> None:
    _, server = served
    with grpc.insecure_channel(server.address) as ch:
        stub = otlp_grpc.TraceServiceStub(ch)
        bad = request(1, 3)
        bad.resource_spans[0].scope_spans[0].spans[1].span_id = b"\x01"  # wrong length
        reply = stub.Export(bad, timeout=30)
        assert reply.partial_success.rejected_spans == 1
        assert "span" in reply.partial_success.error_message
        raw = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff" * 32, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_killed_worker_is_replaced_and_acknowledged_spans_are_all_stored(
    served: tuple[Database, KroniclerServer],
) -> None:
    db, server = served
    pool = server.ingest
    assert pool is not None
    acknowledged: list[int] = []
    with grpc.insecure_channel(server.address) as ch:
        stub = otlp_grpc.TraceServiceStub(ch)
        first = 1
        for i in range(60):
            if i == 20:
                os.kill(pool.pids[0], signal.SIGKILL)
            export_until_taken(stub, request(first, 200))
            acknowledged.extend(range(first, first + 200))
            first += 200
    deadline = time.monotonic() + 30
    while pool.restarts < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.restarts >= 1 and pool.alive() == 2
    server.stop()
    stored = stored_span_ids(db.path)
    # at least once: every acknowledged span is stored; a request whose worker died after
    # queueing its rows but before answering may be stored twice (as with any OTLP receiver)
    assert set(acknowledged) <= set(stored.tolist())
    assert set(stored.tolist()) <= set(acknowledged)


def test_attributes_events_and_status_through_workers_match_the_sdk_rows(
    served: tuple[Database, KroniclerServer],
) -> None:
    """Attribute sets repeat across requests (the workers' text cache is shared), some spans
    carry an exception event or a status description: every stored row's attributes equal
    what the in-process SDK exporter makes of the same span."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode

    from kronicler.otel.rows import spans_to_batch

    db, server = served
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    for i in range(600):
        flag: bool | int | float = [True, 1, 1.0][i % 3]  # equal in Python, stored apart
        attrs: dict[str, str | bool | int | float] = {
            "route": f"/r{i % 7}",
            "n": i % 3,
            "flag": flag,
        }
        with tracer.start_as_current_span("shop.f", attributes=attrs) as span:
            if i % 50 == 1:
                span.record_exception(ValueError(f"bad {i}"))
            if i % 40 == 2:
                span.set_status(Status(StatusCode.ERROR, f"failed {i % 4}"))
    spans = memory.get_finished_spans()
    exporter = OTLPSpanExporter(endpoint=server.address, insecure=True)
    for start in range(0, len(spans), 100):  # six requests: the second on meets a warm cache
        assert exporter.export(spans[start : start + 100]).name == "SUCCESS"
    exporter.shutdown()
    server.stop()
    want = spans_to_batch(spans)
    expected = dict(zip(want.span_id.astype(np.int64).tolist(), want.attributes, strict=True))
    with Database.open(db.path) as again:
        scan = again.scan(["span_id", "attributes"])
    got = {
        int(sid): scan.attributes[code]
        for sid, code in zip(scan.columns["span_id"].astype(np.int64),
                             scan.columns["attributes"], strict=True)
    }  # fmt: skip
    assert len(got) == len(spans) == 600
    assert got == expected
    assert any("exception.type" in t for t in got.values())
    assert any("otel.status_description" in t for t in got.values())


@pytest.mark.parametrize("where", ["attribute", "event", "status"])
def test_a_malformed_attribute_event_or_status_is_invalid_and_stores_nothing(
    served: tuple[Database, KroniclerServer], where: str
) -> None:
    """Workers read attributes, events and status as raw bytes and decode them later: bad
    UTF-8 inside them still rejects the whole request with INVALID_ARGUMENT."""
    db, server = served
    bad = request(1, 3)
    span = bad.resource_spans[0].scope_spans[0].spans[1]
    marker = "QQQQ"
    if where == "attribute":
        span.attributes.add(key=marker, value=common_pb2.AnyValue(int_value=1))
    elif where == "event":
        span.events.add(name=marker, time_unix_nano=5)
    else:
        span.status.message = marker
    data = bad.SerializeToString()
    assert data.count(marker.encode()) == 1
    data = data.replace(marker.encode(), b"\xff\xfe\xff\xfe")
    with grpc.insecure_channel(server.address) as ch:
        raw = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as info:
            raw(data, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert server.ingest is not None and server.ingest.alive() == 2
        raw(request(10, 2).SerializeToString(), timeout=30)  # the workers still serve
    server.stop()
    assert stored_span_ids(db.path).tolist() == [10, 11]
