"""How a captured call and OpenTelemetry's context see each other.

A captured call is current as a cheap frame; OTel's API turns it into a span and a ``Context``
only when asked. These stories hold that laziness to what the API promised before: parents in
both directions, contexts attached inside a call, copied contexts, and spans asked for late.
"""

from __future__ import annotations

import contextvars
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import kronicler
from kronicler.otel import current
from tests.otel.helpers import Store

pytest_plugins = ["tests.otel.fixtures"]

HERE = __name__
ROOT = Path(__file__).resolve().parents[1]


def by_name(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["name"] == name]


@kronicler.capture
def leaf() -> trace.Span:
    return trace.get_current_span()


def test_a_user_sdk_span_sits_between_captured_calls_both_ways(store: Store) -> None:
    """captured -> user's SDK span (a provider of their own) -> captured, then captured again."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "user"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    user = provider.get_tracer("user.code")

    @kronicler.capture
    def handler() -> None:
        with user.start_as_current_span("user.op"):
            leaf()
        leaf()  # the user's span has ended and is detached: our call is the parent again

    try:
        handler()
    finally:
        provider.shutdown()
    [op] = memory.get_finished_spans()
    rows = store.rows()
    [outer] = by_name(rows, f"{HERE}.test_a_user_sdk_span_sits_between_captured_calls_both_ways"
                      ".<locals>.handler")  # fmt: skip
    first, second = by_name(rows, f"{HERE}.leaf")
    assert op.parent is not None and op.parent.span_id == outer["span_id"]
    assert op.context.trace_id == outer["trace_id"]
    assert (first["parent_span_id"], first["trace_id"]) == (op.context.span_id, outer["trace_id"])
    assert (second["parent_span_id"], second["trace_id"]) == (outer["span_id"], outer["trace_id"])


def test_a_captured_call_under_a_user_span_continues_its_trace(store: Store) -> None:
    provider = TracerProvider()
    user = provider.get_tracer("user.code")
    with user.start_as_current_span("request") as request:
        span = leaf()
    provider.shutdown()
    [row] = store.rows()
    assert row["trace_id"] == request.get_span_context().trace_id
    assert row["parent_span_id"] == request.get_span_context().span_id
    assert span.get_span_context().span_id == row["span_id"]


def test_the_span_and_context_are_made_only_when_asked_and_then_kept(store: Store) -> None:
    seen: dict[str, Any] = {}

    @kronicler.capture
    def handler() -> None:
        frame = current.value_get()
        seen["before"] = frame[current.SPAN]
        first, again = otel_context.get_current(), otel_context.get_current()
        seen["same_context"] = first is again
        seen["span"] = trace.get_current_span()
        seen["made"] = frame[current.SPAN]
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        seen["carrier"] = carrier

    handler()
    assert seen["before"] is None
    assert seen["same_context"] and seen["made"] is seen["span"]
    [row] = store.rows()
    assert seen["carrier"]["traceparent"] == f"00-{row['trace_id']:032x}-{row['span_id']:016x}-01"


def test_a_context_left_attached_inside_a_call_is_undone_when_it_returns(store: Store) -> None:
    key = otel_context.create_key("left.behind")

    @kronicler.capture
    def leaky() -> None:
        otel_context.attach(otel_context.set_value(key, "v"))  # never detached

    leaky()
    assert otel_context.get_value(key) is None
    assert trace.get_current_span() is trace.INVALID_SPAN
    leaf()
    rows = store.rows()
    assert by_name(rows, f"{HERE}.leaf")[0]["parent_span_id"] == 0


def test_a_span_asked_for_after_its_call_ended_is_ended(store: Store) -> None:
    @kronicler.capture
    def spawn() -> contextvars.Context:
        return contextvars.copy_context()  # as asyncio does for a task made inside the call

    later = spawn()
    span = later.run(trace.get_current_span)
    assert not span.is_recording()
    span.set_attribute("too.late", 1)
    child = later.run(leaf)  # a call in that context is still the ended call's child
    rows = store.rows()
    [parent] = by_name(rows, f"{HERE}.test_a_span_asked_for_after_its_call_ended_is_ended"
                       ".<locals>.spawn")  # fmt: skip
    [kid] = by_name(rows, f"{HERE}.leaf")
    assert span.get_span_context().span_id == parent["span_id"]
    assert "too.late" not in parent["attributes"]
    assert kid["parent_span_id"] == parent["span_id"]
    assert child.get_span_context().trace_id == parent["trace_id"]


def test_a_copied_context_in_another_thread_sees_the_same_span(store: Store) -> None:
    seen: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def other() -> trace.Span:
        barrier.wait()  # both threads ask at about the same moment
        span = trace.get_current_span()
        span.set_attribute("from.thread", True)
        return span

    @kronicler.capture
    def handler() -> None:
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(contextvars.copy_context().run, other)
            barrier.wait()
            seen["mine"] = trace.get_current_span()
            seen["theirs"] = future.result()

    handler()
    assert seen["mine"] is seen["theirs"]
    [row] = store.rows()
    assert row["attributes"]["from.thread"] is True


def test_generator_frames_parent_the_calls_made_inside(store: Store) -> None:
    @kronicler.capture
    def numbers() -> Any:
        yield leaf()
        yield leaf()

    spans = list(numbers())
    rows = store.rows()
    [gen] = by_name(rows, f"{HERE}.test_generator_frames_parent_the_calls_made_inside"
                    ".<locals>.numbers")  # fmt: skip
    kids = by_name(rows, f"{HERE}.leaf")
    assert [k["parent_span_id"] for k in kids] == [gen["span_id"]] * 2
    assert {s.get_span_context().trace_id for s in spans} == {gen["trace_id"]}


def test_a_context_attached_before_kronicler_was_imported_detaches_cleanly(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        """
        import logging, sys
        from opentelemetry import context
        logging.basicConfig(level=logging.ERROR)
        key = context.create_key("early")
        token = context.attach(context.set_value(key, 1))
        import kronicler
        from opentelemetry import trace

        @kronicler.capture
        def work():
            return context.get_value(key), trace.get_current_span().is_recording()

        assert work() == (1, True)
        context.detach(token)
        assert context.get_value(key) is None
        assert kronicler.flush(10.0) and kronicler.status().stored == 1
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KRONICLER_PATH": str(tmp_path / "db")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert "Failed to detach" not in done.stderr, done.stderr
