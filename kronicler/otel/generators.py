"""Wrappers for generators and async generators: a span per iteration life, current only inside.

A generator is timed from its first resumption (the first ``next``/``send``, when its body
starts) until it is exhausted, closed, garbage-collected or fails; the consumer's time between
items is included, since that is how long the generator was alive and holding its resources.
Creating a generator that is never iterated records nothing.

The span is made current only while the generator's own code runs: each resumption enters it
and each ``yield`` leaves it, so the consumer never sees the generator's span as its own (the
usual ``start_as_current_span`` inside a generator leaks it into the consumer). ``send``,
``throw``, ``close`` and the return value pass through unchanged, for async generators
``asend``, ``athrow`` and ``aclose`` likewise.

A *scope* is the strategy per route: :class:`_FastScope` for the fast pipeline, :class:`_SdkScope`
for a global SDK provider, :class:`_NullScope` when Kronicler is disabled.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Generator
from time import perf_counter_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from kronicler.otel import current, tracer
from kronicler.otel.records import Site
from kronicler.otel.tracer import CallSite, internal_error


class _Scope(ABC):
    """A span that is made current only while the wrapped generator's own code runs."""

    __slots__ = ()

    @abstractmethod
    def enter(self) -> Any:
        """Make the span current; returns the token ``exit`` needs."""

    @abstractmethod
    def exit(self, token: Any) -> None:
        """Restore the context that was current before ``enter``."""

    @abstractmethod
    def finish(self, exc: BaseException | None) -> None:
        """End the span (with ``exc`` recorded when the generator raised)."""


class _FastScope(_Scope):
    __slots__ = ("cs", "span", "pseq", "t0")

    def __init__(self, cs: CallSite) -> None:
        # The span is made at once: every resumption puts it in a frame of its own.
        frame, self.pseq = current.start(current.value_get(), tracer.next_seq())
        self.span = current.span_of(frame)
        self.cs = cs
        self.t0 = perf_counter_ns()

    def enter(self) -> Any:
        span, base = self.span, current.base_of(current.value_get())
        return current.value_set([span.seq, span.root, base, span, None])

    def exit(self, token: Any) -> None:
        current.value_reset(token)

    def finish(self, exc: BaseException | None) -> None:
        t1 = perf_counter_ns()
        span = self.span
        frame = [span.seq, span.root, None, span, None]
        tracer.finish(frame, self.cs.index, self.cs.site, self.t0, t1, self.pseq, exc)


class _SdkScope(_Scope):
    __slots__ = ("span",)

    def __init__(self, tracer: Any, site: Site) -> None:
        self.span = tracer.start_span(
            site.name, kind=SpanKind(site.kind), attributes=site.attributes
        )

    def enter(self) -> Any:
        return otel_context.attach(trace.set_span_in_context(self.span))

    def exit(self, token: Any) -> None:
        otel_context.detach(token)

    def finish(self, exc: BaseException | None) -> None:
        span = self.span
        if isinstance(exc, Exception):  # what start_as_current_span does on an exception
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()


class _NullScope(_Scope):
    """Kronicler is disabled: drive the generator without a span."""

    __slots__ = ()

    def enter(self) -> Any:
        return None

    def exit(self, token: Any) -> None:
        return None

    def finish(self, exc: BaseException | None) -> None:
        return None


_NULL_SCOPE = _NullScope()


def _open_scope(cs: CallSite) -> _Scope | None:
    """The scope for a generator starting now, or None for a plain (uncaptured) run."""
    route = tracer.route()
    if route is tracer.PLAIN:
        return None
    try:
        return _FastScope(cs) if route is None else _SdkScope(route, cs.site)
    except Exception as exc:  # noqa: BLE001
        internal_error("start", exc)
        return None


def _safe(call: Callable[..., None], *args: Any) -> None:
    try:
        call(*args)
    except Exception as exc:  # noqa: BLE001
        internal_error("generator", exc)


def wrap_generator_function(
    fn: Callable[..., Generator[Any, Any, Any]], cs: CallSite
) -> Callable[..., Generator[Any, Any, Any]]:
    """Wrap a generator function; send/throw/close and the return value pass through."""

    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        gen = fn(*args, **kwargs)
        scope = _open_scope(cs)
        if scope is None:
            return (yield from gen)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = _enter(scope)
            try:
                if thrown is not None:
                    exc, thrown = thrown, None
                    value = gen.throw(exc)
                else:
                    value = gen.send(sent)
            except StopIteration as stop:
                _leave(scope, token)
                _safe(scope.finish, None)
                return stop.value
            except BaseException as exc:
                _leave(scope, token)
                _safe(scope.finish, exc)
                raise
            _leave(scope, token)
            try:
                sent = yield value
            except GeneratorExit as exit_:
                token = _enter(scope)
                try:
                    gen.close()
                except BaseException as exc:
                    _leave(scope, token)
                    _safe(scope.finish, exc)
                    raise
                _leave(scope, token)
                _safe(scope.finish, exit_)
                raise
            except BaseException as exc:
                thrown = exc

    return wrapper


def wrap_async_generator_function(
    fn: Callable[..., AsyncGenerator[Any, Any]], cs: CallSite
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """Wrap an async generator function; asend/athrow/aclose pass through."""

    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        agen = fn(*args, **kwargs)
        scope = _open_scope(cs) or _NULL_SCOPE
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = _enter(scope)
            try:
                if thrown is not None:
                    exc, thrown = thrown, None
                    value = await agen.athrow(exc)
                else:
                    value = await agen.asend(sent)
            except StopAsyncIteration:
                _leave(scope, token)
                _safe(scope.finish, None)
                return
            except BaseException as exc:
                _leave(scope, token)
                _safe(scope.finish, exc)
                raise
            _leave(scope, token)
            try:
                sent = yield value
            except GeneratorExit as exit_:
                token = _enter(scope)
                try:
                    await agen.aclose()
                except BaseException as exc:
                    _leave(scope, token)
                    _safe(scope.finish, exc)
                    raise
                _leave(scope, token)
                _safe(scope.finish, exit_)
                raise
            except BaseException as exc:
                thrown = exc

    return wrapper


def _enter(scope: _Scope) -> Any:
    try:
        return scope.enter()
    except Exception as exc:  # noqa: BLE001
        internal_error("generator", exc)
        return None


def _leave(scope: _Scope, token: Any) -> None:
    if token is not None:
        _safe(scope.exit, token)
