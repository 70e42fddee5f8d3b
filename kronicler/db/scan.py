"""Query-side value types: time windows, decoded row sets and per-function summaries.

A :class:`Scan` gathers rows from many segments; each segment numbers its texts (function names,
services, attribute and resource sets) on its own, so merging maps every segment's codes into one global
numbering, vectorised with a lookup array per segment.

``Scan`` is the one type for decoded rows: the database's raw read and the query layer's filtered
selection (:func:`kronicler.query.filters.select`) are both a ``Scan``. A filter only masks the
columns; the code-to-text lists stay valid, so a second type would copy the same five fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np

from kronicler._record import record
from kronicler.db.schema import COLUMNS
from kronicler.db.stats import DEFAULT_QUANTILES, Stats, exact_group_stats
from kronicler.db.summary import Summary

if TYPE_CHECKING:
    from kronicler.db.snapshot import SegmentView

_TEXT = ("name", "service", "attributes", "resource")


@record
class TimeRange:
    """Rows with ``since <= start < until``; either bound may be open (None)."""

    since: int | None
    until: int | None

    @classmethod
    def of(cls, since: int | None, until: int | None) -> TimeRange:
        for what, v in (("since", since), ("until", until)):
            if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool)):
                raise ValueError(f"{what} must be Unix epoch nanoseconds (int), got {v!r}")
        if since is not None and until is not None and since > until:
            raise ValueError(f"since ({since}) is after until ({until})")
        return cls(None if since is None else int(since), None if until is None else int(until))

    @property
    def everything(self) -> bool:
        return self.since is None and self.until is None

    def covers(self, lo: int, hi: int) -> int:
        """0: [lo, hi] is outside the window; 1: partly inside; 2: wholly inside."""
        after_start = self.since is None or lo >= self.since
        before_end = self.until is None or hi < self.until
        if after_start and before_end:
            return 2
        if (self.since is not None and hi < self.since) or (
            self.until is not None and lo >= self.until
        ):
            return 0
        return 1

    def mask(self, start: np.ndarray) -> np.ndarray:
        mask = np.ones(start.shape, dtype=bool)
        if self.since is not None:
            mask &= start >= self.since
        if self.until is not None:
            mask &= start < self.until
        return mask


@record
class FunctionSummary:
    """Merged statistics of one function over a query's range.

    Fields:
        summary: the mergeable latency summary; errors: calls with status ERROR;
        first_start, last_start: earliest and latest start time (ns).
    """

    summary: Summary
    errors: int
    first_start: int
    last_start: int


@record
class Scan:
    """Decoded rows (all the rows read, or those a filter selected). ``name``/``service``/
    ``attributes``/``resource`` columns hold codes into the lists.

    Fields:
        columns: column name -> array, all of equal length.
        names, services, attributes, resources: code -> text (attribute and resource sets in
            canonical JSON text, ``""`` for none).
    """

    columns: dict[str, np.ndarray]
    names: list[str]
    services: list[str]
    attributes: Sequence[str]
    resources: list[str]

    def __len__(self) -> int:
        for arr in self.columns.values():
            return len(arr)
        return 0

    def exact_stats(self) -> dict[str, Stats]:
        """Exact statistics per function name (needs the name and duration columns)."""
        codes, durations = self.columns["name"], self.columns["duration"]
        status = self.columns.get("status")
        if status is None:
            status = np.zeros(len(codes), np.int8)
        rows = exact_group_stats(
            self.names, codes, durations, status, DEFAULT_QUANTILES, keep_values=True
        )
        return {r.key: r for r in rows if r.count}


def merge_scans(
    pieces: list[tuple[SegmentView, dict[str, np.ndarray]]],
    columns: list[str],
    *,
    local_attributes: bool = False,
    lock: AbstractContextManager[object] | None = None,
) -> Scan:
    """One Scan from per-segment row sets, with text codes mapped to a shared numbering.

    Each piece's codes are looked up in the dictionaries of its own segment view, which cover
    every code the view's rows use. With ``local_attributes``, attribute codes are not mapped
    (that needs every text): each segment's codes are shifted into a range of their own, and
    ``Scan.attributes`` reads texts on demand (:class:`~kronicler.db.attr_scan.LocalTexts`),
    holding ``lock`` (the segment set's).
    """
    globals_: dict[str, tuple[list[str], dict[str, int]]] = {k: ([], {}) for k in _TEXT}
    mapped: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    lookups: dict[tuple[str, str], np.ndarray] = {}
    unindexed: set[str] = set()
    shifted = None
    if local_attributes and "attributes" in columns:
        from kronicler.db.attr_scan import LocalTexts  # here: most questions read no texts

        shifted = LocalTexts.of(pieces, lock)
    for seg, cols in pieces:
        for c in columns:
            arr = cols[c]
            if shifted is not None and c == "attributes":
                arr = shifted.shift(seg, arr)
            elif c in _TEXT:
                key = (seg.id, c)
                table = lookups.get(key)
                if table is None:
                    values, index = globals_[c]
                    local = seg.dictionary(c).values
                    if not values:  # the first dictionary's codes are the shared ones as they are
                        values.extend(local)
                        unindexed.add(c)
                        lookups[key] = np.arange(len(local), dtype=np.uint32)
                        mapped[c].append(arr.astype(np.uint32))
                        continue
                    if c in unindexed:  # built only when a second dictionary comes
                        unindexed.discard(c)
                        index.update((t, i) for i, t in reversed(list(enumerate(values))))
                    table = _global_codes(local, values, index)
                    lookups[key] = table
                arr = table[arr] if len(arr) else arr.astype(np.uint32)
            mapped[c].append(arr)
    out = {c: np.concatenate(p) if p else np.zeros(0, COLUMNS[c]) for c, p in mapped.items()}
    attributes = globals_["attributes"][0] if shifted is None else shifted
    return Scan(out, globals_["name"][0], globals_["service"][0], attributes,
                globals_["resource"][0])  # fmt: skip


def _global_codes(local: list[str], values: list[str], index: dict[str, int]) -> np.ndarray:
    """The shared code of each of ``local``'s texts, adding new texts to ``values``/``index``.

    Looked up with C-level ``map`` (a dictionary of a million attribute sets costs ~0.1 s rather
    than ~0.4 s in a Python loop); the loop remains for new texts that repeat (placeholders).
    """
    table = np.fromiter(map(index.get, local, repeat(-1)), np.int64, len(local))
    new = np.flatnonzero(table < 0)
    texts = [local[i] for i in new.tolist()]
    if len(set(texts)) == len(texts):
        table[new] = np.arange(len(values), len(values) + len(texts))
        index.update(zip(texts, range(len(values), len(values) + len(texts)), strict=True))
        values.extend(texts)
        return table.astype(np.uint32)
    for code, text in zip(new.tolist(), texts, strict=True):
        g = index.get(text)
        if g is None:
            g = index[text] = len(values)
            values.append(text)
        table[code] = g
    return table.astype(np.uint32)


def top_k(duration: np.ndarray, start: np.ndarray, k: int) -> np.ndarray:
    """Row indexes of the ``k`` slowest rows, slowest first, ties going to the earlier start.

    Linear in the rows: one partition finds the k-th largest duration; every row above it is
    in, and only the rows tied with it are ordered by start to fill the remaining places
    (``argpartition`` alone would keep arbitrary tied rows).
    """
    if len(duration) > k:
        kth = np.partition(duration, len(duration) - k)[len(duration) - k]
        above = np.flatnonzero(duration > kth)
        tied = np.flatnonzero(duration == kth)
        need = k - len(above)
        if len(tied) > need:
            tied = tied[np.argsort(start[tied], kind="stable")[:need]]
        top = np.concatenate((above, tied))
    else:
        top = np.arange(len(duration))
    return top[np.lexsort((start[top], -duration[top]))]
