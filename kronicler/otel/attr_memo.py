"""Attribute texts of a batch of spans: each span name remembers its last attribute set.

Turning an attribute set into its canonical text (:func:`kronicler.otel.contract.attributes_text`)
costs microseconds, yet a decorated function sends the same set on every call. So each span name
remembers its last set (its keys, values and value types, in order) and that set's text, and a
batch is checked against what its names remember in two stages:

1. **The whole batch at once.** Every key, value and value type of the batch goes into one flat
   list each, and what the spans' names remember into three more, position by position. Three
   C-level list comparisons (types first: where a type is the remembered one, the value is flat
   and immutable and ``==`` is exact; ``True == 1 == 1.0`` and ``-0.0 == 0.0`` render differently
   but differ in type or are never remembered) find that every span repeats its name's set, the
   common case, with no Python step per span. Otherwise one more C-level pass of comparisons marks
   the positions, hence the spans, that differ. Keys are compared in order, so ``{a: 1, b: True}``
   and ``{b: 1, a: True}`` (equal dicts, equal type sequences) are told apart.
2. **Each other span alone**, against its name's *current* entry (an earlier span of the batch may
   have just remembered the set): the same test for one set, tuples' elements included, and
   otherwise the text from the type-exact memo of :func:`attributes_text`, then remembered.

Measured (callgrind, ``bench_capture.py``'s spans, instructions per span of ``spans_to_batch``),
this and the single read of each span's fields cut the conversion from 17,991 to ~16,000
instructions: the flat lists cost about what the per-span type tuples they replace did, so the
gain is in never building a tuple or a ``zip`` pair per span. An identity-only first stage was
tried and dropped: sets repeat with equal but new value objects (strings built per call, tuples
the SDK rebuilds), and then every span took the per-span road.

The C conversion loop (:mod:`kronicler.otel._fastrows`) runs stage 1 span by span instead, on
the same entries (:attr:`AttributeMemo.entries`, read only) with the same tests (type identity,
keys in order, ``==`` on flat values, tuples element by element), and hands the other spans to
:meth:`AttributeMemo.text`.

Trade-off: only the last set per name is kept, so a name that alternates between sets takes
stage 2 for each span; the memo is bounded (:data:`_CACHE_LIMIT` names). Entries are immutable
tuples, replaced whole, and a batch compares against the entries it read at its start, so
exporters on several threads share one memo without a lock.
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
            texts[i] = self.text(names[i], sets[i])
        return texts

    @property
    def entries(self) -> dict[str, _Entry]:
        """Span name -> its entry ``(size, keys, values, types, text)``: read (never written) by
        the C conversion loop (:mod:`kronicler.otel._fastrows`), which runs stage 1 per span."""
        return self._by_name

    def text(self, name: str, attrs: dict[str, Any]) -> str:
        """Stage 2 for one set, against the name's current entry (an earlier span of the same
        batch may have just remembered this very set); then remembered."""
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
