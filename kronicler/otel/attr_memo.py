"""Attribute texts of a batch of spans: each span name remembers its last attribute set.

Turning an attribute set into its canonical text (:func:`kronicler.otel.contract.attributes_text`)
costs microseconds, yet a decorated function sends the same set on every call. So each span name
remembers its last set (its keys and value objects, in order) and that set's text, and a batch is
checked against what its names remember in three stages, each for the spans the one before left:

1. **Identity, for the whole batch at once.** The SDK copies a span's attributes into a new
   container, but the keys and values it copies are the caller's own objects, so a function's
   repeated set holds the *same* objects every time. One C-level pass of ``is`` over every key and
   every value of the batch (chained into one flat sequence, matched with the remembered ones
   chained alike) finds the spans that repeat their name's set; no Python step per span. Identity
   is exact without looking at types: an object is equal to itself and has its own type, and only
   immutable values (text, numbers, bytes, None, tuples of text) are remembered.
2. **Equal values of equal types, key by key.** A set whose values are equal but new objects
   (a tuple the SDK rebuilt, a string made per call) still matches when its keys come in the same
   order and each value has the remembered value's type, since ``True == 1 == 1.0`` and
   ``-0.0 == 0.0`` render differently.
3. **The text**, from the type-exact memo of :func:`attributes_text`; the set is then remembered.

Trade-off: only the last set per name is kept, so a name that alternates between sets pays stage 2
and the memo lookup of stage 3 for each span; the memo is bounded (:data:`_CACHE_LIMIT` names).
Entries are immutable tuples, replaced whole, and a batch compares against the entries it read at
its start, so exporters on several threads share one memo without a lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain, compress, repeat
from operator import is_, itemgetter, ne
from typing import Any, Final

import numpy as np

from kronicler.otel.contract import attributes_text

_CACHE_LIMIT: Final = 4096
# Values whose equality is exact once their type is equal too (0.0 is not: -0.0 == 0.0).
_FLAT = frozenset({str, int, bool, bytes, type(None)})

# An entry: (number of keys, keys, values, types of the values, text). Tuples, not a dataclass:
# the batch pass reads its fields with C-level itemgetters.
_Entry = tuple[int, tuple[str, ...], tuple[Any, ...], tuple[type, ...], str]
_SIZE, _KEYS, _VALUES, _TYPES, _TEXT = map(itemgetter, range(5))
_UNSEEN: Final[_Entry] = (-1, (), (), (), "")  # its size matches no set


def _rememberable(attrs: Mapping[str, Any]) -> bool:
    """True when the values are immutable and ``==`` plus equal value types prove two sets render
    alike (no nested values, whose elements could be ``True`` in one and ``1`` in the other)."""
    for v in attrs.values():
        t = type(v)
        if t in _FLAT or (t is float and v != 0.0):
            continue
        if t is tuple and all(type(x) is str for x in v):
            continue
        return False
    return True


class AttributeMemo:
    """Span name -> its last attribute set and that set's text (see the module docstring)."""

    def __init__(self, limit: int = _CACHE_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self._limit = limit
        self._by_name: dict[str, _Entry] = {}
        self._padding: dict[int, _Entry] = {}

    def texts(self, names: Sequence[str], sets: Sequence[dict[str, Any]]) -> list[str]:
        """The canonical text of ``sets[i]`` for every ``i``; ``names[i]`` is its span's name.

        ``sets`` are plain dicts (the SDK container's inner dict), read and never changed.
        """
        n = len(sets)
        seen = list(map(self._by_name.get, names, repeat(_UNSEEN)))
        texts: list[str] = list(map(_TEXT, seen))
        sizes = list(map(len, sets))
        was_sizes = list(map(_SIZE, seen))
        odd = [] if sizes == was_sizes else list(compress(range(n), map(ne, sizes, was_sizes)))
        aligned = seen
        if odd:  # a stand-in of the span's own size keeps the flat sequences aligned
            aligned = seen.copy()
            for i in odd:
                aligned[i] = self._pad(sizes[i])
        # Every key, value and value type of the batch in one flat list each, and what the
        # spans' names remember in three more, position by position.
        keys = list(chain.from_iterable(sets))
        values = list(chain.from_iterable(map(dict.values, sets)))
        types = list(map(type, values))
        was_keys = list(chain.from_iterable(map(_KEYS, aligned)))
        was_values = list(chain.from_iterable(map(_VALUES, aligned)))
        was_types = list(chain.from_iterable(map(_TYPES, aligned)))
        # Types first: where they are the remembered types (flat, immutable), comparing the
        # values is exact. A tuple's elements are not checked here: such a set goes to stage 2.
        has_tuples = tuple in was_types
        try:
            if (
                not odd
                and types == was_types
                and keys == was_keys
                and not has_tuples
                and values == was_values
            ):
                return texts
            now = zip(types, keys, values, strict=True)
            was = zip(was_types, was_keys, was_values, strict=True)
            differ = np.fromiter(map(ne, now, was), dtype=bool, count=len(values))
        except (TypeError, ValueError):  # a value whose == fails (a tuple of odd objects)
            differ = np.ones(len(values), dtype=bool)
        if has_tuples:
            differ |= np.fromiter(map(is_, was_types, repeat(tuple)), dtype=bool, count=len(values))
        stale = set(odd)
        if differ.any():
            stale.update(np.repeat(np.arange(n), sizes)[differ].tolist())
        for i in sorted(stale):
            texts[i] = self._text(names[i], sets[i])
        return texts

    def _text(self, name: str, attrs: dict[str, Any]) -> str:
        """Stages 2 and 3 for one set, against the name's current entry (an earlier span of the
        same batch may have just remembered this very set)."""
        entry = self._by_name.get(name, _UNSEEN)
        values = tuple(attrs.values())
        if (
            entry[0] == len(values)
            and tuple(map(type, values)) == entry[3]
            and tuple(attrs) == entry[1]
            and _rememberable(attrs)  # before ==: every value is flat or a tuple of text
            and values == entry[2]
        ):
            return entry[4]
        text = attributes_text(attrs)
        if _rememberable(attrs):
            if len(self._by_name) >= self._limit and name not in self._by_name:
                self._by_name.clear()
            self._by_name[name] = (len(values), tuple(attrs), values,
                                   tuple(map(type, values)), text)  # fmt: skip
        else:
            self._by_name.pop(name, None)
        return text

    def _pad(self, size: int) -> _Entry:
        """An entry of ``size`` private objects: identical to no key or value of any set."""
        entry = self._padding.get(size)
        if entry is None:
            if len(self._padding) >= self._limit:
                self._padding.clear()
            filler: Any = tuple(object() for _ in range(size))
            entry = self._padding[size] = (size, filler, filler, filler, "")
        return entry
