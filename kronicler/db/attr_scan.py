"""Attribute sets of a scan read per key, without mapping (or even reading) their texts.

A normal scan maps every segment's attribute codes into one shared numbering, which needs every
text the rows use (a million texts when every call has its own request id). A scan with
``local_attributes`` keeps each segment's codes, shifted into a range of its own
(:class:`LocalTexts`); :func:`key_columns` then gives, per attribute key, the value of each code,
from the per-key columns written at seal (:mod:`kronicler.db.attr_keys`) and, for codes those do
not cover (older segments, the tail log), from the texts split the same way. The cost per key is
a few numpy passes over the codes; texts are read only for the few codes a caller asks for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, overload

import numpy as np

from kronicler import budget
from kronicler.db.attr_keys import KeyBlock, decompose, hash_texts, path_of, read_blocks, value_text

if TYPE_CHECKING:
    from kronicler.db.snapshot import SegmentView


class LocalTexts(Sequence[str]):
    """Attribute set texts of a scan whose code ``base[j] + c`` is code ``c`` of segment ``j``;
    a text is read when first asked for."""

    def __init__(self, views: list[SegmentView], bases: list[int],
                 lock: AbstractContextManager[object] | None = None) -> None:  # fmt: skip
        self.views = views
        self.bases = bases  # one more than views: the end of the last range
        self._base = {v.id: b for v, b in zip(views, bases, strict=False)}
        # Texts are read through the segments' readers, which are not thread-safe: under the
        # segment set's lock (the scan's caller holds the snapshot pinned).
        self._lock = lock if lock is not None else nullcontext()

    @classmethod
    def of(cls, pieces: Sequence[tuple[SegmentView, dict[str, np.ndarray]]],
           lock: AbstractContextManager[object] | None = None) -> LocalTexts:  # fmt: skip
        """The ranges for ``pieces``' segments: each as large as its largest code used."""
        tops: dict[str, int] = {}
        views: dict[str, SegmentView] = {}
        for seg, cols in pieces:
            codes = cols["attributes"]
            top = int(codes.max()) + 1 if len(codes) else 0
            tops[seg.id] = max(tops.get(seg.id, 0), top)
            views.setdefault(seg.id, seg)
        bases = np.r_[0, np.cumsum(list(tops.values()), dtype=np.int64)].tolist()
        return cls(list(views.values()), bases, lock)

    def shift(self, seg: SegmentView, codes: np.ndarray) -> np.ndarray:
        """``seg``'s attribute codes in this numbering."""
        dtype = np.uint32 if self.bases[-1] < 2**32 else np.int64
        out: np.ndarray = codes.astype(dtype)
        out += self._base[seg.id]
        return out

    def __len__(self) -> int:
        return int(self.bases[-1])

    @overload
    def __getitem__(self, code: int) -> str: ...
    @overload
    def __getitem__(self, code: slice) -> Sequence[str]: ...
    def __getitem__(self, code: int | slice) -> str | Sequence[str]:
        if isinstance(code, slice):
            return [self[i] for i in range(*code.indices(len(self)))]
        code = int(code)
        if not 0 <= code < len(self):
            raise IndexError(code)
        with self._lock:
            return self._text(code)

    def _text(self, code: int) -> str:
        j = int(np.searchsorted(self.bases, code, side="right")) - 1
        local = code - self.bases[j]
        view = self.views[j]
        # From the one dictionary page that defines it, found through the stored per-key
        # records (each names its chunk); else (tail log, no record) from the whole dictionary.
        stored = self._stored(j)
        at = int(np.searchsorted(view.memo("attr_keys_starts", lambda: np.array(
            [b.entries[0] for b in stored], dtype=np.int64)), local, side="right")) - 1  # fmt: skip
        if at >= 0 and local < stored[at].entries[0] + len(stored[at].entries):
            seq = stored[at].seq
            page = view.memo(f"attr_page_{seq}", lambda: view.reader.chunk_attributes(seq))
            if page is not None and local in page:
                return page[local]
        return view.dictionary("attributes").values[local]

    def _stored(self, j: int) -> list[KeyBlock]:
        """Segment ``j``'s stored per-key records, in code order (read once per view)."""
        reader = self.views[j].reader
        return self.views[j].memo("attr_keys", lambda: [b for b in read_blocks(
            path_of(reader.data_path.parent, reader.id)) if len(b.entries)])  # fmt: skip

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def blocks(self, j: int, used: np.ndarray) -> list[KeyBlock]:
        """Per-key columns covering the codes ``used`` (local, ascending) of segment ``j``:
        the stored ones, and the rest split from their texts."""
        with self._lock:
            return self._blocks(j, used)

    def _blocks(self, j: int, used: np.ndarray) -> list[KeyBlock]:
        view = self.views[j]
        stored = self._stored(j)
        size = self.bases[j + 1] - self.bases[j]
        covered = np.zeros(size, dtype=bool)
        for b in stored:
            covered[b.entries[b.entries < size]] = True
        rest = used[~covered[used]]
        if not len(rest):
            return stored
        values = view.dictionary("attributes").values
        return [*stored, decompose([values[c] for c in rest.tolist()], rest)]


class KeyColumn:
    """One attribute key over a scan's attribute codes.

    With value lists: ``value`` per code (int64, -1: the set does not carry the key) indexes
    the value texts (:meth:`name`). A hashed key has ``hashes`` per code (uint64, 0: absent);
    its ``value`` numbers the hashes of the codes in use, on first use (a sort of the codes), and
    a value's text is read from one set carrying it.
    """

    __slots__ = ("_first", "_names", "_texts", "_used", "_value", "hashes", "key")

    def __init__(self, key: str, *, value: np.ndarray | None = None,
                 names: list[str] | None = None, hashes: np.ndarray | None = None,
                 texts: LocalTexts | None = None, used: np.ndarray | None = None) -> None:  # fmt: skip
        self.key = key
        self.hashes = hashes
        self._value = value
        self._names = names
        self._texts = texts
        self._used = used
        self._first: np.ndarray | None = None

    @property
    def value(self) -> np.ndarray:
        if self._value is None:
            assert self.hashes is not None and self._used is not None
            codes = np.flatnonzero(self._used & (self.hashes != 0))
            # No return_index: it would make numpy's argsort a stable (slower) one; any code
            # carrying a value names it.
            distinct, inverse = np.unique(self.hashes[codes], return_inverse=True)
            inverse = inverse.reshape(-1)
            self._value = np.full(len(self.hashes), -1, dtype=np.int64)
            self._value[codes] = inverse
            self._first = np.empty(len(distinct), dtype=np.int64)
            self._first[inverse] = codes
        return self._value

    def __len__(self) -> int:
        """Distinct values (of the codes in use, for a hashed key)."""
        if self._names is not None:
            return len(self._names)
        self.value  # noqa: B018 - numbers the values
        assert self._first is not None
        return len(self._first)

    def name(self, v: int) -> str:
        """The text of value ``v`` (of :attr:`value`)."""
        if self._names is not None:
            return self._names[v]
        self.value  # noqa: B018 - numbers the values
        assert self._first is not None
        return self._text_at(int(self._first[v]))

    def name_of_hash(self, h: int) -> str:
        """The text of the value whose hash is ``h`` (a hashed key; some code carries it)."""
        assert self.hashes is not None
        return self._text_at(int(np.flatnonzero(self.hashes == np.uint64(h))[0]))

    def _text_at(self, code: int) -> str:
        assert self._texts is not None
        return value_text(json.loads(self._texts[code])[self.key])


def key_columns(texts: LocalTexts, used: np.ndarray) -> list[KeyColumn]:
    """Every attribute key over the codes of ``texts``; ``used`` (bool per code) marks the codes
    whose values count: a hashed key's values are numbered over those only."""
    n = len(texts)
    parts: dict[str, list[tuple[np.ndarray, tuple[str, ...] | None, np.ndarray]]] = {}
    for j in range(len(texts.views)):
        budget.check()
        lo, hi = texts.bases[j], texts.bases[j + 1]
        for b in texts.blocks(j, np.flatnonzero(used[lo:hi])):
            inside = b.entries < hi - lo
            at = b.entries[inside] + lo
            for key, names, col in zip(b.keys, b.values, b.columns, strict=True):
                parts.setdefault(key, []).append((at, names, col[inside]))
    out = []
    for key, pieces in sorted(parts.items()):
        if all(names is not None for _, names, _ in pieces):
            out.append(_valued(key, pieces, n))
        else:
            out.append(_hashed(key, pieces, n, used, texts))
    return out


def _valued(key: str, pieces: list[tuple[np.ndarray, tuple[str, ...] | None, np.ndarray]],
            n: int) -> KeyColumn:  # fmt: skip
    index: dict[str, int] = {}
    value = np.full(n, -1, dtype=np.int64)
    for at, names, col in pieces:
        assert names is not None
        lut = np.fromiter((index.setdefault(v, len(index)) for v in names), np.int64, len(names))
        value[at] = np.r_[lut, -1][col]  # -1 (absent) picks the last: -1
    return KeyColumn(key, value=value, names=list(index))


def _hashed(key: str, pieces: list[tuple[np.ndarray, tuple[str, ...] | None, np.ndarray]],
            n: int, used: np.ndarray, texts: LocalTexts) -> KeyColumn:  # fmt: skip
    h = np.zeros(n, dtype=np.uint64)
    for at, names, col in pieces:
        h[at] = col if names is None else np.r_[hash_texts(names), np.uint64(0)][col]
    return KeyColumn(key, hashes=h, texts=texts, used=used)
