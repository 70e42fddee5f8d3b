"""Two releases compared by their resource attributes, sent by the stock OTel SDK exporters.

Release 1.0 on host web-1 exports over OTLP/gRPC, release 1.1 on host web-2 over OTLP/HTTP, to
one real server on loopback. Every span's times are explicit, so the brute force knows each
duration; grouping by ``resource:service.version`` and filtering by resource attributes must give
the brute force's figures through the Python API, the gRPC client, the CLI (``--json``) and the
dashboard's HTTP API, and an export read back by DuckDB must carry the resource per row.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind

from kronicler import query as q
from kronicler.db import Database
from kronicler.query import export
from kronicler.server import Client, KroniclerServer, ServerOptions

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok"
BASE = 1_790_000_000_000_000_000
RELEASES = {  # version: (host, protocol, calls, typical duration in ns)
    "1.0": ("web-1", "grpc", 60, 2_000_000),
    "1.1": ("web-2", "http", 40, 9_000_000),
}
BY_RELEASE = "resource:service.version"


@dataclass
class Stored:
    path: Path
    truth: list[tuple[str, str, int]]  # (release, host, duration) per span


def _send(exporter: SpanExporter, version: str, host: str, durations: list[int]) -> None:
    resource = Resource.create({"service.name": "checkout", "service.version": version,
                                "host.name": host, "deployment.environment.name": "prod"})  # fmt: skip
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=25))
    tracer = provider.get_tracer("tests")
    for i, d in enumerate(durations):
        start = BASE + i * 10_000_000
        span = tracer.start_span("checkout.pay", kind=SpanKind.SERVER, start_time=start)
        span.end(end_time=start + d)
    assert provider.force_flush(30_000)
    provider.shutdown()


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    path = tmp_path_factory.mktemp("resource") / "db"
    rng = np.random.default_rng(12)
    truth: list[tuple[str, str, int]] = []
    with Database.open(path, chunk_rows=32) as db:
        options = ServerOptions(address="127.0.0.1:0", otlp_http="127.0.0.1:0", token=TOKEN)
        with KroniclerServer(db, options) as server:
            assert server.otlp_http is not None
            auth = {"authorization": f"Bearer {TOKEN}"}
            for version, (host, protocol, n, typical) in RELEASES.items():
                durations = [int(d) for d in rng.lognormal(np.log(typical), 0.5, n)]
                exporter: SpanExporter = (
                    GrpcExporter(endpoint=server.address, insecure=True, headers=auth)
                    if protocol == "grpc"
                    else HttpExporter(endpoint=server.otlp_http.url, headers=auth)
                )
                _send(exporter, version, host, durations)
                truth += [(version, host, d) for d in durations]
            assert db.flush(timeout=30)
    yield Stored(path, truth)


def _brute(truth: list[tuple[str, str, int]], *, host: str | None = None) -> dict[str, Any]:
    """Exact count, min, max and p50 (rank floor(q * (n - 1))) per release."""
    out = {}
    for version in sorted({v for v, _, _ in truth}):
        d = np.sort([x for v, h, x in truth if v == version and host in (None, h)])
        if len(d):
            out[version] = {"count": len(d), "min_ns": float(d[0]), "max_ns": float(d[-1]),
                            "p50_ns": float(d[int(0.5 * (len(d) - 1))])}  # fmt: skip
    return out


def _figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {r["service.version"]: {k: r[k] for k in ("count", "min_ns", "max_ns", "p50_ns")}
            for r in rows}  # fmt: skip


def _cli(*args: str) -> Any:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "kronicler", *args, "--json"], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_group_by_release_equals_the_brute_force_on_every_interface(stored: Stored) -> None:
    want = _brute(stored.truth)
    assert set(want) == {"1.0", "1.1"}
    with Database.open(stored.path, readonly=True) as db:
        local = q.stats(db, group_by=BY_RELEASE, quantiles=(0.5,), exact=True)
        py = [r.to_dict(local.key_name) for r in local.rows]
        assert _figures(py) == want
        approx = q.stats(db, group_by=BY_RELEASE, quantiles=(0.5,))
        assert [r.count for r in approx.rows] == [60, 40]
        with KroniclerServer(db, ServerOptions(address="127.0.0.1:0", otlp=False)) as server, \
                Client(server.address) as client:  # fmt: skip
            remote = client.stats(group_by=BY_RELEASE, quantiles=(0.5,), exact=True)
            assert [r.to_dict(remote.key_name) for r in remote.rows] == py
            cli = _cli("stats", "--address", server.address, "--group-by", BY_RELEASE,
                       "--quantiles", "0.5", "--exact")  # fmt: skip
            assert cli == py
    assert _cli("stats", "--path", str(stored.path), "--group-by", BY_RELEASE, "--quantiles",
                "0.5", "--exact") == py  # fmt: skip


def test_resource_filters_select_the_brute_force_rows(stored: Stored) -> None:
    web2 = _brute(stored.truth, host="web-2")
    with Database.open(stored.path, readonly=True) as db:
        # both spellings: a resource mapping, and a resource:KEY condition among attributes
        for flt in (q.Filter.make(resource={"host.name": "web-2"}),
                    q.Filter.make(attributes={"resource:host.name": "web-2"})):  # fmt: skip
            table = q.stats(db, flt, group_by=BY_RELEASE, quantiles=(0.5,), exact=True)
            assert _figures([r.to_dict(table.key_name) for r in table.rows]) == web2
        both = q.Filter.make(resource={"service.version": "1.0", "host.name": "web-2"})
        assert q.stats(db, both).rows == ()
        env = q.Filter.make(resource={"deployment.environment.name": "prod"})
        assert [r.count for r in q.stats(db, env).rows] == [100]
        slow = q.slowest(db, q.Filter.make(resource={"service.version": "1.0"}), k=5)
        want = sorted((d for v, _, d in stored.truth if v == "1.0"), reverse=True)[:5]
        assert [c.duration for c in slow] == want
        assert {c.resource["host.name"] for c in slow} == {"web-1"}
        assert {c.kind for c in slow} == {2}  # OTLP's SPAN_KIND_SERVER
        with KroniclerServer(db, ServerOptions(address="127.0.0.1:0", otlp=False)) as server, \
                Client(server.address) as client:  # fmt: skip
            flt = q.Filter.make(resource={"service.version": "1.0"})
            assert client.slowest(flt, k=5) == slow  # resource values keep their types
            cli = _cli("slowest", "--address", server.address, "--attr",
                       "resource:service.version=1.0", "-k", "5")  # fmt: skip
            assert cli == [c.to_dict() for c in slow]


def test_the_dashboard_filters_by_resource(stored: Stored) -> None:
    pytest.importorskip("fastapi", reason="the dashboard needs the web extra")
    pytest.importorskip("uvicorn", reason="the dashboard needs the web extra")
    from kronicler.web import WebServer

    with Database.open(stored.path, readonly=True) as db, \
            WebServer(db, "127.0.0.1", 0) as web:  # fmt: skip
        params = [("range", "all"), ("attr", "resource:service.version=1.1"), ("k", 100)]
        url = web.url.rstrip("/") + "/api/v1/slowest?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=60) as r:
            calls = json.loads(r.read())
        flt = q.Filter.make(resource={"service.version": "1.1"})
        assert calls == [c.to_dict() for c in q.slowest(db, flt, k=100)]
        assert len(calls) == 40 and {c["resource"]["host.name"] for c in calls} == {"web-2"}


def test_export_carries_the_resource_and_duckdb_reads_it(stored: Stored, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    pytest.importorskip("pyarrow")
    out = tmp_path / "calls.parquet"
    with Database.open(stored.path, readonly=True) as db:
        assert export.export(db, out, format="parquet") == 100
    rows = duckdb.sql(
        f"SELECT resource['service.version'] AS v, resource['host.name'] AS h, count(*), "
        f"min(duration_ns), max(duration_ns) FROM '{out}' GROUP BY v, h ORDER BY v"
    ).fetchall()
    want = []
    for version, figures in _brute(stored.truth).items():
        host = RELEASES[version][0]
        want.append((version, host, figures["count"], int(figures["min_ns"]),
                     int(figures["max_ns"])))  # fmt: skip
    assert rows == want
    (env,) = duckdb.sql(f"SELECT DISTINCT resource['deployment.environment.name'] "
                        f"FROM '{out}'").fetchall()  # fmt: skip
    assert env == ("prod",)


def test_resource_conditions_on_the_wire() -> None:
    """The ``resource`` field and ``resource:KEY`` attributes mean the same; the client sends the
    latter, which a server from before resources answers with nothing rather than everything."""
    from kronicler.proto.v1 import query_pb2 as pb
    from kronicler.server.convert import filter_from_proto, filter_to_proto

    flt = q.Filter.make(attributes={"code": 500}, resource={"service.version": "1.1"})
    msg = filter_to_proto(flt)
    assert dict(msg.attributes) == {"code": "500", "resource:service.version": "1.1"}
    assert filter_from_proto(msg) == flt
    by_field = pb.Filter(attributes={"code": "500"}, resource={"service.version": "1.1"})
    assert filter_from_proto(by_field) == flt
    with pytest.raises(ValueError, match="resource attribute filter keys must not be empty"):
        filter_from_proto(pb.Filter(attributes={"resource:": "x"}))
