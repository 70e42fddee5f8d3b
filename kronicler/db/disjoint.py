"""Time-disjoint compaction: segments whose time ranges overlap rewritten as a run of segments that
do not, each of a bounded size, rows ordered by start time.

Why. Every writing process has its own segment, so the segments of processes that run at the same
time cover the same hours. A time range then cuts every one of them at both edges, and each cut
segment costs the decoding of its edge chunks and one more block to merge: at a billion rows from
8 overlapping writers, 35 of 59 segments were cut by a window over 57% of the history. After this
rewrite a window cuts at most two segments (one chunk each); everything between is answered from
whole-segment roll-ups. A segment is also what retention deletes, so outputs that each hold a
narrow slice of time are deleted as soon as their own rows are old (see "Age" below).

Planning (:func:`plan`). The finished, visible segments (the caller's own and live writers' left
out) are taken in order of their oldest row; a group grows while the next segment's time range
overlaps the group's, or while both are small (fewer than ``small_rows``) and together fit one
output, so short-lived writers' small segments that follow each other are joined too. Groups of
two or more are rewritten; everything else is already time-disjoint.

The merge (:func:`merged_slices`) streams; memory is bounded, never the group's rows. Each chunk
(and a dead writer's log tail) is a *piece* with the time range its zone map gives. The time axis
is cut into slices holding about ``slice_rows`` rows by those ranges; for each slice the pieces
that begin in it are decoded (all columns, text as codes), their rows before the slice's end are
sorted by start with the rows carried from earlier pieces and written, and their later rows are
carried to the next slices. Carried rows are bounded by ``carry_rows``: past it, the pieces whose
next row is furthest ahead are dropped and decoded again when the merge reaches that row (a chunk
holding one very old row among recent ones costs a second decode, not memory). Text columns go
through each output's dictionary once per distinct (segment, code) of a slice
(``Dictionary.encode_indexed``), not per row.

Publishing. The outputs replace the whole group at once, for readers, though they are several
files: all are written with ``replaces`` naming the group's segments; every output but the last is
written ``part_of`` the last one, whose id is chosen before the first is written; the last lists
the others (``parts``). Readers take none of them until the last is closed (one atomic catalog
replace); from then on they take all of them and none of the replaced segments. A reader whose
listing of the directory misses a part (taken while the parts were written) keeps reading the
replaced segments for that one refresh (see ``published.py``). Once every replaced
segment is deleted, each output stands alone: a later compaction or retention may remove any of
them. The rest is compaction's rules (``compaction.py``): one maintainer under the lock, the re-check
before publishing, leaves first, leftovers of a killed run swept by the next (its parts included:
parts whose last segment is not published while a replaced segment is still on disk).

Age. Outputs are time-disjoint, so each one's newest row bounds all of its rows: retention, which
deletes a segment by its newest row, deletes the output holding the oldest rows first, and never
keeps a row longer than ``max_age`` plus the time one output spans (before this rewrite: plus the
time its writer's segment spanned). The grouping by age of the small-segment compaction
(``group_span_ns``) is therefore not needed here.

Stopping. ``stop`` is asked before each slice (about ``slice_rows`` rows of work); when it answers
True, every output of the group is deleted unpublished, and groups published before stay.

Trade-off: a group is published whole, so a stop or a crash loses the whole group's work (the
first run over a large overlapping history is one group), and the disk must hold the group twice
until the replaced segments are deleted.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kronicler._record import record
from kronicler.db import compaction
from kronicler.db.page import CHUNK_ROWS
from kronicler.db.reader import SegmentReader
from kronicler.db.schema import COLUMNS, TEXT_COLUMNS
from kronicler.db.snapshot import ChunkInfo
from kronicler.db.writer import SegmentWriter, new_segment_id

log = logging.getLogger(__name__)

#: Rows of one output segment (the last of a group holds up to this many more).
DEFAULT_OUTPUT_ROWS = 1 << 25
#: Rows the merge sorts and writes at a time (and between two questions to ``stop``).
DEFAULT_SLICE_ROWS = 1 << 19
#: Rows carried from one slice to the next before pieces are dropped and decoded again later.
DEFAULT_CARRY_ROWS = 1 << 20


def time_range(reader: SegmentReader) -> tuple[int, int] | None:
    """(oldest, newest) start time of the segment's rows; None when it has none."""
    chunks = reader.chunks
    lows = [int(chunks.column("start_min").min())] if len(chunks) else []
    highs = [int(chunks.column("start_max").max())] if len(chunks) else []
    tail = reader.tail["start"]
    if len(tail):
        lows.append(int(tail.min()))
        highs.append(int(tail.max()))
    return (min(lows), max(highs)) if lows else None


def plan(
    readers: Mapping[str, SegmentReader],
    own_segment: str | None,
    *,
    output_rows: int = DEFAULT_OUTPUT_ROWS,
    small_rows: int = compaction.DEFAULT_SMALL_ROWS,
) -> list[list[SegmentReader]]:
    """Groups (of two or more) of finished segments to rewrite time-disjoint (see the docstring)."""
    spans = []
    for r in compaction.visible(readers.values()):
        if r.id == own_segment or not compaction.finished(r):
            continue
        span = time_range(r)
        if span is not None:
            spans.append((span, r))
    spans.sort(key=lambda x: (x[0], x[1].id))
    groups: list[list[SegmentReader]] = []
    current: list[SegmentReader] = []
    hi = rows = 0
    for (lo, top), r in spans:
        n = compaction.rows_of(r)
        small = rows < small_rows and n < small_rows and rows + n <= output_rows
        if current and not (lo <= hi or small):
            groups.append(current)
            current, hi, rows = [], 0, 0
        current.append(r)
        hi, rows = max(hi, top) if len(current) > 1 else top, rows + n
    groups.append(current)
    return [g for g in groups if len(g) >= 2]


@dataclass(slots=True)
class _Piece:
    """A chunk (or a log tail: ``chunk`` None) of source ``src``; rows before ``since`` are
    written already; ``lo``: the start of its next row, its key in the merge's queue."""

    lo: int
    src: int
    chunk: ChunkInfo | None
    since: int = field(default=np.iinfo(np.int64).min)

    def __lt__(self, other: _Piece) -> bool:
        return self.lo < other.lo


@record
class Slice:
    """Rows of one slice of time, ordered by start.

    Fields:
        columns: every column; text columns hold indexes into ``tables``.
        tables: per text column, the texts the indexes name.
    """

    columns: dict[str, np.ndarray]
    tables: dict[str, list[str]]

    def __len__(self) -> int:
        return len(self.columns["start"])


def _bounds(lo: np.ndarray, hi: np.ndarray, rows: np.ndarray, slice_rows: int) -> list[int]:
    """Slice ends about ``slice_rows`` rows apart, taking each piece's rows as spread evenly over
    its time range ``[lo, hi]`` (a zone map says no more): each piece is cut into grains of at
    most an eighth of a slice, placed evenly over its range."""
    grain = max(1, slice_rows // 8)
    per = np.maximum(1, -(-rows // grain))  # grains per piece
    piece = np.repeat(np.arange(len(rows)), per)
    k = np.arange(len(piece)) - np.repeat(np.cumsum(per) - per, per)  # grain number in its piece
    at = lo[piece] + ((hi - lo)[piece] * ((k + 0.5) / per[piece])).astype(np.int64)
    weight = (rows / per)[piece]
    order = np.argsort(at, kind="stable")
    at, held = at[order], np.cumsum(weight[order])
    marks = np.arange(slice_rows, held[-1] if len(held) else 0, slice_rows)
    ends = np.unique(at[np.minimum(np.searchsorted(held, marks), len(at) - 1)])
    return ends[ends > lo.min()].tolist() if len(lo) else []


def _take(cols: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return cols if mask.all() else {c: a[mask] for c, a in cols.items()}


def merged_slices(
    group: list[SegmentReader],
    *,
    slice_rows: int = DEFAULT_SLICE_ROWS,
    carry_rows: int = DEFAULT_CARRY_ROWS,
) -> Iterator[Slice]:
    """The rows of ``group``'s segments, ordered by start, a slice at a time (see the docstring)."""
    pieces: list[_Piece] = []
    ranges: list[tuple[int, int, int]] = []  # per piece: oldest, newest start, rows
    for src, reader in enumerate(group):
        for chunk in reader.chunks:
            pieces.append(_Piece(chunk.start_min, src, chunk))
            ranges.append((chunk.start_min, chunk.start_max, chunk.rows))
        tail = reader.tail["start"]
        if len(tail):
            pieces.append(_Piece(int(tail.min()), src, None))
            ranges.append((int(tail.min()), int(tail.max()), len(tail)))
    lo, hi, rows = np.array(ranges, dtype=np.int64).reshape(-1, 3).T
    ends = _bounds(lo, hi, rows, slice_rows)
    pieces.sort(key=lambda p: p.lo)
    texts = {k: _Texts.of(group, k) for k in TEXT_COLUMNS}
    queue = list(pieces)  # sorted, so a heap already
    carried: list[tuple[_Piece, dict[str, np.ndarray]]] = []
    for end in [*ends, None]:
        active = carried
        while queue and (end is None or queue[0].lo < end):
            p = heapq.heappop(queue)
            reader = group[p.src]
            cols = (
                dict(reader.tail) if p.chunk is None else compaction.chunk_columns(reader, p.chunk)
            )
            active.append((p, _take(cols, cols["start"] >= p.since)))
        taken: list[tuple[int, dict[str, np.ndarray]]] = []
        carried = []
        for p, cols in active:
            later = cols["start"] >= end if end is not None else None
            if later is None or not later.any():
                taken.append((p.src, cols))
            else:
                taken.append((p.src, _take(cols, ~later)))
                carried.append((p, _take(cols, later)))
        del active
        if end is not None:
            carried = _bound_carried(carried, queue, end, carry_rows)
        out = _slice(taken, texts)
        del taken
        if len(out):
            yield out


def _bound_carried(
    carried: list[tuple[_Piece, dict[str, np.ndarray]]], queue: list[_Piece], end: int, limit: int
) -> list[tuple[_Piece, dict[str, np.ndarray]]]:
    """Drop the pieces whose next row is furthest ahead until at most ``limit`` rows are carried;
    they go back to the queue, to be decoded again when the merge reaches that row."""
    total = sum(len(cols["start"]) for _, cols in carried)
    if total <= limit:
        return carried
    carried.sort(key=lambda pc: int(pc[1]["start"].min()))
    while total > limit and len(carried) > 1:
        p, cols = carried.pop()
        total -= len(cols["start"])
        p.since, p.lo = end, int(cols["start"].min())
        heapq.heappush(queue, p)
    return carried


@record
class _Texts:
    """One text column of every source segment: their dictionaries one after the other."""

    values: list[str]
    array: np.ndarray  # the same, as an object array
    offsets: np.ndarray  # per source, where its codes begin

    @classmethod
    def of(cls, group: list[SegmentReader], kind: str) -> _Texts:
        lists = [r.dictionary(kind).values for r in group]
        values = [t for v in lists for t in v]
        offsets = np.r_[0, np.cumsum([len(v) for v in lists])[:-1]].astype(np.int64)
        return cls(values, np.array(values, dtype=object), offsets)

    def table(self, srcs: np.ndarray, codes: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(texts, index into them) of rows of sources ``srcs`` with codes ``codes``: the whole
        list when it is not much longer than the rows (``encode_indexed`` counts its entries
        per call), else only the texts the rows use."""
        at = self.offsets[srcs] + codes.astype(np.int64)
        if len(self.values) <= 4 * len(at):
            return self.values, at
        used, index = np.unique(at, return_inverse=True)
        return self.array[used].tolist(), index.reshape(-1)


def _slice(taken: list[tuple[int, dict[str, np.ndarray]]], texts: dict[str, _Texts]) -> Slice:
    """Rows from several segments as one slice: sorted by start, texts as indexes into tables."""
    taken = [(src, cols) for src, cols in taken if len(cols["start"])]
    if not taken:
        return Slice({c: np.zeros(0, d) for c, d in COLUMNS.items()}, {k: [] for k in TEXT_COLUMNS})
    srcs = np.concatenate([np.full(len(cols["start"]), src, np.int64) for src, cols in taken])
    order = np.argsort(np.concatenate([cols["start"] for _, cols in taken]), kind="stable")
    srcs = srcs[order]
    columns = {}
    for c, d in COLUMNS.items():  # a column at a time: one column's copy at the peak, not all
        columns[c] = np.concatenate([cols[c] for _, cols in taken]).astype(d, copy=False)[order]
        for _, cols in taken:
            del cols[c]
    tables: dict[str, list[str]] = {}
    for k in TEXT_COLUMNS:
        tables[k], columns[k] = texts[k].table(srcs, columns[k])
    return Slice(columns, tables)


class _Outputs:
    """The output segments of one group: rotated every ``output_rows`` rows at a change of start
    time; the last one (``leader``) is chosen before the first is written (see the docstring)."""

    def __init__(
        self, directory: Path, sources: tuple[str, ...], total: int, output_rows: int,
        chunk_rows: int | None,
    ) -> None:  # fmt: skip
        self.directory, self.sources = directory, sources
        self.leader = new_segment_id()
        self.left = total  # rows the sources say they hold: what is yet to come, at most
        self.output_rows = output_rows
        self.chunk_rows = CHUNK_ROWS if chunk_rows is None else chunk_rows
        self.parts: list[str] = []
        self.writer: SegmentWriter | None = None
        self.rows = 0  # in the current writer
        self.written = 0

    def _open(self) -> SegmentWriter:
        if self.writer is None:
            if self.left <= self.output_rows:
                self.writer = SegmentWriter(self.directory, replaces=self.sources,
                                            segment_id=self.leader, parts=tuple(self.parts),
                                            chunk_rows=self.chunk_rows)  # fmt: skip
            else:
                self.writer = SegmentWriter(self.directory, replaces=self.sources,
                                            part_of=self.leader, chunk_rows=self.chunk_rows)  # fmt: skip
            self.rows = 0
        return self.writer

    def _rotate(self) -> None:
        """Close the current part (never the last segment: closing that one publishes)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()
            self.parts.append(writer.id)

    def write(self, piece: Slice) -> None:
        start = piece.columns["start"]
        pos, n = 0, len(piece)
        while pos < n:
            writer = self._open()
            room = self.output_rows - self.rows
            cut = n
            if writer.id != self.leader and n - pos > room:
                # never between two rows of one start time: outputs share no instant
                cut = int(np.searchsorted(start, start[pos + max(room, 1) - 1], side="right"))
            self._add(writer, piece, pos, cut)
            self.rows += cut - pos
            self.left -= cut - pos
            self.written += cut - pos
            pos = cut
            if writer.id != self.leader and self.rows >= self.output_rows:
                self._rotate()

    @staticmethod
    def _add(writer: SegmentWriter, piece: Slice, lo: int, hi: int) -> None:
        coded = {}
        for c, a in piece.columns.items():
            if c in TEXT_COLUMNS:
                coded[c] = writer.dicts[c].encode_indexed(piece.tables[c], a[lo:hi])
            else:
                coded[c] = a[lo:hi]
        writer.add_coded(coded, hi - lo)
        writer.seal_full()

    def publish(self) -> bool:
        """Close the last output (published) unless the group changed meanwhile."""
        if self.writer is not None and self.writer.id != self.leader:
            self._rotate()  # fewer rows than counted (damaged chunks): the last one holds none
        writer = self._open()
        why = compaction.conflict(self.directory, set(self.sources), writer.id)
        if why is not None:
            log.warning("compaction outputs %s not published: %s", writer.id, why)
            self.discard()
            return False
        writer.close()  # publishes the group: the closed catalog makes readers switch over
        return True

    def discard(self) -> None:
        """Delete every output written, unpublished."""
        if self.writer is not None:
            self.writer.abandon()
            compaction.delete_segment(self.directory, self.writer.id)
            self.writer = None
        for part in self.parts:
            compaction.delete_segment(self.directory, part)


def rewrite(
    directory: Path,
    group: list[SegmentReader],
    *,
    output_rows: int = DEFAULT_OUTPUT_ROWS,
    chunk_rows: int | None = None,
    slice_rows: int = DEFAULT_SLICE_ROWS,
    stop: Callable[[], bool] | None = None,
) -> compaction.Merge | None:
    """Rewrite ``group`` as time-disjoint outputs and publish them; what was published, or None
    (nothing published: a source gone, the group changed, or ``stop()`` answered True)."""
    sources = tuple(r.id for r in group)
    total = sum(map(compaction.rows_of, group))
    outputs = _Outputs(directory, sources, total, output_rows, chunk_rows)
    try:
        for piece in merged_slices(group, slice_rows=slice_rows):
            if stop is not None and stop():
                log.info("compaction stopped: outputs of %d segment(s) deleted", len(group))
                outputs.discard()
                return None
            outputs.write(piece)
        if stop is not None and stop():
            outputs.discard()
            return None
        if not outputs.publish():
            return None
    except FileNotFoundError as exc:  # deleted by a process that ignores the lock
        log.warning("compaction skips a group: a segment is gone (%s)", exc)
        outputs.discard()
        return None
    except BaseException:
        outputs.discard()
        raise
    finally:
        for reader in group:
            reader.close()
    return compaction.Merge(outputs.leader, sources, outputs.written, tuple(outputs.parts))


def compact(
    directory: Path,
    own_segment: str | None = None,
    *,
    output_rows: int = DEFAULT_OUTPUT_ROWS,
    small_rows: int = compaction.DEFAULT_SMALL_ROWS,
    chunk_rows: int | None = None,
    slice_rows: int = DEFAULT_SLICE_ROWS,
    wait: float = 0.0,
    stop: Callable[[], bool] | None = None,
    report: Callable[[compaction.Merge], None] | None = None,
) -> int:
    """Rewrite overlapping finished segments time-disjoint, holding the maintenance lock;
    returns how many segments were replaced.

    Raises MaintenanceBusyError when another compaction or retention still holds the lock after
    ``wait`` seconds. ``stop`` is asked between groups and slices; ``report`` is told of every
    published group.
    """
    compaction.check_positive(output_rows=output_rows, small_rows=small_rows, slice_rows=slice_rows)
    stop = compaction.latch(stop)

    def work(readers: dict[str, SegmentReader]) -> int:
        merged = 0
        for group in plan(readers, own_segment, output_rows=output_rows, small_rows=small_rows):
            if stop is not None and stop():
                break
            done = rewrite(directory, group, output_rows=output_rows, chunk_rows=chunk_rows,
                           slice_rows=slice_rows, stop=stop)  # fmt: skip
            if done is None:
                continue
            merged += len(group)
            if report is not None:
                report(done)
            for r in group:
                compaction.delete_tree(directory, r.id, readers)
        return merged

    return compaction.maintain(directory, work, wait=wait, stop=stop)
