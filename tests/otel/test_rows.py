"""ReadableSpan -> rows: every field of a real SDK span lands in the right column."""

from __future__ import annotations

import dataclasses

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from kronicler.db.schema import parse_attributes
from kronicler.otel.rows import spans_to_batch


def _spans(resource: Resource | None = None) -> tuple[trace.Tracer, InMemorySpanExporter]:
    provider = TracerProvider(resource=resource or Resource.create({"service.name": "shop"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider.get_tracer("t"), memory


def test_fields_of_a_small_trace() -> None:
    tracer, memory = _spans()
    with (
        tracer.start_as_current_span("outer", kind=SpanKind.SERVER, attributes={"route": "/x"}),
        tracer.start_as_current_span("inner", attributes={"n": 3, "tags": ["a", "b"]}) as s,
    ):
        s.set_status(Status(StatusCode.OK))
    with pytest.raises(KeyError), tracer.start_as_current_span("failing"):
        raise KeyError("missing")
    spans = memory.get_finished_spans()
    batch = spans_to_batch(spans)
    assert batch.names == ["inner", "outer", "failing"]
    assert batch.services == ["shop"] * 3
    assert batch.kind.tolist() == [0, 1, 0]
    assert batch.status.tolist() == [1, 0, 2]
    for i, span in enumerate(spans):
        assert span.start_time is not None and span.end_time is not None
        assert batch.start[i] == span.start_time
        assert batch.duration[i] == span.end_time - span.start_time
        assert int(batch.trace_hi[i]) << 64 | int(batch.trace_lo[i]) == span.context.trace_id
        assert batch.span_id[i] == span.context.span_id
        assert batch.parent_span_id[i] == (span.parent.span_id if span.parent else 0)
    assert batch.parent_span_id[0] == batch.span_id[1]
    assert parse_attributes(batch.attributes[0]) == {"n": 3, "tags": ["a", "b"]}
    assert parse_attributes(batch.attributes[1]) == {"route": "/x"}
    assert parse_attributes(batch.attributes[2]) == {
        "exception.type": "KeyError", "exception.message": "'missing'",
    }  # fmt: skip


def test_service_falls_back_to_the_default() -> None:
    tracer, memory = _spans(Resource({}))
    with tracer.start_as_current_span("x"):
        pass
    assert spans_to_batch(memory.get_finished_spans(), default_service="dflt").services == ["dflt"]


def test_repeated_attribute_sets_share_text_and_unhashable_values_work() -> None:
    tracer, memory = _spans()
    for _ in range(3):
        with tracer.start_as_current_span("x", attributes={"k": "v"}):
            pass
    batch = spans_to_batch(memory.get_finished_spans())
    assert len(set(batch.attributes)) == 1
    assert spans_to_batch([]).names == []


def test_remote_parent_keeps_its_ids() -> None:
    tracer, memory = _spans()
    parent = trace.SpanContext(0xABC, 0xDEF, is_remote=True,
                               trace_flags=trace.TraceFlags(1))  # fmt: skip
    ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent))
    with tracer.start_as_current_span("child", context=ctx):
        pass
    batch = spans_to_batch(memory.get_finished_spans())
    assert (int(batch.trace_hi[0]), int(batch.trace_lo[0])) == (0, 0xABC)
    assert batch.parent_span_id[0] == 0xDEF


def test_fast_assembly_equals_a_validated_batch() -> None:
    from kronicler.db.schema import SpanBatch

    tracer, memory = _spans()
    for i in range(20):
        with tracer.start_as_current_span(f"n{i % 3}", attributes={"i": i % 4}) as s:
            if i % 7 == 0:
                s.record_exception(ValueError("x"))
                s.set_status(Status(StatusCode.ERROR))
    batch = spans_to_batch(memory.get_finished_spans())
    again = SpanBatch.build(
        batch.names, batch.start, batch.duration, status=batch.status, kind=batch.kind,
        service=batch.services, trace_id=[int(h) << 64 | int(lo) for h, lo in
                                          zip(batch.trace_hi, batch.trace_lo, strict=True)],
        span_id=batch.span_id, parent_span_id=batch.parent_span_id, attributes=batch.attributes,
        resource=batch.resources,
    )  # fmt: skip
    for field in (f.name for f in dataclasses.fields(SpanBatch)):
        a, b = getattr(batch, field), getattr(again, field)
        assert type(a) is type(b), field
        if hasattr(a, "dtype"):
            assert a.dtype == b.dtype and a.tolist() == b.tolist(), field
        else:
            assert a == b, field


class _OddSpan:
    """Not an SDK span, only the ReadableSpan public surface: the public path is used."""

    def __init__(self, span: object) -> None:
        self._span = span

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._span, name)


def test_spans_without_sdk_internals_use_the_public_api() -> None:
    tracer, memory = _spans()
    with tracer.start_as_current_span("a", attributes={"k": 1}):
        pass
    [real] = memory.get_finished_spans()
    plain = spans_to_batch([real])
    odd = spans_to_batch([_OddSpan(real)])  # type: ignore[list-item]  # not a ReadableSpan, on purpose
    assert odd.names == plain.names and odd.attributes == plain.attributes
    assert odd.span_id.tolist() == plain.span_id.tolist()
    assert odd.start.tolist() == plain.start.tolist()
