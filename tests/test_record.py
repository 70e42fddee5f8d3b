"""``@record`` against the ``@dataclass(frozen=True, slots=True)`` it stands for.

Each story builds the same class body twice, once with each decorator, and asks both the same
questions: construction, defaults and factories, equality and hashing, repr, immutability,
pickling and copying, and what ``dataclasses`` itself answers about them.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Callable
from dataclasses import FrozenInstanceError, field
from typing import Any, ClassVar

import numpy as np
import pytest

from kronicler._record import record

FROZEN = dataclasses.dataclass(frozen=True, slots=True)


def make_point(deco: Callable[[type], type]) -> Any:
    @deco
    class Point:
        """A point with an optional label and a tag set that does not count."""

        x: int
        y: int = 0
        label: str | None = None
        tags: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

        @property
        def norm1(self) -> int:
            return abs(self.x) + abs(self.y)

    return Point


def make_checked(deco: Callable[[type], type]) -> Any:
    @deco
    class Checked:
        """Validates itself; ``double`` is derived, not passed."""

        value: int
        double: int = field(default=0, init=False)

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError(f"value must be >= 0, got {self.value!r}")
            object.__setattr__(self, "double", 2 * self.value)

    return Checked


PAIRS = [(make_point(record), make_point(FROZEN)), (make_checked(record), make_checked(FROZEN))]


def same_repr(a: object, b: object) -> bool:
    return repr(a) == repr(b)  # both classes share their name and qualified name


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=["point", "checked"])
def test_a_record_answers_as_the_frozen_dataclass_does(ours: Any, theirs: Any) -> None:
    a, b = ours(3), theirs(3)
    first = dataclasses.fields(a)[0].name
    assert same_repr(a, b) and same_repr(ours(0), theirs(0))
    assert a == ours(3) and a != ours(4) and a != b  # another class is never equal
    assert hash(a) == hash(ours(3))
    assert [f.name for f in dataclasses.fields(a)] == [f.name for f in dataclasses.fields(b)]
    assert dataclasses.asdict(a) == dataclasses.asdict(b)
    assert same_repr(dataclasses.replace(a, **{first: 5}), dataclasses.replace(b, **{first: 5}))
    assert dataclasses.is_dataclass(ours) and a.__slots__ == b.__slots__
    assert a.__match_args__ == b.__match_args__
    for one in (a, b):
        with pytest.raises(FrozenInstanceError):
            setattr(one, first, 9)
        with pytest.raises(FrozenInstanceError):
            delattr(one, first)
        assert copy.copy(one) == one and copy.deepcopy(one) == one
    with pytest.raises(AttributeError):  # (the dataclass raises TypeError here on 3.10-3.11)
        a.not_a_field = 1


def test_the_package_records_pickle_and_copy() -> None:
    """Through a process boundary (pickle) and ``copy``, a record comes back equal: state goes
    around the frozen guard as it does for a frozen dataclass."""
    from kronicler._config import Settings
    from kronicler.db.merged import Part, SetKey
    from kronicler.db.snapshot import Damage

    key = SetKey.of([Part("a", ("f",), frozenset({"s1"})), Part("b", None, frozenset({"s2"}))])
    for value in (Damage(1, 2, 3, 4, 5), Settings(), key):
        again = pickle.loads(pickle.dumps(value))
        assert again == value and hash(again) == hash(value) and repr(again) == repr(value)
        assert copy.deepcopy(value) == value
    assert pickle.loads(pickle.dumps(key)).segments == frozenset({"s1", "s2"})


def test_defaults_factories_and_fields_left_out_of_equality() -> None:
    Point = make_point(record)
    p = Point(1, 2, "a", {"k": 1})
    assert (p.x, p.y, p.label, p.tags, p.norm1) == (1, 2, "a", {"k": 1}, 3)
    assert Point(1).tags == {} and Point(1).tags is not Point(1).tags  # a fresh dict each time
    assert Point(1, 2, "a", {"k": 1}) == Point(1, 2, "a")  # tags: compare=False
    assert hash(Point(1, 2, "a", {"k": 1})) == hash(Point(1, 2, "a"))
    assert repr(p).endswith("Point(x=1, y=2, label='a')")  # tags: repr=False
    moved = dataclasses.replace(p, y=7)
    assert moved == Point(1, 7, "a") and moved.tags == {"k": 1}
    with pytest.raises(TypeError, match="x"):
        Point()
    with pytest.raises(TypeError, match="unexpected keyword"):
        Point(1, z=2)


def test_post_init_runs_and_validates() -> None:
    Checked = make_checked(record)
    assert Checked(4).double == 8
    assert dataclasses.replace(Checked(4), value=5).double == 10
    with pytest.raises(ValueError, match="-1"):
        Checked(-1)
    with pytest.raises(TypeError):
        Checked(1, 2)  # double is not an argument


def test_eq_false_compares_by_identity_and_a_class_hash_is_kept() -> None:
    @record(eq=False)
    class Arrays:
        """Arrays compare by identity: elementwise equality is no answer to ``==``."""

        values: np.ndarray

    a = Arrays(np.arange(3))
    assert a == a and a != Arrays(a.values) and hash(a) == object.__hash__(a)

    @record
    class OneArray:
        """One compared field is still compared as a tuple: the answer is a bool or an error,
        never an array."""

        values: np.ndarray

    with pytest.raises(ValueError, match="ambiguous"):
        _ = OneArray(np.arange(3)) == OneArray(np.arange(3))

    @record
    class Hashed:
        """Keeps its own hash (computed once), compares by its fields."""

        parts: tuple[int, ...]
        _hash: int = field(default=0, compare=False, repr=False)

        def __hash__(self) -> int:
            return self._hash

    assert hash(Hashed((1, 2), 99)) == 99 and Hashed((1,), 1) == Hashed((1,), 2)

    @record
    class Parsed:
        """Keeps its own __init__ (which sets the fields around the frozen guard)."""

        low: int
        high: int

        def __init__(self, text: str) -> None:
            low, high = text.split("-")
            object.__setattr__(self, "low", int(low))
            object.__setattr__(self, "high", int(high))

    assert Parsed("3-7") == Parsed("3-7") and (Parsed("3-7").low, Parsed("3-7").high) == (3, 7)


def test_dataclasses_sees_the_fields_it_would_have_made() -> None:
    ours, theirs = make_point(record), make_point(FROZEN)
    assert "__dataclass_fields__" in vars(ours)  # made on first use, by dataclasses itself
    attrs = ("name", "type", "default", "default_factory", "init", "repr", "compare", "hash")
    assert [[getattr(f, a) for a in attrs] for f in dataclasses.fields(ours)] == [
        [getattr(f, a) for a in attrs] for f in dataclasses.fields(theirs)
    ]
    assert dataclasses.fields(ours(1)) == dataclasses.fields(ours)


def test_what_a_record_refuses() -> None:
    with pytest.raises(TypeError, match="ClassVar"):

        @record
        class Shared:
            """A class variable among the fields."""

            a: int
            every: ClassVar[int] = 3

    Point = make_point(record)
    with pytest.raises(TypeError, match="extend"):

        @record
        class Labelled(Point):  # type: ignore[valid-type,misc]
            """Fields on top of a record's."""

            extra: int = 0

    with pytest.raises(ValueError, match="mutable default"):

        @record
        class Shared2:
            """A list as a default: one list for every instance."""

            items: list[int] = []

    with pytest.raises(TypeError, match="follows"):

        @record
        class Order:
            """A field without a default after one with a default."""

            a: int = 0
            b: int  # type: ignore[misc]

    with pytest.raises(TypeError, match="__setattr__"):

        @record
        class Mutable:
            """Defines its own __setattr__."""

            a: int

            def __setattr__(self, name: str, value: object) -> None:
                object.__setattr__(self, name, value)

    with pytest.raises(TypeError, match="kw_only"):

        @record
        class KeywordOnly:
            """A keyword-only field."""

            a: int = field(kw_only=True)


def test_methods_are_compiled_on_first_use_and_kept() -> None:
    """``__init__``, ``__eq__`` and ``__hash__`` are compiled on their first call (a process
    pays only for the methods it uses) and replace themselves on the class."""
    Point = make_point(record)
    stubs = {name: Point.__dict__[name] for name in ("__init__", "__eq__", "__hash__")}
    p = Point(1)
    assert Point.__dict__["__init__"] is not stubs["__init__"]
    assert Point.__dict__["__eq__"] is stubs["__eq__"]  # not compared yet
    assert p == Point(1) and len({p, Point(1), Point(2)}) == 2
    compiled = {name: Point.__dict__[name] for name in stubs}
    assert all(compiled[name] is not stubs[name] for name in stubs)
    assert all(f.__qualname__.endswith(f"Point.{name}") for name, f in compiled.items())
    assert Point(2) != p and hash(Point(3))
    assert {name: Point.__dict__[name] for name in stubs} == compiled  # compiled once
    assert Point.__init__.__defaults__ == (0, None, dataclasses.MISSING)
