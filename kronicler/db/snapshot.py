"""Snapshots: what one query reads, fixed as of one refresh of every segment.

Segments change under a reader: writers seal chunks, rewrite their tail logs and define new
dictionary entries while a query runs. If a query looked at a segment's files more than once it
could see a chunk list from one moment and a tail or a dictionary from another (rows counted twice
or not at all, codes with no text). So a refresh produces, per segment, an immutable
:class:`SegmentView` (chunk directory, roll-up, tail rows, dictionaries), and a :class:`Snapshot`
is the tuple of views of the visible segments. Every read of one query goes through one snapshot.

The trade-off: a view copies the small name, service and resource dictionaries and the tail arrays' handles
on every refresh that changed the segment; attribute texts (possibly one per row) are not copied
but read from the segment's dictionary pages when a query first needs them, restricted to the
view's chunks plus the tail-log entries the view captured, so the view stays self-consistent.
Chunk pages never change once written, so a view can read them later without seeing newer data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Generic, TypeVar, cast

import numpy as np

from kronicler._record import record
from kronicler.db.chunk import ChunkSummary, block_ends
from kronicler.db.dictionary import Dictionary
from kronicler.db.summary import Summary
from kronicler.errors import CorruptPageError, IndexUnusableError

if TYPE_CHECKING:
    from kronicler.db.chunk_table import Chunks
    from kronicler.db.reader import SegmentReader
    from kronicler.db.rollup import Block

T = TypeVar("T")
#: Memos of a view (made by the segment set's queries) that depend only on its chunk list, its
#: roll-up and whether it is closed: a later view with the same ones may use them.
_CHUNK_MEMOS = ("rollup_block", "chunk_tree")


@record
class ChunkInfo:
    """Where a chunk lives and what it holds (its zone map).

    Fields:
        seq: chunk number in the segment.
        offset, length: byte range of the chunk's pages in the segment file.
        rows, first_row: rows stored in the chunk, and segment-wide number of its first row.
        start_min, start_max: time range of the chunk's (kept) start times (ns).
        pages: column name (and "dictionary") -> (offset, length) of its page, header included.
        codes: name codes present; ``max_duration``: the largest duration per code.
        keep: None, or the rows kept when some rows use dictionary entries that only a damaged
            chunk or log record defined (those rows are dropped and counted).
        summary: with ``keep``, the summary of the kept rows (the stored one covers all rows).
        code_ends: None, or (rows stored ordered by function) the end row of each code's rows:
            code ``codes[i]`` holds stored rows ``code_ends[i-1]:code_ends[i]`` (known from the
            segment's index; see :meth:`rows_of`).
    """

    seq: int
    offset: int
    length: int
    rows: int
    first_row: int
    start_min: int
    start_max: int
    pages: dict[str, tuple[int, int]] = field(default_factory=dict)
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    max_duration: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    keep: np.ndarray | None = None
    summary: ChunkSummary | None = None
    code_ends: np.ndarray | None = None
    _blocks: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def blocks(self) -> np.ndarray | None:
        """Where an ordered chunk's column pages are cut into blocks (``chunk.block_ends``); None
        for a chunk not ordered by function. Made on first use: most chunks a reader knows are
        never cut (at a billion rows, 15,301 chunks opened and a handful read per query)."""
        if self._blocks is None and self.code_ends is not None:
            object.__setattr__(self, "_blocks", block_ends(self.code_ends))
        return self._blocks

    def block_of(self, lo: int, hi: int) -> tuple[int, int]:
        """The block ``[start, end)`` of this ordered chunk's pages that holds rows ``lo:hi``
        (one function's run, or part of one: never two blocks)."""
        blocks = self.blocks
        assert blocks is not None
        b = int(np.searchsorted(blocks, lo, side="right"))
        start = int(blocks[b - 1]) if b else 0
        end = int(blocks[b])
        if hi > end:
            raise ValueError(f"rows {lo}:{hi} span blocks of chunk {self.seq}")
        return start, end

    @property
    def kept_rows(self) -> int:
        return self.rows if self.keep is None else int(self.keep.size)

    def rows_of(self, codes: np.ndarray) -> list[tuple[int, int]] | None:
        """Stored row ranges ``[lo, hi)`` holding exactly the rows of ``codes`` (ascending, all
        present in the chunk); None when the chunk's rows are not known to be ordered by function
        or some of them were dropped (``keep``)."""
        if self.code_ends is None or self.keep is not None:
            return None
        at = np.searchsorted(self.codes, codes)
        ends = self.code_ends.tolist()
        return [(ends[i - 1] if i else 0, ends[i]) for i in at.tolist()]


class Deferred(Generic[T]):
    """A value decoded from stored bytes on first use (a part of a segment index), then kept.

    When decoding raises CorruptPageError the reason is kept instead (``failed``), and every use
    raises IndexUnusableError: its reader, which looks at ``failed`` on refresh, then forgets the
    index and walks the segment.
    """

    __slots__ = ("_load", "_value", "failed")

    def __init__(self, load: Callable[[], T]) -> None:
        self._load: Callable[[], T] | None = load
        self._value: T | None = None
        self.failed: str | None = None

    @property
    def done(self) -> bool:
        return self._load is None

    def get(self) -> T:
        if self._load is not None:
            if self.failed is not None:
                raise IndexUnusableError(self.failed)
            try:
                self._value = self._load()
            except CorruptPageError as exc:
                self.failed = str(exc)
                raise IndexUnusableError(self.failed) from None
            self._load = None  # the bytes it decoded from are let go
        return cast(T, self._value)


class Rollup:
    """Merged per-function statistics of every sealed chunk of a segment (local name codes).

    Immutable: a refresh that adds chunks builds a new Rollup. Made either from mappings (a walk
    of the chunks, a writer), or from a segment index's stored block (:meth:`stored`), decoded
    on first use: opening a segment then builds no ``Summary`` at all (at a billion rows, 59
    segments x 100 functions cost ~0.3 s to decode into objects), and a whole-history question
    takes the block as it is (:meth:`stored_block`). ``codes`` is known without decoding.
    """

    __slots__ = ("_maps", "_stored", "_codes")

    def __init__(
        self,
        summaries: Mapping[int, Summary] | None = None,
        errors: Mapping[int, int] | None = None,
        first_start: Mapping[int, int] | None = None,
        last_start: Mapping[int, int] | None = None,
    ) -> None:
        self._maps: _Maps | None = (summaries or {}, errors or {}, first_start or {},
                                    last_start or {})  # fmt: skip
        self._stored: Deferred[Block] | None = None
        self._codes: tuple[int, ...] | None = None

    @classmethod
    def stored(cls, codes: Iterable[int], load: Callable[[], Block]) -> Rollup:
        """The roll-up of a stored block of the functions ``codes`` (ascending), which ``load``
        decodes on first use, raising CorruptPageError when it turns out bad (this roll-up
        then raises IndexUnusableError, and says why in ``failed``)."""
        r = cls()
        r._maps, r._stored, r._codes = None, Deferred(load), tuple(codes)
        return r

    @property
    def failed(self) -> str | None:
        """Why the stored block did not decode, once it was tried."""
        return None if self._stored is None else self._stored.failed

    @property
    def decoded(self) -> bool:
        """Whether the stored block (if any) was decoded."""
        return self._stored is None or self._stored.done

    @property
    def codes(self) -> tuple[int, ...]:
        """The codes of the functions with calls, ascending."""
        if self._codes is None:
            self._codes = tuple(sorted(self.summaries))
        return self._codes

    def stored_block(self) -> Block | None:
        """The stored block this roll-up was made from (decoded now if not yet); None for one
        made from mappings."""
        return None if self._stored is None else self._stored.get()

    @property
    def summaries(self) -> Mapping[int, Summary]:
        return self._mapped()[0]

    @property
    def errors(self) -> Mapping[int, int]:
        return self._mapped()[1]

    @property
    def first_start(self) -> Mapping[int, int]:
        return self._mapped()[2]

    @property
    def last_start(self) -> Mapping[int, int]:
        return self._mapped()[3]

    def _mapped(self) -> _Maps:
        if self._maps is None:
            block = self.stored_block()  # made from a stored block: no mappings before this
            assert block is not None
            codes = block.codes.tolist()
            self._maps = (
                {c: block.summary(i) for i, c in enumerate(codes)},
                dict(zip(codes, block.errors.tolist(), strict=True)),
                dict(zip(codes, block.first_start.tolist(), strict=True)),
                dict(zip(codes, block.last_start.tolist(), strict=True)),
            )
        return self._maps


_Maps = tuple[Mapping[int, Summary], Mapping[int, int], Mapping[int, int], Mapping[int, int]]


@record
class Damage:
    """Rows a segment (or a whole snapshot) lost to damaged bytes.

    Fields:
        chunk_rows: rows of chunks with a damaged page (found through the segment's ``.meta``).
        log_rows: rows of damaged tail-log records.
        dependent_rows: readable rows dropped because a text they use (function name, service,
            attribute set) was defined only in a damaged chunk's or record's dictionary entries.
        chunks, records: how many chunks and log records were damaged.
    """

    chunk_rows: int = 0
    log_rows: int = 0
    dependent_rows: int = 0
    chunks: int = 0
    records: int = 0

    @property
    def rows(self) -> int:
        """Every row lost, whatever the cause."""
        return self.chunk_rows + self.log_rows + self.dependent_rows

    def __add__(self, other: Damage) -> Damage:
        return Damage(
            self.chunk_rows + other.chunk_rows, self.log_rows + other.log_rows,
            self.dependent_rows + other.dependent_rows, self.chunks + other.chunks,
            self.records + other.records,
        )  # fmt: skip

    def to_dict(self) -> dict[str, int]:
        return {
            "rows": self.rows, "chunk_rows": self.chunk_rows, "log_rows": self.log_rows,
            "dependent_rows": self.dependent_rows, "chunks": self.chunks, "records": self.records,
        }  # fmt: skip


@record(eq=False)
class SegmentView:
    """One segment as of one refresh. Immutable; read its pages through ``reader``.

    Fields:
        reader: the segment's reader (page reads and attribute texts come through it).
        version: the reader's version this view was taken at.
        chunks: the readable chunks, in order; tail: log rows not in any chunk (read-only arrays).
        rollup: merged per-function statistics of ``chunks``.
        names, services, resources: code -> text ("" for a code no readable entry defines).
        name_codes: text -> code of every defined name.
        service_defined: per service code, whether a readable entry defines it.
        dict_pages: how many of the segment's dictionary pages define this view's texts.
        tail_attributes: attribute entries (code, text) defined by the tail log at this refresh.
        closed, replaces, pid: from the segment's ``.meta`` (see compaction.py).
        damage: what the segment has lost to damaged bytes, as of this refresh.
        tail_gen, tail_base: the tail's generation (it only grows by appends within one) and
            None or (rows, block of the first rows' summaries) from a view of the same
            generation: the tail summary then summarises only the rows after them.
        extent: None, or (rows, chunks, start_min, start_max) of a closed segment opened from
            its index whose chunk directory is not checked yet, the chunks being exactly the
            index's: what a question that holds the segment whole or not at all needs to know
            of it, without the directory (see ``segment_tree.member_of``).
    """

    reader: SegmentReader
    version: int
    chunks: Chunks
    tail: Mapping[str, np.ndarray]
    rollup: Rollup
    names: tuple[str, ...]
    name_codes: Mapping[str, int]
    services: tuple[str, ...]
    service_defined: tuple[bool, ...]
    resources: tuple[str, ...]
    dict_pages: int
    tail_attributes: tuple[tuple[int, str], ...]
    closed: bool
    replaces: tuple[str, ...]
    pid: int | None
    damage: Damage
    tail_gen: int = 0
    tail_base: tuple[int, Block] | None = None
    extent: tuple[int, int, int, int] | None = None
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return self.reader.id

    @property
    def tail_rows(self) -> int:
        return len(self.tail["start"])

    @property
    def rows(self) -> int:
        """Rows this view holds (readable chunk rows plus tail rows)."""
        if self.extent is not None:  # closed: no tail
            return self.extent[0]
        return int(self.chunks.column("kept_rows").sum()) + self.tail_rows

    def memo(self, key: str, make: Callable[[], T]) -> T:
        """A value derived from this view alone, made on first use (the view never changes)."""
        if key not in self._cache:
            self._cache[key] = make()
        return cast(T, self._cache[key])

    def made(self, key: str) -> bool:
        """Whether the memo ``key`` was made."""
        return key in self._cache

    def keep(self, key: str, value: object) -> None:
        """Keep ``value``, made elsewhere, as the memo ``key`` (unless one was made meanwhile:
        both are the same value, derived from this view alone)."""
        self._cache.setdefault(key, value)

    def carry(self, before: SegmentView) -> None:
        """Take over the memos of an earlier view of the same segment that depend only on its
        chunks, when it had the same ones (under ingest most refreshes change only the tail)."""
        if before.rollup is self.rollup and before.closed == self.closed:  # a new chunk list
            for key in _CHUNK_MEMOS:  # comes with a new roll-up (see SegmentReader)
                if key in before._cache:
                    self._cache.setdefault(key, before._cache[key])

    def tail_summary(self) -> ChunkSummary:
        return self.memo("tail_summary", lambda: self.tail_block().chunk_summary())

    def tail_block(self) -> Block:
        """The per-function summaries of the tail rows (made once per view; see
        ``SegmentReader.tail_block``)."""
        return self.memo("tail_block", lambda: self.reader.tail_block(self))

    def dictionary(self, kind: str) -> Dictionary:
        """Code -> text of ``kind`` ("name", "service", "attributes" or "resource") for this
        view's rows."""
        cached = self._cache.get(kind)
        if cached is None:
            d = Dictionary()
            if kind == "name":
                d.values, d.codes = list(self.names), dict(self.name_codes)
            elif kind == "service":
                d.values = list(self.services)
                d.codes = {t: c for c, t in enumerate(self.services) if self.service_defined[c]}
            elif kind == "resource":
                d.values = list(self.resources)
                d.codes = {t: c for c, t in reversed(list(enumerate(self.resources)))}
            elif kind == "attributes":
                d = self.reader.attribute_dictionary(self.dict_pages, self.tail_attributes)
            else:
                raise ValueError(f"unknown dictionary {kind!r}; dictionaries are name, service, "
                                 "attributes, resource")  # fmt: skip
            cached = self._cache[kind] = d
        assert isinstance(cached, Dictionary)
        return cached


@record
class Snapshot:
    """The visible segments of a database as of one refresh: what one query reads.

    What a snapshot holds never changes. Reading its pages or attribute texts goes through the
    segments' readers, which are not thread-safe: do it holding the segment set's lock (as every
    ``SegmentSet`` query does), and either before the set forgets a deleted segment or with the
    snapshot pinned (``SegmentSet.pin``, as a :class:`~kronicler.db.view.ReadView` does).

    Fields:
        segments: one view per visible segment (compactions in progress and replaced segments
            left out), ordered by segment id.
    """

    segments: tuple[SegmentView, ...]

    @property
    def rows(self) -> int:
        """Rows the snapshot holds."""
        return sum(v.rows for v in self.segments)

    @property
    def damage(self) -> Damage:
        """What the visible segments have lost to damaged bytes."""
        total = Damage()
        for v in self.segments:
            total = total + v.damage
        return total
