"""The read side of a database: every segment, kept current, and the queries over them.

A query first takes a :class:`~kronicler.db.snapshot.Snapshot`: one refresh of the segment readers
(a few ``stat`` calls when nothing changed) fixes, per segment, the chunk list, the tail rows and the
dictionaries; every read of the query then goes through that snapshot, so a chunk sealed while the
query runs is neither counted twice nor missed, and text codes always resolve. The query works from
roll-ups (:mod:`kronicler.db.rollup`: a time range merges the summaries of O(log n) runs of
chunks), zone maps and per-chunk summaries, decoding column pages only where a time range cuts a
chunk or raw rows are asked for. Decoded pages, chunk summaries and roll-up blocks are cached in
one byte-bounded bufferpool, and so are merges of many segments' summaries
(:mod:`kronicler.db.merged`): all of history, or a range asked again, is one kept merge plus what
live writers and the range's edges add; a window that moves reuses the kept merge of what stays
as it moves (whole segments and large roll-up nodes) and merges its edges' parts beside it. A
live tail's summary so far is kept merged with that entry until the next warm or seal, and its
rows since go into the query's one merge, summarised in one pass with every other tail's and
edge's. A run of closed segments a window holds whole reads a few nodes of the roll-up across
segments that maintenance writes (:mod:`kronicler.db.segment_tree`), where it still holds,
instead of each segment's roll-up. Segments a compaction has replaced, or is still writing,
are left out. Each query method takes ``snapshot=`` to read a given snapshot; a pinned one
(``pin``/``unpin``) keeps its segments readable between calls, which is what
:mod:`kronicler.db.view` builds on.

A query uses a page's data only while it holds the page's pin (``chunk_columns`` is a context
manager, summary blocks are pinned as they are taken); what it keeps afterwards is its own copy. Where copying
would cost (a scan's whole chunks, the summaries of a long time range) it keeps the pins instead,
up to half the pool, then copies or merges what it has and lets them go. So the pool's
budget counts every page a query holds, and no page in use is evicted as if it were free.

Name codes are local to a segment: every lookup (codes of the wanted functions, texts of a result)
uses the dictionary of the segment the rows come from, never another segment's.

A page that passed its checksum when its chunk was found but fails to decode when a query reads it
is reported to its reader (``condemn``) and the query runs again on a fresh snapshot without that
chunk, so the damage costs the chunk, not the answer.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from kronicler import budget
from kronicler._record import record
from kronicler.db import merged, published, rollup, segment_tree
from kronicler.db.bufferpool import BufferPool
from kronicler.db.chunk import BLOCK_COLUMNS, summarize
from kronicler.db.chunk_table import NONE as NO_CALL
from kronicler.db.page_guard import PinnedPages
from kronicler.db.reader import SegmentReader
from kronicler.db.rollup import Block, ChunkSlices
from kronicler.db.scan import FunctionSummary, Scan, TimeRange, merge_scans, top_k
from kronicler.db.schema import COLUMNS, otlp_kind, parse_attributes
from kronicler.db.snapshot import ChunkInfo, Damage, SegmentView, Snapshot
from kronicler.db.stats import Call
from kronicler.errors import CorruptPageError, IndexUnusableError

log = logging.getLogger("kronicler.db.database")

T = TypeVar("T")
DAMAGE_RETRIES = 3  # fresh snapshots a query (or a view's question) may take after damaged pages
# A query keeps at most 1/_HOLD_SHARE of the pool pinned past the chunk it reads: a scan of up to
# half the pool copies nothing more than it used to, and the other half leaves room for the chunk
# it reads next. (Queries of one SegmentSet run one at a time, under ``lock``.)
_HOLD_SHARE = 2
_SUMMARY_COLUMNS = ("name", "start", "duration", "status")
_ORDERED_COLUMNS = ("start", "duration", "status")  # rows ordered by function: no name
_SEEN_REMEMBERED = 1 << 16  # chunks cut and plans asked, remembered (~64 bytes each)
# Rows of cut chunks a query gathers before summarising them (~25 bytes each): one pass over
# many chunks' edges, with the query's own memory bounded to a few MB.
_EDGE_ROWS = 1 << 18
_NAMES_KEPT = 1 << 20  # names the shared numbering holds before it starts afresh
_LOOKUPS_KEPT = 1 << 12  # names tuples whose numbering is remembered (one per segment view)
# Rows of a live tail past its last summary that a whole-history question summarises with its
# edge rows rather than making the tail's own summary (see _tail_base).
_TAIL_ROWS_PAST_BASE = 1 << 12
# Kept merges of the whole-history entry with the live tails' summaries remembered at once: a
# few questions of different functions (whose live tails differ) each find theirs.
_TAIL_KEYS_KEPT = 4
# A closed segment's roll-up node of at least this many chunks is a *stable* part of a range:
# it changes only when an edge of the window crosses a node of FANOUT chunks (hours of data at
# a billion rows), so the stable parts of every segment are one kept merge that a moving window
# reuses, and each ask merges that entry plus the few small parts of its edges per segment.
_STABLE_CHUNKS = rollup.FANOUT


@record
class _PageKey:
    """A page in the bufferpool; carries its reader and chunk so a snapshot can load it later."""

    segment: str
    seq: int
    column: str
    reader: SegmentReader = field(compare=False, hash=False, repr=False)
    chunk: ChunkInfo = field(compare=False, hash=False, repr=False)
    block: tuple[int, int] | None = None  # rows [lo, hi) of a page cut into blocks; None: all


@record
class _NodeKey:
    """A roll-up node's block in the bufferpool: chunks ``first`` to ``last`` of a segment.

    Equal for equal runs of chunks, whatever the level (the summaries are the same); carries
    the reader to load it, never a view (a cached key must not keep a view's arrays alive).
    """

    segment: str
    first: int
    last: int
    reader: SegmentReader = field(compare=False, hash=False, repr=False)
    node: rollup.Node = field(compare=False, hash=False, repr=False)


@record
class _PlanKey:
    """What a time window holds whole of one segment, merged as one bufferpool entry: roll-up
    nodes, whole chunks, and runs of the time slices of the chunks it cuts (``parts``).

    Equal for every window that holds the same parts, so a range asked again, or moved within
    the slices its edges cut, merges one block per segment and its edge rows, not the ~5 blocks
    of 10k buckets a segment's plan holds at 10M rows (two thirds of such a query's CPU).
    """

    segment: str
    parts: tuple[_PageKey | _NodeKey, ...]
    reader: SegmentReader = field(compare=False, hash=False, repr=False)


# A chunk, the wanted codes it holds, and their row runs (``ChunkInfo.rows_of``).
_Runs = tuple[ChunkInfo, np.ndarray, list[tuple[int, int]]]


@record
class _RunsKey:
    """One column of some functions' rows over a run of a segment's ordered chunks, as one
    bufferpool entry (see ``SegmentSet._runs_piece``); ``seqs`` are the chunk numbers."""

    segment: str
    column: str
    codes: tuple[int, ...]
    seqs: tuple[int, ...]
    reader: SegmentReader = field(compare=False, hash=False, repr=False)
    #: per chunk: the chunk, the wanted codes it holds and their row runs (``rows_of``)
    chunks: tuple[_Runs, ...] = field(compare=False, hash=False, repr=False)


class _EdgeRows:
    """Rows of the chunks a range cuts, gathered over chunks and segments and summarised in one
    pass (``Block.of_rows``): a summary costs ~40 numpy calls whatever its rows, so one per
    cut chunk (18 at 10M rows in 9 segments) cost more than the rows themselves."""

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        self.rows = 0

    def add(self, groups: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        """Keep rows (start, duration, status: the query's own copies) of groups ``groups``."""
        if groups.size:
            self._parts.append((groups, cols))
            self.rows += int(groups.size)

    def block(self) -> Block:
        """The summaries of every row gathered (codes: their groups); then start afresh."""
        groups = np.concatenate([g for g, _ in self._parts])
        cols = {c: np.concatenate([p[c] for _, p in self._parts]) for c in _ORDERED_COLUMNS}
        self._parts.clear()
        self.rows = 0
        keep = groups >= 0  # functions the query does not want
        if not bool(keep.all()):
            groups, cols = groups[keep], {c: a[keep] for c, a in cols.items()}
        return Block.of_rows(groups, cols)


class _Damaged(Exception):
    """A chunk's page failed to decode during a query (raised to the retry loop)."""

    def __init__(self, reader: SegmentReader, seq: int, cause: CorruptPageError) -> None:
        super().__init__(str(cause))
        self.reader, self.seq, self.cause = reader, seq, cause


class SegmentSet:
    """The segments of one directory and the bufferpool over their pages. Thread-safe."""

    def __init__(self, directory: Path, bufferpool_bytes: int) -> None:
        self._segdir = directory
        # lock protects readers (and their refreshes) and is held for a whole query, so no
        # reader is closed under one; the pool has its own lock.
        self.lock = threading.RLock()
        self.readers: dict[str, SegmentReader] = {}
        self.pool = BufferPool(bufferpool_bytes, load=self._load_page)
        # Also under lock: how many open read views (see view.py) hold each segment, and the
        # readers of deleted segments that a view still holds, closed when the last one is let go.
        self._pins: dict[str, int] = {}
        self._retired: dict[str, SegmentReader] = {}
        # What one query may keep pinned beyond the chunk it is reading (see _summaries, _scan).
        self._hold_bytes = bufferpool_bytes // _HOLD_SHARE
        # What ranges have asked before, a bounded set: chunks cut (segment, chunk number),
        # which get time slices when cut again, and hashes of a segment's whole parts
        # (_PlanKey), merged as one entry when asked again. What is asked once (a new process,
        # a moving window) costs no more than that: no slices, no second merge of its blocks.
        self._seen: set[Hashable] = set()
        # The kept merges the last whole-history question took (see _whole), and hashes of
        # those that did not stay in the pool (see _fits); under lock.
        self._whole_keys: set[merged.SetKey] = set()
        self._unkept: set[int] = set()
        # The last kept merges of the whole-history entry with the live tails (see _with_tails).
        self._tail_keys: list[merged.SetKey] = []
        self._names = _Names()  # the queries' numbering of function names (under lock)
        # The roll-up across segments (segment_tree.py), reopened when it changes; under lock.
        self.tree = segment_tree.TreeReader(directory)

    def forget(self, segment: str) -> None:
        """Drop a deleted segment's reader and cached pages (call with ``lock`` held).

        A segment an open read view holds keeps its reader (its file stays open, so the view can
        still read it) until :meth:`unpin` lets the last such view go.
        """
        reader = self.readers.pop(segment, None)
        if reader is not None:
            if self._pins.get(segment):
                self._retired[segment] = reader
            else:
                reader.close()
        self.pool.drop(partial(_in_segment, segment))

    def close(self) -> None:
        with self.lock:
            for reader in (*self.readers.values(), *self._retired.values()):
                reader.close()
            self.readers.clear()
            self._retired.clear()

    def refresh(self) -> list[SegmentReader]:
        """Refresh and return the visible segments' readers (call with ``lock`` held)."""
        try:
            files = os.listdir(self._segdir)
        except FileNotFoundError:
            files = []
        ids = {f[:-5] for f in files if f.endswith(".kseg")}
        for gone in set(self.readers) - ids:
            self.forget(gone)
        for seg_id in sorted(ids - set(self.readers)):
            self.readers[seg_id] = SegmentReader(self._segdir, seg_id)
        for reader in self.readers.values():
            try:
                reader.refresh()
            except OSError as exc:  # deleted under us by retention in another process
                log.debug("segment %s unreadable: %s", reader.id, exc)
        self.tree.refresh()
        return published.visible(self.readers[i] for i in sorted(self.readers))

    def snapshot(self) -> Snapshot:
        """Refresh once and return every visible segment's state as of now (immutable)."""
        with self.lock:
            return Snapshot(tuple(r.view() for r in self.refresh()))

    def pin(self) -> Snapshot:
        """A snapshot whose segments stay readable, even once deleted, until ``unpin``."""
        with self.lock:
            snap = self.snapshot()
            for seg in snap.segments:
                self._pins[seg.id] = self._pins.get(seg.id, 0) + 1
            return snap

    def unpin(self, snap: Snapshot) -> None:
        """Let go of a pinned snapshot; close the readers of deleted segments it held last."""
        with self.lock:
            for seg in snap.segments:
                left = self._pins.get(seg.id, 0) - 1
                if left > 0:
                    self._pins[seg.id] = left
                    continue
                self._pins.pop(seg.id, None)
                reader = self._retired.pop(seg.id, None)
                if reader is not None:
                    reader.close()
                    self.pool.drop(partial(_in_segment, seg.id))  # pages the view read again

    def damage(self) -> Damage:
        """Rows the visible segments have lost to damaged bytes (counted, logged once each)."""
        return self.snapshot().damage

    def _run(self, snapshot: Snapshot | None, query: Callable[[Snapshot], T]) -> T:
        """Run ``query`` on ``snapshot`` (or a fresh one), again without any chunk it finds damaged."""
        with self.lock:
            for attempt in range(DAMAGE_RETRIES + 1):
                snap = self.snapshot() if snapshot is None else snapshot
                try:
                    return query(snap)
                except _Damaged as exc:
                    exc.reader.condemn(exc.seq, str(exc.cause))
                    if snapshot is not None or attempt == DAMAGE_RETRIES:
                        raise exc.cause from None
                except IndexUnusableError:  # its reader walks the segment from the next refresh
                    if snapshot is not None or attempt == DAMAGE_RETRIES:
                        raise
            raise AssertionError("unreachable")

    def _load_page(
        self, key: _PageKey | _NodeKey | _RunsKey | _PlanKey | merged.SetKey | segment_tree.NodeKey
    ) -> Any:
        if isinstance(key, merged.SetKey):
            return self._load_set(key)
        if isinstance(key, segment_tree.NodeKey):
            return key.file.load(key.node)
        if isinstance(key, _NodeKey):
            return self._load_node(key)
        if isinstance(key, _RunsKey):
            return self._load_runs(key)
        if isinstance(key, _PlanKey):
            return self._load_plan(key)
        reader, chunk = key.reader, key.chunk
        if key.column == "slices" and key.block is not None:  # a run of slices, merged
            with self.pool.read_page(replace(key, block=None)) as guard:
                return guard.data.joined(*key.block)
        if key.block is not None:
            return reader.decode_block(chunk, key.column, *key.block)
        if key.column == "block":
            return Block.from_page(reader.summary_page(chunk))
        if key.column == "slices":  # of a chunk ordered by function (see _summaries)
            assert chunk.code_ends is not None
            # Reading the columns for the slices, or for one slice's rows, does not count as a
            # use: LRU-K holds a page used twice over pages used once, and 1.1 MB a cut chunk
            # would crowd out the slices, the roll-up blocks and every other query's pages.
            with PinnedPages() as pins:
                cols = {c: pins.pin(self.pool, _key(reader, chunk, c), count=False)
                        for c in _ORDERED_COLUMNS}  # fmt: skip
                return ChunkSlices.of(cols, chunk.codes, chunk.code_ends)
        if key.column != "parent_span_id":
            return reader.decode_stored(chunk, key.column)
        # Parent ids are stored as rows of the page's span ids: decode them while pinned.
        with self.pool.read_page(_key(reader, chunk, "span_id")) as guard:
            return reader.decode_stored(chunk, key.column, guard.data)

    def _load_plan(self, key: _PlanKey) -> Block:
        """The parts' blocks, each pinned from the pool (loaded or merged as needed), merged."""
        with PinnedPages() as pins:
            parts: list[tuple[np.ndarray | None, Block]] = []
            for part in key.parts:
                try:
                    parts.append((None, pins.pin(self.pool, part)))
                except CorruptPageError as exc:
                    raise _Damaged(key.reader, _seq_of(part), exc) from None
            return rollup.merge(parts)

    def _load_set(self, key: merged.SetKey) -> merged.NamedBlock:
        """The parts' blocks (each pinned from the pool, or the block a part holds), merged."""
        with PinnedPages() as pins:
            items: list[tuple[tuple[str, ...], Block]] = []
            for part in key.parts:
                budget.check()  # a part may be a segment's whole parts, merged when loaded
                k = part.key
                if isinstance(k, merged.BlockKey):
                    assert part.names is not None
                    items.append((part.names, k.block))
                    continue
                try:
                    page = pins.pin(self.pool, k)
                except CorruptPageError as exc:
                    raise _damaged(k, exc) from None
                if isinstance(k, merged.SetKey):
                    self._kept(k)
                if isinstance(page, merged.NamedBlock):  # a kept merge, or a segment tree node
                    items.append((page.names, page.block))
                else:
                    assert part.names is not None
                    items.append((part.names, page))
            return merged.merge_named(items)

    def _load_node(self, key: _NodeKey) -> Block:
        """A node's summaries: from its roll-up record, else merged from its children's."""
        reader, node = key.reader, key.node
        block = reader.rollups.load(node)
        if block is not None:
            return block
        with PinnedPages() as pins:
            parts: list[tuple[np.ndarray | None, Block]] = []
            for child in _children(key):
                try:
                    parts.append((None, pins.pin(self.pool, child)))
                except CorruptPageError as exc:
                    raise _Damaged(reader, _seq_of(child), exc) from None
            return rollup.merge(parts)

    def _load_runs(self, key: _RunsKey) -> np.ndarray:
        """The key's functions' rows of one column, chunk after chunk: each chunk's blocks
        decoded straight from its page (not through the pool, whose entries they would evict)
        and cut to the functions' runs. The name column needs no page: runs are per code."""
        parts: list[np.ndarray] = []
        for chunk, present, runs in key.chunks:
            if key.column == "name":
                lengths = [hi - lo for lo, hi in runs]
                parts.append(np.repeat(present, lengths).astype(COLUMNS["name"]))
                continue
            try:
                for lo, hi in runs:
                    a, b = chunk.block_of(lo, hi)
                    if (a, b) == (0, chunk.rows):
                        data = key.reader.decode_stored(chunk, key.column)
                    else:
                        data = key.reader.decode_block(chunk, key.column, a, b)
                    parts.append(data[lo - a : hi - a])
            except CorruptPageError as exc:
                raise _Damaged(key.reader, chunk.seq, exc) from None
        return np.concatenate(parts) if parts else np.zeros(0, COLUMNS[key.column])

    def _runs_piece(
        self, seg: SegmentView, chunks: list[_Runs], codes: np.ndarray, columns: list[str],
        held: PinnedPages,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """Every row of ``codes`` in ``chunks`` (ordered, whole in the query's window), one
        pool entry per column: a warm question about one function pins a few entries per
        segment instead of a block per chunk and column (1,500 chunks at 100M rows), and the
        pool holds that function's rows, not the ~4,096-row blocks around them (which would
        not fit). Pinned in ``held`` until the scan's merge has copied them; when they would
        not fit the allowance, chunk by chunk as before."""
        rows = sum(hi - lo for _, _, runs in chunks for lo, hi in runs)
        size = rows * sum(np.dtype(COLUMNS[c]).itemsize for c in columns)
        if held.nbytes + size > self._hold_bytes:
            parts = [self.run_rows(seg, c, columns, runs) for c, _, runs in chunks]
            return {col: np.concatenate([p[col] for p in parts]) for col in columns}
        code_key = tuple(codes.tolist())
        seqs = tuple(c.seq for c, _, _ in chunks)
        piece: dict[str, np.ndarray] = {}
        with PinnedPages() as pins:
            for col in columns:
                key = _RunsKey(seg.reader.id, col, code_key, seqs, seg.reader, tuple(chunks))
                piece[col] = pins.pin(self.pool, key)
            pins.move_to(held)
        return piece

    @contextmanager
    def chunk_columns(
        self, seg: SegmentView, chunk: ChunkInfo, columns: Iterable[str]
    ) -> Iterator[tuple[dict[str, np.ndarray], PinnedPages]]:
        """Columns of the chunk's kept rows, pinned until the block ends: ``(columns, pins)``.

        The arrays are the pool's pages: read them inside the block, keep copies (a take, a
        mask), or hand ``pins`` to a longer-lived set and copy the dict (it is emptied when the
        block ends) to keep the arrays themselves. When rows depending on damaged entries are
        left out the columns are copies already, with no pins.
        """
        with PinnedPages() as pins:
            try:
                cols = {c: pins.pin(self.pool, _key(seg.reader, chunk, c)) for c in columns}
            except CorruptPageError as exc:
                raise _Damaged(seg.reader, chunk.seq, exc) from None
            if chunk.keep is not None:
                cols = {c: a.take(chunk.keep) for c, a in cols.items()}
                pins.release()
            try:
                yield cols, pins
            finally:
                cols.clear()  # past the block the caller's names no longer reach the pages

    def run_rows(
        self,
        seg: SegmentView,
        chunk: ChunkInfo,
        columns: Iterable[str],
        runs: list[tuple[int, int]],
    ) -> dict[str, np.ndarray]:
        """Copies of the stored rows in ``runs`` (from ``ChunkInfo.rows_of``) of the columns,
        decoding only the page blocks that hold them (ids: their whole page, see BLOCK_COLUMNS)."""
        columns = list(columns)
        out: dict[str, list[np.ndarray]] = {c: [] for c in columns}
        whole = [c for c in columns if c not in BLOCK_COLUMNS]
        if whole:
            with self.chunk_columns(seg, chunk, whole) as (cols, _):
                for c in whole:
                    out[c] = [cols[c][lo:hi].copy() for lo, hi in runs]
        for lo, hi in runs:
            block = chunk.block_of(lo, hi)
            with PinnedPages() as pins:
                for c in columns:
                    if c in whole:
                        continue
                    # a chunk of one block has a whole page: share its pool entry
                    whole_page = block == (0, chunk.rows)
                    key = _PageKey(seg.reader.id, chunk.seq, c, seg.reader, chunk,
                                   None if whole_page else block)  # fmt: skip
                    try:
                        data = pins.pin(self.pool, key)
                    except CorruptPageError as exc:
                        raise _Damaged(seg.reader, chunk.seq, exc) from None
                    out[c].append(data[lo - block[0] : hi - block[0]].copy())
        return {c: p[0] if len(p) == 1 else np.concatenate(p) for c, p in out.items()}

    def functions(self, *, snapshot: Snapshot | None = None) -> list[str]:
        """Names of every function with at least one stored call, sorted."""

        def run(snap: Snapshot) -> list[str]:
            names: set[str] = set()
            for seg in snap.segments:
                values = seg.names
                names.update(values[c] for c in seg.rollup.codes)
                names.update(values[c] for c in np.unique(seg.tail["name"]).tolist())
            return sorted(names)

        return self._run(snapshot, run)

    def services(self, *, snapshot: Snapshot | None = None) -> list[str]:
        def run(snap: Snapshot) -> list[str]:
            out: set[str] = set()
            for seg in snap.segments:
                out.update(v for v, ok in zip(seg.services, seg.service_defined, strict=True) if ok)
            return sorted(out)

        return self._run(snapshot, run)

    def time_range(self, *, snapshot: Snapshot | None = None) -> tuple[int, int] | None:
        """(earliest, latest) start time over every stored call, or None when empty."""

        def run(snap: Snapshot) -> tuple[int, int] | None:
            lo, hi = None, None
            for seg in snap.segments:
                live = seg.chunks.column("kept_rows") > 0
                starts = seg.chunks.column("start_min")[live].tolist()
                ends = seg.chunks.column("start_max")[live].tolist()
                if len(seg.tail["start"]):
                    starts.append(int(seg.tail["start"].min()))
                    ends.append(int(seg.tail["start"].max()))
                if starts:
                    lo = min(starts) if lo is None else min(lo, *starts)
                    hi = max(ends) if hi is None else max(hi, *ends)
            return None if lo is None or hi is None else (lo, hi)

        return self._run(snapshot, run)

    def summaries(
        self,
        names: Sequence[str] | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
        snapshot: Snapshot | None = None,
    ) -> dict[str, FunctionSummary]:
        """Merged summary per function over ``since <= start < until`` (exact at the edges)."""
        window = TimeRange.of(since, until)
        wanted = None if names is None else set(_check_names(names))
        return self._run(snapshot, partial(self._summaries, window=window, wanted=wanted))

    def merge_whole(self, *, snapshot: Snapshot | None = None) -> None:
        """Make the kept merges a whole-history question of every function reads (of the
        segments' roll-ups, and of those with the live tails' summaries), without the rows
        since the tails' summaries or the answer: what a warm does after summarising the tails
        (:mod:`kronicler.server.warm`), so the next queries find them made."""
        self._run(snapshot, partial(self._summaries, window=TimeRange.of(None, None),
                                    wanted=None, answer=False))  # fmt: skip

    def _summaries(
        self, snap: Snapshot, *, window: TimeRange, wanted: set[str] | None, answer: bool = True
    ) -> dict[str, FunctionSummary]:
        if len(self._names.names) > _NAMES_KEPT:  # names of deleted segments pile up
            self._names = _Names()
        num = _Numbering(self._names, wanted)
        # (renumbering, block): blocks of pinned pages until ``settle`` merges them into one
        pieces: list[tuple[np.ndarray | None, Block]] = []
        held = PinnedPages()
        edges = _EdgeRows()  # rows of cut chunks and tails in the window, in the query's numbering
        # What each segment holds whole, one part per segment: closed segments' parts are
        # merged through the tree of kept merges (see merged.py), live ones' beside it.
        sealed: list[merged.Part] = []
        live: list[merged.Part] = []
        stable: list[merged.Part] = []  # for a range: the parts that stay as a window moves

        def settle() -> None:
            """Merge what the pieces hold into one block of the query's own, then unpin."""
            if len(pieces) > 1 or len(held):
                pieces[:] = [(None, rollup.merge(pieces))]
            held.release()

        def hold(key: Hashable) -> Any:
            """The pool entry ``key``, pinned until the query's merge (or a settle) is done."""
            with PinnedPages() as pins:
                try:
                    page = pins.pin(self.pool, key)
                except CorruptPageError as exc:
                    raise _damaged(key, exc) from None
                if held.nbytes + pins.nbytes > self._hold_bytes:
                    settle()
                pins.move_to(held)
            return page

        def take(part: merged.Part) -> None:
            key = part.key
            if isinstance(key, (merged.SetKey, segment_tree.NodeKey)):
                nb = hold(key)
                if isinstance(key, merged.SetKey):
                    self._kept(key)
                pieces.append((num.lookup(nb.names), nb.block))
                return
            assert part.names is not None
            block = key.block if isinstance(key, merged.BlockKey) else hold(key)
            pieces.append((num.lookup(part.names), block))

        def take_plan(part: merged.Part) -> None:
            """A segment's whole parts: one entry from the second time they are asked."""
            key = part.key
            first = isinstance(key, (_PlanKey, _NodeKey)) and not (
                key in self.pool or self._seen_before(hash(key))
            )  # fmt: skip
            if not first:
                take(part)
                return
            for sub in key.parts if isinstance(key, _PlanKey) else (key,):
                if (
                    isinstance(sub, _NodeKey) and sub not in self.pool
                    and (sub.first, sub.last) not in sub.reader.rollups.records
                ):  # fmt: skip
                    # asked for the first time, a run of siblings the plan joined, with no
                    # record: its children go to the query's one merge, not first to a merge
                    # of their own (2-6 blocks, ~1 ms each; 16 such runs in a cold 25% range
                    # at 1B rows); the node is merged and kept when the plan is asked again
                    for child in _children(sub):
                        take(replace(part, key=child))
                else:  # the rest of a plan asked for the first time: merged with the rest
                    take(replace(part, key=sub))

        # Runs of closed segments held whole that a node of the roll-up across segments stands
        # for: the node's part where the run begins, None for the rest of it
        across = self._across(snap, window, wanted)
        with held:
            if window.everything:
                tails = []
                for seg in snap.segments:
                    if seg.id in across:  # closed, so no tail
                        first = across[seg.id]
                        if first is not None:
                            sealed.append(first)
                        continue
                    block = seg.memo("rollup_block", partial(_whole_block, seg))
                    if len(block):
                        part = merged.part_of(seg.id, merged.BlockKey(seg.id, block), seg.names)
                        (sealed if seg.closed else live).append(part)
                    if seg.tail_rows:
                        codes = _wanted_codes(seg, wanted)
                        if codes is None or codes.size:
                            tails.append(seg)
                history = self._whole(sealed, live)
                bases = [(seg, *_tail_base(seg)) for seg in tails]
                summed_parts = [
                    merged.part_of(seg.id, merged.BlockKey(seg.id, summed), seg.names)
                    for seg, summed, _ in bases
                    if summed is not None
                ]
                joined = self._with_tails(history, summed_parts)
                for part in history if joined is None else [joined]:
                    take(part)
                if not answer:  # merge_whole: the kept merges are made
                    return {}
                for seg, summed, done in bases:
                    lookup = num.lookup(seg.names)
                    if summed is not None and joined is None:
                        pieces.append((lookup, summed))
                    if done < seg.tail_rows:  # rows since: summarised with every tail's in one pass
                        tail = seg.tail
                        edges.add(lookup[tail["name"][done:]],
                                  {c: tail[c][done:] for c in _ORDERED_COLUMNS})  # fmt: skip
            for seg in () if window.everything else snap.segments:
                if seg.id in across:  # closed and held whole, so no tail and no edge
                    first = across[seg.id]
                    if first is not None:
                        stable.append(first)
                    continue
                # a closed segment's time range without its chunk directory (unread till then)
                span = None if seg.extent is None else window.covers(*seg.extent[2:])
                if span == 0:  # closed, so no tail: nothing of it is in the window
                    continue
                codes = _wanted_codes(seg, wanted)
                if codes is not None and codes.size == 0:
                    continue
                tree = None if span == 2 else seg.memo("chunk_tree", partial(_chunk_tree, seg))
                if tree is None or tree.holds_all(window):
                    # every chunk whole: the segment's own roll-up, read at open, no record
                    block = seg.memo("rollup_block", partial(_whole_block, seg))
                    if len(block):
                        part = merged.part_of(seg.id, merged.BlockKey(seg.id, block), seg.names)
                        (stable if seg.closed else live).append(part)
                elif window.covers(tree.start_min, tree.start_max):  # else no chunk is in it
                    plan = tree.plan(window)
                    # What the window holds whole, as pool entries: nodes, chunks, and runs of
                    # the slices of the chunks it cuts; merged into one entry (see _PlanKey),
                    # but for a closed segment's large nodes, which go to the stable set.
                    whole: list[_PageKey | _NodeKey] = []
                    for node in plan.nodes:
                        budget.check()  # stop when the caller's deadline passed
                        node_key = _node_key(seg.reader, node)
                        if seg.closed and node.last - node.first + 1 >= _STABLE_CHUNKS:
                            stable.append(merged.part_of(seg.id, node_key, seg.names))
                        else:
                            whole.append(node_key)
                    for pos in plan.whole:
                        budget.check()
                        chunk = seg.chunks[pos]
                        if not _has_codes(chunk, codes):
                            continue
                        if chunk.summary is not None:  # rows were dropped: the view's own summary
                            pieces.append((num.lookup(seg.names), Block.of(chunk.summary)))
                        else:
                            whole.append(_key(seg.reader, chunk, "block"))
                    for pos in plan.cut:
                        budget.check()  # stop when the caller's deadline passed
                        chunk = seg.chunks[pos]
                        if not _has_codes(chunk, codes):
                            continue
                        lookup = num.lookup(seg.names)
                        if codes is not None or chunk.code_ends is None or chunk.keep is not None:
                            pieces.append((lookup, self._cut_block(seg, chunk, codes, window)))
                            continue
                        whole += self._cut_rows(seg, chunk, window, lookup, edges)
                        if edges.rows > _EDGE_ROWS:
                            pieces.append((None, edges.block()))
                    budget.check()
                    if whole:
                        one = whole[0] if len(whole) == 1 else None
                        key = one or _PlanKey(seg.id, tuple(whole), seg.reader)
                        part = merged.part_of(seg.id, key, seg.names)
                        (sealed if seg.closed else live).append(part)
                if seg.tail_rows:  # the tail's rows in the window, summarised with the edges'
                    tail = seg.tail
                    rows = np.flatnonzero(window.mask(tail["start"]))
                    if rows.size:
                        lookup = num.lookup(seg.names)
                        edges.add(lookup[tail["name"][rows]],
                                  {c: tail[c][rows] for c in _ORDERED_COLUMNS})  # fmt: skip
            if not window.everything:
                # The stable set (closed segments held whole, and closed segments' large
                # nodes) is kept from its first use: a window that moves changes only its
                # edges' parts, so the next window merges the same kept entry.
                root = merged.tree(stable, _segment_of)
                base = [root] if root is not None and self._fits(root.key) else stable
                # The whole closed part of a window is kept from the second time the window
                # is asked (its parts then differ from the first time's: a chunk cut again
                # answers from its slices), so a range asked twice merges one entry from the
                # third time on.
                asked = self._seen_before(("window", window.since, window.until))
                top = merged.SetKey.of(base + sealed) if len(base) + len(sealed) > 1 else None
                if top is not None and (asked or top in self.pool) and self._fits(top):
                    take(top.part())
                else:
                    for part in base:
                        take(part)
                    for part in sealed:
                        take_plan(part)
                for part in live:
                    take_plan(part)
            if edges.rows:
                pieces.append((None, edges.block()))
            out = rollup.merge(pieces)  # the query's own arrays: no pin needed past here
        names = num.names
        return {names[g]: out.function_summary(i) for i, g in enumerate(out.codes.tolist())}

    def _across(
        self, snap: Snapshot, window: TimeRange, wanted: set[str] | None
    ) -> dict[str, merged.Part | None]:
        """The nodes of the roll-up across segments (``segment_tree.py``) a question uses: per
        segment id of a run one node stands for, the node's part at the run's first segment
        (in snapshot order) and None at the others. A node is used only when every segment it
        names is in the snapshot as the tree saw it (closed, clean, same rows and chunks) and
        either lies whole in the window or holds no function asked. A node whose record does
        not load is left out (logged), and the question takes its children, or the segments'
        own roll-ups, instead."""
        tree = self.tree.current
        if tree is None or len(snap.segments) < 2:
            return {}
        by_id = {s.id: s for s in snap.segments}

        def usable(m: segment_tree.Member) -> bool:
            # the member's time range is the segment's once the member matches: the window is
            # checked first, so a segment the window does not hold costs no more than this
            held = window.everything or window.covers(m.start_min, m.start_max) == 2
            if not held and wanted is None:
                return False
            seg = by_id.get(m.id)
            if seg is None:
                return False
            if not held:  # usable only when no row of the segment is wanted: a node adds none
                codes = _wanted_codes(seg, wanted)
                if codes is None or codes.size:
                    return False
            return seg.memo("tree_member", partial(segment_tree.member_of, seg)) == m

        while True:
            nodes = tree.choose(usable)
            for node in nodes:
                budget.check()  # stop when the caller's deadline passed
                key = tree.key(node)
                if key in self.pool:
                    continue
                try:
                    with self.pool.read_page(key):  # loaded now, so damage costs only the node
                        pass
                except CorruptPageError as exc:
                    log.warning("roll-up across segments: node of %d segments unusable: %s",
                                node.width, exc)  # fmt: skip
                    tree.bad.add(node)
                    break
            else:
                break
        order = {s.id: i for i, s in enumerate(snap.segments)}
        out: dict[str, merged.Part | None] = {}
        for node in nodes:
            key = tree.key(node)
            ids = sorted(key.ids, key=order.__getitem__)
            out[ids[0]] = merged.Part(key, None, key.segments)
            out.update(dict.fromkeys(ids[1:]))
        return out

    def _whole(self, sealed: list[merged.Part], live: list[merged.Part]) -> list[merged.Part]:
        """What every segment's roll-up merged is, as one part: the tree over the closed
        segments, and its merge with the live ones' (kept until one of them seals a chunk);
        the parts themselves when such merges did not stay in the pool (see ``_fits``).

        The kept merges a whole-history question used before, and no longer does, leave the
        pool (the groups of the tree stay: a segment added or removed reuses the others')."""
        root = merged.tree(sealed, _segment_of)
        parts = ([] if root is None else [root]) + live
        top = merged.SetKey.of(parts).part() if len(parts) > 1 else None
        now = {p.key for p in (root, top) if p is not None and isinstance(p.key, merged.SetKey)}
        for key in self._whole_keys - now:
            self.pool.drop_page(key)
        self._whole_keys = now
        if top is not None and self._fits(top.key):
            return [top]
        if root is not None and self._fits(root.key):
            return parts
        return sealed + live

    def _with_tails(self, whole: list[merged.Part], tails: list[merged.Part]) -> merged.Part | None:
        """The kept merge of the whole-history entry with the live tails' summarised parts, or
        None when there is no such single entry to keep (no tail part, or ``_whole`` fell back
        to its parts).

        Between two seals the whole-history entry stays, and a tail's summarised part (its
        block object: ``tail_block`` or the ``tail_base`` a later view inherits) stays until a
        warm or ``_TAIL_ROWS_PAST_BASE`` more rows make a new one, so queries in between merge
        this one entry plus the rows appended since, not the entry and every tail's block again
        at every question. The warmer makes it after each warm, outside the query path (under
        ~100k spans/s into 2 workers, 2M spans stored: GetStats p99 under ingest 20-30 ms
        against 25-36 ms before, beside it at load 2.5-4.9). The last few such keys are
        remembered; older ones leave the pool. In a pool too small to keep it, each new key
        costs one merge more (then ``_fits`` says no until the tails' summaries change)."""
        if len(whole) != 1 or not tails:
            return None
        key = merged.SetKey.of(whole + tails)
        if key not in self._tail_keys:
            self._tail_keys.append(key)
            while len(self._tail_keys) > _TAIL_KEYS_KEPT:
                self.pool.drop_page(self._tail_keys.pop(0))
        return key.part() if self._fits(key) else None

    def _fits(self, key: Hashable) -> bool:
        """Whether a kept merge may be used: one that did not stay in the pool (it was larger
        than the room left beside the pinned pages) would be merged again at every question,
        its groups too, costing more than the flat merge it stands for."""
        return not isinstance(key, merged.SetKey) or hash(key) not in self._unkept

    def _kept(self, key: merged.SetKey) -> None:
        """Note whether the merge just loaded for ``key`` stayed in the pool (see ``_fits``)."""
        if key not in self.pool:
            if len(self._unkept) >= _SEEN_REMEMBERED:
                self._unkept.clear()
            self._unkept.add(hash(key))

    def _cut_rows(
        self, seg: SegmentView, chunk: ChunkInfo, window: TimeRange, lookup: np.ndarray,
        edges: _EdgeRows,
    ) -> list[_PageKey]:  # fmt: skip
        """A chunk ordered by function that ``window`` cuts, every function wanted: its rows in
        the window go to ``edges``, summarised there with every other cut chunk's; returns the
        pool entries of what it holds whole.

        The first time a window cuts the chunk, all its rows in the window, from its columns;
        from the second on, only those of the time slices the window cuts, from the rows in
        start order the chunk's slices keep (``ChunkSlices``), the slices it holds whole coming
        from their blocks (runs of them merged once, kept in the pool).
        """
        key = _key(seg.reader, chunk, "slices")
        again = key in self.pool or self._seen_before((seg.reader.id, chunk.seq))
        groups = lookup[chunk.codes]
        if not again:
            assert chunk.code_ends is not None
            with self.chunk_columns(seg, chunk, _ORDERED_COLUMNS) as (cols, _):
                rows = np.flatnonzero(window.mask(cols["start"]))
                code = np.searchsorted(chunk.code_ends, rows, side="right")
                edges.add(groups[code], {c: cols[c][rows] for c in _ORDERED_COLUMNS})
            return []
        with PinnedPages() as pins:
            try:
                slices = pins.pin(self.pool, key)
                runs, cut = slices.cut(window)
                for i in cut:
                    part = slices.slice_rows(i)
                    a, b = part.within(window)
                    edges.add(groups[part.code[a:b]], {"start": part.start[a:b].copy(),
                              "duration": part.duration[a:b].copy(),
                              "status": part.status[a:b].copy()})  # fmt: skip
            except CorruptPageError as exc:
                raise _Damaged(seg.reader, chunk.seq, exc) from None
        # The slices and their rows now stand in for the columns: let them go (1.1 MB a chunk,
        # which would crowd out the roll-up blocks a range merges).
        for c in _ORDERED_COLUMNS:
            self.pool.drop_page(_key(seg.reader, chunk, c))
        return [replace(key, block=run) for run in runs]

    def _seen_before(self, item: Hashable) -> bool:
        """Whether a range asked for ``item`` before (remembering it now: call under ``lock``)."""
        if item in self._seen:
            return True
        if len(self._seen) >= _SEEN_REMEMBERED:
            self._seen.clear()  # forgetting costs one more time asked as if for the first
        self._seen.add(item)
        return False

    def _cut_block(
        self, seg: SegmentView, chunk: ChunkInfo, codes: np.ndarray | None, window: TimeRange
    ) -> Block:
        """Summaries of the chunk's rows (of ``codes``) that ``window`` holds.

        Rows of a sealed chunk are ordered by function (not start): only the wanted functions'
        rows are read, masked, and summarised in that order, function by function, with no sort.
        """
        if chunk.code_ends is None or chunk.keep is not None:  # rows in no known order
            with self.chunk_columns(seg, chunk, _SUMMARY_COLUMNS) as (cols, _):
                rows = _select(cols, window.mask(cols["start"]))
            return Block.of(summarize(rows))  # functions not wanted: left out by the merge
        assert codes is not None  # every function's rows: see ChunkSlices
        present = _present(codes, chunk)
        runs = chunk.rows_of(present)
        assert runs is not None
        cols = self.run_rows(seg, chunk, _ORDERED_COLUMNS, runs)  # only their rows, in order
        ends = np.cumsum([hi - lo for lo, hi in runs], dtype=np.int64)
        return Block.of_ordered(cols, present, ends, np.flatnonzero(window.mask(cols["start"])))

    def scan(
        self,
        columns: Sequence[str],
        *,
        names: Sequence[str] | None = None,
        since: int | None = None,
        until: int | None = None,
        snapshot: Snapshot | None = None,
        local_attributes: bool = False,
    ) -> Scan:
        """Decoded rows (``since <= start < until``, name in ``names``) of the given columns.

        ``local_attributes``: attribute codes per segment, texts read on demand (see
        :func:`~kronicler.db.scan.merge_scans`; for :func:`~kronicler.db.attr_scan.key_columns`).
        """
        if isinstance(columns, str):
            columns = [columns]
        bad = [c for c in columns if c not in COLUMNS]
        if bad:
            raise ValueError(f"unknown column(s) {bad}; columns are {list(COLUMNS)}")
        window = TimeRange.of(since, until)
        wanted = None if names is None else set(_check_names(names))
        run = partial(self._scan, columns=list(columns), window=window, wanted=wanted,
                      local_attributes=local_attributes)  # fmt: skip
        return self._run(snapshot, run)

    def _scan(
        self, snap: Snapshot, *, columns: list[str], window: TimeRange, wanted: set[str] | None,
        local_attributes: bool = False,
    ) -> Scan:  # fmt: skip
        need = list(dict.fromkeys([*columns, "name", "start"]))
        bulk = set(columns) <= BLOCK_COLUMNS  # columns cut into per-function blocks
        pieces: list[tuple[SegmentView, dict[str, np.ndarray]]] = []
        # Pages whose arrays are pieces themselves (whole chunks), kept pinned until the merge
        # has copied them; past the allowance a whole chunk is copied instead.
        with PinnedPages() as held:
            for seg in snap.segments:
                codes = _wanted_codes(seg, wanted)
                if codes is not None and codes.size == 0:
                    continue
                # consecutive chunks whose wanted rows are read as one piece (see _runs_piece)
                group: list[_Runs] = []
                for chunk in seg.chunks:
                    budget.check()  # stop when the caller's deadline passed
                    cover = window.covers(chunk.start_min, chunk.start_max)
                    if cover == 0 or not _has_codes(chunk, codes):
                        continue
                    only = None if codes is None else _present(codes, chunk)
                    whole = cover == 2 and (only is None or chunk.codes.size == only.size)
                    runs = None if whole or only is None else chunk.rows_of(only)
                    if runs is not None and cover == 2 and bulk:
                        assert only is not None
                        group.append((chunk, only, runs))
                        continue
                    if group:
                        assert codes is not None
                        pieces.append((seg, self._runs_piece(seg, group, codes, columns, held)))
                        group = []
                    if runs is not None:  # the functions' own rows: no name page, no mask
                        want = columns if cover == 2 else list(dict.fromkeys([*columns, "start"]))
                        piece = self.run_rows(seg, chunk, want, runs)
                        pieces.append((seg, piece if cover == 2 else _filter(piece, window, None)))
                        continue
                    with self.chunk_columns(seg, chunk, columns if whole else need) as (cols, pins):
                        piece = cols if whole else _filter(cols, window, only)
                        if piece is cols:  # the chunk's own arrays: keep them pinned, or copy
                            if not len(pins) or held.nbytes + pins.nbytes <= self._hold_bytes:
                                pins.move_to(held)
                                piece = dict(cols)
                            else:
                                piece = {c: a.copy() for c, a in cols.items()}
                    pieces.append((seg, piece))
                if group:
                    assert codes is not None
                    pieces.append((seg, self._runs_piece(seg, group, codes, columns, held)))
                if len(seg.tail["start"]):
                    pieces.append((seg, _filter(dict(seg.tail), window, codes)))
            return merge_scans(pieces, columns, local_attributes=local_attributes, lock=self.lock)

    def slowest(
        self,
        name: str | None = None,
        *,
        k: int = 10,
        since: int | None = None,
        until: int | None = None,
        snapshot: Snapshot | None = None,
    ) -> list[Call]:
        """The ``k`` slowest calls (of ``name``, or of any function), slowest first."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        window = TimeRange.of(since, until)
        wanted = None if name is None else set(_check_names([name]))
        return self._run(snapshot, partial(self._slowest, k=k, window=window, wanted=wanted))

    def _slowest(
        self, snap: Snapshot, *, k: int, window: TimeRange, wanted: set[str] | None
    ) -> list[Call]:
        best: list[_Row] = []
        # (largest duration bound, segment, chunk position, the segment's wanted codes): codes
        # are local to their segment and must travel with its chunks.
        candidates: list[tuple[int, SegmentView, int, np.ndarray | None]] = []
        for seg in snap.segments:
            budget.check()  # stop when the caller's deadline passed
            codes = _wanted_codes(seg, wanted)
            if codes is not None and codes.size == 0:
                continue
            if len(seg.tail["start"]):
                self._top_rows(seg, None, dict(seg.tail), window, codes, k, best)
            # every chunk's bound at once, from the columns (a ChunkInfo is made only for a
            # chunk read below: a few, not the 15,301 of a billion rows)
            bounds = seg.chunks.largest(codes)
            near = bounds != NO_CALL
            if window.since is not None:
                near &= seg.chunks.column("start_max") >= window.since
            if window.until is not None:
                near &= seg.chunks.column("start_min") < window.until
            at = np.flatnonzero(near)
            candidates += [(b, seg, pos, codes) for pos, b in
                           zip(at.tolist(), bounds[at].tolist(), strict=True)]  # fmt: skip
        candidates.sort(key=lambda c: -c[0])
        for bound, seg, pos, codes in candidates:
            budget.check()  # each chunk read: stop when the caller's deadline passed
            if len(best) >= k and bound < best[-1][0]:
                break  # no row of this or any later chunk can enter the top k (a chunk whose
                # bound equals the k-th may hold an earlier call of that duration: ties go to it)
            chunk = seg.chunks[pos]
            runs = None if codes is None else chunk.rows_of(_present(codes, chunk))
            if runs is not None:  # only the function's rows: no name page, no mask
                part = self.run_rows(seg, chunk, ("start", "duration"), runs)
                self._top_rows(seg, chunk, part, window, None, k, best, _run_rows(runs))
                continue
            with self.chunk_columns(seg, chunk, ("name", "start", "duration")) as (cols, _):
                self._top_rows(seg, chunk, cols, window, codes, k, best)
        return [self._call(seg, chunk, row) for _, _, seg, chunk, row in best]

    def _top_rows(
        self,
        seg: SegmentView,
        chunk: ChunkInfo | None,
        cols: dict[str, np.ndarray],
        window: TimeRange,
        codes: np.ndarray | None,
        k: int,
        best: list[_Row],
        stored: np.ndarray | None = None,
    ) -> None:
        """Merge the top ``k`` rows of ``cols`` into ``best``; ``stored``: the stored row of
        each row of ``cols`` when they are a selection of the chunk's rows."""
        mask = window.mask(cols["start"])
        if codes is not None:
            mask &= _name_mask(cols["name"], codes)
        rows = np.nonzero(mask)[0]
        if rows.size == 0:
            return
        durations, starts = cols["duration"][rows], cols["start"][rows]
        top = top_k(durations, starts, k)  # slowest first, ties to the earlier start
        where = rows if stored is None else stored[rows]
        best.extend(
            (int(durations[i]), int(starts[i]), seg, chunk, int(where[i])) for i in top.tolist()
        )
        best.sort(key=lambda item: (-item[0], item[1]))
        del best[k:]

    def _call(self, seg: SegmentView, chunk: ChunkInfo | None, row: int) -> Call:
        if chunk is None:
            v = {c: seg.tail[c][row] for c in COLUMNS}
        elif chunk.blocks is not None and chunk.keep is None:  # the row's block of each page
            v = {c: a[0] for c, a in self.run_rows(seg, chunk, COLUMNS, [(row, row + 1)]).items()}
        else:
            with self.chunk_columns(seg, chunk, COLUMNS) as (cols, _):
                v = {c: cols[c][row] for c in COLUMNS}  # numpy scalars: copies
        return Call(
            function=seg.names[int(v["name"])],
            service=seg.services[int(v["service"])],
            start=int(v["start"]), duration=int(v["duration"]), status=int(v["status"]),
            kind=otlp_kind(v["kind"]), trace_id=(int(v["trace_hi"]) << 64) | int(v["trace_lo"]),
            span_id=int(v["span_id"]), parent_span_id=int(v["parent_span_id"]),
            attributes=parse_attributes(seg.dictionary("attributes").values[int(v["attributes"])]),
            resource=parse_attributes(seg.resources[int(v["resource"])]),
        )  # fmt: skip


# (duration, start, segment, chunk, row in chunk)
_Row = tuple[int, int, SegmentView, ChunkInfo | None, int]


def _key(reader: SegmentReader, chunk: ChunkInfo, column: str) -> _PageKey:
    return _PageKey(reader.id, chunk.seq, column, reader, chunk)


def _node_key(reader: SegmentReader, node: rollup.Node) -> _NodeKey:
    return _NodeKey(reader.id, node.first, node.last, reader, node)


def _children(key: _NodeKey) -> list[_PageKey | _NodeKey]:
    """The pool entries a node with no readable record is merged from: its child nodes and
    its chunks' summary blocks. Only a usable node is planned, so a chunk that is gone or has
    dropped rows is damage found since (raised as such)."""
    reader = key.reader
    out: list[_PageKey | _NodeKey] = []
    for child in rollup.children(key.node):
        if isinstance(child, rollup.Node):
            out.append(_node_key(reader, child))
            continue
        chunk = reader.chunk(child)
        if chunk is None or chunk.keep is not None:
            raise _Damaged(reader, child, CorruptPageError(
                f"segment {reader.id}: chunk {child} is no longer readable"))  # fmt: skip
        out.append(_key(reader, chunk, "block"))
    return out


def _in_segment(
    segment: str,
    key: _PageKey | _NodeKey | _RunsKey | _PlanKey | merged.SetKey | segment_tree.NodeKey,
) -> bool:
    if isinstance(key, (merged.SetKey, segment_tree.NodeKey)):
        return segment in key.segments
    return key.segment == segment


def _segment_of(part: merged.Part) -> str:
    """The segment a part's group boundary is decided by (a node across segments: its last)."""
    return max(part.segments)


def _damaged(key: Hashable, exc: CorruptPageError) -> Exception:
    """A damaged page or node as the retry loop takes it (other entries convert their own)."""
    if isinstance(key, (_PageKey, _NodeKey)):
        return _Damaged(key.reader, _seq_of(key), exc)
    return exc


def _seq_of(key: _PageKey | _NodeKey) -> int:
    """The chunk a pool entry's damage is charged to (a node's first: see ``_load_node``)."""
    return key.first if isinstance(key, _NodeKey) else key.seq


class _Names:
    """The reader's own numbering of function names, shared by its queries: a name keeps its
    number for the reader's life, so what a segment's codes (or a kept merge's numbers) are in
    it is worked out once per names tuple, not per query (a Python loop over every name of every
    segment: ~2 ms a query at 59 segments of 100 functions). Used under the set's lock."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self._lookups: dict[int, tuple[tuple[str, ...], np.ndarray]] = {}

    def lookup(self, names: tuple[str, ...]) -> np.ndarray:
        """``names`` (codes -> texts) into this numbering (read-only)."""
        got = self._lookups.get(id(names))
        if got is not None and got[0] is names:  # the entry holds the tuple: its id is its own
            return got[1]
        out = np.empty(len(names), dtype=np.int64)
        for code, name in enumerate(names):
            g = self.index.get(name)
            if g is None:
                g = self.index[name] = len(self.names)
                self.names.append(name)
            out[code] = g
        out.flags.writeable = False
        if len(self._lookups) >= _LOOKUPS_KEPT:
            self._lookups.clear()
        self._lookups[id(names)] = (names, out)
        return out


class _Numbering:
    """A query's numbering of function names: the reader's (``_Names``), with the names the
    query does not want mapped to -1."""

    def __init__(self, shared: _Names, wanted: set[str] | None) -> None:
        self.shared = shared
        self.wanted = wanted
        self.names = shared.names

    def lookup(self, names: tuple[str, ...]) -> np.ndarray:
        """``names`` (codes -> texts) into the query's numbering (-1: not wanted)."""
        out = self.shared.lookup(names)
        if self.wanted is None:
            return out
        index = self.shared.index
        ids = np.array(sorted(index[n] for n in self.wanted if n in index), dtype=np.int64)
        return np.where(np.isin(out, ids), out, -1)


def _whole_block(seg: SegmentView) -> Block:
    """The segment's roll-up of every sealed chunk as one block."""
    return rollup.rollup_block(seg.rollup)


def _tail_base(seg: SegmentView) -> tuple[Block | None, int]:
    """The summaries of the tail's first rows, and how many: the view's whole tail block when
    made (by a warm, or an earlier question of this view); else an earlier view's block of the
    same tail (``tail_base``), the rows after it left to the query's one pass over edge rows.

    Under ingest a worker commits ~1,000 rows before nearly every query: summarising them per
    live segment (then merging with the base) cost ~0.6 ms a segment of per-call numpy work,
    the query's edge rows one pass for all. Once the rows past the base reach
    ``_TAIL_ROWS_PAST_BASE`` the view's own block is made, which becomes the next view's base,
    so a query with no warm between summarises at most that many rows a segment again."""
    if not seg.made("tail_block"):
        done, base = seg.tail_base or (0, None)
        if base is not None and done <= seg.tail_rows <= done + _TAIL_ROWS_PAST_BASE:
            return base, done
    return seg.tail_block(), seg.tail_rows


def _chunk_tree(seg: SegmentView) -> rollup.ChunkTree:
    return rollup.ChunkTree(seg.chunks, closed=seg.closed, records=seg.reader.rollups.records)


def _check_names(names: Iterable[str]) -> list[str]:
    if isinstance(names, str):
        raise ValueError(f"names must be a sequence of text, got the single text {names!r}")
    out = list(names)
    for n in out:
        if not isinstance(n, str):
            raise ValueError(f"function names must be text, got {n!r}")
    return out


def _wanted_codes(seg: SegmentView, wanted: set[str] | None) -> np.ndarray | None:
    """The segment's own codes of the wanted names (None: every name)."""
    if wanted is None:
        return None
    codes = seg.name_codes
    return np.array(sorted(codes[n] for n in wanted if n in codes), dtype=np.uint32)


def _has_codes(chunk: ChunkInfo, codes: np.ndarray | None) -> bool:
    return codes is None or bool(_found_at(chunk.codes, codes).any())


def _found_at(sorted_codes: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Which of ``codes`` (ascending) occur in ``sorted_codes`` (ascending): a merge by binary
    search, several times cheaper than ``np.isin`` on the few codes of one chunk."""
    if sorted_codes.size == 0:
        return np.zeros(codes.size, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_codes, codes), sorted_codes.size - 1)
    return sorted_codes[at] == codes


def _present(codes: np.ndarray, chunk: ChunkInfo) -> np.ndarray:
    """The wanted ``codes`` the chunk holds."""
    return codes[_found_at(chunk.codes, codes)]


def _select(cols: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    rows = np.flatnonzero(mask)  # once, rather than once per column
    return {c: a.take(rows) for c, a in cols.items()}


def _run_rows(runs: list[tuple[int, int]]) -> np.ndarray:
    """The stored row numbers of runs ``[lo, hi)``."""
    if len(runs) == 1:
        return np.arange(*runs[0], dtype=np.int64)
    return np.concatenate([np.arange(lo, hi, dtype=np.int64) for lo, hi in runs])


def _name_mask(names: np.ndarray, codes: np.ndarray) -> np.ndarray:
    if codes.size == 1:
        return names == codes[0]
    return np.isin(names, codes, kind="table")


def _filter(
    cols: dict[str, np.ndarray], window: TimeRange, codes: np.ndarray | None
) -> dict[str, np.ndarray]:
    mask = None if window.everything else window.mask(cols["start"])
    if codes is not None:
        by_name = _name_mask(cols["name"], codes)
        mask = by_name if mask is None else mask & by_name
    if mask is None or bool(mask.all()):
        return cols
    return _select(cols, mask)
