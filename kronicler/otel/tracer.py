"""Timing wrappers: the fast default pipeline's front half, and the route through an SDK provider.

Every wrapped call first asks one question, ``opentelemetry.trace._TRACER_PROVIDER is not
_expected`` (~15 ns): has the global provider changed since we last looked, or did Kronicler
ask to look again (configure, fork, shutdown)? Usually the answer is no and the call takes the
fast path:

1. read the one current value (OTel's context variable, see :mod:`kronicler.otel.current`),
   take the next ``seq`` and set a *frame* (a five-item list) current in its place: no span
   object and no ``Context`` are made unless ``trace.get_current_span()``, ``propagate.inject``
   or an instrumented library asks for them;
2. time the call with ``perf_counter_ns``; reset the variable;
3. extend the pipeline's flat list by ``(site, t0, t1, seq, root, parent_seq)`` (the
   duration is one numpy subtraction at conversion, not one Python subtraction per call).

In pure Python that is about 4x the cost of a bare ``perf_counter_ns`` wrapper (0.9 us of CPU
against 0.23 us, measured on 2026-11-29), against ~150x for ``start_as_current_span`` on the SDK.
Errors, spans changed during the call and foreign parents leave the fast path for :func:`finish`.

Where the optional C extension :mod:`kronicler.otel._fastcall` is built, :func:`wrap_function`
returns its ``Wrapper`` instead: the same steps in C (the record kept as six C int64s, taken by
the writer as bytes), calling the very same Python functions here for everything but the common
path. ``KRONICLER_PURE_PYTHON=1`` keeps the Python wrapper. Coroutine functions, generators and
server spans stay in Python (their cost is dominated by the await or the iteration protocol);
they share the C side's ``seq`` counter and record buffer.

When the look-again question says yes, :func:`_resolve` decides: Kronicler disabled -> plain
call; a global ``opentelemetry.sdk.trace.TracerProvider`` -> the call becomes a real SDK span
(so the user's processors and exporters see it, including ``KroniclerSpanExporter``); anything
else -> start the background thread if needed and remember the provider, so the next calls are
fast again. Kronicler never sets the global provider itself.

Generators and async generators are wrapped by :mod:`kronicler.otel.generators`.

Reading ``_TRACER_PROVIDER`` (a private module global of opentelemetry-api) is one of two
liberties taken for speed (the other: :mod:`kronicler.otel.current` uses the runtime context's
variable); if a future API version drops it, ``_PublicProviderSource`` falls back to the
public ``get_tracer_provider()`` at ~0.2 us a call.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from kronicler._config import Settings, pure_python
from kronicler._log import LogOnce
from kronicler._version import __version__
from kronicler.db.schema import STATUS_ERROR, STATUS_OK
from kronicler.otel import current, ids
from kronicler.otel.contract import MAX_MESSAGE, exception_type_name, row_attributes
from kronicler.otel.current import DONE, ROOT, SEQ, Frame, value_get, value_reset, value_set
from kronicler.otel.pipeline import Pipeline
from kronicler.otel.records import COMPACT_WIDTH, FullRecord, RecordBuffer, Site
from kronicler.otel.span import FastSpan, ForeignFastSpan, SpanState

_log_once = LogOnce(logging.getLogger(__name__))
_INSTRUMENTATION = "kronicler"


class _PublicProviderSource:
    """Stands in for the ``opentelemetry.trace`` module if it lacks ``_TRACER_PROVIDER``."""

    @property
    def _TRACER_PROVIDER(self) -> object:  # noqa: N802 - mirrors the module global's name
        return trace.get_tracer_provider()


_src: Any = trace if hasattr(trace, "_TRACER_PROVIDER") else _PublicProviderSource()

_NEVER: Any = object()  # never equal to a provider: forces _resolve on the next call
_PLAIN: Any = object()  # _resolve result: run the function as a plain call
PLAIN = _PLAIN


def _load_fast() -> Any:
    """The C fast path's module, or None (not built, not wanted, or not matching this runtime)."""
    if pure_python() or not hasattr(trace, "_TRACER_PROVIDER"):
        return None
    try:
        from kronicler.otel import _fastcall
    except ImportError:
        return None
    clock = time.get_clock_info("perf_counter").implementation
    if _fastcall.WIDTH != COMPACT_WIDTH or _fastcall.CLOCK not in (clock, "PyTime_PerfCounterRaw"):
        return None  # durations must come from perf_counter_ns's own clock
    return _fastcall


_fast = _load_fast()
#: True when captured plain functions are timed by the C wrapper.
ACCELERATED = _fast is not None
_records: RecordBuffer | None = _fast.Records() if _fast is not None else None
PIPELINE = Pipeline(Settings.from_env(), _records)
_expected: Any = _NEVER


_FAST_COUNTER: Any = _fast.Counter() if _fast is not None else None


def _new_counter() -> Iterator[int]:
    """A fresh ``seq`` source; with the C path, its one counter (the C wrappers read it
    directly) moved to a fresh start."""
    first = ids.first_seq()
    if _FAST_COUNTER is None:
        return itertools.count(first)
    _FAST_COUNTER.restart(first)
    return _FAST_COUNTER


_counter = _new_counter()
_shut = False
_sdk_provider: Any = None
_sdk_tracer: Any = None


@dataclass(frozen=True, slots=True)
class CallSite:
    """A decorated function's identity in both pipelines."""

    index: int  # in the pipeline's site table
    site: Site


def new_site(name: str, kind: int, attributes: dict[str, Any], text: str) -> CallSite:
    site = Site(name=name, kind=kind, attributes=attributes, attributes_text=text)
    return CallSite(PIPELINE.register_site(site), site)


# -- control -----------------------------------------------------------------------------------
def reset_resolution() -> None:
    """Make every wrapper re-decide its route on its next call."""
    global _expected
    _expected = _NEVER


def set_shut(value: bool) -> None:
    global _shut
    _shut = value
    reset_resolution()


def _resolve() -> Any:
    """The route for calls until the next change: None (fast), _PLAIN, or an SDK tracer."""
    global _expected, _sdk_provider, _sdk_tracer
    try:
        raw = _src._TRACER_PROVIDER
        if raw is not None and raw is _sdk_provider:
            return _sdk_tracer if PIPELINE.settings.enabled and not _shut else _PLAIN
        if not PIPELINE.settings.enabled or _shut:
            _expected = _NEVER
            return _PLAIN
        provider = trace.get_tracer_provider()
        sdk = sys.modules.get("opentelemetry.sdk.trace")
        if sdk is not None and isinstance(provider, sdk.TracerProvider):
            _sdk_tracer = provider.get_tracer(_INSTRUMENTATION, __version__)
            _sdk_provider = provider
            _expected = _NEVER
            return _sdk_tracer
        PIPELINE.start()
        _expected = _src._TRACER_PROVIDER
        return None
    except Exception as exc:  # noqa: BLE001 - decide "plain call" rather than fail the app
        internal_error("route", exc)
        return _PLAIN


def route() -> Any:
    """The route for a call starting now: None (fast pipeline), ``PLAIN`` or an SDK tracer."""
    return _resolve() if _src._TRACER_PROVIDER is not _expected else None


def next_seq() -> int:
    return next(_counter)


def internal_error(where: str, exc: BaseException) -> None:
    _log_once(where, logging.WARNING, "kronicler: internal error in %s; the call ran uncaptured",
              where, exc_info=exc)  # fmt: skip


def _after_fork_in_child() -> None:
    global _counter
    _counter = _new_counter()
    PIPELINE.after_fork_in_child()
    reset_resolution()


class _WorkerExitHook:
    """Stores a multiprocessing worker's records when it exits (workers skip ``atexit``)."""

    def __call__(self, _: object) -> None:
        from multiprocessing import util

        # Higher priority than the database's own hook (10): our records go in before it closes.
        util.Finalize(None, PIPELINE.shutdown, exitpriority=20)


_WORKER_EXIT_HOOK = _WorkerExitHook()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=PIPELINE.before_fork,
        after_in_parent=PIPELINE.after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
    # multiprocessing clears finalisers in a new worker after the os-level hooks ran, then calls
    # its own after-fork hooks: the exit hook is registered there so it survives.
    from multiprocessing import util as _mp_util

    _mp_util.register_after_fork(_WORKER_EXIT_HOOK, _WORKER_EXIT_HOOK)


# -- fast path pieces --------------------------------------------------------------------------
def finish(
    frame: Frame, index: int, site: Site, t0: int, t1: int, pseq: int, exc: BaseException | None
) -> None:
    """End a call that may need more than a compact record. Never raises."""
    try:
        span, st = current.end(frame)
        if span is None:  # nobody asked for it: only its ids are needed
            span = FastSpan(frame[SEQ], frame[ROOT])
        status, attrs, name, error, description = 0, None, None, None, None
        if isinstance(st, SpanState):
            status, name, error, description = st.status, st.name, st.exception, st.description
            if st.attributes:
                attrs = {**site.attributes, **st.attributes}
        if isinstance(exc, Exception):  # as the SDK: BaseExceptions are not errors
            try:
                message = str(exc)[:MAX_MESSAGE]
            except Exception:  # noqa: BLE001
                message = "<unprintable exception>"
            error = (exception_type_name(exc), message)
            if status != STATUS_OK:  # the status the SDK sets for an escaping exception
                status = STATUS_ERROR
                description = f"{type(exc).__name__}: {message}"
        added = row_attributes(
            attrs if attrs is not None else site.attributes, exception=error, status=status,
            description=description,
        )  # fmt: skip
        if added is not None:
            attrs = added
        if span.root and not status and attrs is None and name is None:
            PIPELINE.rows.extend((index, t0, t1, span.seq, span.root, pseq))
            return
        if isinstance(span, ForeignFastSpan):
            parent_id = span.parent_id
        else:
            parent_id = ids.span_id(pseq) if pseq else 0
        PIPELINE.full.append(FullRecord(
            index, t0, t1 - t0, span.trace_id(), span.span_id(), parent_id, status, attrs, name,
        ))  # fmt: skip
    except Exception as err:  # noqa: BLE001
        internal_error("finish", err)


# -- wrappers ----------------------------------------------------------------------------------
# The two wrappers below share their body line for line (one is a coroutine): the common cases
# are written inline because a helper call would cost ~10% of the whole decorator.
def wrap_function(fn: Callable[..., Any], cs: CallSite) -> Callable[..., Any]:
    """Wrap a plain callable (function, method, builtin)."""
    if _fast is not None:
        wrapped: Callable[..., Any] = _fast.Wrapper(fn, cs.index, cs.site)
        return wrapped
    return wrap_function_python(fn, cs)


def wrap_function_python(fn: Callable[..., Any], cs: CallSite) -> Callable[..., Any]:
    """The pure-Python wrapper (the reference for the C one)."""
    index, site = cs.index, cs.site
    rows_extend = PIPELINE.rows.extend
    get, set_, reset, perf = value_get, value_set, value_reset, perf_counter_ns
    start, done = current.start, DONE

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _src._TRACER_PROVIDER is not _expected:
            route = _resolve()
            if route is not None:
                if route is _PLAIN:
                    return fn(*args, **kwargs)
                return _sdk_call(route, site, fn, args, kwargs)
        try:
            value = get()
            seq = next(_counter)
            if type(value) is list and value[1]:  # a call of this process's trace is current
                frame, pseq = [seq, value[1], value[2], None, None], value[0]
            elif not value:  # an empty OTel context: a new trace
                frame, pseq = [seq, seq, value, None, None], 0
            else:
                frame, pseq = start(value, seq)
            token = set_(frame)
        except Exception as exc:  # noqa: BLE001
            internal_error("start", exc)
            return fn(*args, **kwargs)
        t0 = perf()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            t1 = perf()
            try:
                reset(token)
            except Exception as err:  # noqa: BLE001
                internal_error("end", err)
            finish(frame, index, site, t0, t1, pseq, exc)
            raise
        t1 = perf()
        try:
            reset(token)
            if frame[3] is None:  # nobody asked for the span: nothing changed on it
                frame[3] = done
                rows_extend((index, t0, t1, seq, frame[1], pseq))
            else:
                finish(frame, index, site, t0, t1, pseq, None)
        except Exception as exc:  # noqa: BLE001
            internal_error("end", exc)
        return result

    return wrapper


def wrap_coroutine_function(
    fn: Callable[..., Coroutine[Any, Any, Any]], cs: CallSite
) -> Callable[..., Coroutine[Any, Any, Any]]:
    """Wrap an ``async def``: the span covers the whole await, suspensions included."""
    index, site = cs.index, cs.site
    rows_extend = PIPELINE.rows.extend
    get, set_, reset, perf = value_get, value_set, value_reset, perf_counter_ns
    start, done = current.start, DONE

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _src._TRACER_PROVIDER is not _expected:
            route = _resolve()
            if route is not None:
                if route is _PLAIN:
                    return await fn(*args, **kwargs)
                with route.start_as_current_span(
                    site.name, kind=SpanKind(site.kind), attributes=site.attributes
                ):
                    return await fn(*args, **kwargs)
        try:
            value = get()
            seq = next(_counter)
            if type(value) is list and value[1]:  # a call of this process's trace is current
                frame, pseq = [seq, value[1], value[2], None, None], value[0]
            elif not value:  # an empty OTel context: a new trace
                frame, pseq = [seq, seq, value, None, None], 0
            else:
                frame, pseq = start(value, seq)
            token = set_(frame)
        except Exception as exc:  # noqa: BLE001
            internal_error("start", exc)
            return await fn(*args, **kwargs)
        t0 = perf()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            t1 = perf()
            try:
                reset(token)
            except Exception as err:  # noqa: BLE001
                internal_error("end", err)
            finish(frame, index, site, t0, t1, pseq, exc)
            raise
        t1 = perf()
        try:
            reset(token)
            if frame[3] is None:  # nobody asked for the span: nothing changed on it
                frame[3] = done
                rows_extend((index, t0, t1, seq, frame[1], pseq))
            else:
                finish(frame, index, site, t0, t1, pseq, None)
        except Exception as exc:  # noqa: BLE001
            internal_error("end", exc)
        return result

    return wrapper


def _sdk_call(tracer: Any, site: Site, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    with tracer.start_as_current_span(
        site.name, kind=SpanKind(site.kind), attributes=site.attributes
    ):
        return fn(*args, **kwargs)


if _fast is not None:
    _fast.install(
        var=current.RUNTIME.var, trace_dict=vars(trace), tracer_dict=globals(), resolve=_resolve,
        plain=_PLAIN, sdk_call=_sdk_call, start=current.start, finish=finish,
        internal_error=internal_error, done=DONE, records=_records, counter=_counter,
    )  # fmt: skip
