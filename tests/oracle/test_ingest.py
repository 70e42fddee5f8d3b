"""Rows that arrive through the three ingest roads: the SDK exporter, OTLP, and zero-config capture.

What is checkable exactly on each road:

- **SDK exporter and OTLP, same spans.** Spans built with the OpenTelemetry SDK with explicit
  start and end times, attributes, kinds, statuses and parents go, through one provider, both
  to ``KroniclerSpanExporter`` and (``OTLPSpanExporter``) to a real Kronicler server. The spans
  themselves are the ground truth, so every oracle query runs against both databases; and the
  two databases must hold identical rows, exception events and resources without a service
  name included (one row contract for the converters, issue 8 defect 9).
- **Zero-config ``@kronicler.capture`` against the SDK road.** Durations are measured, so they
  cannot be known in advance; what can: how many calls of each function, which failed, the
  service, the exception type, and that nested calls point at their parent's span in the same
  trace. The same workload runs with the zero-config pipeline and with an SDK provider exporting
  to Kronicler and over OTLP; the three databases must agree on all of that. The oracle's stats
  queries then run on the zero-config database against its own exact scan.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from kronicler.db import Database
from kronicler.db.schema import canonical_attributes
from kronicler.otel.exporter import KroniclerSpanExporter
from kronicler.server import KroniclerServer, ServerOptions
from tests.oracle.interfaces import PythonApi
from tests.oracle.layouts import ROOT
from tests.oracle.queries import Failures, standard_queries
from tests.oracle.truth import Rows, check_table, expected_slowest, expected_stats

BASE = 1_790_000_000_000_000_000
NAMES = ("http.get", "db.query", "cache.get")
ALL = ("name", "start", "duration", "status", "kind", "service", "trace_hi", "trace_lo",
       "span_id", "parent_span_id", "attributes", "resource")  # fmt: skip


def stored(path: Path) -> Rows:
    """Every row of the database at ``path``, as ``Rows`` (read back through an exact scan)."""
    with Database.open(path) as db:
        s = db.scan(list(ALL))
    c = s.columns
    return Rows(
        np.array([s.names[i] for i in c["name"].tolist()], dtype=object), c["start"],
        c["duration"], c["status"], c["kind"],
        np.array([s.services[i] for i in c["service"].tolist()], dtype=object),
        c["trace_hi"], c["trace_lo"], c["span_id"], c["parent_span_id"],
        np.array([s.attributes[i] for i in c["attributes"].tolist()], dtype=object),
        np.array([s.resources[i] for i in c["resource"].tolist()], dtype=object),
    )  # fmt: skip


def as_set(rows: Rows) -> list[tuple[Any, ...]]:
    return sorted(zip(*(getattr(rows, f).tolist() for f in Rows.FIELDS), strict=True))


@dataclass
class SpanRoads:
    sdk: Path
    otlp: Path
    truth: Rows


def _emit(provider: TracerProvider, rng: np.random.Generator, n: int) -> Rows:
    """``n`` spans with explicit times (a root and children per trace); returns their rows."""
    tracer = provider.get_tracer("oracle")
    kinds = [SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER,
             SpanKind.CONSUMER]  # fmt: skip
    cols: dict[str, list[Any]] = {f: [] for f in Rows.FIELDS}
    start = BASE
    parent_ctx = None
    parent_id = 0
    resource = canonical_attributes(dict(provider.resource.attributes))  # the whole resource
    for i in range(n):
        name = NAMES[int(rng.integers(0, len(NAMES)))]
        start += int(rng.integers(1, 5_000_000))
        duration = int(rng.choice([0, int(rng.lognormal(13, 1)), 1_000_000]))
        kind = kinds[int(rng.integers(0, 5))]
        attrs: dict[str, Any] = {"route": ["/a", "/b"][i % 2]}
        if i % 3 == 0:
            attrs["code"] = 500 if i % 2 else 200
        status = int(rng.choice([0, 1, 2]))
        root = i % 4 == 0
        ctx = None if root else parent_ctx
        span = tracer.start_span(name, context=ctx, kind=kind, attributes=attrs, start_time=start)
        if status:
            span.set_status(Status(StatusCode.ERROR if status == 2 else StatusCode.OK))
        span.end(end_time=start + duration)
        sc = span.get_span_context()
        if root:
            parent_ctx, parent_id = trace.set_span_in_context(span), sc.span_id
        cols["name"].append(name)
        cols["start"].append(start)
        cols["duration"].append(duration)
        cols["status"].append(status)
        cols["kind"].append(kind.value)
        cols["service"].append("ingest")
        cols["trace_hi"].append(sc.trace_id >> 64)
        cols["trace_lo"].append(sc.trace_id & ((1 << 64) - 1))
        cols["span_id"].append(sc.span_id)
        cols["parent_span_id"].append(0 if root else parent_id)
        cols["attributes"].append(canonical_attributes(attrs))
        cols["resource"].append(resource)
    dtypes = {"start": np.int64, "duration": np.int64, "status": np.uint8, "kind": np.uint8,
              "trace_hi": np.uint64, "trace_lo": np.uint64, "span_id": np.uint64,
              "parent_span_id": np.uint64}  # fmt: skip
    return Rows(**{f: np.array(v, dtype=dtypes.get(f, object)) for f, v in cols.items()})


@pytest.fixture(scope="module")
def roads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpanRoads]:
    work = tmp_path_factory.mktemp("ingest")
    sdk_db = Database.open(work / "sdk", chunk_rows=64)
    otlp_db = Database.open(work / "otlp", chunk_rows=64)
    with KroniclerServer(otlp_db, ServerOptions(address="127.0.0.1:0")) as server:
        provider = TracerProvider(resource=Resource.create({"service.name": "ingest"}))
        provider.add_span_processor(BatchSpanProcessor(KroniclerSpanExporter(sdk_db),
                                                       max_export_batch_size=100))  # fmt: skip
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=server.address, insecure=True), max_export_batch_size=100))  # fmt: skip
        truth = _emit(provider, np.random.default_rng(9), 1500)
        assert provider.force_flush(30_000)
        provider.shutdown()
        assert otlp_db.flush(30) and sdk_db.flush(30)
    sdk_db.close()
    otlp_db.close()
    yield SpanRoads(work / "sdk", work / "otlp", truth)


@pytest.mark.parametrize("road", ["sdk", "otlp"])
def test_spans_are_stored_exactly(roads: SpanRoads, road: str) -> None:
    got = stored(getattr(roads, road))
    assert len(got) == len(roads.truth)
    assert as_set(got) == as_set(roads.truth)


@pytest.mark.parametrize("road", ["sdk", "otlp"])
def test_queries_on_ingested_spans(roads: SpanRoads, road: str) -> None:
    failures = Failures()
    with Database.open(getattr(roads, road)) as db:
        api = PythonApi(db)
        for q in standard_queries(roads.truth):
            if any(not f.startswith(("http", "db", "cache", "*", "?")) for f in q.functions):
                continue
            for exact in (False, True):
                failures.check(f"stats exact={exact} {q.label()}", lambda q=q, exact=exact:
                               check_table(api.stats(q, exact=exact), "function",
                                           expected_stats(roads.truth, q),
                                           (0.5, 0.9, 0.99), exact, road))  # fmt: skip

            def slowest(q: Any = q) -> None:
                assert api.slowest(q, 5) == expected_slowest(roads.truth, q, 5)

            failures.check(f"slowest {q.label()}", slowest)
    failures.assert_none()


def test_sdk_and_otlp_store_the_same_row_for_the_same_span(tmp_path: Path) -> None:
    """Exception events and a resource without ``service.name``: one row contract."""
    sdk_db = Database.open(tmp_path / "sdk")
    otlp_db = Database.open(tmp_path / "otlp")
    with KroniclerServer(otlp_db, ServerOptions(address="127.0.0.1:0")) as server:
        for resource in (Resource.create({"service.name": "named"}), Resource({})):
            provider = TracerProvider(resource=resource)
            provider.add_span_processor(BatchSpanProcessor(KroniclerSpanExporter(sdk_db)))
            provider.add_span_processor(BatchSpanProcessor(
                OTLPSpanExporter(endpoint=server.address, insecure=True)))  # fmt: skip
            tracer = provider.get_tracer("oracle")
            for i in range(20):
                span = tracer.start_span("job.run", start_time=BASE + i, attributes={"i": i})
                if i % 2:
                    span.record_exception(KeyError(f"missing {i}"))
                    span.set_status(Status(StatusCode.ERROR))
                span.end(end_time=BASE + i + 1000)
            assert provider.force_flush(30_000)
            provider.shutdown()
        assert otlp_db.flush(30) and sdk_db.flush(30)
    sdk_db.close()
    otlp_db.close()
    sdk, otlp = stored(tmp_path / "sdk"), stored(tmp_path / "otlp")
    assert len(sdk) == len(otlp) == 40
    assert sorted(set(sdk.service.tolist())) == sorted(set(otlp.service.tolist()))
    assert as_set(sdk) == as_set(otlp)


WORKLOAD = """
import os, sys
import kronicler

if sys.argv[1] == "sdk":
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from kronicler.otel.exporter import KroniclerSpanExporter

    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(KroniclerSpanExporter(sys.argv[2])))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=sys.argv[3], insecure=True)))
    trace.set_tracer_provider(provider)

@kronicler.capture
def ok(i):
    return i

@kronicler.capture
def fails(i):
    raise ValueError(f"bad {i}")

@kronicler.capture
def outer(i):
    ok(i)
    return ok(i + 1)

for i in range(300):
    ok(i)
for i in range(50):
    try:
        fails(i)
    except ValueError:
        pass
for i in range(100):
    outer(i)
if sys.argv[1] == "sdk":
    assert provider.force_flush(30_000)
    provider.shutdown()
"""


def _summary(rows: Rows) -> dict[str, Any]:
    """What all three roads must agree on (durations are measured, so not those)."""
    names = rows.name.tolist()
    outer_ids = {(int(rows.trace_hi[i]), int(rows.trace_lo[i]), int(rows.span_id[i]))
                 for i in range(len(rows)) if names[i] == "__main__.outer"}  # fmt: skip
    nested = sum(
        1 for i in range(len(rows))
        if names[i] == "__main__.ok"
        and (int(rows.trace_hi[i]), int(rows.trace_lo[i]), int(rows.parent_span_id[i]))
        in outer_ids
    )  # fmt: skip
    errors = Counter(n for n, s in zip(names, rows.status.tolist(), strict=True) if s == 2)
    exc = Counter(rows.attrs(i).get("exception.type") for i in range(len(rows)))
    return {
        "calls": dict(Counter(names)), "errors": dict(errors), "services": set(rows.service),
        "nested": nested, "unique span ids": len(set(rows.span_id.tolist())),
        "exception types": dict(exc),
    }  # fmt: skip


def test_zero_config_capture_agrees_with_the_sdk_and_otlp_roads(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONICLER_", "OTEL_"))}
    env.update(PYTHONPATH=str(ROOT), OTEL_SERVICE_NAME="oracle-svc",
               KRONICLER_PATH=str(tmp_path / "fast"))  # fmt: skip
    script = tmp_path / "work.py"
    script.write_text(textwrap.dedent(WORKLOAD))
    proc = subprocess.run([sys.executable, str(script), "fast"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    otlp_db = Database.open(tmp_path / "otlp")
    with KroniclerServer(otlp_db, ServerOptions(address="127.0.0.1:0")) as server:
        proc = subprocess.run(
            [sys.executable, str(script), "sdk", str(tmp_path / "sdk"), server.address],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert otlp_db.flush(30)
    otlp_db.close()
    fast = stored(tmp_path / "fast")
    want = {
        "calls": {"__main__.ok": 500, "__main__.fails": 50, "__main__.outer": 100},
        "errors": {"__main__.fails": 50}, "services": {"oracle-svc"}, "nested": 200,
        "unique span ids": 650, "exception types": {None: 600, "ValueError": 50},
    }  # fmt: skip
    assert _summary(fast) == want
    failures = Failures()
    for road in ("sdk", "otlp"):
        failures.check(road, lambda road=road: _same_summary(stored(tmp_path / road), want))
    with Database.open(tmp_path / "fast") as db:
        api = PythonApi(db)
        for q in standard_queries(fast):
            if q.functions and not all(f.startswith("__main__") for f in q.functions):
                continue
            for exact in (False, True):
                failures.check(f"fast stats exact={exact} {q.label()}", lambda q=q, exact=exact:
                               check_table(api.stats(q, exact=exact), "function",
                                           expected_stats(fast, q), (0.5, 0.99), exact,
                                           "capture"))  # fmt: skip
            failures.check(f"fast slowest {q.label()}", lambda q=q: _same_list(
                api.slowest(q, 5), expected_slowest(fast, q, 5)))  # fmt: skip
    failures.assert_none()


def _same_summary(rows: Rows, want: dict[str, Any]) -> None:
    got = _summary(rows)
    assert got == want, f"\n got {got}\nwant {want}"


def _same_list(got: list[Any], want: list[Any]) -> None:
    assert got == want, f"\n got {got}\nwant {want}"
