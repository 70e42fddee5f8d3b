"""The fast pipeline's span: a real ``opentelemetry.trace.Span`` that costs ~0.1 us to make.

An SDK span builds its ``SpanContext``, attribute containers, locks and resource links up
front (~10 us). :class:`FastSpan` holds two integers: its own ``seq`` and the ``seq`` of its
trace's root (see :mod:`kronicler.otel.ids`). Everything else is made only when someone asks:

* ``get_span_context()`` derives the ids and builds (and caches) a ``SpanContext``, so
  ``propagate.inject`` and OTel-instrumented libraries see a valid, sampled context;
* ``set_attribute``/``set_status``/``record_exception``/``update_name`` create a small
  :class:`SpanState` on first use; the decorator stores such spans through the general path.

A span whose parent is not a ``FastSpan`` of the same trace (a remote context from
``propagate.extract``, a span of some other tracer) is a :class:`ForeignFastSpan`, which also
carries its explicit trace id, parent span id and trace state.

Spans are ended by the decorator; ``end()`` called by user code is ignored, as are changes made
after the end (the SDK does the same, with a warning).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    Span,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util import types

from kronicler.otel import ids
from kronicler.otel.contract import (
    EXCEPTION_MESSAGE,
    EXCEPTION_TYPE,
    exception_info,
    exception_type_name,
)

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class SpanState:
    """What user code changed on a live span; created on the first change."""

    __slots__ = ("attributes", "status", "description", "exception", "name", "span_context")

    def __init__(self) -> None:
        self.attributes: BoundedAttributes | None = None
        self.status: int = 0
        self.description: str | None = None  # of an ERROR status
        self.exception: tuple[str, str] | None = None
        self.name: str | None = None
        self.span_context: SpanContext | None = None

    def changed(self) -> bool:
        """True when the stored row must differ from the decorator's default row."""
        return (
            bool(self.attributes)
            or bool(self.status)
            or self.exception is not None
            or (self.name is not None)
        )


#: Marks an ended span (its ``state`` slot); a sentinel object, not a SpanState.
ENDED: Any = object()


class FastSpan(Span):
    """A recording span of the fast pipeline (see module docstring)."""

    __slots__ = ("seq", "root", "state")

    def __init__(self, seq: int, root: int) -> None:
        self.seq = seq
        self.root = root
        self.state: SpanState | None = None

    # -- ids ---------------------------------------------------------------------------------
    def trace_id(self) -> int:
        return ids.trace_id(self.root)

    def span_id(self) -> int:
        return ids.span_id(self.seq)

    def _trace_state(self) -> TraceState:
        return DEFAULT_TRACE_STATE

    def get_span_context(self) -> SpanContext:
        st = self.state
        if st is ENDED:
            return self._make_context()
        if st is None:
            st = self.state = SpanState()
        if st.span_context is None:
            st.span_context = self._make_context()
        return st.span_context

    def _make_context(self) -> SpanContext:
        return SpanContext(
            trace_id=self.trace_id(),
            span_id=self.span_id(),
            is_remote=False,
            trace_flags=_SAMPLED,
            trace_state=self._trace_state(),
        )

    # -- recording ---------------------------------------------------------------------------
    def is_recording(self) -> bool:
        return self.state is not ENDED

    def _live_state(self) -> SpanState | None:
        st = self.state
        if st is ENDED:
            return None
        if st is None:
            st = self.state = SpanState()
        return st

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        self.set_attributes({key: value})

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        st = self._live_state()
        if st is None or not attributes:
            return
        if st.attributes is None:
            st.attributes = BoundedAttributes(maxlen=None, immutable=False)
        for key, value in attributes.items():
            st.attributes[key] = value

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK's: OK is final, UNSET is ignored, a description is kept for ERROR only."""
        st = self._live_state()
        if st is None or st.status == StatusCode.OK.value:
            return
        if not isinstance(status, Status):
            status = Status(status, description)  # drops a description that is not ERROR's
        if status.status_code is StatusCode.UNSET:
            return
        st.status = int(status.status_code.value)
        st.description = status.description

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        st = self._live_state()
        if st is not None:
            # The SDK's event attributes: its own keys, then the caller's over them.
            event: dict[str, Any] = {
                EXCEPTION_TYPE: exception_type_name(exception),
                EXCEPTION_MESSAGE: str(exception),
            }
            if attributes:
                event.update(attributes)
            st.exception = exception_info(event)

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        """Accepted and not stored: the span table has no event column."""

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        """Accepted and not stored: the span table has no link column."""

    def update_name(self, name: str) -> None:
        st = self._live_state()
        if st is not None:
            st.name = str(name)

    def end(self, end_time: int | None = None) -> None:
        """Ignored: the decorator ends the span when the call returns."""

    def __repr__(self) -> str:
        return f"FastSpan(trace_id=0x{self.trace_id():032x}, span_id=0x{self.span_id():016x})"


class ForeignFastSpan(FastSpan):
    """A fast span whose trace began elsewhere: it keeps its explicit trace and parent ids."""

    __slots__ = ("trace", "parent_id", "trace_state")

    def __init__(self, seq: int, trace: int, parent_id: int, trace_state: TraceState) -> None:
        self.seq = seq
        self.root = 0
        self.state = None
        self.trace = trace
        self.parent_id = parent_id
        self.trace_state = trace_state

    def trace_id(self) -> int:
        return self.trace

    def _trace_state(self) -> TraceState:
        return self.trace_state


def parent_of(parent: object) -> tuple[int, int, TraceState] | None:
    """``(trace_id, parent_span_id, trace_state)`` for a parent that is not a plain FastSpan.

    None when there is no parent or its context is invalid: the new span then starts a trace.
    """
    if isinstance(parent, ForeignFastSpan):
        return parent.trace, parent.span_id(), parent.trace_state
    if isinstance(parent, FastSpan):
        return parent.trace_id(), parent.span_id(), DEFAULT_TRACE_STATE
    if isinstance(parent, Span):
        sc = parent.get_span_context()
        if isinstance(sc, SpanContext) and sc.is_valid:
            return sc.trace_id, sc.span_id, sc.trace_state
    return None
