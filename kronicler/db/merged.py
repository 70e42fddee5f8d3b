"""Merged summaries of sets of segments, kept: a question asked again merges O(1) blocks.

A whole-history ``stats()`` merges one roll-up block per segment, and a time range one block per
segment of the parts it holds whole (:mod:`kronicler.db.rollup`). At a billion rows in 59
segments that is ~2.1M buckets merged per query, 20-27 ms of the 31-39 ms a warm ``stats()``
took, although the segments are sealed and the same merge was redone every time.

So the merge of a set of segments' parts is kept in the bufferpool like a page, under a key made
of its parts' keys (:class:`SetKey`): a part is a pool entry a query would merge anyway (a
segment's whole parts for a range, ``_PlanKey``), or a block the query holds (a segment's
whole roll-up, :class:`BlockKey`, equal only to the same block object: a new chunk list makes a
new block). Keys name content, never a moment: what is merged is exactly what the parts hold, so
the kept merge equals the merge the query would do (integer fields and buckets bit for bit; sum
and ``m2`` up to float rounding, as every other grouping of a merge).

The sets form a two-level tree over the segments, in snapshot order: groups of consecutive
segments, cut after a segment whose id hashes to a boundary (1 in ``FANOUT``; content-defined,
as in a prolly tree), so a segment added, removed, compacted away or with a chunk condemned
changes its own group and the root, not every group: ~``FANOUT`` blocks merged for its group
and ``n / FANOUT`` for the root, instead of ``n``. A group stops at ``4 * FANOUT`` segments
whatever the hashes. Only sealed content goes in the tree: a live writer's roll-up changes at
every seal, so the reader merges it beside the root (and a whole-history question keeps that
merge too, until the next seal; see ``SegmentSet._summaries``).

A range keeps two such merges. Its *stable* set (closed segments the window holds whole, and
closed segments' roll-up nodes of at least ``FANOUT`` chunks) goes through the same tree and is
kept from its first use: a window that moves (a dashboard's "last N hours", a new window each
ask) changes only its edges' parts, so the next window finds the same groups and root, and
merges that one entry with the small parts of its edges (the slices and chunks they cut, small
nodes: one block per cut segment). At a billion rows a 57% window moved by 8 s merged 41 blocks
of 1.37M buckets at each ask, and now 18 of 0.32M (median CPU per ask, five runs at load 2-9,
each beside the code before: 12-25 ms against 20-56 ms). The whole window (stable root and
every segment's edge parts) is kept from the second time the same window is asked, as before.

Codes are local to a segment, so a kept merge carries its own names (:class:`NamedBlock`);
a query maps them to its own numbering (the reader's, so the map is made once per merge).
It holds every function, whatever the question asked for, so one entry serves them all.

Measured at a billion rows (59 closed segments, 100 functions; CPU time, as the shared machine
ran 8-10 other jobs, beside the code before, in one run): a warm ``stats()`` of every function
3.7 ms against 29.7 ms; warm ranges of 0.1%, 25%, 57% and 100% of the data 9.7, 9.2, 14.5 and
6.4 ms against 24.0, 21.2, 35.3 and 25.6 ms (the rest of a range is its edges: the rows of the
time slices its two edges cut, summarised at every question).

Cost: a kept merge is about the size of the largest segment's roll-up (0.9 MB for 100 functions
at 1B rows), and the groups as much again each; the pool's byte budget counts them, and evicts
them like any page. A block a :class:`BlockKey` carries is the segment view's own (already in
memory); a stale one stays alive until its entry leaves the pool.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import field
from typing import Final

import numpy as np

from kronicler._record import record
from kronicler.db import rollup
from kronicler.db.rollup import Block

#: Segments per group on average (a boundary after 1 in FANOUT segment ids).
FANOUT: Final = 8
#: No group holds more segments than this, whatever the hashes of their ids.
MAX_GROUP: Final = 4 * FANOUT


@record(eq=False)
class NamedBlock:
    """A merge of several segments' summaries: ``block.codes`` index ``names``.

    Fields:
        names: the function names, in the merge's own numbering.
        block: the merged summaries.
    """

    names: tuple[str, ...]
    block: Block

    @property
    def nbytes(self) -> int:
        """What the merge costs a bufferpool (names counted at ~100 bytes each)."""
        return self.block.nbytes + 100 * len(self.names)


@record
class BlockKey:
    """A block the query holds (a segment view's whole roll-up) as a part of a set: equal only
    to a key of the same block object (blocks compare by identity)."""

    segment: str
    block: Block


@record
class Part:
    """One segment's part of a set: a pool entry's key (or a :class:`BlockKey`) and the names
    of its codes (the segment's names: a code's text never changes once defined, so any view's
    names serve); a nested :class:`SetKey` carries its names itself (``names`` None)."""

    key: Hashable
    names: tuple[str, ...] | None = field(compare=False, hash=False)
    segments: frozenset[str] = field(compare=False, hash=False)


@record
class SetKey:
    """The merge of ``parts`` as one bufferpool entry (a :class:`NamedBlock`).

    The hash is computed once: a range's key holds every part of every segment."""

    parts: tuple[Part, ...]
    segments: frozenset[str] = field(compare=False, hash=False)
    _hash: int = field(compare=False, hash=False, repr=False, default=0)

    @classmethod
    def of(cls, parts: Sequence[Part]) -> SetKey:
        segments = frozenset().union(*(p.segments for p in parts))
        return cls(tuple(parts), segments, hash(tuple(parts)))

    def __hash__(self) -> int:
        return self._hash

    def part(self) -> Part:
        return Part(self, None, self.segments)


def part_of(segment: str, key: Hashable, names: tuple[str, ...]) -> Part:
    return Part(key, names, frozenset((segment,)))


def tree(parts: Sequence[Part], segment_of: Callable[[Part], str]) -> Part | None:
    """The root of the two-level tree over ``parts`` (in snapshot order): one part stays
    itself, a single group is the root, else the root is the set of the groups."""
    if len(parts) <= 1:
        return parts[0] if parts else None
    groups: list[list[Part]] = [[]]
    for p in parts:
        groups[-1].append(p)
        if _boundary(segment_of(p)) or len(groups[-1]) >= MAX_GROUP:
            groups.append([])
    nodes = [g[0] if len(g) == 1 else SetKey.of(g).part() for g in groups if g]
    return nodes[0] if len(nodes) == 1 else SetKey.of(nodes).part()


def _boundary(segment: str) -> bool:
    """Whether a group ends after this segment: a hash of its id, stable across processes."""
    return zlib.crc32(segment.encode()) % FANOUT == FANOUT - 1


def merge_named(items: Sequence[tuple[tuple[str, ...], Block]]) -> NamedBlock:
    """One merge of blocks whose codes index their own names: numbered in order of first
    appearance, so the merge of one block keeps that block's numbering."""
    names: list[str] = []
    index: dict[str, int] = {}
    pieces: list[tuple[np.ndarray | None, Block]] = []
    for own, block in items:
        if not len(block):
            continue
        lookup = np.full(len(own), -1, np.int64)
        for code in block.codes.tolist():
            n = own[code]
            g = index.get(n)
            if g is None:
                g = index[n] = len(names)
                names.append(n)
            lookup[code] = g
        pieces.append((lookup, block))
    return NamedBlock(tuple(names), rollup.merge(pieces))
