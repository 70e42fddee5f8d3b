"""@kronicler.capture with a global OpenTelemetry SDK provider, and the two ways compared."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import kronicler
from kronicler.otel import KroniclerSpanExporter
from tests.otel.helpers import SERVICE, Store, read_rows, reset_global_provider

pytest_plugins = ["tests.otel.fixtures"]

HERE = __name__

SDK = tuple[TracerProvider, InMemorySpanExporter]


# -- a workload touching every path ------------------------------------------------------------
@kronicler.capture(attributes={"layer": "api"}, kind=SpanKind.SERVER)
def handle(i: int) -> int:
    trace.get_current_span().set_attribute("request.index", i % 2)
    total = sum(step(j) for j in range(2))
    try:
        risky(i)
    except LookupError:
        pass
    return total + sum(items(2))


@kronicler.capture
def step(j: int) -> int:
    return j


@kronicler.capture
def risky(i: int) -> None:
    if i % 2:
        raise LookupError(f"no item {i % 2}")


@kronicler.capture
def items(n: int) -> Iterator[int]:
    yield from range(n)


@kronicler.capture
async def background() -> int:
    await asyncio.sleep(0)
    return step(5)


def workload() -> None:
    for i in range(4):
        handle(i)
    asyncio.run(background())


def comparable(rows: list[dict[str, Any]]) -> Counter[Any]:
    """Rows without ids and times: what must agree between the two ways."""
    by_span = {r["span_id"]: r for r in rows}
    out: Counter[Any] = Counter()
    for r in rows:
        parent = by_span.get(r["parent_span_id"])
        out[(
            r["name"], r["status"], r["kind"], r["service"],
            tuple(sorted((k, str(v)) for k, v in r["attributes"].items())),
            parent["name"] if parent else None,
            parent is not None and parent["trace_id"] == r["trace_id"],
        )] += 1  # fmt: skip
    return out


# -- tests -------------------------------------------------------------------------------------
def test_sdk_spans_carry_name_kind_attributes_and_parents(sdk: SDK, store: Store) -> None:
    _, memory = sdk
    handle(1)
    spans = {s.name: s for s in memory.get_finished_spans()}
    assert set(spans) == {f"{HERE}.{n}" for n in ("handle", "step", "risky", "items")}
    top = spans[f"{HERE}.handle"]
    assert top.kind is SpanKind.SERVER
    assert top.attributes is not None and top.instrumentation_scope is not None
    assert top.attributes["layer"] == "api" and top.attributes["request.index"] == 1
    assert top.attributes["code.function.name"] == f"{HERE}.handle"
    assert top.instrumentation_scope.name == "kronicler"
    for name in ("step", "risky", "items"):
        child = spans[f"{HERE}.{name}"]
        assert child.parent is not None
        assert child.parent.span_id == top.context.span_id
        assert child.context.trace_id == top.context.trace_id
    assert store.rows() == []  # the SDK route does not write to the default pipeline


def test_sdk_exceptions_are_events_with_error_status(sdk: SDK) -> None:
    _, memory = sdk
    with pytest.raises(LookupError):
        risky(1)
    [span] = memory.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "LookupError: no item 1"
    [event] = span.events
    assert event.name == "exception" and event.attributes is not None
    assert event.attributes["exception.type"] == "LookupError"


def test_sdk_generator_span_is_current_only_inside(sdk: SDK) -> None:
    _, memory = sdk

    @kronicler.capture
    def gen() -> Iterator[Any]:
        yield trace.get_current_span()

    inside = list(gen())
    assert trace.get_current_span() is trace.INVALID_SPAN
    [span] = memory.get_finished_spans()
    assert inside[0].get_span_context() == span.context


def test_provider_set_mid_call_continues_the_trace(store: Store) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(memory))

    @kronicler.capture
    def outer() -> Any:
        reset_global_provider()
        trace.set_tracer_provider(provider)
        step(1)  # now through the SDK
        return trace.get_current_span().get_span_context()

    try:
        ours = outer()
    finally:
        provider.shutdown()
        reset_global_provider()
    [span] = memory.get_finished_spans()
    assert span.parent is not None
    assert span.parent.span_id == ours.span_id and span.context.trace_id == ours.trace_id
    [row] = store.rows()
    assert row["span_id"] == ours.span_id


def test_both_ways_store_the_same_rows(tmp_path: Path, store: Store) -> None:
    workload()
    zero_config = store.rows()

    reset_global_provider()
    exporter = KroniclerSpanExporter(tmp_path / "sdk")
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        workload()
    finally:
        provider.shutdown()
        reset_global_provider()
    via_sdk = read_rows(tmp_path / "sdk")

    assert len(zero_config) == len(via_sdk) == 4 * 5 + 2
    assert comparable(zero_config) == comparable(via_sdk)
    errors = [r for r in zero_config if r["status"] == 2]
    assert len(errors) == 2
    assert errors[0]["attributes"]["exception.message"] == "no item 1"


def test_kronicler_exporter_on_the_global_provider_stores_capture_spans(
    tmp_path: Path, store: Store
) -> None:
    reset_global_provider()
    provider = TracerProvider(resource=Resource.create({"service.name": "with-sdk"}))
    provider.add_span_processor(SimpleSpanProcessor(KroniclerSpanExporter(tmp_path / "db")))
    trace.set_tracer_provider(provider)
    try:
        handle(0)
        with trace.get_tracer("other.lib").start_as_current_span("auto.instrumented"):
            step(3)
    finally:
        provider.shutdown()
        reset_global_provider()
    rows = read_rows(tmp_path / "db")
    names = Counter(r["name"] for r in rows)
    assert names["auto.instrumented"] == 1 and names[f"{HERE}.step"] == 3
    assert {r["service"] for r in rows} == {"with-sdk"}
    auto = next(r for r in rows if r["name"] == "auto.instrumented")
    child = next(r for r in rows if r["parent_span_id"] == auto["span_id"])
    assert child["name"] == f"{HERE}.step"
