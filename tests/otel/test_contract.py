"""The row contract, unit by unit: an SDK span and its OTLP form give the same row.

A hand-built OTLP ``ResourceSpans`` and the equivalent hand-built SDK ``ReadableSpan`` must
convert to identical batches (every column), and any attribute value the SDK accepts must render
alike after the stock OTLP encoder carried it. The three whole roads (decorator, SDK exporter,
OTLP over gRPC) are compared in ``test_contract_roads.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from kronicler.db.schema import SpanBatch, canonical_attributes, parse_attributes
from kronicler.otel.contract import DEFAULT_SERVICE, attributes_text, render_value
from kronicler.otel.otlp_rows import convert_resource_spans
from kronicler.otel.records import Site, records_to_batch
from kronicler.otel.rows import spans_to_batch

TRACE = 0x0AF7651916CD43DD8448EB211C80319C
T0 = 1_700_000_000_000_000_000


def columns(batch: SpanBatch) -> dict[str, list[Any]]:
    return {
        f: (v.tolist() if isinstance(v, np.ndarray) else list(v))
        for f, v in (
            (f, getattr(batch, f)) for f in (x.name for x in dataclasses.fields(SpanBatch))
        )
    }


# -- one trace, built twice by hand ------------------------------------------------------------
# (name, span id, parent id, kind, status code, status description, attributes, events,
#  service.name of the resource or None)
EXC_EVENT = {"exception.type": "shop.errors.Declined", "exception.message": "card 4 declined",
             "exception.stacktrace": "Traceback ...", "exception.escaped": "True"}  # fmt: skip
EVERY_TYPE = {
    "text": "/pay", "int": 42, "neg": -7, "float": 2.5, "bool": True, "flag": 1,
    "strings": ("a", "b"), "ints": (1, 2), "floats": (0.5, -0.0), "bools": (True, False),
    "bytes": b"\x00\xffk", "nested": {"a": 1, "b": ("x", True), "c": {"d": None}},
    "mixed": (1, "one", 1.0, None), "none": None, "empty": (),
}  # fmt: skip
SPANS: list[tuple[Any, ...]] = [
    ("checkout.handle", 1, 0, SpanKind.SERVER, StatusCode.UNSET, None, EVERY_TYPE, [], None),
    # An exception escaped: the SDK's derived description repeats the event and is not stored.
    ("checkout.charge", 2, 1, SpanKind.CLIENT, StatusCode.ERROR, "Declined: card 4 declined",
     {"retry": 0}, [("log", {"line": "x"}), ("exception", EXC_EVENT)], None),
    # An error status with its own description, and two exceptions: the last one is stored.
    ("checkout.audit", 3, 1, SpanKind.INTERNAL, StatusCode.ERROR, "audit trail incomplete",
     {"exception.type": "mine"},
     [("exception", {"exception.type": "KeyError", "exception.message": "'a'"}),
      ("exception", {"exception.type": "ValueError", "exception.message": "m" * 3000})], None),
    # An exception event without a message; status OK (a description on OK is not kept).
    ("checkout.notify", 4, 1, SpanKind.PRODUCER, StatusCode.OK, None, {},
     [("exception", {"exception.type": "TimeoutError"})], None),
    ("inventory.reserve", 5, 0, SpanKind.CONSUMER, StatusCode.ERROR, None, {"flag": True}, [],
     "inventory"),
    ("inventory.reserve", 6, 5, SpanKind.CONSUMER, StatusCode.UNSET, None, {"flag": 1.0}, [],
     "inventory"),
]  # fmt: skip


def sdk_span(
    name: str,
    sid: int,
    parent: int,
    kind: SpanKind,
    code: StatusCode,
    description: str | None,
    attrs: dict[str, Any],
    events: list[tuple[str, dict[str, Any]]],
    service: str | None,
) -> ReadableSpan:
    resource = Resource({"host.name": "h1"} if service is None else {"service.name": service})
    ctx = SpanContext(TRACE, sid, is_remote=False, trace_flags=TraceFlags(1))
    return ReadableSpan(
        name=name, context=ctx,
        parent=SpanContext(TRACE, parent, is_remote=False) if parent else None,
        resource=resource, attributes=attrs, kind=kind,
        events=[Event(n, a, timestamp=T0 + 5) for n, a in events],
        status=Status(code, description), start_time=T0 + sid, end_time=T0 + sid * 1000,
        instrumentation_scope=InstrumentationScope("shop", "1.0"),
    )  # fmt: skip


def any_value(v: Any) -> common_pb2.AnyValue:
    if v is None:
        return common_pb2.AnyValue()
    if isinstance(v, bool):
        return common_pb2.AnyValue(bool_value=v)
    if isinstance(v, int):
        return common_pb2.AnyValue(int_value=v)
    if isinstance(v, float):
        return common_pb2.AnyValue(double_value=v)
    if isinstance(v, str):
        return common_pb2.AnyValue(string_value=v)
    if isinstance(v, bytes):
        return common_pb2.AnyValue(bytes_value=v)
    if isinstance(v, dict):
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=key_values(v)))
    return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=map(any_value, v)))


def key_values(attrs: dict[str, Any]) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


def otlp_span(
    name: str,
    sid: int,
    parent: int,
    kind: SpanKind,
    code: StatusCode,
    description: str | None,
    attrs: dict[str, Any],
    events: list[tuple[str, dict[str, Any]]],
    service: str | None,
) -> trace_pb2.Span:
    # the same names on both sides; OTLP's kinds are the SDK's shifted by one (0 = UNSPECIFIED)
    otlp_kind = trace_pb2.Span.SpanKind.Value(f"SPAN_KIND_{kind.name}")
    otlp_code = trace_pb2.Status.StatusCode.Value(f"STATUS_CODE_{code.name}")
    return trace_pb2.Span(
        trace_id=TRACE.to_bytes(16, "big"), span_id=sid.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"", name=name,
        kind=otlp_kind, start_time_unix_nano=T0 + sid, end_time_unix_nano=T0 + sid * 1000,
        attributes=key_values(attrs),
        events=[trace_pb2.Span.Event(time_unix_nano=T0 + 5, name=n, attributes=key_values(a))
                for n, a in events],
        status=trace_pb2.Status(code=otlp_code, message=description or ""),
    )  # fmt: skip


def otlp_request(spans: list[tuple[Any, ...]]) -> list[trace_pb2.ResourceSpans]:
    out = []
    for service in dict.fromkeys(s[-1] for s in spans):
        attrs = {"host.name": "h1"} if service is None else {"service.name": service}
        out.append(trace_pb2.ResourceSpans(
            resource=resource_pb2.Resource(attributes=key_values(attrs)),
            scope_spans=[trace_pb2.ScopeSpans(
                scope=common_pb2.InstrumentationScope(name="shop", version="1.0"),
                spans=[otlp_span(*s) for s in spans if s[-1] == service],
            )],
        ))  # fmt: skip
    return out


def test_hand_built_otlp_and_sdk_spans_give_identical_rows() -> None:
    from_sdk = spans_to_batch([sdk_span(*s) for s in SPANS])
    converted = convert_resource_spans(otlp_request(SPANS))
    assert converted.rejected == 0
    assert columns(converted.batch) == columns(from_sdk)

    rows = [parse_attributes(t) for t in from_sdk.attributes]
    assert from_sdk.services == [DEFAULT_SERVICE] * 4 + ["inventory"] * 2
    assert rows[0] == {
        "text": "/pay", "int": 42, "neg": -7, "float": 2.5, "bool": True, "flag": 1,
        "strings": ["a", "b"], "ints": [1, 2], "floats": [0.5, -0.0], "bools": [True, False],
        "bytes": "AP9r", "nested": {"a": 1, "b": ["x", True], "c": {"d": None}},
        "mixed": [1, "one", 1.0, None], "none": None, "empty": [],
    }  # fmt: skip
    assert math.copysign(1.0, rows[0]["floats"][1]) == -1.0
    assert rows[1] == {"retry": 0, "exception.type": "shop.errors.Declined",
                       "exception.message": "card 4 declined"}  # fmt: skip
    assert rows[2] == {"exception.type": "ValueError", "exception.message": "m" * 1024,
                       "otel.status_description": "audit trail incomplete"}  # fmt: skip
    assert rows[3] == {"exception.type": "TimeoutError", "exception.message": ""}
    # True and 1.0 are equal in Python, and both spans have one name: still told apart.
    assert from_sdk.attributes[4:] == ['{"flag":true}', '{"flag":1.0}']
    assert from_sdk.status.tolist() == [0, 2, 2, 1, 2, 0]
    assert from_sdk.kind.tolist() == [1, 2, 0, 3, 4, 4]


def test_a_batch_repeating_equal_but_differently_typed_sets_keeps_each_type() -> None:
    spans = [sdk_span("f", i + 1, 0, SpanKind.INTERNAL, StatusCode.UNSET, None, {"v": v}, [],
                      "s") for i, v in enumerate([True, 1, 1.0, 0.0, -0.0, (1, 2), (True, 2)])]  # fmt: skip
    texts = spans_to_batch(spans).attributes
    assert texts == ['{"v":true}', '{"v":1}', '{"v":1.0}', '{"v":0.0}', '{"v":-0.0}',
                     '{"v":[1,2]}', '{"v":[true,2]}']  # fmt: skip
    assert convert_resource_spans(encode_spans(spans).resource_spans).batch.attributes == texts


def test_every_road_defaults_an_absent_service_alike() -> None:
    span = sdk_span("x", 1, 0, SpanKind.INTERNAL, StatusCode.UNSET, None, {}, [], None)
    empty = ReadableSpan(name="x", context=span.context, resource=Resource({"service.name": ""}),
                         start_time=1, end_time=2)  # fmt: skip
    assert spans_to_batch([span, empty]).services == [DEFAULT_SERVICE] * 2
    request = encode_spans([span, empty]).resource_spans
    assert convert_resource_spans(request).batch.services == [DEFAULT_SERVICE] * 2
    site = Site("x", 0, {}, "")
    fast = records_to_batch([0, 5, 6, 9, 9, 0], [], [site], service="", clock_offset=0)
    assert fast.services == [DEFAULT_SERVICE]


# -- any value the SDK accepts, through the stock encoder --------------------------------------
_scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
    | st.binary(max_size=6)
)  # fmt: skip
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(min_size=1, max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_attrs = st.dictionaries(st.text(min_size=1, max_size=6), _values, max_size=5)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(sets=st.lists(_attrs, min_size=1, max_size=4))
def test_any_sdk_attribute_value_renders_alike_after_otlp(sets: list[dict[str, Any]]) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "prop"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("prop")
    for attrs in sets:
        with tracer.start_as_current_span("same.name", attributes=attrs):
            pass
    spans = memory.get_finished_spans()
    from_sdk = spans_to_batch(spans)
    from_otlp = convert_resource_spans(encode_spans(spans).resource_spans).batch
    assert from_otlp.attributes == from_sdk.attributes
    for span, text in zip(spans, from_sdk.attributes, strict=True):
        expected = {k: render_value(v) for k, v in (span.attributes or {}).items()}
        assert text == (json.dumps(expected, sort_keys=True, separators=(",", ":"))
                        if expected else "")  # fmt: skip


_flat = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
    | st.lists(st.text(max_size=3) | st.integers() | st.booleans(), max_size=3).map(tuple),
    max_size=5,
)  # fmt: skip


@settings(max_examples=100, deadline=None, derandomize=True)
@given(attrs=_flat)
def test_flat_sets_render_as_the_schema_renders_them(attrs: dict[str, Any]) -> None:
    """Decorator sites and ``Database.append`` use the schema's text: it must be the same."""
    assert attributes_text(attrs) == canonical_attributes(attrs)
