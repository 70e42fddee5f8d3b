"""A segment's chunk directory as columns: a ChunkInfo is made only for a chunk a query touches.

A reader opening a segment from its index (:mod:`kronicler.db.index`) used to build one
:class:`~kronicler.db.snapshot.ChunkInfo` per chunk, each with its page map and its function
lists: at a billion rows, 15,301 objects from 59 indexes, ~0.7 s before any question, while a
question reads a handful of chunks (a time range its two edges, exact statistics the chunks no
``.kdur`` record covers) or only columns over all of them (time ranges of the roll-up tree, row
counts, chunk numbers). So a :class:`ChunkTable` keeps the index's arrays (struct of arrays) and
makes a chunk's ChunkInfo the first time it is asked for (then keeps it), and :class:`Chunks`, the
sequence a segment view holds, answers the column questions from those arrays. Iterating every
chunk still makes every object, once per reader, at the old cost.

The function lists (the codes each chunk holds, their largest duration and row ends: ~90% of an
index's bytes) are decoded when a chunk is first made, not at open. They are checked then, as
the open checks the rest; an index whose lists turn out inconsistent (its checksum passed, so
written so: a lie, not damage) raises :class:`~kronicler.errors.IndexUnusableError`, and the
segment's reader walks the segment from its next refresh on (see ``SegmentReader.refresh``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Final, overload

import numpy as np

from kronicler.db.snapshot import ChunkInfo, Deferred

#: (codes, max_duration, code_ends): flat over the chunks, cut at ``ChunkTable.cuts``
Lists = tuple[np.ndarray, np.ndarray, np.ndarray]
#: (table, sizes, ordered, cuts): see ChunkTable
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: columns of the table: offset, length, rows, first_row, start_min, start_max
FIELDS: Final = ("offset", "length", "rows", "first_row", "start_min", "start_max")
#: what :meth:`Chunks.largest` gives a chunk that holds none of the functions asked
NONE: Final = np.iinfo(np.int64).min
# rows of the table, page offsets, page sizes, function-list spans, ordered: as Python values
_Ints = tuple[list[list[int]], list[list[int]], list[list[int]], list[list[int]], list[bool]]
#: while fewer than 1/_FEW of a table's chunks are made, only their own rows become Python ints
_FEW: Final = 8


class ChunkTable:
    """The chunks a segment index lists, as arrays; ChunkInfo objects made on first use.

    Chunk ``i`` of the table is the segment's chunk number ``i``. Immutable in what it answers;
    it caches what it made. ``arrays`` gives the table's arrays (or is them), checked: a
    closed segment's are checked when first used, not at open (a segment that a node of the
    roll-up across segments answers whole never needs them; see ``SegmentView.extent``).
    ``lists`` decodes and checks the function lists. Either raises CorruptPageError when bad;
    the table then remembers the failure (``failed``) and raises IndexUnusableError.
    """

    __slots__ = ("kinds", "_arrays", "_lists", "_made", "_ints", "_asked")

    def __init__(
        self, kinds: Sequence[str], n: int, arrays: Arrays | Callable[[], Arrays],
        lists: Callable[[Arrays], Lists],
    ) -> None:  # fmt: skip
        self.kinds = tuple(kinds)
        # (table (n, len(FIELDS)) int64; sizes (n, len(kinds)) int64: page sizes, header
        # included; ordered (n,) bool: rows ordered by function (code_ends known); cuts
        # (n + 1,) int64: chunk i's lists are [cuts[i], cuts[i + 1]))
        self._arrays: Deferred[Arrays] = Deferred(arrays if callable(arrays) else lambda: arrays)
        self._lists = Deferred(lambda: lists(self._arrays.get()))
        self._made: list[ChunkInfo | None] = [None] * n
        self._ints: _Ints | None = None  # the arrays as Python ints, for making ChunkInfo
        self._asked = 0  # chunks made so far: past 1/_FEW of them, the whole table's ints

    @property
    def table(self) -> np.ndarray:
        return self._arrays.get()[0]

    @property
    def sizes(self) -> np.ndarray:
        return self._arrays.get()[1]

    @property
    def ordered(self) -> np.ndarray:
        return self._arrays.get()[2]

    @property
    def cuts(self) -> np.ndarray:
        return self._arrays.get()[3]

    @property
    def checked(self) -> bool:
        """Whether the table's arrays were made (and checked)."""
        return self._arrays.done

    def check(self) -> None:
        """Make and check the arrays now (IndexUnusableError when they are bad)."""
        self._arrays.get()

    def __len__(self) -> int:
        return len(self._made)

    def column(self, name: str) -> np.ndarray:
        """One of :data:`FIELDS` over every chunk (read-only)."""
        return self.table[:, FIELDS.index(name)]

    def pages_of(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """Offsets and sizes of every chunk's page of ``kind``."""
        k = self.kinds.index(kind)
        at = self.column("offset") + self.sizes[:, :k].sum(axis=1)
        return at, self.sizes[:, k]

    def lists(self) -> Lists:
        """The function lists, decoded and checked on first use."""
        return self._lists.get()

    @property
    def failed(self) -> str | None:
        """Why the table's arrays or its function lists did not check, once they were tried."""
        return self._arrays.failed or self._lists.failed

    @property
    def decoded(self) -> bool:
        return self._lists.done

    def info(self, i: int) -> ChunkInfo:
        """Chunk ``i``'s ChunkInfo (made now if not yet)."""
        made = self._made[i]
        if made is None:
            made = self._make(range(i, i + 1))[0]
        return made

    def infos(self, positions: Sequence[int]) -> list[ChunkInfo]:
        """The ChunkInfo of each chunk of ``positions``, those not made yet made in one pass."""
        made = self._made
        missing = [i for i in positions if made[i] is None]
        if missing:
            self._make(missing)
        return [made[i] for i in positions]  # type: ignore[misc]  # all made now

    def _make(self, positions: Sequence[int]) -> list[ChunkInfo]:
        codes, maxes, ends = self.lists()
        self._asked += len(positions)
        if self._ints is None and self._asked * _FEW < len(self._made):
            # a few chunks (a range's edges): their rows alone as Python ints; the whole
            # table's took half the cost of a cut segment's first chunk (~1 ms at 271 chunks)
            pos = np.asarray(positions, np.int64)
            ints = _ints_of(self.table[pos], self.sizes[pos], self.column("offset")[pos],
                            self.cuts, self.ordered, pos)  # fmt: skip
            return self._made_of(positions, range(len(positions)), ints, codes, maxes, ends)
        if self._ints is None:
            every = np.arange(len(self._made))
            self._ints = _ints_of(self.table, self.sizes, self.column("offset"), self.cuts,
                                  self.ordered, every)  # fmt: skip
        return self._made_of(positions, positions, self._ints, codes, maxes, ends)

    def _made_of(
        self, positions: Sequence[int], rows_at: Sequence[int], ints: _Ints, codes: np.ndarray,
        maxes: np.ndarray, ends: np.ndarray,
    ) -> list[ChunkInfo]:  # fmt: skip
        """ChunkInfo of chunk ``positions[k]`` from row ``rows_at[k]`` of ``ints``, kept."""
        rows, at, sizes_of, cuts, ordered = ints
        kinds, made = self.kinds, self._made
        out = []
        for i, k in zip(positions, rows_at, strict=True):  # ~1.5 us a chunk: Python ints
            lo, hi = cuts[k]
            r = rows[k]
            info = ChunkInfo(
                i, r[0], r[1], r[2], r[3], r[4], r[5],
                dict(zip(kinds, zip(at[k], sizes_of[k], strict=True), strict=True)),
                codes[lo:hi], maxes[lo:hi], code_ends=ends[lo:hi] if ordered[k] else None,
            )  # fmt: skip
            made[i] = info
            out.append(info)
        return out


def _ints_of(
    table: np.ndarray, sizes: np.ndarray, offset: np.ndarray, cuts: np.ndarray,
    ordered: np.ndarray, pos: np.ndarray,
) -> _Ints:  # fmt: skip
    """Rows of the table (those of chunks ``pos``) as Python ints, for making ChunkInfo:
    fields, page offsets, page sizes, each chunk's span of the function lists, ordered."""
    at = offset[:, None] + np.concatenate(
        (np.zeros((len(sizes), 1), np.int64), np.cumsum(sizes, axis=1)[:, :-1]), axis=1
    )
    spans = np.stack((cuts[pos], cuts[pos + 1]), axis=1)
    return (table.tolist(), at.tolist(), sizes.tolist(), spans.tolist(),
            ordered[pos].tolist())  # fmt: skip


class Chunks(Sequence[ChunkInfo]):
    """The chunks a segment view reads, in order: some chunks of a :class:`ChunkTable` (all, or
    the chunks at ``positions``), then ChunkInfo objects (chunks walked past the index).

    Immutable. ``chunks[i]`` makes one ChunkInfo; :meth:`column` answers over every chunk
    without making any.
    """

    __slots__ = ("_table", "_positions", "_extra", "_n", "_columns")

    def __init__(
        self, table: ChunkTable | None = None, extra: Sequence[ChunkInfo] = (),
        positions: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        self._table = table
        self._positions = positions
        self._extra = tuple(extra)
        in_table = 0 if table is None else len(table) if positions is None else len(positions)
        self._n = in_table
        self._columns: dict[str, np.ndarray] = {}

    @property
    def table(self) -> ChunkTable | None:
        """The index's table these chunks begin with, if any."""
        return self._table

    def __len__(self) -> int:
        return self._n + len(self._extra)

    @overload
    def __getitem__(self, i: int) -> ChunkInfo: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[ChunkInfo, ...]: ...

    def __getitem__(self, i: int | slice) -> ChunkInfo | tuple[ChunkInfo, ...]:
        if isinstance(i, slice):
            return tuple(self[k] for k in range(*i.indices(len(self))))
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"chunk position {i} out of range")
        if i >= self._n:
            return self._extra[i - self._n]
        assert self._table is not None
        return self._table.info(i if self._positions is None else int(self._positions[i]))

    def __iter__(self) -> Iterator[ChunkInfo]:
        if self._table is not None:
            positions = range(self._n) if self._positions is None else self._positions.tolist()
            yield from self._table.infos(positions)
        yield from self._extra

    def column(self, name: str) -> np.ndarray:
        """``seq``, one of the table's :data:`FIELDS`, ``kept_rows`` or ``clean`` (no rows
        dropped: ``keep`` is None) of every chunk, in order, as an array (read-only)."""
        got = self._columns.get(name)
        if got is None:
            got = self._columns[name] = _frozen(np.concatenate((
                self._table_column(name),
                np.fromiter((_field(c, name) for c in self._extra),
                            bool if name == "clean" else np.int64, len(self._extra)),
            )))  # fmt: skip
        return got

    def _table_column(self, name: str) -> np.ndarray:
        table = self._table
        if table is None:
            return np.zeros(0, bool if name == "clean" else np.int64)
        if name == "seq":
            full = np.arange(len(table), dtype=np.int64)
        elif name == "clean":  # an index lists no chunk with dropped rows
            full = np.ones(len(table), dtype=bool)
        else:
            full = table.column("rows" if name == "kept_rows" else name)
        return full if self._positions is None else full[self._positions]

    def largest(self, codes: np.ndarray | None) -> np.ndarray:
        """Per chunk, the largest duration of the functions ``codes`` (a segment's own codes,
        ascending; None: every function) it holds, :data:`NONE` when it holds none of them:
        what ``slowest`` ranks chunks by, over every chunk without making any."""
        parts = []
        table = self._table
        if table is not None:
            codes_f, maxes_f, _ = table.lists()
            cuts = table.cuts
            found = np.full(len(table), NONE, dtype=np.int64)
            held = cuts[1:] > cuts[:-1]
            if codes_f.size:
                wanted = maxes_f if codes is None else np.where(np.isin(codes_f, codes),
                                                                 maxes_f, NONE)  # fmt: skip
                # each held chunk's entries run from its cut to the next held chunk's
                found[held] = np.maximum.reduceat(wanted, cuts[:-1][held])
            parts.append(found if self._positions is None else found[self._positions])
        for c in self._extra:
            m = c.max_duration if codes is None else c.max_duration[np.isin(c.codes, codes)]
            parts.append(np.array([m.max() if m.size else NONE], dtype=np.int64))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def without(self, seqs: Collection[int]) -> Chunks:
        """These chunks less those numbered in ``seqs``."""
        if not seqs:
            return self
        gone = np.fromiter(seqs, np.int64, len(seqs))
        keep = ~np.isin(self.column("seq"), gone)
        if self._table is None:
            positions = None
        else:
            mine = np.flatnonzero(keep[: self._n])
            positions = mine if self._positions is None else self._positions[mine]
        extra = [c for c, k in zip(self._extra, keep[self._n :].tolist(), strict=True) if k]
        return Chunks(self._table, extra, positions)


def _field(chunk: ChunkInfo, name: str) -> int | bool:
    if name == "clean":
        return chunk.keep is None
    return int(getattr(chunk, name))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a
