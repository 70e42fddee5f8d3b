"""KroniclerSpanExporter behind real SDK processors: stores spans, never raises."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kronicler.db import Database
from kronicler.otel import KroniclerSpanExporter
from tests.otel.helpers import read_rows


def _provider(*exporters: SpanExporter, batch: bool = False) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "api"}))
    for exporter in exporters:
        cls = BatchSpanProcessor if batch else SimpleSpanProcessor
        provider.add_span_processor(cls(exporter))
    return provider


def test_is_a_span_exporter_and_stores_batched_spans(tmp_path: Path) -> None:
    exporter = KroniclerSpanExporter(tmp_path / "db")
    assert isinstance(exporter, SpanExporter)
    provider = _provider(exporter, batch=True)
    tracer = provider.get_tracer("t")
    for i in range(1000):
        with tracer.start_as_current_span("work", attributes={"i": i % 2}):
            pass
    assert provider.force_flush()
    provider.shutdown()
    rows = read_rows(tmp_path / "db")
    assert len(rows) == 1000
    assert {r["name"] for r in rows} == {"work"}
    assert {r["service"] for r in rows} == {"api"}
    assert {r["attributes"]["i"] for r in rows} == {0, 1}


def test_same_rows_as_the_spans_it_was_given(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    provider = _provider(memory, KroniclerSpanExporter(tmp_path / "db"))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("a"), tracer.start_as_current_span("b"):
        pass
    provider.shutdown()
    spans = {s.context.span_id: s for s in memory.get_finished_spans()}
    for row in read_rows(tmp_path / "db"):
        span = spans.pop(row["span_id"])
        assert span.start_time is not None and span.end_time is not None
        assert row["name"] == span.name
        assert row["start"] == span.start_time
        assert row["duration"] == span.end_time - span.start_time
        assert row["trace_id"] == span.context.trace_id
        assert row["parent_span_id"] == (span.parent.span_id if span.parent else 0)
    assert not spans


def test_failure_after_shutdown_and_never_raises(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    provider = _provider(memory)
    with provider.get_tracer("t").start_as_current_span("x"):
        pass
    spans = memory.get_finished_spans()

    exporter = KroniclerSpanExporter(tmp_path / "db")
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.export([]) is SpanExportResult.SUCCESS
    assert exporter.force_flush()
    exporter.shutdown()
    exporter.shutdown()  # idempotent
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert exporter.force_flush() is False

    db = Database.open(tmp_path / "other")
    borrowed = KroniclerSpanExporter(db)
    db.close()  # closed under the exporter: storing fails, nothing raises
    assert borrowed.export(spans) is SpanExportResult.FAILURE
    # a wrong item type on purpose: export reports FAILURE rather than raising
    assert borrowed.export(["not a span"]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    borrowed.shutdown()


def test_borrowed_database_stays_open(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    provider = _provider(memory)
    with provider.get_tracer("t").start_as_current_span("x"):
        pass
    with Database.open(tmp_path / "db") as db:
        exporter = KroniclerSpanExporter(db)
        assert exporter.export(memory.get_finished_spans()) is SpanExportResult.SUCCESS
        exporter.shutdown()
        assert db.flush()
        assert db.functions() == ["x"]


def test_bad_target_is_a_value_error() -> None:
    import pytest

    with pytest.raises(ValueError, match="42"):
        KroniclerSpanExporter(42)  # type: ignore[arg-type]  # a wrong type on purpose


def test_a_batch_processor_faster_than_the_database_loses_no_span(tmp_path: Path) -> None:
    # A write queue far smaller than one export batch: export waits for room, never fails.
    with Database.open(tmp_path / "db", queue_rows=50) as db:
        exporter = KroniclerSpanExporter(db)
        provider = TracerProvider(resource=Resource.create({"service.name": "api"}))
        provider.add_span_processor(
            BatchSpanProcessor(exporter, max_queue_size=20_000, max_export_batch_size=512)
        )
        tracer = provider.get_tracer("t")
        for _ in range(10_000):
            with tracer.start_as_current_span("work"):
                pass
        assert provider.force_flush(60_000)
        provider.shutdown()
        assert db.flush()
        assert db.stats("work").count == 10_000
        assert exporter.dropped == 0 and db.dropped == 0
