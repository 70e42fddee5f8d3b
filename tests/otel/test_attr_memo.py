"""Attribute texts remembered per span name: every text is the one the set itself renders to.

The memo's shortcuts (identity over the whole batch, then equal values of equal types) must
never hand a span the text of another set: not when one dict object is reused across spans and
changed between batches, not when ``True``, ``1`` and ``1.0`` (or ``0.0`` and ``-0.0``) take turns
under one name, not when the same keys come in another order, and not across exporters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext

from kronicler.otel import KroniclerSpanExporter
from kronicler.otel.attr_memo import AttributeMemo
from kronicler.otel.contract import render_value
from kronicler.otel.rows import spans_to_batch
from tests.otel.helpers import read_rows


def rendered(attrs: dict[str, Any]) -> str:
    """The contract's text, from its rules alone (no memo)."""
    if not attrs:
        return ""
    return json.dumps({k: render_value(v) for k, v in attrs.items()}, sort_keys=True,
                      separators=(",", ":"))  # fmt: skip


def hand_span(name: str, sid: int, attrs: Any) -> ReadableSpan:
    """A span whose attributes are the very object given (no SDK copy)."""
    ctx = SpanContext(0xABC, sid, is_remote=False)
    return ReadableSpan(name=name, context=ctx, attributes=attrs, start_time=10 * sid,
                        end_time=10 * sid + 3, resource=Resource({"service.name": "s"}))  # fmt: skip


def test_one_dict_reused_across_spans_and_changed_between_batches() -> None:
    shared: dict[str, Any] = {"route": "/a", "flag": 1}
    versions: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = [{}, {"flag": True}, {"flag": 1.0}, {"route": "/b"},
                                     {"extra": (1, 2)}, {"flag": -0.0}, {"flag": 0.0}]  # fmt: skip
    for i, change in enumerate(changes):
        shared.update(change)
        versions.append(dict(shared))
        batch = spans_to_batch([hand_span("reused", 100 * i + j, shared) for j in range(5)])
        assert batch.attributes == [rendered(shared)] * 5, (i, shared)
    # the same sets again, now each dict its own object with the same values
    batch = spans_to_batch([hand_span("reused", 900 + i, v) for i, v in enumerate(versions)])
    assert batch.attributes == [rendered(v) for v in versions]


def test_equal_values_of_other_types_take_turns_under_one_name() -> None:
    values: list[Any] = [True, 1, 1.0, 1, True, 0.0, -0.0, 0, False, "1", ("a",), ("a",), b"a"]
    spans = [hand_span("turns", i + 1, {"v": v}) for i, v in enumerate(values)]
    assert spans_to_batch(spans).attributes == [rendered({"v": v}) for v in values]
    # one span per batch, so each compares with what the previous batch left
    for i, v in enumerate(values):
        assert spans_to_batch([hand_span("turns", 50 + i, {"v": v})]).attributes == [
            rendered({"v": v})
        ]


def test_the_same_keys_in_another_order_with_swapped_types() -> None:
    # Equal as dicts (1 == True), and the value types in order are (int, bool) both times.
    first = {"a": 1, "b": True}
    second = {"b": 1, "a": True}
    texts = [spans_to_batch([hand_span("order", i + 1, s)]).attributes[0]
             for i, s in enumerate([first, second, first])]  # fmt: skip
    assert texts == ['{"a":1,"b":true}', '{"a":true,"b":1}', '{"a":1,"b":true}']


class _EqualToAll:
    """Equal to anything, rendered as its own text: equality alone must not pick a text."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __str__(self) -> str:
        return "odd"


def test_a_tuple_of_odd_objects_equal_to_a_remembered_tuple_of_text() -> None:
    sets: list[dict[str, Any]] = [{"t": ("a", "b")}, {"t": (_EqualToAll(), "b")}]
    assert spans_to_batch([hand_span("t", i + 1, s) for i, s in enumerate(sets)]).attributes == [
        '{"t":["a","b"]}',
        '{"t":["odd","b"]}',
    ]
    for i, s in enumerate(sets * 2):  # one batch each: against the previous batch's set
        assert spans_to_batch([hand_span("t2", i + 1, s)]).attributes == [rendered(s)]


def test_sets_of_other_sizes_and_unrememberable_values_in_one_batch() -> None:
    sets: list[dict[str, Any]] = [
        {"k": "v"}, {"k": "v", "n": 2}, {}, {"k": "v"}, {"k": ["list"]}, {"k": "v"},
        {"k": {"nested": True}}, {"k": "v", "n": 2}, {"n": 2, "k": "v"}, {"k": float("nan")},
    ]  # fmt: skip
    for _ in range(2):  # the second time against what the first remembered
        batch = spans_to_batch([hand_span("mixed", i + 1, s) for i, s in enumerate(sets)])
        assert batch.attributes == [rendered(s) for s in sets]


def test_a_small_memo_forgets_and_stays_right() -> None:
    memo = AttributeMemo(limit=2)
    names = [f"f{i % 5}" for i in range(40)]
    sets = [{"i": i % 5, "flag": bool(i % 2)} for i in range(40)]
    for _ in range(3):
        assert memo.texts(names, sets) == [rendered(s) for s in sets]


def test_bad_memo_limit_names_the_value() -> None:
    import pytest

    with pytest.raises(ValueError, match="-3"):
        AttributeMemo(limit=-3)


# -- spans through the exporter, read back from the database ------------------------------------
def typed(value: Any) -> Any:
    """A value with its type spelt out, as the database gives it back (tuples as lists)."""
    if isinstance(value, (tuple, list)):
        return ["list", [typed(v) for v in value]]
    return [type(value).__name__, value]


def test_exported_spans_read_back_equal_with_their_types(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "api",
                                                        "service.version": "1.2"}))  # fmt: skip
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    shared: dict[str, Any] = {"route": "/pay", "retries": 1}
    exporter = KroniclerSpanExporter(tmp_path / "db")
    sent: dict[int, ReadableSpan] = {}
    for batch_no, flag in enumerate([True, 1, 1.0, False, 0, "yes", -0.0, 0.0]):
        shared["flag"] = flag  # one dict for every span, changed between batches
        for i in range(7):
            with tracer.start_as_current_span(f"f{i % 3}", attributes=shared) as span:
                if i == 3:
                    span.set_attribute("tags", ("a", "b"))
            if i == 5:
                with tracer.start_as_current_span("g", attributes={"n": batch_no}):
                    pass
        spans = memory.get_finished_spans()
        memory.clear()
        sent.update((s.context.span_id, s) for s in spans)
        assert exporter.export(spans).name == "SUCCESS"
    exporter.shutdown()
    provider.shutdown()
    assert exporter.dropped == 0

    rows = read_rows(tmp_path / "db")
    assert len(rows) == len(sent) == 8 * 8
    for row in rows:
        one = sent.pop(row["span_id"])
        assert one.start_time is not None and one.end_time is not None
        assert (row["name"], row["start"], row["duration"]) == (
            one.name, one.start_time, one.end_time - one.start_time)  # fmt: skip
        assert row["trace_id"] == one.context.trace_id
        assert row["parent_span_id"] == (one.parent.span_id if one.parent else 0)
        assert row["service"] == "api"
        assert row["resource"] == dict(one.resource.attributes)
        want = dict(one.attributes or {})
        assert {k: typed(v) for k, v in row["attributes"].items()} == {
            k: typed(v) for k, v in want.items()
        }
    assert not sent


_scalar = (
    st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, -0.0, 1.0, 2.5, float("nan")])
    | st.sampled_from(["a", "b", "1"]) | st.tuples(st.sampled_from(["a", "b"]))
    | st.tuples(st.booleans(), st.integers(0, 1))
)  # fmt: skip
_set = st.dictionaries(st.sampled_from(["a", "b", "c"]), _scalar, max_size=3)
_span = st.tuples(st.sampled_from(["f", "g", "h"]), _set, st.booleans())


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(batches=st.lists(st.lists(_span, max_size=12), min_size=1, max_size=4))
def test_every_text_is_the_sets_own(batches: list[list[tuple[str, dict[str, Any], bool]]]) -> None:
    """Batches after batches through one memo: each span's text is its own set's, whether its
    dict is shared with the previous span of its name (then possibly changed) or new."""
    memo = AttributeMemo()
    last: dict[str, dict[str, Any]] = {}
    for spans in batches:
        names, sets = [], []
        for name, attrs, reuse in spans:
            if reuse and name in last:  # the same object as before, changed in place
                shared = last[name]
                shared.clear()
                shared.update(attrs)
                attrs = shared
            last[name] = attrs
            names.append(name)
            sets.append(attrs)
        texts = memo.texts(names, sets)
        # a dict changed later in this batch renders as it is now: compare with now
        assert texts == [rendered(s) for s in sets]


# -- every column of a mixed batch against each span read through its public properties ---------
def _by_rule(span: ReadableSpan) -> dict[str, Any]:
    start = span.start_time or 0
    end = span.end_time or start
    attrs = dict(span.attributes or {})
    if span.status.status_code.value == 2 and span.status.description:
        attrs["otel.status_description"] = span.status.description
    resource = dict(span.resource.attributes)
    return {
        "name": span.name, "start": start, "duration": max(end - start, 0),
        "status": span.status.status_code.value, "kind": span.kind.value,
        "service": str(resource.get("service.name") or "unknown_service"),
        "trace": span.context.trace_id, "span_id": span.context.span_id,
        "parent": span.parent.span_id if span.parent else 0,
        "attributes": rendered(attrs), "resource": rendered(resource),
    }  # fmt: skip


def _row(batch: Any, i: int) -> dict[str, Any]:
    return {
        "name": batch.names[i], "start": int(batch.start[i]),
        "duration": int(batch.duration[i]), "status": int(batch.status[i]),
        "kind": int(batch.kind[i]), "service": batch.services[i],
        "trace": int(batch.trace_hi[i]) << 64 | int(batch.trace_lo[i]),
        "span_id": int(batch.span_id[i]), "parent": int(batch.parent_span_id[i]),
        "attributes": batch.attributes[i], "resource": batch.resources[i],
    }  # fmt: skip


class _Public:
    """Only the public ReadableSpan surface (no SDK internals): the field-by-field road."""

    def __init__(self, span: ReadableSpan) -> None:
        self._span = span

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._span, name)


def test_a_mixed_batch_equals_its_spans_column_by_column() -> None:
    from opentelemetry.trace import SpanKind, Status, StatusCode

    shop, other = Resource({"service.name": "shop", "v": 1}), Resource({"host.name": "h"})
    ok, unset = Status(StatusCode.OK), Status(StatusCode.UNSET)
    spans = []
    for i in range(40):
        status = [unset, ok, Status(StatusCode.ERROR, f"bad {i}"), Status(StatusCode.ERROR)][i % 4]
        spans.append(ReadableSpan(
            name=f"f{i % 3}", context=SpanContext((i % 5) << 70 | i + 1, 1000 + i, False),
            parent=SpanContext(1, 500 + i, False) if i % 3 else None,
            resource=shop if i % 7 else other, attributes={"i": i % 2, "b": bool(i % 2)},
            kind=list(SpanKind)[i % 5], status=status,
            start_time=None if i == 5 else 100 * i, end_time=None if i % 9 == 4 else 100 * i + i,
        ))  # fmt: skip
    want = [_by_rule(s) for s in spans]
    for road in (spans, [_Public(s) for s in spans]):
        batch = spans_to_batch(road)  # type: ignore[arg-type]  # duck-typed spans on purpose
        assert [_row(batch, i) for i in range(len(spans))] == want
    # all roots, and no root at all
    for subset in ([s for s in spans if s.parent is None], [s for s in spans if s.parent]):
        batch = spans_to_batch(subset)
        assert [_row(batch, i) for i in range(len(subset))] == [_by_rule(s) for s in subset]
