"""Frozen slotted record classes that cost little to define.

``@dataclass(frozen=True, slots=True)`` writes six methods of every class it decorates
(``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``, ``__delattr__``) as source
text and compiles them when the module is imported: ~0.5 ms, ~3.8M instructions, per class. A
cold question (a new process opening a database and asking one ``stats()``) imports about forty
such classes before it reads a byte; under callgrind they were about half of what importing
Kronicler's read path cost.

``@record`` makes the same classes for less. ``dataclasses`` still collects the fields and
builds the slotted class, so ``dataclasses.fields``, ``replace``, ``asdict`` and ``field(...)``
work as before; it is only asked for no method. The frozen guards, ``__repr__`` and the pickling
hooks are small closures (no compiling), and ``__init__``, ``__eq__`` and ``__hash__``, which
are on hot paths (bufferpool keys, a chunk per row group), are compiled from the same source
``dataclasses`` writes on their first call, so a process pays only for the methods it uses, and
they then run exactly as fast as before.
Measured: a five-field class costs ~35 us to decorate instead of ~460 us (wall, quiet
machine); under callgrind, a cold read-only ``stats()`` imported Kronicler's read path in ~131M
instructions instead of ~267M, and compiled the ``__init__`` of the ~12 classes it made for ~12M.

What it supports is what the package's records use: ``field(default=, default_factory=, init=,
repr=, compare=, hash=)``, ``__post_init__`` (no ``InitVar``), a class-defined ``__hash__``,
``__eq__`` or ``__repr__`` (kept), ``eq=False`` (identity equality, as with ``dataclasses``).
It refuses what it does not: ``kw_only`` fields and a class that defines ``__setattr__``.
Behaviour that differs from ``dataclasses``: ``__dataclass_params__`` describes what
``dataclasses`` was asked for (no methods, not frozen), and ``__repr__`` has no recursion guard.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda decorator: decorator


T = TypeVar("T")

_SET = "_record_set"
_MISSING = "_record_missing"


@overload
def record(cls: type[T], /) -> type[T]: ...
@overload
def record(*, eq: bool = True) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, Field))
def record(cls: type[T] | None = None, /, *, eq: bool = True) -> Any:
    """Make ``cls`` a frozen slotted record: ``@record``, or ``@record(eq=False)`` for one that
    compares (and hashes) by identity."""
    if cls is None:
        return lambda c: _make(c, eq)
    return _make(cls, eq)


def _make(cls: type[T], eq: bool) -> type[T]:
    if "__setattr__" in cls.__dict__ or "__delattr__" in cls.__dict__:
        raise TypeError(f"record {cls.__qualname__} cannot define __setattr__ or __delattr__")
    own = cls.__dict__
    # Python sets __hash__ to None in a class that defines __eq__ alone: that is not a choice.
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    keep = {name for name in ("__eq__", "__repr__") if name in own}
    if not cls.__doc__:  # else dataclasses writes one from inspect.signature, at a cost
        cls.__doc__ = f"{cls.__name__}({', '.join(own.get('__annotations__', ()))})"
    cls = dataclasses.dataclass(cls, init=False, repr=False, eq=False, slots=True)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    defaulted = None
    for f in fields:
        if f.init and (f.default is not MISSING or f.default_factory is not MISSING):
            defaulted = f.name
        elif f.init and defaulted is not None:
            raise TypeError(f"record {cls.__qualname__}: field {f.name!r} without a default "
                            f"follows {defaulted!r}, which has one")  # fmt: skip
        if f.kw_only is True:
            raise TypeError(f"record {cls.__qualname__}: kw_only field {f.name!r}")
        if f.name == "self" or f.name.startswith("_record_"):
            raise TypeError(f"record {cls.__qualname__}: field name {f.name!r} is reserved")
    names = tuple(f.name for f in fields)

    def __setattr__(self: object, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self: object, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __getstate__(self: object) -> list[object]:
        return [getattr(self, n) for n in names]

    def __setstate__(self: object, state: list[object]) -> None:
        for n, value in zip(names, state, strict=True):
            object.__setattr__(self, n, value)

    methods: dict[str, Callable[..., Any]] = {
        "__init__": _lazy(cls, "__init__", lambda: _init_source(cls, fields)),
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
        "__getstate__": __getstate__,
        "__setstate__": __setstate__,
    }
    if "__repr__" not in keep:
        methods["__repr__"] = _repr([f.name for f in fields if f.repr])
    if eq:
        compared = [f.name for f in fields if f.compare]
        if "__eq__" not in keep:
            methods["__eq__"] = _lazy(cls, "__eq__", lambda: _eq_source(compared))
        if not explicit_hash:
            hashed = [f.name for f in fields if (f.compare if f.hash is None else f.hash)]
            methods["__hash__"] = _lazy(cls, "__hash__", lambda: _hash_source(hashed))
    for name, method in methods.items():
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
    return cls


def _repr(names: list[str]) -> Callable[[object], str]:
    def __repr__(self: object) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{self.__class__.__qualname__}({shown})"

    return __repr__


_Source = tuple[str, dict[str, Any]]


def _lazy(cls: type, name: str, source: Callable[[], _Source]) -> Callable[..., Any]:
    """A method that compiles the real one on its first call, puts it on ``cls`` in its own
    place, and runs it (two threads racing here each compile one: harmless)."""

    def first_call(self: object, *args: object, **kwargs: object) -> Any:
        text, env = source()
        exec(text, env)  # field names are identifiers (checked by dataclasses)
        real: Callable[..., Any] = env[name]
        real.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, real)
        return real(self, *args, **kwargs)

    return first_call


def _tuple(obj: str, names: list[str]) -> str:
    # A tuple even of one field, as dataclasses writes it: a numpy field must not compare
    # elementwise.
    return "(" + "".join(f"{obj}.{n}," for n in names) + ")"


def _eq_source(names: list[str]) -> _Source:
    return (
        "def __eq__(self, other):\n"
        "    if other.__class__ is self.__class__:\n"
        f"        return {_tuple('self', names)} == {_tuple('other', names)}\n"
        "    return NotImplemented\n"
    ), {}  # fmt: skip


def _hash_source(names: list[str]) -> _Source:
    return f"def __hash__(self):\n    return hash({_tuple('self', names)})\n", {}


def _init_source(cls: type, fields: tuple[Field[Any], ...]) -> _Source:
    """The ``__init__`` ``dataclasses`` would write for a frozen class: same signature, same
    ``object.__setattr__`` per field, factories called per instance, then ``__post_init__``."""
    env: dict[str, Any] = {_SET: object.__setattr__, _MISSING: MISSING}
    params, body = ["self"], []
    for f in fields:
        default, factory = f"_record_default_{f.name}", f"_record_factory_{f.name}"
        if f.default is not MISSING:
            env[default] = f.default
        if f.default_factory is not MISSING:
            env[factory] = f.default_factory
        if f.init:
            if f.default is not MISSING:
                params.append(f"{f.name}={default}")
                value = f.name
            elif f.default_factory is not MISSING:
                params.append(f"{f.name}={_MISSING}")
                value = f"{factory}() if {f.name} is {_MISSING} else {f.name}"
            else:
                params.append(f.name)
                value = f.name
        elif f.default_factory is not MISSING:
            value = f"{factory}()"
        elif f.default is not MISSING:
            value = default
        else:
            continue  # set by __post_init__, or never
        body.append(f"    {_SET}(self, {f.name!r}, {value})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    text = f"def __init__({', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    return text, env
