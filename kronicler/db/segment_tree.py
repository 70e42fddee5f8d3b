"""Roll-ups across segments: a persisted tree over the closed segments, in time order.

A time range holds most segments whole or not at all, and a segment held whole answers from its
whole roll-up (the block its index records). At a billion rows in 35 time-disjoint segments a cold
57% range decoded 18 such blocks (~1.7 ms each, ~37k buckets) and merged them: half its time. So
maintenance also writes one side file, ``segments.ktree`` in the segments folder: a binary tree
over the closed segments sorted by time (``start_min``, ``start_max``, id), whose node at level
``L``, index ``j`` is the merged summaries of positions ``j * 2**L`` to ``(j + 1) * 2**L - 1``
(levels >= 1; a leaf is the segment's own roll-up). A cold window holding a run of k segments
whole reads at most two nodes per level, O(log k) records, instead of k (the 100% range: one).

What a node stands for is named, not implied: the file's directory lists each member segment with
its id, rows, chunk count and time range, and a node covers a run of members. A reader uses a
node only when every segment it names is in its snapshot, closed, has no damage, no dropped
rows, no tail, and the same rows, chunks and time range as listed (so its summaries are exactly
the node's share), and lies whole inside the window (or holds none of the functions asked, whose
rows the query then leaves out anyway). Nodes form one tree, so taking the largest usable ones
first covers the most segments with the fewest records, and a file made stale by a later change
(a segment retired, compacted away, damaged, or added since) is used only where it still holds;
the rest answers from the segments' roll-ups as before. It is never needed: a missing, torn or
damaged file, or a node whose record fails its checksum, is ignored (logged), and answers are the
same merges of the same summaries (integer fields exact; sums up to float rounding, as every
grouping of a merge).

Writing. Every maintenance run (compaction, the time-disjoint compaction, retention:
``compaction.maintain``, hence ``serve --compact-every``) calls :func:`update` before letting
the maintenance lock go, and so does ``kronicler upgrade`` (``compaction.write_tree``); it
rewrites the file only when its members differ from the closed segments now or a record is
damaged. A segment whose own roll-up fails to decode is left out of the members. The run's
``stop`` is asked between node merges (about 1 s of merging at a billion rows): a stopped update
writes nothing, and the next run finds the file stale and writes it. The file is written whole:
temporary file, fsync, rename, fsync of the folder (``metadata.atomic_write``), so a reader sees
the old file or the new one, and a writer killed midway leaves the old one (its temporary file
goes with the next writable open). Segments closed by live writers since are leaves until the
next run.

Format: checksummed pages (:mod:`kronicler.db.page`). The first is the directory (JSON: members,
and per node its run of members and where its record lies after the directory); each node record
holds its function names (its own numbering: codes are local to a segment) and a chunk summary
page (:func:`kronicler.db.chunk.encode_summary`). Cost: about one node record per segment
(~50 KB each at a billion rows: 1.7 MB for 35 segments, 0.002 bytes a row). A reader holds the directory; node
blocks go through the bufferpool like other summary blocks.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import field
from pathlib import Path
from typing import Final

import numpy as np

from kronicler._record import record
from kronicler.db import merged, rollup
from kronicler.db.chunk import encode_summary
from kronicler.db.metadata import atomic_write
from kronicler.db.page import HEADER_SIZE, build_page, parse_header, verified_payload
from kronicler.db.rollup import Block
from kronicler.db.snapshot import Damage, SegmentView
from kronicler.errors import CorruptPageError

log = logging.getLogger(__name__)

FILE: Final = "segments.ktree"
#: Page kinds of the directory and of a node record, format 1.
DIRECTORY_PAGE: Final = 120
NODE_PAGE: Final = 121
_NAMES = struct.Struct("<I")  # bytes of the node's names (JSON) before its summary page


@record
class Member:
    """A segment as the tree summarised it: what a reader's view must still show to use it.

    Fields:
        id: the segment's id; rows, chunks: its rows and chunks (every chunk, none dropped);
        start_min, start_max: the time range of its rows (ns).
    """

    id: str
    rows: int
    chunks: int
    start_min: int
    start_max: int

    def to_list(self) -> list[object]:
        return [self.id, self.rows, self.chunks, self.start_min, self.start_max]

    @classmethod
    def from_list(cls, v: Sequence[object]) -> Member:
        seg, rows, chunks, lo, hi = v
        if not isinstance(seg, str) or not all(isinstance(x, int) for x in (rows, chunks, lo, hi)):
            raise ValueError(f"bad member {str(v)[:100]}")
        return cls(seg, int(rows), int(chunks), int(lo), int(hi))  # type: ignore[call-overload]


def member_of(seg: SegmentView) -> Member | None:
    """The segment as a member of the tree, or None when it cannot be one: not closed, with a
    tail, damage or dropped rows, a chunk missing, or no rows."""
    if seg.extent is not None:  # the index's own chunks, all of them: its directory unread
        rows, n, lo, hi = seg.extent
        if not seg.closed or seg.tail_rows or seg.damage != Damage() or not (n and rows):
            return None
        return Member(seg.id, rows, n, lo, hi)
    chunks = seg.chunks
    n = len(chunks)
    if not seg.closed or seg.tail_rows or not n or seg.damage != Damage():
        return None
    if not bool(chunks.column("clean").all()) or int(chunks.column("seq")[-1]) != n - 1:
        return None
    rows = int(chunks.column("kept_rows").sum())
    lo, hi = int(chunks.column("start_min").min()), int(chunks.column("start_max").max())
    return Member(seg.id, rows, n, lo, hi) if rows else None


@record
class TreeNode:
    """A node of the file: members ``first`` to ``last`` (positions), its record's bytes at
    ``offset`` (after the directory page), ``size`` long."""

    first: int
    last: int
    offset: int
    size: int

    @property
    def width(self) -> int:
        return self.last - self.first + 1


@record
class NodeKey:
    """A node's merged summaries in the bufferpool (a :class:`~kronicler.db.merged.NamedBlock`).

    Equal for the same member segments, whatever file version wrote it: the segments are closed
    and clean, so their summaries never change (keys name content, as in ``merged.py``). Carries
    the open file to load it from."""

    ids: tuple[str, ...]
    file: TreeFile = field(compare=False, hash=False, repr=False)
    node: TreeNode = field(compare=False, hash=False, repr=False)

    @property
    def segments(self) -> frozenset[str]:
        return frozenset(self.ids)


class TreeFile:
    """One version of the file, open (its descriptor closed when the last user lets it go).

    ``bad`` (mutable, under the segment set's lock): nodes whose record failed to load."""

    def __init__(self, fd: int, members: tuple[Member, ...], nodes: tuple[TreeNode, ...],
                 base: int) -> None:  # fmt: skip
        self.members = members
        self.nodes = nodes  # largest first (see choose)
        self.bad: set[TreeNode] = set()
        self.reads = 0  # node records loaded (what tests and benchmarks look at)
        self._fd = fd
        self._base = base
        weakref.finalize(self, os.close, fd)

    @classmethod
    def open(cls, path: Path) -> TreeFile | None:
        """The file's directory, checked; None when there is no usable file (logged)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            head = parse_header(os.pread(fd, HEADER_SIZE, 0))
            if head is None or head.column != DIRECTORY_PAGE:
                raise CorruptPageError("no directory page")
            raw = os.pread(fd, head.size, 0)
            _, payload = verified_payload(raw, f"{path}@0")
            doc = json.loads(bytes(payload))
            members = tuple(Member.from_list(m) for m in doc["members"])
            nodes = tuple(TreeNode(*map(int, n)) for n in doc["nodes"])
            if any(not 0 <= n.first < n.last < len(members) for n in nodes):
                raise ValueError("a node outside the members")
        except (CorruptPageError, OSError, ValueError, KeyError, TypeError) as exc:
            os.close(fd)
            log.warning("segment tree %s unreadable, ignored: %s", path, exc)
            return None
        order = tuple(sorted(nodes, key=lambda n: (-n.width, n.first)))
        return cls(fd, members, order, head.size)

    def key(self, node: TreeNode) -> NodeKey:
        ids = tuple(m.id for m in self.members[node.first : node.last + 1])
        return NodeKey(ids, self, node)

    def load(self, node: TreeNode) -> merged.NamedBlock:
        """The node's summaries; CorruptPageError when its record is damaged or torn."""
        self.reads += 1
        try:
            raw = os.pread(self._fd, node.size, self._base + node.offset)
        except OSError as exc:
            raise CorruptPageError(f"segment tree node unreadable: {exc}") from None
        head, payload = verified_payload(raw, f"{FILE}@{self._base + node.offset}")
        if head.column != NODE_PAGE or (head.min, head.max) != (node.first, node.last):
            raise CorruptPageError(f"{FILE}: not the record of members {node.first}-{node.last}")
        (size,) = _NAMES.unpack_from(payload)
        try:
            names = tuple(json.loads(bytes(payload[_NAMES.size : _NAMES.size + size])))
        except ValueError as exc:
            raise CorruptPageError(f"{FILE}: node names do not decode: {exc}") from None
        block = Block.from_page(payload[_NAMES.size + size :])
        if block.codes.size and int(block.codes[-1]) >= len(names):
            raise CorruptPageError(f"{FILE}: a node code has no name")
        return merged.NamedBlock(names, block)

    def intact(self) -> bool:
        """Whether every node record passes its checksum (read whole, not decoded)."""
        try:
            for node in self.nodes:
                raw = os.pread(self._fd, node.size, self._base + node.offset)
                verified_payload(raw, f"{FILE}@{self._base + node.offset}")
        except (CorruptPageError, OSError):
            return False
        return True

    def choose(self, usable: Callable[[Member], bool]) -> list[TreeNode]:
        """The largest nodes whose members are all ``usable``, none overlapping (the nodes are
        one tree: any two are disjoint or nested, so largest first covers the most with the
        fewest), leaving out those found ``bad``."""
        ok = np.fromiter((usable(m) for m in self.members), bool, len(self.members))
        held = np.concatenate(([0], np.cumsum(ok)))
        taken = np.zeros(len(self.members), bool)
        out: list[TreeNode] = []
        for node in self.nodes:
            a, b = node.first, node.last + 1
            if held[b] - held[a] == b - a and not taken[a] and node not in self.bad:
                taken[a:b] = True
                out.append(node)
        return out


class TreeReader:
    """The file of one segments folder, reopened when it changes (a ``stat`` per refresh)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / FILE
        self.current: TreeFile | None = None
        self._seen: tuple[int, ...] | None = None

    def refresh(self) -> TreeFile | None:
        try:
            st = os.stat(self.path)
            seen: tuple[int, ...] | None = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        except OSError:
            seen = None
        if seen != self._seen:
            self._seen = seen
            self.current = None if seen is None else TreeFile.open(self.path)
        return self.current


# -- writing ------------------------------------------------------------------------------------


def update(
    directory: Path, views: Iterable[SegmentView], stop: Callable[[], bool] | None = None
) -> bool:
    """Rewrite the folder's file for the closed segments among ``views`` (the visible ones, as
    maintenance sees them under its lock) when its members differ; True when written (or
    removed: fewer than two members). A segment whose own roll-up fails to decode is left out
    (it answers from its chunks, as a segment closed since does). ``stop`` is asked between
    node merges: when it answers True nothing is written (the old file stays, used where it
    still holds) and False is returned. Call holding the maintenance lock."""
    path = Path(directory) / FILE
    found = [(m, v) for v in views if (m := member_of(v)) is not None]
    found.sort(key=lambda mv: (mv[0].start_min, mv[0].start_max, mv[0].id))
    old = TreeFile.open(path)
    if old is not None and old.members == tuple(m for m, _ in found) and old.intact():
        return False  # its records are its own: a member's roll-up is not needed to keep it
    kept: list[Member] = []
    leaves: list[tuple[tuple[str, ...], Block]] = []
    for m, v in found:
        try:
            leaves.append((v.names, rollup.rollup_block(v.rollup)))
        except CorruptPageError as exc:
            log.warning("segment %s left out of the roll-up across segments: %s", v.id, exc)
            continue
        kept.append(m)
    members = tuple(kept)
    if old is not None and old.members == members and old.intact():
        return False
    if len(members) < 2:
        if old is None and not path.exists():
            return False
        path.unlink(missing_ok=True)
        return True
    data = encode(members, leaves, stop)
    if data is None:
        return False
    atomic_write(path, data)
    return True


def encode(
    members: Sequence[Member],
    leaves: Sequence[tuple[tuple[str, ...], Block]],
    stop: Callable[[], bool] | None = None,
) -> bytes | None:
    """The file of ``members`` (in order) whose summaries are ``leaves`` (names, block); None
    when ``stop`` (asked before each node's merge) answered True."""
    records: list[bytes] = []
    nodes: list[list[int]] = []
    offset = 0
    level: list[tuple[int, int, merged.NamedBlock]] = [
        (i, i, merged.NamedBlock(names, block)) for i, (names, block) in enumerate(leaves)
    ]
    while len(level) > 1:  # pairs of the level below: aligned runs of 2**L members
        up: list[tuple[int, int, merged.NamedBlock]] = []
        for k in range(0, len(level), 2):
            pair = level[k : k + 2]
            if len(pair) == 1:
                up.append(pair[0])  # the same run one level up: no record of its own
                continue
            if stop is not None and stop():
                return None
            first, last = pair[0][0], pair[1][1]
            nb = merged.merge_named([(p[2].names, p[2].block) for p in pair])
            page = _record(first, last, nb)
            records.append(page)
            nodes.append([first, last, offset, len(page)])
            offset += len(page)
            up.append((first, last, nb))
        level = up
    doc = {"members": [m.to_list() for m in members], "nodes": nodes}
    directory = build_page(DIRECTORY_PAGE, 0, len(members), json.dumps(doc).encode())
    return directory + b"".join(records)


def _record(first: int, last: int, nb: merged.NamedBlock) -> bytes:
    names = json.dumps(list(nb.names)).encode()
    payload = _NAMES.pack(len(names)) + names + encode_summary(nb.block.chunk_summary())
    return build_page(NODE_PAGE, 0, last - first + 1, payload, first, last)
