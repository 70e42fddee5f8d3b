"""``@kronicler.capture``: the decorator, its naming rules and its choice of wrapper.

The decorator does the slow, once-per-function work: it names the span (``module.Qualname``),
collects the OpenTelemetry code attributes (``code.function.name``, ``code.file.path``,
``code.line.number``) plus the user's attributes, registers the call site with the pipeline and
picks the wrapper for the kind of callable (plain, ``async def``, generator, async generator).
Everything per call lives in :mod:`kronicler.otel.tracer`.

Arguments are never recorded: a span's attributes are fixed at decoration time, and code running
inside the call can add more with ``trace.get_current_span().set_attribute(...)``.

With ``KRONICLER_ENABLED=0`` in the environment when a function is decorated, the function is
returned unchanged (no cost at all); ``kronicler.configure(enabled=False)`` at run time keeps the
wrappers, which then make plain calls.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

from opentelemetry.trace import SpanKind

from kronicler._config import Settings
from kronicler.otel import generators, tracer
from kronicler.otel.contract import attributes_text

F = TypeVar("F", bound=Callable[..., Any])

CODE_FUNCTION = "code.function.name"
CODE_FILE = "code.file.path"
CODE_LINE = "code.line.number"

_SCALARS = (str, bool, int, float)


@overload
def capture(fn: F, /) -> F: ...


@overload
def capture(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind | int = SpanKind.INTERNAL,
) -> Callable[[F], F]: ...


def capture(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind | int = SpanKind.INTERNAL,
) -> Any:
    """Record every call of ``fn`` as an OpenTelemetry span (and a Kronicler row).

    Use bare (``@capture``) or with options (``@capture(name="db.load", attributes={...})``).
    ``name`` replaces the default span name ``module.Qualname``; ``attributes`` are added to
    every span of the function; ``kind`` is an OTel ``SpanKind`` (default INTERNAL).
    """
    span_kind = _check_kind(kind)
    user_attrs = _check_attributes(attributes)
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"name must be non-empty text, got {name!r}")

    def decorate(target: Any) -> Any:
        return _decorate(target, name, user_attrs, span_kind)

    return decorate if fn is None else decorate(fn)


def _decorate(target: Any, name: str | None, attrs: dict[str, Any], kind: int) -> Any:
    if isinstance(target, (classmethod, staticmethod)):
        return type(target)(_decorate(target.__func__, name, attrs, kind))
    if not callable(target):
        raise ValueError(f"capture needs a callable, got {target!r}")
    if not _ENV_ENABLED:
        return target
    tracer.PIPELINE.arm_stop_signals()
    qualified = qualified_name(target)
    site_attrs = {**code_attributes(target, qualified), **attrs}
    cs = tracer.new_site(name or qualified, kind, site_attrs, attributes_text(site_attrs))
    wrapper: Callable[..., Any]
    if _is_async_gen(target):
        wrapper = generators.wrap_async_generator_function(target, cs)
    elif _is_coroutine(target):
        wrapper = tracer.wrap_coroutine_function(target, cs)
    elif inspect.isgeneratorfunction(target):
        wrapper = generators.wrap_generator_function(target, cs)
    else:
        wrapper = tracer.wrap_function(target, cs)
    try:
        functools.update_wrapper(wrapper, target)
    except (AttributeError, TypeError):  # objects without a __dict__ to copy from
        wrapper.__wrapped__ = target  # type: ignore[union-attr]
    return wrapper


def qualified_name(fn: Any) -> str:
    """``module.Qualname`` of a callable (``module.Class.method`` for methods)."""
    inner = inspect.unwrap(fn) if hasattr(fn, "__wrapped__") else fn
    if isinstance(inner, functools.partial):
        inner = inner.func
    qual = getattr(inner, "__qualname__", None) or getattr(inner, "__name__", None)
    if not isinstance(qual, str):
        qual = type(inner).__qualname__
    module = getattr(inner, "__module__", None)
    if not isinstance(module, str):
        module = type(inner).__module__
    if module == "__mp_main__":  # the main script, as imported by multiprocessing's spawn
        module = "__main__"
    return f"{module}.{qual}" if module else qual


def code_attributes(fn: Any, qualified: str) -> dict[str, Any]:
    """OpenTelemetry ``code.*`` attributes; file and line only where Python code exists."""
    out: dict[str, Any] = {CODE_FUNCTION: qualified}
    inner = inspect.unwrap(fn) if hasattr(fn, "__wrapped__") else fn
    if isinstance(inner, functools.partial):
        inner = inner.func
    code = getattr(inner, "__code__", None) or getattr(_call_method(inner), "__code__", None)
    if code is not None:
        out[CODE_FILE] = code.co_filename
        out[CODE_LINE] = code.co_firstlineno
    return out


def _call_method(fn: Any) -> Any:
    """The ``__call__`` of a callable object (None for functions and methods)."""
    if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn):
        return None
    return getattr(type(fn), "__call__", None)  # noqa: B004 - the method itself is wanted


def _is_coroutine(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(_call_method(fn))


def _is_async_gen(fn: Any) -> bool:
    return inspect.isasyncgenfunction(fn) or inspect.isasyncgenfunction(_call_method(fn))


def _check_kind(kind: Any) -> int:
    if isinstance(kind, SpanKind):
        return int(kind.value)
    if isinstance(kind, int) and not isinstance(kind, bool) and 0 <= kind <= 4:
        return kind
    raise ValueError(f"kind must be an opentelemetry.trace.SpanKind, got {kind!r}")


def _check_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise ValueError(f"attributes must be a mapping, got {attributes!r}")
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"attribute names must be non-empty text, got {key!r}")
        if isinstance(value, _SCALARS):
            out[key] = value
        elif isinstance(value, Sequence) and all(isinstance(v, _SCALARS) for v in value):
            out[key] = tuple(value)
        else:
            raise ValueError(
                f"attribute {key!r} must be text, bool, int, float or a sequence of them, "
                f"got {value!r}"
            )
    return out


_ENV_ENABLED = Settings.from_env().enabled
