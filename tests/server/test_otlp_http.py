"""OTLP/HTTP: the stock OTel HTTP exporter (protobuf, gzip), hand-written OTLP/JSON with hex ids,
and every failure answer the OTLP specification names, against a real server on loopback."""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from kronicler import query
from kronicler.db import Database
from kronicler.server import KroniclerServer, ServerOptions

TOKEN = "tok"


@pytest.fixture(params=[0, 1], ids=["in-process", "ingest-worker"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KroniclerServer]:
    db = Database.open(tmp_path / "db")
    options = ServerOptions(
        address="127.0.0.1:0", otlp_http="127.0.0.1:0", token=TOKEN,
        ingest_workers=request.param, cors_origins=("http://app.example",),
    )  # fmt: skip
    server = KroniclerServer(db, options).start()
    _dbs[server] = db
    try:
        yield server
    finally:
        server.stop()
        db.close()


def post(
    server: KroniclerServer, body: bytes, headers: dict[str, str], path: str = "/v1/traces",
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    assert server.otlp_http is not None
    conn = http.client.HTTPConnection("127.0.0.1", server.otlp_http.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


_dbs: dict[KroniclerServer, Database] = {}


def stop(server: KroniclerServer) -> None:
    """Stop the server and flush what it stored (workers flush on their own)."""
    server.stop()
    assert _dbs[server].flush(timeout=30)


def stored(path: Path) -> dict[str, int]:
    with Database.open(path) as db:
        return {name: fs.summary.count for name, fs in db.summaries().items()}


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_stock_http_exporter_stores_exact_counts(
    served: KroniclerServer, tmp_path: Path, compression: Compression
) -> None:
    assert served.otlp_http is not None
    exporter = OTLPSpanExporter(
        endpoint=served.otlp_http.url, headers={"Authorization": f"Bearer {TOKEN}"},
        compression=compression,
    )  # fmt: skip
    provider = TracerProvider(resource=Resource.create({"service.name": "web"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=8192))
    tracer = provider.get_tracer("tests")
    for i in range(1500):
        with tracer.start_as_current_span("http.handler", attributes={"i": i % 3}):
            pass
    assert provider.force_flush(30_000)
    provider.shutdown()
    stop(served)
    assert stored(tmp_path / "db") == {"http.handler": 1500}


def otlp_json(trace_id: str, span_id: str, parent: str = "") -> dict[str, Any]:
    return {
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name",
                                         "value": {"stringValue": "browser"}}]},
            "scopeSpans": [{
                "scope": {"name": "manual"},
                "spans": [{
                    "traceId": trace_id, "spanId": span_id, "parentSpanId": parent,
                    "name": "page.load", "kind": 2,
                    "startTimeUnixNano": "1700000000000000000",
                    "endTimeUnixNano": "1700000000250000000",
                    "attributes": [{"key": "http.route", "value": {"stringValue": "/"}}],
                    "status": {"code": 2, "message": "boom"},
                    "someFutureField": {"ignored": True},
                }],
            }],
        }],
    }  # fmt: skip


def test_otlp_json_with_hex_ids(served: KroniclerServer, tmp_path: Path) -> None:
    trace_id, span_id = "5B8EFFF798038103D269B633813FC60C", "EEE19B7EC3C1B174"
    status, headers, body = post(
        served, json.dumps(otlp_json(trace_id, span_id, "EEE19B7EC3C1B173")).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )  # fmt: skip
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    json_format.Parse(body, otlp.ExportTraceServiceResponse())  # a valid answer
    stop(served)
    with Database.open(tmp_path / "db") as db:
        (call,) = query.slowest(db)
    assert call.function == "page.load" and call.service == "browser"
    assert call.trace_id == int(trace_id, 16) and call.span_id == int(span_id, 16)
    assert call.parent_span_id == int("EEE19B7EC3C1B173", 16)
    assert call.duration == 250_000_000 and call.status == 2


def test_gzip_json_and_partial_success(served: KroniclerServer) -> None:
    doc = otlp_json("5B8EFFF798038103D269B633813FC60C", "EEE19B7EC3C1B174")
    bad = json.loads(json.dumps(doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]))
    bad["spanId"] = "00"  # one byte: malformed, rejected alone
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"].append(bad)
    status, _, body = post(
        served, gzip.compress(json.dumps(doc).encode()),
        {"Content-Type": "application/json", "Content-Encoding": "gzip",
         "Authorization": f"Bearer {TOKEN}"},
    )  # fmt: skip
    assert status == 200
    answer = json_format.Parse(body, otlp.ExportTraceServiceResponse())
    assert answer.partial_success.rejected_spans == 1


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b"{nope", {"Content-Type": "application/json", **AUTH}, 400),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
         {"Content-Type": "application/json", **AUTH}, 400),
        (b"\xff" * 40, {"Content-Type": "application/x-protobuf", **AUTH}, 400),
        (b"x", {"Content-Type": "text/plain", **AUTH}, 415),
        (b"x", {"Content-Type": "application/x-protobuf", "Content-Encoding": "br", **AUTH}, 415),
        (b"not gzip", {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip",
                       **AUTH}, 400),
        (b"", {"Content-Type": "application/x-protobuf"}, 401),
        (b"", {"Content-Type": "application/x-protobuf", "Authorization": "Bearer wrong"}, 401),
    ],
)  # fmt: skip
def test_failures_have_the_specified_status(
    served: KroniclerServer, body: bytes, headers: dict[str, str], expected: int
) -> None:
    status, got, _ = post(served, body, headers)
    assert status == expected
    assert got["content-type"] in ("application/json", "application/x-protobuf")


def test_a_gzip_bomb_is_refused_with_413(tmp_path: Path) -> None:
    from kronicler.server.ingest import LocalIngest
    from kronicler.server.otlp_http import OTLPHTTPServer

    with Database.open(tmp_path / "db") as db, OTLPHTTPServer(
        LocalIngest(db), "127.0.0.1", 0, max_body_bytes=1 << 20
    ) as srv:  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB inflated from ~8 KiB
        conn.request("POST", "/v1/traces", body=bomb, headers={
            "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})  # fmt: skip
        assert conn.getresponse().status == 413
        conn.close()


def test_wrong_path_and_method(served: KroniclerServer) -> None:
    assert post(served, b"", {"Content-Type": "application/x-protobuf"}, "/v1/logs")[0] == 404
    assert post(served, b"", {}, method="GET")[0] == 405


def test_cors_preflight_for_allowed_origins_only(served: KroniclerServer) -> None:
    ask = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
    status, headers, _ = post(served, b"", ask, method="OPTIONS")
    assert status == 204
    assert headers["access-control-allow-origin"] == "http://app.example"
    assert "authorization" in headers["access-control-allow-headers"].lower()
    status, _, _ = post(served, b"", {**ask, "Origin": "http://evil.example"}, method="OPTIONS")
    assert status == 403
    empty = otlp.ExportTraceServiceRequest().SerializeToString()
    status, headers, _ = post(served, empty, {"Content-Type": "application/x-protobuf",
                                              "Origin": "http://app.example", **AUTH})  # fmt: skip
    assert status == 200 and headers["access-control-allow-origin"] == "http://app.example"


def test_serve_listens_on_both_ports(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "kronicler", "serve", "--path", str(tmp_path / "db"),
         "--address", "127.0.0.1:0", "--ingest-workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        # serving, the workers' own OTLP/gRPC port (serve's default), then OTLP/HTTP
        lines = [proc.stdout.readline() for _ in range(3)]
        assert "OTLP/gRPC in the ingest workers on 127.0.0.1:" in lines[1], lines
        assert "OTLP/HTTP on http://127.0.0.1:" in lines[2], lines
        url = lines[2].split(" on ", 1)[1].strip()
        host_port = url.removeprefix("http://").split("/")[0]
        conn = http.client.HTTPConnection(host_port, timeout=30)
        conn.request("POST", "/v1/traces", body=otlp.ExportTraceServiceRequest().SerializeToString(),
                     headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
        assert conn.getresponse().status == 200
    finally:
        proc.terminate()
        proc.wait(30)
