"""The current captured call, kept in OTel's own context variable and made a ``Context`` on demand.

Making a captured call current the way the OTel API does (copy the current ``Context``, add the
span, ``attach``, ``detach``) builds a dict, a ``Context`` and a span object per call: about half
the decorator's cost, paid by every call although almost none is ever asked "what is the current
span?". Here a call is recorded as a *frame*, a five-item list ``[seq, root, base, span,
context]``, set straight into the variable that holds OTel's current context (one ``set`` and one
``reset`` per call):

* ``seq`` and ``root`` number the span and its trace (see :mod:`kronicler.otel.ids`); ``root``
  is 0 when the trace began outside this process (the span then exists from the start, as a
  :class:`~kronicler.otel.span.ForeignFastSpan` holding the foreign ids);
* ``base`` is the OTel ``Context`` the call began under (for nested frames, the one under the
  outermost frame: frames add nothing to a context but their span);
* ``span`` is the :class:`~kronicler.otel.span.FastSpan`, made when someone first asks for it
  (None until then, :data:`DONE` once the call ended without anyone asking);
* ``context`` caches the OTel ``Context`` made for the frame, also only on demand.

:class:`LazyRuntimeContext` takes the place of ``opentelemetry.context._RUNTIME_CONTEXT``: its
``get_current`` turns a frame into ``base`` plus the frame's span (once per frame), so
``trace.get_current_span()``, ``propagate.inject``, ``start_as_current_span`` and instrumented
libraries see the captured call as before; ``attach``/``detach`` are the variable's own ``set`` and
``reset``, so contexts attached inside a call stack on the frame, and the call's ``reset`` undoes
whatever was left attached, as ``detach`` of its own token did. One variable keeps the order of
frames and attached contexts without any bookkeeping: a nested call reads one value to find its
parent, a frame (the common case, no allocation) or a ``Context`` (a span of some other tracer).

Trade-offs: ``opentelemetry.context.get_current()`` pays one type check more, plus building the
``Context`` the first time a frame is asked; and the variable of OTel's default runtime context
(``ContextVarsRuntimeContext._current_context``, private) is used directly, as ``tracer`` reads
``_TRACER_PROVIDER``. Tokens of contexts attached before Kronicler was imported stay valid. With a
custom ``OTEL_PYTHON_CONTEXT`` runtime, frames and contexts attached from then on live in a context
variable of Kronicler's on top of that runtime, whose own current context is the base.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context.context import Context, _RuntimeContext
from opentelemetry.trace.propagation import _SPAN_KEY

from kronicler.otel.span import ENDED, FastSpan, ForeignFastSpan, parent_of

SEQ, ROOT, BASE, SPAN, CONTEXT = range(5)  # the items of a frame
Frame = list[Any]

#: ``frame[SPAN]`` of a call that ended before anyone asked for its span.
DONE: Any = object()

#: The value of our own variable (custom runtimes only) where nothing was attached through it:
#: "ask the wrapped runtime". Not empty, so the decorator's empty-context shortcut skips it.
_INHERIT = Context({"kronicler.inherit": True})

# Another thread can ask for a frame's span while the call runs (a copied context handed to an
# executor): the lock makes sure both get the same span object. Never taken on a call's path.
_make_lock = threading.Lock()


class LazyRuntimeContext(_RuntimeContext):
    """OTel's runtime context, whose current value may be a captured call's frame.

    ``attach`` and ``detach`` are the variable's ``set`` and ``reset`` (bound at construction,
    so they cost nothing more); ``get_current`` turns a frame into a ``Context``.
    """

    def __init__(self, inner: _RuntimeContext) -> None:
        self.inner = inner
        var = getattr(inner, "_current_context", None)
        if not isinstance(var, ContextVar):  # pragma: no cover - a custom OTEL_PYTHON_CONTEXT
            var = ContextVar("kronicler_current", default=_INHERIT)
        self.var: ContextVar[Any] = var
        # Instance attributes shadow the methods below: one call less per attach/detach.
        self.attach = var.set  # type: ignore[method-assign,assignment]
        self.detach = var.reset  # type: ignore[method-assign,assignment]

    def attach(self, context: Context) -> Token[Context]:
        return self.var.set(context)  # pragma: no cover - shadowed in __init__

    def detach(self, token: Token[Context]) -> None:
        self.var.reset(token)  # pragma: no cover - shadowed in __init__

    def get_current(self) -> Context:
        value = self.var.get()
        if type(value) is list:
            made = value[CONTEXT]
            if made is None:
                values = value[BASE].copy()  # a plain dict, as context.set_value does
                values[_SPAN_KEY] = span_of(value)
                made = value[CONTEXT] = Context(values)
            return made
        if value is _INHERIT:  # pragma: no cover - a custom OTEL_PYTHON_CONTEXT
            return self.inner.get_current()
        return value


def _install() -> LazyRuntimeContext:
    runtime = otel_context._RUNTIME_CONTEXT
    if not isinstance(runtime, LazyRuntimeContext):
        runtime = LazyRuntimeContext(runtime)
        otel_context._RUNTIME_CONTEXT = runtime
    return runtime


RUNTIME = _install()
#: The current value (a ``Context`` or a frame), setting a frame current, and undoing that.
value_get, value_set, value_reset = RUNTIME.var.get, RUNTIME.var.set, RUNTIME.var.reset


def base_of(value: Any) -> Context:
    """The OTel ``Context`` under ``value`` (a current value: a frame or a ``Context``)."""
    if type(value) is list:
        return value[BASE]
    if value is _INHERIT:  # pragma: no cover - a custom OTEL_PYTHON_CONTEXT
        return RUNTIME.inner.get_current()
    return value


def span_of(frame: Frame) -> FastSpan:
    """The frame's span, made on first use (already ended when its call has ended)."""
    span = frame[SPAN]
    if span is None or span is DONE:
        with _make_lock:
            span = frame[SPAN]
            if span is None or span is DONE:
                made = FastSpan(frame[SEQ], frame[ROOT])
                if span is DONE:
                    made.state = ENDED
                span = frame[SPAN] = made
    return span


def start(value: Any, seq: int) -> tuple[Frame, int]:
    """A frame for call ``seq`` beginning where ``value`` is current, and the ``seq`` of its
    parent (0: none, or a parent that is not a fast span of this process's trace).

    The decorator handles the two common cases inline (a root call under an empty context, a
    child of a call of this process's trace); this is the general rule.
    """
    base = base_of(value)
    parent = span_of(value) if type(value) is list else base.get(_SPAN_KEY)
    if type(parent) is FastSpan:
        return [seq, parent.root, base, None, None], parent.seq
    if parent is None:
        return [seq, seq, base, None, None], 0
    span = foreign_span(parent, seq)
    return [seq, span.root, base, span, None], 0


def foreign_span(parent: object, seq: int) -> FastSpan:
    """The span of call ``seq`` under a parent that is not a plain FastSpan of this process."""
    found = parent_of(parent)
    if found is None:
        return FastSpan(seq, seq)
    trace_id, parent_id, trace_state = found
    return ForeignFastSpan(seq, trace_id, parent_id, trace_state)


def end(frame: Frame) -> tuple[FastSpan | None, Any]:
    """Mark the frame's call ended: its span (None if never made) and the span's state.

    Races with another thread making the span at this very moment only in that the span it
    makes may report itself recording; what is set on it is ignored, as after the end.
    """
    span = frame[SPAN]
    if span is None:
        frame[SPAN] = DONE
        return None, None
    st, span.state = span.state, ENDED
    return span, st
