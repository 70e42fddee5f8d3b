"""The C conversion loop (kronicler/otel/_fastrows.c) against the pure-Python road it replaces.

Every batch is converted twice in one process, once with the C loop and once without it, each
with its own fresh attribute memo, and the two batches must be equal column by column, and
equal to the spans' own fields (the brute-force truth). Spans come from the real SDK, with
hypothesis choosing names, attribute sets (value types kept apart: ``1``, ``True``, ``1.0``),
statuses and descriptions, exceptions, parents, kinds and resources; a mapping reused across
hand-made spans and changed between batches must be stored as it was at each batch.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from kronicler.db.schema import SpanBatch, parse_attributes
from kronicler.otel import rows
from kronicler.otel.attr_memo import AttributeMemo

ROOT = Path(__file__).resolve().parents[2]
needs_c = pytest.mark.skipif(not rows.ACCELERATED, reason="the C conversion loop is not built")
COLUMNS = ("names", "start", "duration", "status", "kind", "services", "trace_hi", "trace_lo",
           "span_id", "parent_span_id", "attributes", "resources")  # fmt: skip


@contextmanager
def road(c_loop: bool, memo: AttributeMemo) -> Iterator[None]:
    """Convert with (or without) the C loop, against ``memo``."""
    saved = rows._fastrows, rows._MEMO
    rows._fastrows = saved[0] if c_loop else None
    rows._MEMO = memo
    try:
        yield
    finally:
        rows._fastrows, rows._MEMO = saved


def assert_same(a: SpanBatch, b: SpanBatch) -> None:
    for column in COLUMNS:
        x, y = getattr(a, column), getattr(b, column)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype, column
            assert x.tolist() == y.tolist(), column
        else:
            assert list(x) == list(y), column


def convert_both(batches: Sequence[Sequence[Any]], *, c_loop: bool = True) -> list[SpanBatch]:
    """Each batch by both roads (each with its own memo, kept across the batches); ``c_loop``:
    the C loop is expected to take every batch."""
    c_memo, py_memo = AttributeMemo(), AttributeMemo()
    out = []
    for spans in batches:
        with road(True, c_memo):
            fast = rows._c_batch(spans, "dflt") if c_loop else None
            assert (fast is not None) == c_loop
            if fast is None:
                fast = rows.spans_to_batch(spans, default_service="dflt")
        with road(False, py_memo):
            slow = rows.spans_to_batch(spans, default_service="dflt")
        assert_same(fast, slow)
        out.append(fast)
    return out


def truth(span: ReadableSpan) -> dict[str, Any]:
    """What the row contract says a span becomes, read from the span's public fields."""
    attrs: dict[str, Any] = dict(span.attributes or {})
    exc = [e for e in span.events if e.name == "exception"]
    if exc:
        attrs["exception.type"] = str(exc[-1].attributes["exception.type"])  # type: ignore[index]
        attrs["exception.message"] = str(exc[-1].attributes["exception.message"])  # type: ignore[index]
    if span.status.status_code is StatusCode.ERROR and span.status.description:
        derived = f"{attrs.get('exception.type', '').rsplit('.', 1)[-1]}: " + str(
            attrs.get("exception.message", "")
        )
        if not exc or span.status.description != derived:
            attrs["otel.status_description"] = span.status.description
    assert span.context is not None and span.start_time is not None and span.end_time is not None
    return {
        "name": span.name,
        "start": span.start_time,
        "duration": max(span.end_time - span.start_time, 0),
        "status": span.status.status_code.value,
        "kind": span.kind.value,
        "service": span.resource.attributes.get("service.name") or "dflt",
        "trace_id": span.context.trace_id,
        "span_id": span.context.span_id,
        "parent": span.parent.span_id if span.parent else 0,
        "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()},
        "resource": dict(span.resource.attributes),
    }


def row(batch: SpanBatch, i: int) -> dict[str, Any]:
    return {
        "name": batch.names[i],
        "start": int(batch.start[i]),
        "duration": int(batch.duration[i]),
        "status": int(batch.status[i]),
        "kind": int(batch.kind[i]),
        "service": batch.services[i],
        "trace_id": int(batch.trace_hi[i]) << 64 | int(batch.trace_lo[i]),
        "span_id": int(batch.span_id[i]),
        "parent": int(batch.parent_span_id[i]),
        "attributes": parse_attributes(batch.attributes[i]),
        "resource": parse_attributes(batch.resources[i]),
    }


# -- spans made by the real SDK, their shape chosen by hypothesis --------------------------------

NAMES = ["a", "b", "shop.f"]
KEYS = ["k", "code.line", "flag", "z"]
VALUES = st.one_of(
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, -1.5]),
    st.sampled_from(["", "x", "1", "True"]),
    st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["a", "c"])),
    st.tuples(st.integers(0, 1), st.booleans()),
)
SPAN = st.fixed_dictionaries({
    "name": st.sampled_from(NAMES),
    "attrs": st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3),
    "kind": st.sampled_from(list(SpanKind)),
    "status": st.sampled_from([None, "ok", "error", "error+text"]),
    "raise": st.booleans(),
    "child": st.booleans(),
    "resource": st.integers(0, 2),
})  # fmt: skip
RESOURCES = [Resource.create({"service.name": "shop", "v": 1}), Resource({}),
             Resource({"service.name": "", "host": "h"})]  # fmt: skip


def make(specs: Sequence[dict[str, Any]]) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    providers = []
    for resource in RESOURCES:
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(memory))
        providers.append(provider)
    for spec in specs:
        tracer = providers[spec["resource"]].get_tracer("t")
        with tracer.start_as_current_span(
            spec["name"], kind=spec["kind"], attributes=spec["attrs"], record_exception=True,
            set_status_on_exception=True,
        ) as span:  # fmt: skip
            if spec["child"]:
                with tracer.start_as_current_span(spec["name"], attributes=spec["attrs"]):
                    pass
            if spec["status"] == "ok":
                span.set_status(Status(StatusCode.OK))
            elif spec["status"] == "error":
                span.set_status(Status(StatusCode.ERROR))
            elif spec["status"] == "error+text":
                span.set_status(Status(StatusCode.ERROR, "went wrong"))
            if spec["raise"]:
                try:
                    raise KeyError("gone")
                except KeyError as exc:
                    span.record_exception(exc)
    for provider in providers:
        provider.shutdown()
    return list(memory.get_finished_spans())


@needs_c
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(SPAN, min_size=1, max_size=12), min_size=1, max_size=4))
def test_both_roads_store_the_same_rows_and_the_truth(batches: list[list[dict[str, Any]]]) -> None:
    made = [make(specs) for specs in batches]
    made += made  # again, against the sets the memos remember now
    for spans, batch in zip(made, convert_both(made), strict=True):
        assert [row(batch, i) for i in range(len(spans))] == [truth(s) for s in spans]


@needs_c
def test_equal_values_of_other_types_are_stored_apart() -> None:
    specs = [{"name": "f", "attrs": attrs, "kind": SpanKind.INTERNAL, "status": None,
              "raise": False, "child": False, "resource": 0}
             for attrs in ({"a": 1}, {"a": True}, {"a": 1.0}, {"a": 1}, {"a": 1, "b": True},
                           {"b": 1, "a": True}, {"a": ("x",)}, {"a": ("x",)}, {"a": ("y",)})]  # fmt: skip
    spans = make(specs)
    *one_by_one, batch = convert_both([*([s] for s in spans), spans])
    assert [b.attributes[0] for b in one_by_one] == batch.attributes
    assert batch.attributes == ['{"a":1}', '{"a":true}', '{"a":1.0}', '{"a":1}',
                                '{"a":1,"b":true}', '{"a":true,"b":1}', '{"a":["x"]}',
                                '{"a":["x"]}', '{"a":["y"]}']  # fmt: skip


def hand_made(attrs: dict[str, Any], n: int, first_id: int) -> list[ReadableSpan]:
    """Spans sharing one attribute mapping (as an application may build them)."""
    parent = SpanContext(trace_id=(1 << 127) | 7, span_id=1, is_remote=False)
    return [
        ReadableSpan(
            "shared",
            context=SpanContext(trace_id=(1 << 127) | 7, span_id=first_id + i, is_remote=False),
            parent=parent if i % 2 else None,
            attributes=attrs,
            start_time=10 * i,
            end_time=10 * i + 5,
            resource=RESOURCES[0],
        )
        for i in range(n)
    ]


@needs_c
def test_a_mapping_reused_across_spans_and_changed_between_batches() -> None:
    attrs: dict[str, Any] = {"n": 1, "s": "x"}
    c_memo, py_memo = AttributeMemo(), AttributeMemo()
    stored = []
    for change in ({}, {"n": True}, {"n": 1.0}, {"n": 1}, {"t": ("a",)}, {"n": "1"}):
        attrs.update(change)
        spans = hand_made(attrs, 5, 100)
        with road(True, c_memo):
            fast = rows.spans_to_batch(spans)
        with road(False, py_memo):
            assert_same(fast, rows.spans_to_batch(spans))
        assert len(set(fast.attributes)) == 1
        stored.append(fast.attributes[0])
        assert fast.trace_hi.tolist() == [1 << 63] * 5 and fast.trace_lo.tolist() == [7] * 5
        assert fast.parent_span_id.tolist() == [0, 1, 0, 1, 0]
    assert stored == ['{"n":1,"s":"x"}', '{"n":true,"s":"x"}', '{"n":1.0,"s":"x"}',
                      '{"n":1,"s":"x"}', '{"n":1,"s":"x","t":["a"]}', '{"n":"1","s":"x","t":["a"]}']  # fmt: skip


@needs_c
def test_spans_the_loop_declines_take_the_python_road() -> None:
    """Unfinished spans, ids out of range, names that are not text: the Python road decides."""
    good = hand_made({"a": 1}, 3, 1)
    unfinished = ReadableSpan("u", context=good[0].context, start_time=5, end_time=None)
    assert rows._c_batch([*good, unfinished], "dflt") is None
    (batch,) = convert_both([[*good, unfinished]], c_loop=False)
    assert batch.duration.tolist() == [5, 5, 5, 0]
    wide = ReadableSpan("w", context=SpanContext(trace_id=1 << 130, span_id=1, is_remote=False),
                        start_time=1, end_time=2)  # fmt: skip
    assert rows._c_batch([wide], "dflt") is None
    for c_loop in (True, False):
        with road(c_loop, AttributeMemo()), pytest.raises(OverflowError):
            rows.spans_to_batch([wide])
    odd_name = ReadableSpan(3, context=good[0].context, start_time=1, end_time=2)  # type: ignore[arg-type]
    assert rows._c_batch([odd_name], "dflt") is None
    for c_loop in (True, False):
        with road(c_loop, AttributeMemo()), pytest.raises(ValueError, match="names"):
            rows.spans_to_batch([odd_name])


@needs_c
def test_no_reference_or_memory_leaks_over_100k_spans() -> None:
    spans = make([{"name": NAMES[i % 3], "attrs": {"k": i % 2, "z": ("a", "b")},
                   "kind": SpanKind.SERVER, "status": "error+text" if i % 7 == 0 else None,
                   "raise": i % 11 == 0, "child": True, "resource": i % 2} for i in range(256)])  # fmt: skip
    assert len(spans) == 512
    memo = AttributeMemo()
    fields = ("_name", "_start_time", "_end_time", "_status", "_kind", "_resource", "_context",
              "_parent", "_attributes", "_attributes._dict", "_events", "_events._dq")  # fmt: skip
    watched = [attrgetter(f)(s) for s in spans[:40] for f in fields] + spans[:40]
    with road(True, memo):
        rows.spans_to_batch(spans)  # the memo and the text caches warm up
        gc.collect()
        before = [sys.getrefcount(o) for o in watched]
        tracemalloc.start()
        try:
            for _ in range(20):
                rows.spans_to_batch(spans)
            gc.collect()
            first = tracemalloc.take_snapshot()
            for _ in range(200):  # 102,400 spans
                rows.spans_to_batch(spans)
            gc.collect()
            second = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    assert [sys.getrefcount(o) for o in watched] == before
    grown = sum(s.size_diff for s in second.compare_to(first, "filename"))
    assert grown < 64_000, grown


def test_the_variable_picks_the_road() -> None:
    code = "from kronicler.otel import rows; print(rows.ACCELERATED)"
    env = dict(os.environ, PYTHONPATH=str(ROOT), KRONICLER_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    assert out.stdout.strip() == "False"
