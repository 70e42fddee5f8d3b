"""@kronicler.capture with zero configuration: what the call sees, and what the database stores."""

from __future__ import annotations

import functools
import inspect
import math
import sys
import threading
import traceback
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.trace import SpanKind, Status, StatusCode

import kronicler
from kronicler.otel.span import FastSpan
from tests.otel.helpers import SERVICE, Store

pytest_plugins = ["tests.otel.fixtures"]

HERE = __name__


@kronicler.capture
def add(a: int, b: int = 1) -> int:
    """Adds."""
    return a + b


@kronicler.capture(name="custom.name", attributes={"table": "users", "ids": [1, 2]},
                   kind=SpanKind.CLIENT)  # fmt: skip
def load(uid: int) -> int:
    return uid


@kronicler.capture
def outer(n: int) -> list[Any]:
    here = trace.get_current_span()
    return [here, [inner() for _ in range(n)]]


@kronicler.capture
def inner() -> Any:
    return trace.get_current_span()


class Service:
    @kronicler.capture
    def method(self, x: int) -> int:
        return x * 2

    @kronicler.capture
    @classmethod
    def cm_outer(cls) -> str:
        return cls.__name__

    @classmethod
    @kronicler.capture
    def cm_inner(cls) -> str:
        return cls.__name__

    @kronicler.capture
    @staticmethod
    def sm_outer(x: int) -> int:
        return x + 1

    @staticmethod
    @kronicler.capture
    def sm_inner(x: int) -> int:
        return x + 2


def by_name(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["name"] == name]


def test_wrapper_keeps_name_doc_and_signature() -> None:
    assert add.__name__ == "add"
    assert add.__doc__ == "Adds."
    assert str(inspect.signature(add)) == "(a: 'int', b: 'int' = 1) -> 'int'"
    assert vars(add)["__wrapped__"].__name__ == "add"  # __wrapped__ is not in add's static type


def test_calls_are_stored_with_name_service_timing_and_code_attributes(store: Store) -> None:
    assert add(2, b=3) == 5
    [row] = store.rows()
    assert row["name"] == f"{HERE}.add"
    assert row["service"] == SERVICE
    assert row["status"] == 0 and row["kind"] == 0
    assert row["duration"] > 0
    assert abs(row["start"] - __import__("time").time_ns()) < 60 * 10**9
    assert row["parent_span_id"] == 0 and row["span_id"] and row["trace_id"]
    attrs = row["attributes"]
    assert attrs["code.function.name"] == f"{HERE}.add"
    assert attrs["code.file.path"] == __file__
    assert attrs["code.line.number"] == vars(add)["__wrapped__"].__code__.co_firstlineno


def test_options_name_attributes_and_kind(store: Store) -> None:
    load(7)
    [row] = store.rows()
    assert row["name"] == "custom.name"
    assert row["kind"] == SpanKind.CLIENT.value
    assert row["attributes"]["table"] == "users"
    assert row["attributes"]["ids"] == [1, 2]
    assert row["attributes"]["code.function.name"] == f"{HERE}.load"


def test_bad_options_raise_value_error_naming_the_value() -> None:
    # kind="nope" and capture(42) are wrong on purpose: the runtime check is what is tested
    with pytest.raises(ValueError, match="'nope'"):
        kronicler.capture(kind="nope")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="object"):
        kronicler.capture(attributes={"k": object()})
    with pytest.raises(ValueError, match="42"):
        kronicler.capture(42)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="''"):
        kronicler.capture(name="")


def test_methods_classmethods_staticmethods(store: Store) -> None:
    s = Service()
    assert s.method(2) == 4
    assert Service.cm_outer() == "Service" and s.cm_inner() == "Service"
    assert Service.sm_outer(1) == 2 and s.sm_inner(1) == 3
    names = sorted(r["name"] for r in store.rows())
    base = f"{HERE}.Service"
    assert names == sorted(f"{base}.{m}" for m in
                           ("method", "cm_outer", "cm_inner", "sm_outer", "sm_inner"))  # fmt: skip


def test_builtins_partials_and_callable_objects_wrapped_by_hand(store: Store) -> None:
    class Scale:
        def __call__(self, x: float) -> float:
            return x * 10

    sqrt = kronicler.capture(math.sqrt)
    part = kronicler.capture(functools.partial(pow, 2))
    obj = kronicler.capture(Scale())
    assert sqrt(9.0) == 3.0 and part(3) == 8 and obj(2) == 20
    rows = store.rows()
    names = {r["name"] for r in rows}
    assert names == {"math.sqrt", "builtins.pow", f"{HERE}.{Scale.__qualname__}"}
    assert "code.file.path" not in by_name(rows, "math.sqrt")[0]["attributes"]


def test_current_span_is_recording_with_a_valid_context(store: Store) -> None:
    here, children = outer(2)
    assert isinstance(here, trace.Span) and isinstance(here, FastSpan)
    ctx = here.get_span_context()
    assert ctx.is_valid and not ctx.is_remote and ctx.trace_flags.sampled
    assert not here.is_recording()  # ended when the call returned
    assert trace.get_current_span() is trace.INVALID_SPAN  # context restored
    rows = store.rows()
    parent = by_name(rows, f"{HERE}.outer")[0]
    kids = by_name(rows, f"{HERE}.inner")
    assert parent["span_id"] == ctx.span_id and parent["trace_id"] == ctx.trace_id
    assert len(kids) == 2
    for kid, span in zip(sorted(kids, key=lambda r: r["start"]), children, strict=True):
        assert kid["trace_id"] == ctx.trace_id
        assert kid["parent_span_id"] == ctx.span_id
        assert kid["span_id"] == span.get_span_context().span_id


def test_separate_calls_get_separate_traces(store: Store) -> None:
    add(1)
    add(2)
    a, b = store.rows()
    assert a["trace_id"] != b["trace_id"] and a["span_id"] != b["span_id"]


def test_is_recording_inside_and_propagation_writes_traceparent(store: Store) -> None:
    seen: dict[str, Any] = {}

    @kronicler.capture
    def handler() -> None:
        span = trace.get_current_span()
        seen["recording"] = span.is_recording()
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        seen["carrier"] = carrier
        seen["ctx"] = span.get_span_context()

    handler()
    ctx = seen["ctx"]
    assert seen["recording"] is True
    assert seen["carrier"]["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
    [row] = store.rows()
    assert (row["trace_id"], row["span_id"]) == (ctx.trace_id, ctx.span_id)


def _noop_tracer_keeps_parent() -> bool:
    """Whether the API's no-op tracer continues its parent's trace (not Kronicler's doing)."""
    parent = trace.NonRecordingSpan(
        trace.SpanContext(1, 1, is_remote=False, trace_flags=trace.TraceFlags(1))
    )
    child = trace.NoOpTracer().start_span("x", context=trace.set_span_in_context(parent))
    return bool(child.get_span_context().trace_id == 1)


def test_instrumented_libraries_see_the_right_parent(store: Store) -> None:
    """A library using the OTel API without an SDK gets a non-recording child of our span."""
    if not _noop_tracer_keeps_parent():
        pytest.skip("this OpenTelemetry API's no-op tracer drops the parent (older versions)")
    lib = trace.get_tracer("some.library")
    seen: dict[str, Any] = {}

    @kronicler.capture
    def handler() -> None:
        seen["ours"] = trace.get_current_span().get_span_context()
        with lib.start_as_current_span("library.op") as lib_span:
            seen["lib"] = lib_span.get_span_context()
            seen["lib_current"] = trace.get_current_span().get_span_context()

    handler()
    assert seen["lib"].trace_id == seen["ours"].trace_id
    assert seen["lib_current"] == seen["lib"]


def test_remote_parent_from_extract_is_continued(store: Store) -> None:
    trace_id, span_id = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    carrier = {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-01", "tracestate": "k=v"}
    token = otel_context.attach(propagate.extract(carrier))
    try:
        here, children = outer(1)
    finally:
        otel_context.detach(token)
    ctx = here.get_span_context()
    assert ctx.trace_id == trace_id and ctx.trace_state.get("k") == "v"
    rows = store.rows()
    parent = by_name(rows, f"{HERE}.outer")[0]
    kid = by_name(rows, f"{HERE}.inner")[0]
    assert (parent["trace_id"], parent["parent_span_id"]) == (trace_id, span_id)
    assert (kid["trace_id"], kid["parent_span_id"]) == (trace_id, parent["span_id"])
    assert kid["span_id"] == children[0].get_span_context().span_id


def test_exceptions_are_recorded_and_reraised_unchanged(store: Store) -> None:
    class Boom(Exception):
        pass

    original = Boom("it broke")

    @kronicler.capture
    def fails() -> None:
        raise original

    with pytest.raises(Boom) as info:
        fails()
    assert info.value is original
    frames = traceback.extract_tb(info.value.__traceback__)
    assert frames[-1].name == "fails" and frames[-1].line == "raise original"
    assert info.value.__context__ is None and info.value.__cause__ is None
    [row] = store.rows()
    assert row["status"] == StatusCode.ERROR.value
    assert row["attributes"]["exception.type"] == f"{HERE}.{Boom.__qualname__}"
    assert row["attributes"]["exception.message"] == "it broke"


def test_base_exceptions_pass_through_without_error_status(store: Store) -> None:
    @kronicler.capture
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    [row] = store.rows()
    assert row["status"] == 0 and "exception.type" not in row["attributes"]


def test_span_api_inside_the_call_is_stored(store: Store) -> None:
    @kronicler.capture(attributes={"fixed": 1})
    def annotated() -> None:
        span = trace.get_current_span()
        span.set_attribute("user.id", 42)
        span.set_attributes({"cache": "hit", "skip": None})
        span.add_event("ignored")
        span.update_name("renamed")
        span.set_status(Status(StatusCode.OK))
        span.set_status(StatusCode.ERROR)  # OK is final

    annotated()
    [row] = store.rows()
    assert row["name"] == "renamed"
    assert row["status"] == StatusCode.OK.value
    assert row["attributes"]["user.id"] == 42 and row["attributes"]["cache"] == "hit"
    assert row["attributes"]["fixed"] == 1
    # None is kept where the installed OpenTelemetry API keeps it (newer versions), as the SDK
    sdk_kept = BoundedAttributes(attributes={"skip": None})
    assert ("skip" in row["attributes"]) == ("skip" in sdk_kept)
    assert row["attributes"].get("skip") is None


def test_changes_after_the_end_are_ignored(store: Store) -> None:
    here, _ = outer(0)
    here.set_attribute("late", 1)
    here.update_name("late")
    [row] = store.rows()
    assert row["name"] == f"{HERE}.outer" and "late" not in row["attributes"]


def test_threads_get_their_own_traces(store: Store) -> None:
    spans: list[Any] = []

    def work() -> None:
        for _ in range(50):
            spans.append(outer(1))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = store.rows()
    assert len(rows) == 400
    roots = by_name(rows, f"{HERE}.outer")
    assert len({r["trace_id"] for r in roots}) == 200
    by_span = {r["span_id"]: r for r in rows}
    for r in by_name(rows, f"{HERE}.inner"):
        assert by_span[r["parent_span_id"]]["trace_id"] == r["trace_id"]


def test_configure_enabled_false_makes_plain_calls(store: Store) -> None:
    kronicler.configure(enabled=False)
    try:
        assert add(1) == 2
        assert outer(0)[0] is trace.INVALID_SPAN
    finally:
        kronicler.configure(enabled=True)
    add(5)
    assert len(store.rows()) == 1


def test_configure_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="-1"):
        kronicler.configure(flush_interval=-1)
    with pytest.raises(ValueError, match="0"):
        kronicler.configure(max_pending=0)


def test_status_counts_stored_rows(store: Store) -> None:
    before = kronicler.status().stored
    for i in range(10):
        add(i)
    assert kronicler.flush()
    status = kronicler.status()
    assert status.stored - before == 10 and status.pending == 0
    assert status.path == str(store.path)


def test_unusable_database_directory_never_reaches_the_caller(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    kronicler.configure(path=blocker / "db")
    try:
        before = kronicler.status().dropped
        for i in range(100):
            assert add(i) == i + 1
        assert kronicler.flush() is False
        assert kronicler.status().dropped - before == 100
        assert kronicler.status().error
        warnings = [
            r
            for r in caplog.records
            if r.name == "kronicler.otel.pipeline" and "cannot be used" in r.message
        ]
        assert len(warnings) == 1
    finally:
        kronicler.configure(path=tmp_path / "ok")
    add(1)
    assert kronicler.flush()


def test_recursion_nests_spans(store: Store) -> None:
    @kronicler.capture
    def fact(n: int) -> int:
        return 1 if n <= 1 else n * fact(n - 1)

    assert fact(5) == 120
    rows = store.rows()
    assert len(rows) == 5 and len({r["trace_id"] for r in rows}) == 1
    by_span = {r["span_id"]: r for r in rows}
    depth = 0
    leaf = min(rows, key=lambda r: r["duration"])
    while leaf["parent_span_id"]:
        leaf = by_span[leaf["parent_span_id"]]
        depth += 1
    assert depth == 4


def test_sys_recursion_limit_errors_are_recorded(store: Store) -> None:
    @kronicler.capture
    def deep(n: int) -> int:
        return deep(n + 1)

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        with pytest.raises(RecursionError):
            deep(0)
    finally:
        sys.setrecursionlimit(old)
    rows = store.rows()
    assert rows and all(r["status"] == 2 for r in rows)


def test_a_small_database_queue_is_waited_for_not_dropped(tmp_path: Any) -> None:
    from kronicler.db import Database

    db = Database.open(tmp_path / "small", queue_rows=100)
    kronicler.configure(database=db)
    try:
        before = kronicler.status()
        for i in range(5000):
            add(i)
        assert kronicler.flush(30)
        after = kronicler.status()
        assert after.dropped == before.dropped
        assert db.stats(f"{HERE}.add").count == 5000
    finally:
        kronicler.configure(path=tmp_path / "after")
        db.close()


def test_memory_stays_bounded_when_the_database_is_unusable(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    kronicler.configure(path=blocker / "db", max_pending=1000)
    try:
        before = kronicler.status().dropped
        for i in range(5000):
            add(i)
        kronicler.flush()
        assert kronicler.status().pending == 0
        assert kronicler.status().dropped - before == 5000
    finally:
        kronicler.configure(path=tmp_path / "ok", max_pending=2_000_000)


def test_closing_the_database_stores_what_capture_still_holds(tmp_path: Any) -> None:
    # The writer takes the capture buffer itself, on close too: calls recorded just before
    # their database closes are stored, not dropped, however long the hand-off interval.
    from kronicler.db import Database

    db = Database.open(tmp_path / "closing")
    kronicler.configure(database=db, flush_interval=60.0)
    try:
        before = kronicler.status()
        for i in range(300):
            add(i)
        db.close()
        assert kronicler.status().dropped == before.dropped
        with Database.open(tmp_path / "closing", readonly=True) as reopened:
            assert reopened.stats(f"{HERE}.add").count == 300
    finally:
        kronicler.configure(path=tmp_path / "after", flush_interval=0.1)
        db.close()


def test_threads_capturing_through_repeated_flushes_store_each_call_once(store: Store) -> None:
    calls, threads = 3000, 4

    def loop() -> None:
        for i in range(calls):
            add(i)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    before = kronicler.status()
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        kronicler.flush()
    for w in workers:
        w.join()
    assert kronicler.flush()
    after = kronicler.status()
    assert after.dropped == before.dropped
    assert after.stored - before.stored == calls * threads
    assert len(by_name(store.rows(), f"{HERE}.add")) == calls * threads
