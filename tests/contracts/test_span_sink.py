"""The ``SpanSink`` contract, run against every implementation.

A sink is what the capture pipeline, the SDK exporter, the OTLP receivers and the ingest workers
write span rows to (:mod:`kronicler.db.sink`). Every implementation must: take a batch whole and
return its row count; make taken rows durable and readable on ``flush`` (read back here through a
separate read-only handle on the directory); refuse a batch whole, uncounted, when full and asked
not to block; wait for room when blocking (at most ``timeout``, then ``WriteTimeoutError`` with
nothing stored); count in ``dropped`` only rows taken and then lost; raise ``ClosedError`` once
closed; and flush on ``close``. The producers (exporter, receiver) are run against each sink too.

An implementation joins the suite by adding a factory to ``SINKS``: it takes a directory and a
queue capacity in rows and returns an open sink whose rows a ``Database`` on that directory reads.

The rows the producers hand over are held to their own contract elsewhere: the three span
converters (fast path, SDK span, OTLP) give identical rows for the same spans, in
``tests/otel/test_contract.py`` (unit by unit) and ``tests/otel/test_contract_roads.py`` (the
three whole roads, in fresh processes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from kronicler.db import Database, SpanBatch
from kronicler.db.sink import SpanSink
from kronicler.errors import ClosedError, WriteTimeoutError
from kronicler.otel.exporter import KroniclerSpanExporter
from kronicler.otel.receiver import store_request

BASE_NS = 1_700_000_000_000_000_000


def _database(path: Path, queue_rows: int) -> SpanSink:
    return Database.open(path, queue_rows=queue_rows, chunk_rows=256)


SINKS: dict[str, Callable[[Path, int], SpanSink]] = {"database": _database}


@pytest.fixture(params=list(SINKS))
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., SpanSink]]:
    opened: list[SpanSink] = []

    def make(queue_rows: int = 10_000) -> SpanSink:
        sink = SINKS[request.param](tmp_path / "db", queue_rows)
        opened.append(sink)
        return sink

    yield make
    for sink in opened:
        sink.close()


def batch(n: int, name: str = "f", offset: int = 0) -> SpanBatch:
    return SpanBatch.build([name] * n, BASE_NS + offset + np.arange(n), np.full(n, 1000))


def stored(path: Path, name: str | None = None) -> int:
    """Rows a separate read-only handle finds on disk (of ``name``, or of every function)."""
    with Database.open(path, readonly=True) as db:
        counts = {n: s.count for n, s in db.stats().items()}
    return counts.get(name, 0) if name is not None else sum(counts.values())


def test_a_database_is_a_span_sink(make: Callable[..., SpanSink]) -> None:
    assert isinstance(make(), SpanSink)


def test_append_takes_the_batch_whole_and_flush_makes_it_readable(
    make: Callable[..., SpanSink], tmp_path: Path
) -> None:
    sink = make()
    assert sink.append_batch(batch(7)) == 7
    assert sink.append_batch(batch(5, "g"), block=False) == 5
    assert sink.append_batch(batch(0)) == 0
    assert sink.flush(timeout=30) is True
    assert stored(tmp_path / "db", "f") == 7 and stored(tmp_path / "db", "g") == 5
    assert sink.dropped == 0
    assert sink.flush(timeout=30) is True  # nothing new: still clean


def test_a_full_sink_refuses_a_batch_whole_without_blocking_and_counts_nothing(
    make: Callable[..., SpanSink], tmp_path: Path
) -> None:
    sink = make(queue_rows=100)
    taken = []
    for i in range(5000):  # each batch fills most of the queue; a refusal comes quickly
        taken.append(sink.append_batch(batch(60, offset=i * 60), block=False))
        if taken[-1] == 0:
            break
    assert set(taken) == {0, 60}  # whole or nothing, and some refused
    assert sink.flush(timeout=30)
    assert stored(tmp_path / "db") == sum(taken)
    assert sink.dropped == 0  # a refusal is not a loss: the caller still holds the rows


def test_blocking_appends_wait_for_room_and_lose_nothing(
    make: Callable[..., SpanSink], tmp_path: Path
) -> None:
    sink = make(queue_rows=100)
    results: list[int] = []

    def produce(k: int) -> None:
        results.extend(sink.append_batch(batch(60, f"t{k}", offset=i * 60)) for i in range(40))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [60] * 120
    assert sink.flush(timeout=30)
    assert [stored(tmp_path / "db", f"t{k}") for k in range(3)] == [2400] * 3
    assert sink.dropped == 0


def test_a_blocking_append_gives_up_after_its_timeout_having_stored_nothing_of_the_batch(
    make: Callable[..., SpanSink], tmp_path: Path
) -> None:
    sink = make(queue_rows=100)
    accepted = refused = 0
    for i in range(5000):
        try:
            accepted += sink.append_batch(batch(60, offset=i * 60), timeout=0)
        except WriteTimeoutError:
            refused += 1
            if refused == 3:
                break
    assert refused == 3
    assert sink.flush(timeout=30)
    assert stored(tmp_path / "db") == accepted and sink.dropped == 0


def test_a_bad_timeout_is_a_value_error_naming_it(make: Callable[..., SpanSink]) -> None:
    sink = make()
    with pytest.raises(ValueError, match="-1"):
        sink.append_batch(batch(1), timeout=-1)


def test_close_flushes_is_idempotent_and_then_refuses_appends(
    make: Callable[..., SpanSink], tmp_path: Path
) -> None:
    sink = make()
    assert sink.append_batch(batch(9)) == 9
    sink.close()  # no flush before: close makes the rows durable itself
    sink.close()
    assert stored(tmp_path / "db") == 9
    for block in (True, False):
        with pytest.raises(ClosedError):
            sink.append_batch(batch(1), block=block)
    assert sink.dropped == 0


# -- the producers, over every sink --------------------------------------------------------------
def test_the_sdk_exporter_writes_to_the_sink_and_leaves_it_open(
    make: Callable[..., SpanSink], tmp_path: Path
) -> None:
    sink = make()
    exporter = KroniclerSpanExporter(sink)
    assert exporter.database is sink
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("contract")
    with tracer.start_as_current_span("sdk.outer"), tracer.start_as_current_span("sdk.inner"):
        pass
    provider.shutdown()  # flushes the sink, does not close it (the exporter does not own it)
    assert stored(tmp_path / "db") == 2
    assert sink.append_batch(batch(1)) == 1
    assert exporter.export([]) is SpanExportResult.FAILURE  # after shutdown, as every exporter


def test_the_otlp_receiver_stores_a_request_whole_into_the_sink(
    make: Callable[..., SpanSink], tmp_path: Path
) -> None:
    sink = make()
    spans = [
        trace_pb2.Span(trace_id=bytes(range(1, 17)), span_id=bytes([i] * 8), name=f"otlp.{i}",
                       start_time_unix_nano=BASE_NS + i, end_time_unix_nano=BASE_NS + 100 + i)
        for i in range(1, 4)
    ]  # fmt: skip
    service = common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="s"))
    request = otlp.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=resource_pb2.Resource(attributes=[service]),
        scope_spans=[trace_pb2.ScopeSpans(spans=spans)])])  # fmt: skip
    assert store_request(sink, request) == ("ok", 0, "")
    assert sink.flush(timeout=30)
    assert stored(tmp_path / "db") == 3
    sink.close()
    assert store_request(sink, request)[0] == "retry"  # a closed sink: the exporter retries
