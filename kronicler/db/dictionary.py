"""Dictionary encoding of text columns (function names, services, attribute sets).

Each segment numbers the distinct texts it has seen, in order of first appearance, so a column of
names becomes a column of small integers that compress to a byte or less per row. Codes are local to
their segment; readers map them to one global numbering per query.

A reader rebuilds a dictionary from the entries stored with each chunk and log record. When one of
those is damaged its entries are lost, leaving codes that no readable entry defines; the
dictionary remembers them (``missing``) so the rows that use them can be found and dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kronicler.errors import shorten


class Dictionary:
    """Text -> code, growing as new texts appear. Not thread-safe: one writer thread owns it."""

    __slots__ = ("chars", "codes", "missing", "values")

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.values: list[str] = []
        self.missing: set[int] = set()  # codes below len(values) that no entry defined
        self.chars = 0  # total length of the texts added: what the dictionary costs in memory

    def __len__(self) -> int:
        return len(self.values)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Codes of ``texts`` (uint32), adding unseen texts."""
        n = len(texts)
        if n == 0:
            return np.zeros(0, dtype=np.uint32)
        first = texts[0]
        if texts.count(first) == n:  # one value for the whole batch: the common case for services
            return np.full(n, self._code(first), dtype=np.uint32)
        codes = self.codes
        try:
            return np.fromiter(map(codes.__getitem__, texts), dtype=np.uint32, count=n)
        except KeyError:
            for text in dict.fromkeys(texts):
                self._code(text)
            return np.fromiter(map(codes.__getitem__, texts), dtype=np.uint32, count=n)

    def encode_indexed(self, table: Sequence[str], index: np.ndarray) -> np.ndarray:
        """Codes of ``table[index[i]]`` for every row ``i`` (uint32), coding each entry once.

        Only the entries ``index`` uses are looked up (O(entries) dictionary work, one numpy
        gather for the rows). Unseen texts get codes in order of first use by the rows, as
        :meth:`encode` gives them, so a chunk's new codes stay a contiguous run.
        """
        n = len(index)
        if n == 0:
            return np.zeros(0, dtype=np.uint32)
        index = np.asarray(index, dtype=np.int64)
        used = np.flatnonzero(np.bincount(index, minlength=len(table)))
        lut = np.zeros(len(table), dtype=np.uint32)
        codes = self.codes
        new: list[int] = []
        for i in used.tolist():
            code = codes.get(table[i])
            if code is None:
                new.append(i)
            else:
                lut[i] = code
        if len(new) > 1:  # rare: only when texts appear for the first time
            new.sort(key=_first_uses(index, new).__getitem__)
        for i in new:
            lut[i] = self._code(table[i])
        return lut[index]

    def _code(self, text: str) -> int:
        code = self.codes.get(text)
        if code is None:
            if not isinstance(text, str):  # checked before any change: the dictionary stays whole
                raise ValueError(f"a text column holds {shorten(text)}, not a str")
            code = self.codes[text] = len(self.values)
            self.values.append(text)
            self.chars += len(text)
        return code

    def define(self, code: int, text: str) -> None:
        """Record an entry read back from storage."""
        if code == len(self.values):
            self.values.append(text)
            self.codes[text] = code
        elif code > len(self.values):
            self.missing.update(range(len(self.values), code))
            self.values.extend([""] * (code - len(self.values)))
            self.values.append(text)
            self.codes[text] = code
        else:
            self.values[code] = text
            self.codes.setdefault(text, code)
            self.missing.discard(code)

    def define_all(self, texts: Sequence[str]) -> None:
        """Record entries 0, 1, ... read back from storage (a segment index's texts): as many
        ``define`` calls, in one step when the dictionary is empty (at a billion rows, 35-59
        segments x 100 names at every cold open)."""
        if self.values:
            for code, text in enumerate(texts):
                self.define(code, text)
            return
        self.values = list(texts)
        self.codes = {text: code for code, text in enumerate(self.values)}

    def defined(self, codes: np.ndarray) -> np.ndarray:
        """For each code, whether an entry defines it (vectorised)."""
        ok = codes < len(self.values)
        if self.missing:
            ok &= ~np.isin(codes, np.fromiter(self.missing, np.int64, len(self.missing)))
        return ok

    def copy(self) -> Dictionary:
        out = Dictionary()
        out.codes, out.values, out.missing = dict(self.codes), list(self.values), set(self.missing)
        out.chars = self.chars
        return out


def _first_uses(index: np.ndarray, wanted: list[int]) -> dict[int, int]:
    """Row of the first use of each entry of ``index``'s prefix that holds every ``wanted`` one.

    New texts are nearly always first used early in a batch, so the prefix searched grows
    eightfold from 4,096 rows until it holds them all: sorting a whole first batch of a million
    rows for this took a fifth of a writer's CPU on bench_scale.py's workload.
    """
    want = np.array(wanted, dtype=np.int64)
    k = 4096
    while True:
        entries, first = np.unique(index[:k], return_index=True)
        if k >= len(index) or bool(np.isin(want, entries).all()):
            return dict(zip(entries.tolist(), first.tolist(), strict=True))
        k *= 8
