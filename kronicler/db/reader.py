"""The segment reader: what one segment holds, kept current by cheap incremental refreshes.

A reader follows a segment that another thread or process may still be writing. Its first refresh
takes the chunk directory, the name and service texts and the roll-up from the segment's index
(:mod:`kronicler.db.index`) when it has a usable one, reading no chunk page; the directory stays
the index's arrays (:mod:`kronicler.db.chunk_table`), the function lists and the roll-up are
decoded when first needed, and a closed segment's directory is checked when first used: till then
its views carry what the index's head says (``SegmentView.extent``), which is all a question that
holds the segment whole or not at all needs. After that, ``refresh``
looks at the file sizes: new complete chunks (past the index) are discovered by walking page headers
from where the previous refresh stopped, and a changed log is re-read: only its new records when it
just grew (:mod:`kronicler.db.log_follow`), which are then added to the tail in place, so a
refresh under ingest costs the rows committed since the last one, not the whole tail. (The segment file is
self-describing, so the walk needs no catalog.) A chunk that is only partly on disk (its writer is
mid-write, or was killed) stops the walk; the next refresh tries again from the same place, so
readers never see half a chunk.

Consistency. The log is read *before* the chunks are walked. A writer seals a chunk (and fsyncs it)
before it rewrites the log without the chunk's rows, so every row of the log read is either in it or
in a chunk the walk then finds: a refresh never misses rows that sealing moved, and the rows a
reader holds never decrease. Each refresh that changes anything produces a new immutable
:class:`~kronicler.db.snapshot.SegmentView`; queries read views, never the reader's moving state.

Damage stays local. Every page of a walked chunk is checked when the chunk is first found (see
:mod:`kronicler.db.chunk_walk`); a page of an indexed chunk when a query first reads it. A damaged
page found that way condemns its chunk (below), and the reader then forgets the index and walks the
whole segment once, so from there on the loss is exactly what a walk finds and counts. A chunk that
fails, but that the segment's ``.meta`` lists as written, is skipped using the ``.meta`` offsets,
and the walk goes on with the next chunk. Its rows are lost. Its dictionary entries survive if its
dictionary page is intact; otherwise the rows that use texts only it defined are lost too (a writer
defines a text in the first chunk or log record it writes after meeting the text, so only that unit
and later ones can use it): they are found, dropped and counted
(:class:`~kronicler.db.snapshot.Damage`), and each damage is logged once. Damaged log records are
skipped the same way (see :func:`kronicler.db.wal.read_log`). A page that passes its checksum but
fails to decode later is reported by the query that met it (``condemn``): the chunk is dropped from
the next refresh on, and the query runs again without it. A part of the index decoded after the
open (its function lists, its roll-up) that turns out bad raises IndexUnusableError: the next
refresh forgets the index and walks the segment, as if it had none.

Per chunk the reader keeps only a zone map (time range, functions present, their largest duration);
column pages and full summaries are fetched through the bufferpool when a query needs them, so
memory does not grow with the database. The only per-segment state that grows is the roll-up: one
merged summary per function over all sealed chunks, which answers whole-history statistics without
reading any page, and the offsets of the records in the segment's roll-up file
(:mod:`kronicler.db.rollup`), whose summaries are read through the bufferpool when a time range
needs them. The index lists those offsets too, so an indexed segment's roll-up file is walked only
past them (a closed one not at all).
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from kronicler._log import LogOnce
from kronicler.db import codec, index, rollup
from kronicler.db.chunk import (
    ChunkSummary,
    decode_column,
    decode_entries,
    decode_summary,
    summarize,
)
from kronicler.db.chunk_table import Chunks, ChunkTable
from kronicler.db.chunk_walk import FoundChunk, salvage_entries, walk_chunk
from kronicler.db.dictionary import Dictionary
from kronicler.db.log_follow import GrowingColumns, LogFollower
from kronicler.db.metadata import load_json
from kronicler.db.page import verified_payload
from kronicler.db.rollup import Block
from kronicler.db.schema import COLUMNS, TEXT_COLUMNS
from kronicler.db.snapshot import ChunkInfo, Damage, Rollup, SegmentView
from kronicler.errors import CorruptPageError, IndexUnusableError

__all__ = ["ChunkInfo", "Rollup", "SegmentReader"]

log = logging.getLogger(__name__)


def _readonly(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for c, a in arrays.items():
        v = a.view()
        v.setflags(write=False)
        out[c] = v
    return out


#: the tail of a segment with no log record (read-only: an append grows it into new arrays)
_NO_TAIL: dict[str, np.ndarray] = _readonly({c: np.zeros(0, d) for c, d in COLUMNS.items()})


class SegmentReader:
    """Read access to one segment; ``refresh`` picks up what was written since, ``view`` is the
    immutable state as of the last refresh. Not thread-safe: the segment set's lock guards it."""

    def __init__(self, directory: Path, segment_id: str) -> None:
        self.id = segment_id
        self.data_path = directory / f"{segment_id}.kseg"
        self.wal_path = directory / f"{segment_id}.wal"
        self.meta_path = directory / f"{segment_id}.meta"
        self.dicts = {name: Dictionary() for name in TEXT_COLUMNS}
        self.dicts["resource"].define(0, "")  # every writer's first resource code (see schema)
        # Attribute entries are defined for the first _attr_chunks dictionary pages only: they
        # can be as many as the rows, so they are read when a query first needs them (or eagerly
        # once the segment is damaged, to find the rows that depend on lost entries). The
        # dictionary pages are the indexed chunks' (from the index's table), then those of the
        # chunks walked: _dict_pages, (seq, offset, size), verified when found.
        self._dict_pages: list[tuple[int, int, int]] = []
        self._attr_chunks = 0
        self._attrs_eager = False
        # The readable chunks: those the index lists (a table, ChunkInfo made on use), then
        # those walked past it; the roll-up of all of them, and of the index's alone.
        self._table: ChunkTable | None = None
        self._walked: list[ChunkInfo] = []
        self._rollup = Rollup()
        self._index_rollup = Rollup()
        self.rows_sealed = 0  # rows of every chunk found, damaged ones included
        self._next_seq = 0
        self.closed = False
        self.replaces: tuple[str, ...] = ()  # segments this one (a compaction's output) replaces
        # an output written in several segments: the last one's id, or (in the last) the others'
        self.part_of: str | None = None
        self.parts: tuple[str, ...] = ()
        self.pid: int | None = None
        self.version = 0  # bumped whenever what the segment holds changes
        self._end = 0  # bytes of the segment file covered by known chunks
        self._fd = -1
        self._meta_sig: int | None = None
        self._meta_chunks: dict[int, tuple[int, int, int]] = {}  # offset -> (length, rows, first)
        self._log = LogFollower(self.wal_path)  # re-reads only what a commit appended
        self._tail_attr_entries: tuple[tuple[int, str], ...] = ()
        self.tail: dict[str, np.ndarray] = {c: np.zeros(0, d) for c, d in COLUMNS.items()}
        # The tail grows in place while the log only grows (see _extend_tail): its columns, the
        # sealed rows and next row number it was built for, and a generation number that
        # changes whenever it is built anew; _tail_sum: (rows, summaries) of its first rows.
        self._tail_cols = GrowingColumns(self.tail)
        self._tail_sealed = 0
        self._tail_expected = 0
        self._tail_gen = 0
        self._tail_sum: tuple[int, Block] | None = None
        # damage: permanent (chunks) and as of the last log read (log records, tail dependents)
        self._chunk_damage = Damage()
        self._tail_damage = Damage()
        self._reported = LogOnce(log)
        self._condemned: list[tuple[int, str]] = []
        # (offset, seq, chunk): the chunk after the known ones, walked and checked ahead of the
        # refresh that takes it, without the segment set's lock (see prewalk)
        self._prewalked: tuple[int, int, FoundChunk] | None = None
        self._view: SegmentView | None = None
        self._last_view: SegmentView | None = None  # the one before: see SegmentView.carry
        # The segment index (see index.py): tried once, on the first refresh. ``_indexed``: the
        # leading chunks it gave; ``_bad``: chunks found damaged, skipped by any later walk.
        self._index_tried = False
        self._indexed = 0
        # (table, rows, time range) of a closed segment's index whose table is not checked
        # yet: what SegmentView.extent says while the chunks are exactly that table's
        self._extent: tuple[ChunkTable, int, int, int] | None = None
        self.index_failures = 0
        self._bad: dict[int, str] = {}
        self.rollups = rollup.RollupIndex(rollup.path_of(directory, segment_id))

    @property
    def chunks(self) -> Chunks:
        """The readable chunks found so far, in order."""
        return Chunks(self._table, self._walked)

    @property
    def rollup(self) -> Rollup:
        return self._rollup

    @property
    def damage(self) -> Damage:
        return self._chunk_damage + self._tail_damage

    # -- refreshing ----------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Pick up new chunks and log rows; returns True when anything changed."""
        # The log first, then the chunks: see the module docstring.
        log_changed = self._log.read()
        try:
            changed = self._refresh_sealed()
        except IndexUnusableError as exc:  # a part of the index decoded only now is bad
            self._forget_index(str(exc))
            changed = self._refresh_sealed() or True  # no index left to fail
        if changed or log_changed:
            if changed or not self._extend_tail():
                self._build_tail()
            self.version += 1
            self._last_view, self._view = self._view or self._last_view, None
            return True
        return False

    def _refresh_sealed(self) -> bool:
        """Pick up new chunks; True when the chunk list, texts or flags changed."""
        changed = False
        failed = self._index_failure()
        if failed is not None:  # a query met it: walk instead (see chunk_table.py)
            self._forget_index(failed)
            changed = True
        changed = self._drop_condemned() or changed
        if not self._index_tried:
            changed = self._read_index() or changed
        changed = self._read_meta() or changed
        changed = self._refresh_chunks() or changed
        self.rollups.refresh(final=self.closed)  # records are facts about chunks: no new view
        return changed

    def _index_failure(self) -> str | None:
        """Why a part of the index decoded on first use (function lists, roll-up) was bad."""
        if self._table is None:
            return None
        return self._table.failed or self._index_rollup.failed

    def _index_unusable(self, reason: str) -> None:
        self.index_failures += 1
        self._report(("index", 0), "segment %s: index unusable, walking the segment: %s",
                     self.id, reason)  # fmt: skip

    def _forget_index(self, reason: str) -> None:
        """Read the segment as if it had no index: walk it all (once per reader)."""
        self._index_unusable(reason)
        # A chunk condemned meanwhile may only have met the bad index: the walk checks it.
        self._condemned.clear()
        self._rewalk({})

    def view(self) -> SegmentView:
        """The segment as of the last refresh (immutable; the same object until it changes)."""
        if self._view is None:
            names, services = self.dicts["name"], self.dicts["service"]
            service_defined = services.defined(np.arange(len(services), dtype=np.int64))
            self._view = SegmentView(
                reader=self, version=self.version, chunks=self.chunks,
                tail=_readonly(self.tail), rollup=self._rollup, names=tuple(names.values),
                name_codes=dict(names.codes), services=tuple(services.values),
                service_defined=tuple(service_defined.tolist()),
                resources=tuple(self.dicts["resource"].values),
                dict_pages=self._dict_count(), tail_attributes=self._tail_attr_entries,
                closed=self.closed,
                replaces=self.replaces, pid=self.pid, damage=self.damage,
                tail_gen=self._tail_gen, tail_base=self._tail_sum, extent=self._extent_now(),
            )  # fmt: skip
            if self._last_view is not None:
                self._view.carry(self._last_view)
        return self._view

    def _extent_now(self) -> tuple[int, int, int, int] | None:
        """(rows, chunks, start_min, start_max) of the index's chunks, while they are all the
        chunks this closed segment has (none walked past it, none dropped: a rewalk or a
        dropped chunk replaces the table)."""
        got = self._extent
        if got is None or got[0] is not self._table or self._walked or not self.closed:
            return None
        table, rows, lo, hi = got
        return rows, len(table), lo, hi

    def _open(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.data_path, os.O_RDONLY)
        return self._fd

    def _read_index(self) -> bool:
        """Take the chunk directory, texts, roll-up and roll-up record locations from the
        segment's index, if it has one."""
        self._index_tried = True
        try:
            size = os.stat(self.data_path).st_size
        except FileNotFoundError:
            return False  # deleted meanwhile (retention): nothing to read
        try:
            idx = index.load(self.data_path.parent, self.id)
            if idx is not None and idx.end > size:
                raise CorruptPageError(f"index of {self.id} covers {idx.end} bytes of {size}")
            table = idx.chunks.table if idx is not None and isinstance(idx.chunks, Chunks) else None
            if idx is not None and table is not None and idx.end < size:
                table.check()  # chunks past it are walked from its end: checked first (a
                # closed segment's directory is otherwise checked when first used)
        except (CorruptPageError, OSError) as exc:
            self._index_unusable(str(exc))
            return False
        if idx is None or table is None or not len(table):
            return False
        for kind, texts in (
            ("name", idx.names), ("service", idx.services), ("resource", idx.resources)
        ):  # fmt: skip
            self.dicts[kind].define_all(texts)
        self._table, self._walked = table, []
        self._rollup = self._index_rollup = idx.rollup
        # where the roll-up records are: a closed segment's file is then never walked
        self.rollups.seed(idx.records, idx.records_end, final=idx.closed)
        self._indexed = self._next_seq = len(table)
        self.rows_sealed, self._end = idx.rows, idx.end
        if idx.extent is not None:
            self._extent = (table, idx.rows, *idx.extent)
        if idx.closed:  # a closed segment's catalog no longer changes: no need to read it
            self.closed, self.replaces, self.pid = True, idx.replaces, idx.pid
            self.part_of, self.parts = idx.part_of, idx.parts
        return True

    def _read_meta(self, *, force: bool = False) -> bool:
        """Re-read the segment's catalog if it changed; True when its flags changed."""
        if self.closed and not force:
            return False  # a closed segment's catalog no longer changes
        try:
            meta_sig = os.stat(self.meta_path).st_mtime_ns
        except FileNotFoundError:
            meta_sig = None
        if meta_sig == self._meta_sig:
            return False
        self._meta_sig = meta_sig
        before = (self.closed, self.replaces, self.pid, self.part_of, self.parts)
        meta = load_json(self.meta_path) or {}
        self.closed = bool(meta.get("closed"))
        self.replaces = tuple(str(x) for x in meta.get("replaces", ()))
        part_of = meta.get("part_of")
        self.part_of = str(part_of) if part_of is not None else None
        self.parts = tuple(str(x) for x in meta.get("parts", ()))
        pid = meta.get("pid")
        self.pid = pid if isinstance(pid, int) else None
        chunks = meta.get("chunks")
        if isinstance(chunks, list):
            found = {}
            for entry in chunks:
                if (
                    isinstance(entry, list)
                    and len(entry) >= 4
                    and all(isinstance(x, int) for x in entry[:4])
                ):
                    found[entry[0]] = (entry[1], entry[2], entry[3])
            self._meta_chunks = found
        return before != (self.closed, self.replaces, self.pid, self.part_of, self.parts)

    def _refresh_chunks(self) -> bool:
        try:
            size = os.stat(self.data_path).st_size
        except FileNotFoundError:
            return False
        if size <= self._end:
            return False
        fd = self._open()
        where = str(self.data_path)
        found: list[ChunkSummary] = []
        start = self._end
        while self._end < size:
            # A chunk the catalog lists is wholly written: no page of it may reach past its end.
            listed = self._meta_chunks.get(self._end)
            limit = size if listed is None else min(size, self._end + listed[0])
            problem = self._bad.get(self._next_seq, "a page reaches past the end of the chunk")
            try:
                if self._next_seq in self._bad:
                    got = None  # found damaged by a query (it may pass its checksums)
                else:
                    chunk = self._take_prewalked(limit)
                    if chunk is None:
                        chunk = walk_chunk(fd, where, self._end, limit, self._next_seq)
                    got = self._found(chunk)
            except CorruptPageError as exc:
                got, problem = None, str(exc)
            if got is None:
                if not self._skip_damaged(self._end, size, problem):
                    break  # not (yet) complete: its writer is mid-write, or died writing it
                continue
            info, cs = got
            found.append(cs)
            self._walked.append(info)
            self._dict_pages.append((info.seq, *info.pages["dictionary"]))
            if self._attrs_eager:
                self._attr_chunks = self._dict_count()
            self._next_seq += 1
            self.rows_sealed = info.first_row + info.rows
            self._end = info.offset + info.length
        if found:
            self._rollup = rollup.extend_rollup(self._rollup, found)
        return self._end != start

    def prewalk(self) -> bool:
        """Walk and check the chunk after those known, if it is wholly written, ahead of the
        refresh that takes it: True when one was found (now or before).

        May run without the segment set's lock, while a query holds it: it reads the file
        through a descriptor of its own and changes nothing but the one slot the refresh takes
        the chunk from (``_prewalked``), which the refresh uses only when the chunk starts where
        its walk would and ends within what the catalog lists. A chunk found damaged or not yet
        written is left to the refresh, which walks it and reports it as it always does. Under
        ingest a worker seals a chunk every second or so: walking it takes milliseconds (every
        page read and checked, its summary decoded) that a query would wait for.
        """
        offset, seq = self._end, self._next_seq  # a stale pair finds nothing: see below
        pre = self._prewalked
        if pre is not None and pre[0] == offset:
            return True
        try:
            fd = os.open(self.data_path, os.O_RDONLY)
        except OSError:
            return False
        try:
            size = os.fstat(fd).st_size
            listed = self._meta_chunks.get(offset)
            limit = size if listed is None else min(size, offset + listed[0])
            # the chunk at offset has one number: a pair read across a refresh fails this walk
            found = (
                walk_chunk(fd, str(self.data_path), offset, limit, seq) if size > offset else None
            )
        except (CorruptPageError, OSError):
            return False
        finally:
            os.close(fd)
        if found is None:
            return False
        self._prewalked = (offset, seq, found)
        return True

    def _take_prewalked(self, limit: int) -> FoundChunk | None:
        """The chunk :meth:`prewalk` found where the walk is, if it fits below ``limit``."""
        pre, self._prewalked = self._prewalked, None
        if pre is None:
            return None
        offset, seq, chunk = pre
        if offset != self._end or seq != self._next_seq or offset + chunk.length > limit:
            if offset > self._end:  # ahead of this walk (of a later chunk): still to come
                self._prewalked = pre
            return None
        return chunk

    def _skip_damaged(self, offset: int, size: int, problem: str) -> bool:
        """Step over the chunk at ``offset`` if the catalog says it was wholly written."""
        listed = self._meta_chunks.get(offset)
        if listed is None:
            self._read_meta_now()
            listed = self._meta_chunks.get(offset)
        if listed is None or offset + listed[0] > size or listed[0] <= 0:
            return False
        length, rows, first_row = listed
        seq = self._next_seq
        self._report(
            ("chunk", seq),
            "segment %s: chunk %d (%d rows) is damaged and skipped: %s",
            self.id, seq, rows, problem or "unreadable pages",
        )  # fmt: skip
        self._chunk_damage = self._chunk_damage + Damage(chunk_rows=rows, chunks=1)
        self._make_eager()
        entries = salvage_entries(self._open(), offset, length, seq)
        if entries:
            self._define(entries, attributes=True)
        self._next_seq += 1
        self.rows_sealed = first_row + rows
        self._end = offset + length
        return True

    def _read_meta_now(self) -> None:
        self._meta_sig = None
        self._read_meta(force=True)

    def _report(self, key: tuple[str, int], msg: str, *args: object) -> None:
        self._reported(key, logging.WARNING, msg, *args)

    def _found(self, chunk: FoundChunk | None) -> tuple[ChunkInfo, ChunkSummary] | None:
        """A chunk the walk found, its texts defined and its dependent rows checked."""
        if chunk is None:
            return None
        self._define(chunk.entries, attributes=self._attrs_eager)
        cs, head = chunk.summary, chunk.summary_header
        info = ChunkInfo(
            self._next_seq, self._end, chunk.length, head.rows, self.rows_sealed, head.min,
            head.max, chunk.pages, _frozen(cs.codes), _frozen(cs.max_duration),
            code_ends=cs.code_ends if chunk.ordered else None,
        )  # fmt: skip
        return self._check_dependents(info, cs)

    def _define(self, entries: dict[str, list[tuple[int, str]]], *, attributes: bool) -> None:
        for kind, items in entries.items():
            if kind == "attributes" and not attributes:
                continue  # loaded on first use: see attribute_dictionary()
            d = self.dicts.get(kind)
            if d is None:
                continue
            for code, text in items:
                d.define(code, text)

    def _make_eager(self) -> None:
        """From now on keep attribute entries defined as chunks are found (damaged segments)."""
        if not self._attrs_eager:
            self._load_attributes(self._dict_count())
            self._attrs_eager = True

    def _check_dependents(
        self, info: ChunkInfo, cs: ChunkSummary
    ) -> tuple[ChunkInfo, ChunkSummary]:
        """Drop the rows of a chunk that use entries only a damaged chunk defined."""
        if self._chunk_damage.chunks == 0:
            return info, cs
        # Texts are defined by the chunk that first used them, so only a damaged chunk before
        # this one can have defined a code it uses: decode its text columns and check them.
        keep = np.ones(info.rows, dtype=bool)
        for kind in TEXT_COLUMNS:
            keep &= self.dicts[kind].defined(self.decode_stored(info, kind))
        if not bool(keep.all()):
            rows = np.flatnonzero(keep)
            span_ids = self.decode_stored(info, "span_id")
            full = {
                c: span_ids if c == "span_id" else self.decode_stored(info, c, span_ids)
                for c in COLUMNS
            }
            kept = {c: a.take(rows) for c, a in full.items()}
            dropped = info.rows - int(rows.size)
            self._chunk_damage = self._chunk_damage + Damage(dependent_rows=dropped)
            self._report(
                ("dependents", info.seq),
                "segment %s: %d rows of chunk %d use texts defined only in a damaged chunk; "
                "dropped", self.id, dropped, info.seq,
            )  # fmt: skip
            cs = summarize(kept)
            start = kept["start"]
            lo, hi = (int(start.min()), int(start.max())) if rows.size else (0, -1)
            info = ChunkInfo(
                info.seq, info.offset, info.length, info.rows, info.first_row, lo, hi,
                info.pages, _frozen(cs.codes), _frozen(cs.max_duration), _frozen(rows), cs,
            )  # fmt: skip
        return info, cs

    def _build_tail(self) -> None:
        """The log rows not in a chunk, minus those that use entries no readable record defines."""
        pieces: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
        attr_entries: list[tuple[int, str]] = []
        expected = self.rows_sealed  # the row number the next log row should carry
        gaps = 0
        log_read = self._log.log
        for record in log_read.records:
            self._define(record.entries, attributes=False)
            attr_entries.extend(record.entries.get("attributes", ()))
            end = record.first_row + len(record)
            if record.first_row > expected:
                gaps += record.first_row - expected  # rows of damaged records before this one
            skip = self.rows_sealed - record.first_row
            expected = max(expected, end)
            if skip >= len(record):
                continue
            for c, arr in record.columns.items():
                pieces[c].append(arr[max(skip, 0) :])
        self._tail_attr_entries = tuple(attr_entries)
        # joined with room to grow: the appends of the next commits copy only their own rows;
        # no record (a closed segment's log is gone): no room, and no fresh memory per segment
        cols = GrowingColumns.of(pieces, COLUMNS) if log_read.records else GrowingColumns(_NO_TAIL)
        tail = cols.take()
        lost_rows = gaps + log_read.trailing_rows
        damage = Damage(log_rows=lost_rows, records=log_read.damaged)
        if log_read.damaged or self._chunk_damage.chunks:
            if log_read.damaged:
                self._report(
                    ("log", self._log.inode),
                    "segment %s: %d damaged tail-log record(s) skipped (%d rows)",
                    self.id, log_read.damaged, lost_rows,
                )  # fmt: skip
            self._make_eager()
            attributes = self.dicts["attributes"]
            for code, text in attr_entries:
                attributes.define(code, text)
            keep = np.ones(len(tail["start"]), dtype=bool)
            for kind in TEXT_COLUMNS:
                keep &= self.dicts[kind].defined(tail[kind])
            if not bool(keep.all()):
                rows = np.flatnonzero(keep)
                damage = damage + Damage(dependent_rows=int(keep.size - rows.size))
                tail = {c: a.take(rows) for c, a in tail.items()}
                cols = GrowingColumns(tail)
        self._tail_damage = damage
        self.tail = tail
        self._tail_cols = cols
        self._tail_sealed, self._tail_expected = self.rows_sealed, expected
        self._tail_gen += 1
        self._tail_sum = None

    def _extend_tail(self) -> bool:
        """Add the records the log read appended to the tail, if it only grew (False: build it
        anew). The common case under ingest: a commit appended a record, nothing else changed,
        so the rows already in the tail, and their summary, stay as they are."""
        appended = self._log.appended
        if (
            appended is None
            or self._tail_sealed != self.rows_sealed
            or self._chunk_damage.chunks
            or self._tail_damage != Damage()
        ):
            return False
        expected = self._tail_expected
        for record in appended:  # contiguous: no damaged record between, none sealed yet
            if record.first_row != expected:
                return False
            expected += len(record)
        pieces: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
        attr_entries: list[tuple[int, str]] = []
        for record in appended:
            self._define(record.entries, attributes=False)
            attr_entries.extend(record.entries.get("attributes", ()))
            for c, arr in record.columns.items():
                pieces[c].append(arr)
        self._tail_cols.append(pieces)
        self.tail = self._tail_cols.take()
        self._tail_attr_entries += tuple(attr_entries)
        self._tail_expected = expected
        return True

    def tail_block(self, view: SegmentView) -> Block:
        """The summaries of ``view``'s tail rows (:func:`summarise_tail`), kept as the base of
        the next view's. Under ingest a tail grows by a commit at a time."""
        block = summarise_tail(view)
        self.keep_tail_block(view, block)
        return block

    def keep_tail_block(self, view: SegmentView, block: Block) -> None:
        """Keep ``block``, the summaries of ``view``'s tail rows, as the base of later views'
        (when the tail has not been rebuilt since and it covers more rows than the base)."""
        if view.tail_gen == self._tail_gen and (
            self._tail_sum is None or view.tail_rows > self._tail_sum[0]
        ):
            self._tail_sum = (view.tail_rows, block)

    # -- attribute texts ---------------------------------------------------------------------------
    def _load_attributes(self, upto: int) -> None:
        """Define the attribute entries of the first ``upto`` dictionary pages."""
        attributes = self.dicts["attributes"]
        fd = self._open()
        for seq, offset, size in self._dict_pages_between(self._attr_chunks, upto):
            raw = os.pread(fd, size, offset)
            try:
                payload = verified_payload(raw, f"{self.data_path}@{offset}")[1]
                items = decode_entries(payload).get("attributes", [])
            except CorruptPageError as exc:
                # Checked when found by a walk (the file changed since), or not yet checked (an
                # indexed chunk): its texts read as "" for now; an indexed chunk is condemned,
                # so the next refresh walks the segment and drops the rows that need them.
                self._report(("attributes", seq), "segment %s: %s", self.id, str(exc))
                if seq < self._indexed:
                    self.condemn(seq, str(exc))
                items = []
            for code, text in items:
                attributes.define(code, text)
        self._attr_chunks = max(self._attr_chunks, upto)

    def chunk_attributes(self, seq: int) -> dict[int, str] | None:
        """The attribute entries of chunk ``seq``'s dictionary page alone (a few texts without
        reading them all); None when there is no such page or it is damaged."""
        if seq < self._indexed:
            ((_, offset, size),) = self._dict_pages_between(seq, seq + 1)
        else:
            at = bisect.bisect_left(self._dict_pages, (seq,))
            if at == len(self._dict_pages) or self._dict_pages[at][0] != seq:
                return None
            _, offset, size = self._dict_pages[at]
        try:
            raw = os.pread(self._open(), size, offset)
            payload = verified_payload(raw, f"{self.data_path}@{offset}")[1]
            return dict(decode_entries(payload).get("attributes", []))
        except (CorruptPageError, OSError):
            return None

    def _dict_count(self) -> int:
        return self._indexed + len(self._dict_pages)

    def _dict_pages_between(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """Dictionary pages ``lo`` to ``hi - 1`` as (chunk number, offset, size)."""
        n, out = self._indexed, []
        if lo < n and self._table is not None:  # an indexed chunk numbered i is the i-th
            at, sizes = self._table.pages_of("dictionary")
            out = list(zip(range(lo, min(hi, n)), at[lo:hi].tolist(), sizes[lo:hi].tolist(),
                           strict=True))  # fmt: skip
        return out + self._dict_pages[max(lo - n, 0) : max(hi - n, 0)]

    def attribute_dictionary(
        self, dict_pages: int, tail_entries: Iterable[tuple[int, str]]
    ) -> Dictionary:
        """Attribute texts defined by the first ``dict_pages`` dictionary pages and log entries."""
        self._load_attributes(dict_pages)
        d = self.dicts["attributes"].copy()
        for code, text in tail_entries:
            d.define(code, text)
        return d

    def dictionary(self, kind: str) -> Dictionary:
        """The segment's dictionary of ``kind`` as of the last refresh (see SegmentView)."""
        return self.view().dictionary(kind)

    # -- damage found by queries -------------------------------------------------------------------
    def condemn(self, seq: int, reason: str) -> None:
        """A query found chunk ``seq`` unreadable: drop it from the next refresh on."""
        self._condemned.append((seq, reason))

    def _drop_condemned(self) -> bool:
        if not self._condemned:
            return False
        condemned = dict(self._condemned)
        self._condemned.clear()
        if any(seq < self._indexed for seq in condemned):
            self._rewalk(condemned)
            return True
        keep: list[ChunkInfo] = []
        lost: list[ChunkInfo] = []
        for c in self._walked:  # (a condemned indexed chunk: rewalked above)
            (lost if c.seq in condemned else keep).append(c)
        if not lost:
            return False
        summaries = []
        for c in list(keep):
            try:
                summaries.append(c.summary if c.summary is not None else self.load_summary(c))
            except CorruptPageError as exc:
                keep.remove(c)
                lost.append(c)
                condemned[c.seq] = str(exc)
        for c in lost:
            self._report(("chunk", c.seq), "segment %s: chunk %d (%d rows) is damaged and "
                         "dropped: %s", self.id, c.seq, c.kept_rows, condemned[c.seq])  # fmt: skip
            self._chunk_damage = self._chunk_damage + Damage(chunk_rows=c.kept_rows, chunks=1)
        self._walked = keep  # their dictionary pages stay in _dict_pages: other rows use them
        self._rollup = rollup.extend_rollup(self._index_rollup, summaries)
        return True

    def _rewalk(self, condemned: dict[int, str]) -> None:
        """Forget what the index gave and walk the whole segment, skipping the damaged chunks.

        Damage in an indexed segment is found when a query first reads the page, not on open.
        From then on the segment is read as an unindexed one: every page checked, the rows that
        depend on a lost chunk's texts found and dropped (see the module docstring), so damage
        costs exactly what it costs without an index. Rare, and once per damaged segment.
        """
        self._bad.update(condemned)
        self._indexed = 0
        self.dicts = {name: Dictionary() for name in TEXT_COLUMNS}
        self._dict_pages, self._attr_chunks, self._attrs_eager = [], 0, False
        self._table, self._walked = None, []
        self._rollup = self._index_rollup = Rollup()
        self.rows_sealed = self._next_seq = self._end = 0
        self._chunk_damage = Damage()
        self._read_meta_now()  # the chunk list steps over damaged chunks

    # -- reading -------------------------------------------------------------------------------
    def tail_summary(self) -> ChunkSummary:
        return self.view().tail_summary()

    def read_page(self, chunk: ChunkInfo, column: str) -> bytes | memoryview:
        offset, size = chunk.pages[column]
        raw = os.pread(self._open(), size, offset)
        _, payload = verified_payload(raw, f"{self.data_path}@{offset}")
        return payload

    def decode_page(self, chunk: ChunkInfo, column: str, span_ids: np.ndarray | None = None) -> Any:
        """One column of the chunk's kept rows (see ``ChunkInfo.keep``)."""
        if chunk.keep is None:
            return self.decode_stored(chunk, column, span_ids)
        # parent ids refer to rows of the whole page: decode with all of its span ids
        return self.decode_stored(chunk, column).take(chunk.keep)

    def decode_stored(
        self, chunk: ChunkInfo, column: str, span_ids: np.ndarray | None = None
    ) -> np.ndarray:
        """One column of every row stored in the chunk (``span_ids``: the whole page's)."""
        if column not in chunk.pages:  # a column added after the chunk was written
            return np.zeros(chunk.rows, dtype=COLUMNS[column])
        if column == "parent_span_id" and span_ids is None:
            span_ids = self.decode_stored(chunk, "span_id")
        start = lambda: self.decode_stored(chunk, "start")  # noqa: E731  (pages in start order)
        return decode_column(column, self.read_page(chunk, column), span_ids, chunk.rows, start)

    def decode_block(self, chunk: ChunkInfo, column: str, lo: int, hi: int) -> np.ndarray:
        """Stored rows ``lo:hi`` of one column, where ``[lo, hi)`` is a block of its page: only
        that block is decoded (an ordered chunk's pages; see ``codec.encode_blocks``)."""
        return codec.decode_block(self.read_page(chunk, column), COLUMNS[column], lo, hi,
                                  rows=chunk.rows)  # fmt: skip

    def load_summary(self, chunk: ChunkInfo) -> ChunkSummary:
        """The chunk's summary: of its kept rows when some were dropped, else its summary page."""
        if chunk.summary is not None:
            return chunk.summary
        return decode_summary(self.summary_page(chunk))

    def summary_page(self, chunk: ChunkInfo) -> bytes | memoryview:
        """The verified payload of the chunk's stored summary page (all of its rows)."""
        return self.read_page(chunk, "summary")  # located by the walk or the index

    def chunk(self, seq: int) -> ChunkInfo | None:
        """The readable chunk numbered ``seq``, if there is one."""
        if self._table is not None and 0 <= seq < len(self._table):
            return self._table.info(seq)  # an index's chunk i is chunk number i
        walked = self._walked
        i = bisect.bisect_left(walked, seq, key=lambda c: c.seq)
        return walked[i] if i < len(walked) and walked[i].seq == seq else None

    def close(self) -> None:
        self.rollups.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    a.setflags(write=False)
    return a


def summarise_tail(view: SegmentView) -> Block:
    """The summaries of ``view``'s tail rows: those of an earlier view of the same tail
    generation (``view.tail_base``) merged with the rows appended since, when there is one.

    Reads only the view, which never changes, so it needs no lock (a warming thread calls it
    while queries hold the segment set's lock)."""
    done, base = view.tail_base or (0, None)
    if base is None or done > view.tail_rows:
        done, base = 0, None
    if base is None or done < view.tail_rows:
        new = _block_of_rows({c: a[done:] for c, a in view.tail.items()})
        base = new if base is None else rollup.merge([(None, base), (None, new)])
    return base


def _block_of_rows(cols: dict[str, np.ndarray]) -> Block:
    """The block of some rows in any order (what ``Block.of(summarize(cols))`` gives): a
    stable sort by function, then the ordered rows' runs, with no per-function objects."""
    names = cols["name"]
    counts = np.bincount(names) if names.size else np.zeros(0, np.int64)
    # a stable sort of 16-bit codes is a radix sort in numpy
    order = np.argsort(names.astype(np.uint16) if counts.size <= 1 << 16 else names, kind="stable")
    codes = np.flatnonzero(counts)
    ordered = {c: cols[c].take(order) for c in ("start", "duration", "status")}
    return Block.of_ordered(ordered, codes, np.cumsum(counts[codes]), np.arange(names.size))
