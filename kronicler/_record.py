"""Frozen slotted record classes that cost little to define.

``@dataclass(frozen=True, slots=True)`` writes six methods of every class it decorates
(``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``, ``__delattr__``) as source
text and compiles them when the module is imported: ~0.5 ms, ~3.8M instructions, per class. A
cold question (a new process opening a database and asking one ``stats()``) imports about forty
such classes before it reads a byte; under callgrind they were about half of what importing
Kronicler's read path cost.

``@record`` makes the same classes for less. It reads the class's own annotations and defaults
(``field(...)`` included), checks them as dataclasses does, and makes the slotted class once with
its methods in place. The frozen guards, ``__repr__`` and the pickling hooks are small closures
(nothing compiled); ``__init__``, ``__eq__`` and ``__hash__``, which are on hot paths
(bufferpool keys, a chunk per row group), are compiled from the source dataclasses writes on
their first call, so a process pays only for the methods it uses and they then run as fast as
before; ``__dataclass_fields__`` is made by dataclasses itself on first use, so
``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` answer as before.

Measured under callgrind (``python bench/bench_cold_imports.py --callgrind 3``, bytecode
cached): a class of six fields costs ~4.2M instructions more than a plain class with dataclasses,
~0.22M with ``@record``. A cold read-only ``stats()`` over a small database went from ~728M to
~555M instructions, its imports (numpy's aside) from ~268M to ~81M, with this and the imports
the read path defers (``tests/test_imports.py``); its question itself grew by ~15M, the ~23
methods it compiled on first use.

What it supports is what the package's records use: ``field(default=, default_factory=, init=,
repr=, compare=, hash=)``, ``__post_init__``, a class-defined ``__hash__``, ``__eq__`` or
``__repr__`` or ``__init__`` (kept), ``eq=False`` (identity equality, as with dataclasses). It refuses the rest
rather than half support it: ``ClassVar``, ``InitVar`` and ``KW_ONLY`` annotations, ``kw_only``
fields, a base class with fields, a class that defines ``__setattr__``. What differs from a
frozen slotted dataclass: there is no ``__dataclass_params__``, ``__repr__`` has no recursion
guard, and setting an attribute that is no field raises FrozenInstanceError (the dataclass
raises TypeError on Python 3.10-3.11).
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
    own = cls.__dict__
    where = f"record {cls.__qualname__}"
    if "__setattr__" in own or "__delattr__" in own:
        raise TypeError(f"{where} cannot define __setattr__ or __delattr__")
    if any(hasattr(base, "__dataclass_fields__") for base in cls.__mro__[1:]):
        raise TypeError(f"{where} cannot extend a record or a dataclass")
    fields = _fields(cls, where)
    names = tuple(name for name, _ in fields)
    # Python sets __hash__ to None in a class that defines __eq__ alone: that is not a choice.
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    made: list[type] = []  # the class, once made: what the methods below compile for

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
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
        "__getstate__": __getstate__,
        "__setstate__": __setstate__,
    }
    if "__init__" not in own:
        methods["__init__"] = _lazy(made, "__init__", lambda: _init_source(made[0], fields))
    if "__repr__" not in own:
        methods["__repr__"] = _repr([n for n, f in fields if f.repr])
    if eq:
        compared = [n for n, f in fields if f.compare]
        if "__eq__" not in own:
            methods["__eq__"] = _lazy(made, "__eq__", lambda: _eq_source(compared))
        if not explicit_hash:
            hashed = [n for n, f in fields if (f.compare if f.hash is None else f.hash)]
            methods["__hash__"] = _lazy(made, "__hash__", lambda: _hash_source(hashed))
    for name, method in methods.items():
        method.__qualname__ = f"{cls.__qualname__}.{name}"
    # The class again, with slots for the fields (and so without their defaults, which the
    # compiled __init__ holds), as dataclasses(slots=True) makes it.
    namespace = {k: v for k, v in own.items() if k not in names and k not in _NOT_COPIED}
    namespace.update(methods)
    namespace.update(
        __slots__=names, __qualname__=cls.__qualname__,
        __match_args__=tuple(n for n, f in fields if f.init),
        __dataclass_fields__=_LazyFields(cls.__module__, own.get("__annotations__", {}), fields),
    )  # fmt: skip
    if not cls.__doc__:
        namespace["__doc__"] = f"{cls.__name__}({', '.join(names)})"
    meta: Any = type(cls)
    made.append(meta(cls.__name__, cls.__bases__, namespace))
    return made[0]


_NOT_COPIED = ("__dict__", "__weakref__")


class _Plain:
    """A field declared by its annotation alone or with a plain default: what
    ``dataclasses.field`` would say of it, without making a Field (~10K instructions each)."""

    __slots__ = ("default",)
    default_factory: Any = MISSING
    init = repr = compare = True
    hash: bool | None = None
    kw_only: Any = MISSING

    def __init__(self, default: Any) -> None:
        self.default = default


_REQUIRED = _Plain(MISSING)
_Spec = list[tuple[str, "Field[Any] | _Plain"]]


def _fields(cls: type, where: str) -> _Spec:
    """(name, field) of the class's own annotated fields, checked as dataclasses checks them."""
    out: _Spec = []
    defaulted = None
    for name, kind in cls.__dict__.get("__annotations__", {}).items():
        text = kind if isinstance(kind, str) else repr(kind)
        if text.startswith(_PSEUDO):
            raise TypeError(f"{where}: {name!r} is a {text.split('[')[0]}, not supported")
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else _REQUIRED if value is MISSING else _Plain(value)
        if f.default is not MISSING and f.default.__class__.__hash__ is None:
            raise ValueError(f"{where}: mutable default {type(f.default)} for field {name!r} "
                             "is not allowed: use default_factory")  # fmt: skip
        if f.kw_only is True:
            raise TypeError(f"{where}: kw_only field {name!r}")
        if name == "self" or name.startswith("_record_"):
            raise TypeError(f"{where}: field name {name!r} is reserved")
        if f.init and (f.default is not MISSING or f.default_factory is not MISSING):
            defaulted = name
        elif f.init and defaulted is not None:
            raise TypeError(f"{where}: field {name!r} without a default follows {defaulted!r}, "
                            "which has one")  # fmt: skip
        out.append((name, f))
    return out


# Annotations dataclasses treats apart (class variables, init-only variables, the keyword-only
# marker): records have none, so they are refused rather than half supported.
_PSEUDO = ("ClassVar", "typing.ClassVar", "InitVar", "dataclasses.InitVar", "KW_ONLY",
           "dataclasses.KW_ONLY")  # fmt: skip


class _LazyFields:
    """A record's ``__dataclass_fields__``, made on first use (``dataclasses.fields``,
    ``replace``, ``asdict``, ``is_dataclass`` ask for it) by dataclasses itself, from a
    stand-in class with the same annotations and defaults, so the Field objects are exactly
    the ones it would have made."""

    __slots__ = ("_annotations", "_fields", "_made", "_module")

    def __init__(self, module: str, annotations: dict[str, Any], fields: _Spec) -> None:
        self._module, self._annotations = module, annotations
        self._fields = {n: f if isinstance(f, Field) else f.default for n, f in fields
                        if f is not _REQUIRED}  # fmt: skip
        self._made: dict[str, Field[Any]] | None = None

    def __get__(self, obj: object, owner: type) -> dict[str, Field[Any]]:
        if self._made is None:
            stand_in: Any = type(owner.__name__, (), {
                "__module__": self._module, "__annotations__": self._annotations,
                "__doc__": owner.__doc__, **self._fields,
            })  # fmt: skip
            dataclasses.dataclass(stand_in, init=False, repr=False, eq=False)
            self._made = stand_in.__dataclass_fields__
        return self._made


def _repr(names: list[str]) -> Callable[[object], str]:
    def __repr__(self: object) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{self.__class__.__qualname__}({shown})"

    return __repr__


_Source = tuple[str, dict[str, Any]]


def _lazy(made: list[type], name: str, source: Callable[[], _Source]) -> Callable[..., Any]:
    """A method that compiles the real one on its first call, puts it on the class (``made``)
    in its own place, and runs it (two threads racing here each compile one: harmless)."""

    def first_call(self: object, *args: object, **kwargs: object) -> Any:
        cls = made[0]
        text, env = source()
        exec(text, env)  # field names are identifiers: they come from annotations
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


def _init_source(cls: type, fields: _Spec) -> _Source:
    """The ``__init__`` ``dataclasses`` would write for a frozen class: same signature, same
    ``object.__setattr__`` per field, factories called per instance, then ``__post_init__``."""
    env: dict[str, Any] = {_SET: object.__setattr__, _MISSING: MISSING}
    params, body = ["self"], []
    for name, f in fields:
        default, factory = f"_record_default_{name}", f"_record_factory_{name}"
        if f.default is not MISSING:
            env[default] = f.default
        if f.default_factory is not MISSING:
            env[factory] = f.default_factory
        if f.init:
            if f.default is not MISSING:
                params.append(f"{name}={default}")
                value = name
            elif f.default_factory is not MISSING:
                params.append(f"{name}={_MISSING}")
                value = f"{factory}() if {name} is {_MISSING} else {name}"
            else:
                params.append(name)
                value = name
        elif f.default_factory is not MISSING:
            value = f"{factory}()"
        elif f.default is not MISSING:
            value = default
        else:
            continue  # set by __post_init__, or never
        body.append(f"    {_SET}(self, {name!r}, {value})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    text = f"def __init__({', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    return text, env
