"""The segment writer: one per writing process, append-only, no locks shared with anyone.

Each process that writes gets its own segment, named by time, pid and a random tag, made of six
files: ``<id>.kseg`` (chunks of pages, only ever appended), ``<id>.wal`` (rows not yet in a chunk),
``<id>.meta`` (the chunk list, replaced atomically), ``<id>.roll`` (the roll-up tree's records,
appended as nodes complete, see :mod:`kronicler.db.rollup`), ``<id>.kidx`` (the segment index:
chunk directory, whole-segment roll-up and where the ``.roll`` records are, see
:mod:`kronicler.db.index`) and ``<id>.kkey`` (the attribute sets each chunk defines, split per
key, appended at seal; see :mod:`kronicler.db.attr_keys`), and ``<id>.kdur`` (each function's
sorted durations per group of chunks, see :mod:`kronicler.db.durations`). Because no two processes ever write the
same file, gunicorn workers or a multiprocessing pool share one database directory without locking.

The writer is driven by a single thread (the write queue's): ``add`` buffers rows, ``seal_full``
writes every complete chunk, ``commit`` makes everything durable (fsync of the segment, then the
catalog, then the log). Rows are sealed ordered by function, then start (``chunk.by_function``).

The index is saved at ``close`` and, while the segment stays open, at a commit once the chunks
sealed since the last save number at least ``max(INDEX_EVERY, indexed / 8)``: a save costs
O(chunks), so this keeps its cost per chunk constant while a live segment's readers walk at most
about an eighth of it. Saving it is best-effort (it is a shortcut; readers walk without it).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

import numpy as np

from kronicler.db import attr_keys, durations, index, rollup, wal
from kronicler.db.chunk import by_function, encode_chunk, summarize
from kronicler.db.dictionary import Dictionary
from kronicler.db.fileio import append_all
from kronicler.db.metadata import save_json
from kronicler.db.page import CHUNK_ROWS
from kronicler.db.schema import COLUMNS, SCHEMA_VERSION, TEXT_COLUMNS, SpanBatch
from kronicler.db.site_batch import SiteBatch
from kronicler.db.snapshot import ChunkInfo

#: Chunks sealed since the last index save that make a commit save it again (see above).
INDEX_EVERY = 32

log = logging.getLogger(__name__)


def new_segment_id() -> str:
    return f"{time.time_ns():016x}-{os.getpid()}-{secrets.token_hex(3)}"


class SegmentWriter:
    """Buffers, seals and persists the rows of one segment. Used by one thread at a time."""

    def __init__(
        self, directory: Path, *, chunk_rows: int = CHUNK_ROWS, replaces: tuple[str, ...] = (),
        segment_id: str | None = None, part_of: str | None = None, parts: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        directory.mkdir(parents=True, exist_ok=True)
        self.id = new_segment_id() if segment_id is None else segment_id
        # A compaction's output names the segments it replaces; readers ignore it until it is
        # closed, then ignore the replaced segments instead. An output written in several
        # segments names its group: the earlier ones (``part_of`` the last) stay invisible until
        # the last, which lists them (``parts``), is closed (see compaction.py).
        self.replaces = replaces
        self.part_of = part_of
        self.parts = parts
        self.data_path = directory / f"{self.id}.kseg"
        self.meta_path = directory / f"{self.id}.meta"
        if chunk_rows <= 0:
            raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
        self._chunk_rows = chunk_rows
        self.dicts = {name: Dictionary() for name in TEXT_COLUMNS}
        # Resource code 0 is the empty resource in every segment, so that rows of segments
        # written before the column existed (read as code 0) mean "no resource".
        self.dicts["resource"].encode([""])
        # Dictionary codes below these are defined in a sealed chunk / in a chunk or the log.
        self._in_chunks = dict.fromkeys(TEXT_COLUMNS, 0)
        self._in_wal = dict.fromkeys(TEXT_COLUMNS, 0)
        self._tail: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
        self.tail_rows = 0
        self._tail_in_wal = 0  # leading tail rows already written to the log
        self.rows_sealed = 0
        self._offset = 0
        self._chunks: list[list[int]] = []
        self._infos: list[ChunkInfo] = []  # the chunk directory the index records
        self._indexed = 0  # chunks the saved index covers
        self._meta_stale = True
        self.closed = False
        self.opened = time.monotonic()
        # The catalog exists before the segment file, so no reader sees a segment without it.
        self._save_meta()
        self._fd = os.open(self.data_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._wal = wal.WalWriter(directory / f"{self.id}.wal")
        self._rollup = rollup.RollupWriter(rollup.path_of(directory, self.id))
        self._keys = attr_keys.KeyWriter(attr_keys.path_of(directory, self.id))
        self._durations = durations.DurationWriter(durations.path_of(directory, self.id))

    def add(self, batch: SpanBatch | SiteBatch) -> None:
        """Buffer ``batch``'s rows; text is dictionary-coded here (per site for a SiteBatch).

        All or nothing: a batch that cannot be coded (a text that is not a ``str``, columns of
        different lengths) raises ValueError and leaves the tail as it was, so the caller can
        count exactly that batch as lost. (Texts it coded before failing stay in the
        dictionaries, unused: harmless, a chunk or log record defines them like any other.)
        """
        n = len(batch)
        if n == 0:
            return
        dicts = self.dicts
        if isinstance(batch, SiteBatch):
            service = dicts["service"].encode([batch.service])[0]
            resource = dicts["resource"].encode([batch.resource])[0]  # one per pipeline
            coded = {
                "name": dicts["name"].encode_indexed(batch.names, batch.site),
                "service": np.full(n, service, dtype=np.uint32),
                "attributes": dicts["attributes"].encode_indexed(batch.attributes, batch.site),
                "resource": np.full(n, resource, dtype=np.uint32),
            }
        else:
            coded = {column: dicts[column].encode(texts) for column, texts in (
                ("name", batch.names), ("service", batch.services),
                ("attributes", batch.attributes), ("resource", batch.resources),
            )}  # fmt: skip
        for column in ("start", "duration", "status", "kind", "trace_hi", "trace_lo", "span_id",
                       "parent_span_id"):  # fmt: skip
            coded[column] = getattr(batch, column)
        self.add_coded(coded, n)

    def add_coded(self, coded: dict[str, np.ndarray], n: int) -> None:
        """Buffer ``n`` rows whose text columns are already this writer's dictionary codes
        (given in order of first use, as ``Dictionary.encode_indexed`` gives them)."""
        for column, values in coded.items():
            if len(values) != n:
                raise ValueError(f"column {column} has {len(values)} rows, not {n}")
        tail = self._tail
        for column, values in coded.items():
            tail[column].append(values)
        self.tail_rows += n

    def _tail_columns(self) -> dict[str, np.ndarray]:
        """The whole tail as one array per column (consolidating the buffered pieces)."""
        out = {}
        for column, pieces in self._tail.items():
            arr = (
                pieces[0]
                if len(pieces) == 1
                else np.concatenate(pieces).astype(COLUMNS[column], copy=False)
            )
            self._tail[column] = [arr]
            out[column] = arr
        return out

    def _entries_since(
        self, since: dict[str, int]
    ) -> tuple[dict[str, list[tuple[int, str]]], dict[str, int]]:
        """Dictionary entries defined after ``since``, and the marks to record once they are stored."""
        entries = {}
        for name, d in self.dicts.items():
            if len(d) > since[name]:
                entries[name] = list(enumerate(d.values[since[name] :], start=since[name]))
        return entries, {name: len(d) for name, d in self.dicts.items()}

    def _tail_from(self, skip: int) -> dict[str, list[np.ndarray]]:
        """The tail's rows from ``skip`` on: per column, the pieces (or their ends) that hold
        them. A commit logs the rows added since the last one, copied once into the record: it
        must not copy the whole tail (up to a chunk) each time, nor join the pieces first."""
        need = self.tail_rows - skip
        out = {}
        for column, pieces in self._tail.items():
            first, have = len(pieces), 0
            while have < need:
                first -= 1
                have += len(pieces[first])
            held = pieces[first:]
            if held:
                held[0] = held[0][have - need :]
            out[column] = held
        return out

    def _entries_of(
        self, chunk: dict[str, np.ndarray]
    ) -> tuple[dict[str, list[tuple[int, str]]], dict[str, int]]:
        """Dictionary entries first used by ``chunk``'s rows, and the marks once it is stored.

        Codes are given in order of first use, so the new codes of a chunk are exactly those
        from the previous mark up to its largest code. Entries first used by rows still in the
        tail stay out of the chunk (they go to the log, then to the chunk that holds those rows):
        a chunk is no larger than its rows need, and no later row depends on an earlier chunk's
        dictionary page for a value that chunk does not hold.
        """
        entries, marks = {}, dict(self._in_chunks)
        for name, d in self.dicts.items():
            codes = chunk[name]
            top = int(codes.max()) + 1 if len(codes) else 0
            if top > marks[name]:
                entries[name] = list(enumerate(d.values[marks[name] : top], start=marks[name]))
                marks[name] = top
        return entries, marks

    def seal_full(self) -> int:
        """Write every complete chunk of the tail; returns the number written."""
        sealed = 0
        while self.tail_rows >= self._chunk_rows:
            self._seal(self._chunk_rows)
            sealed += 1
        return sealed

    def _seal(self, rows: int) -> None:
        # Nothing changes until the chunk is wholly written: a failed write (disk full) is cut
        # off the file again, and the rows stay in the tail for the next attempt.
        columns = self._tail_columns()
        chunk = by_function({c: a[:rows] for c, a in columns.items()})
        entries, marks = self._entries_of(chunk)
        seq, summary = len(self._chunks), summarize(chunk)
        pages = encode_chunk(seq, chunk, entries, summary, ordered=True)
        data = b"".join(pages)
        append_all(self._fd, data, self._offset)
        self._in_chunks = marks
        new_sets = entries.get("attributes")
        if new_sets:  # the sets this chunk defines, split per key for queries (attr_keys.py)
            self._keys.add(seq, new_sets[0][0], [text for _, text in new_sets])
        # each function's sorted durations, a record per group of chunks (durations.py)
        self._durations.add(seq, summary.codes, summary.code_ends, summary.errors,
                            chunk["duration"])  # fmt: skip
        for c, a in columns.items():
            self._tail[c] = [a[rows:]] if len(a) > rows else []
        self.tail_rows -= rows
        self._tail_in_wal = max(0, self._tail_in_wal - rows)
        start = chunk["start"]
        lo, hi = int(start.min()), int(start.max())
        self._chunks.append([self._offset, len(data), rows, self.rows_sealed, lo, hi])
        at = self._offset + np.r_[0, np.cumsum([len(p) for p in pages])[:-1]]
        self._infos.append(ChunkInfo(
            seq, self._offset, len(data), rows, self.rows_sealed, lo, hi,
            {k: (int(o), len(p)) for k, o, p in zip(index.PAGE_KINDS, at, pages, strict=True)},
            summary.codes, summary.max_duration,
            code_ends=summary.code_ends,
        ))  # fmt: skip
        self._offset += len(data)
        self.rows_sealed += rows
        self._meta_stale = True
        self._rollup.add(seq, summary)

    def commit(self) -> None:
        """Make every added row durable: sealed chunks, then the catalog, then the log."""
        if self._meta_stale:
            os.fsync(self._fd)
            self._save_meta()
            if len(self._infos) - self._indexed >= max(INDEX_EVERY, self._indexed // 8):
                self._save_index(closed=False)
            self._meta_stale = True  # until the log below is rewritten as well
            # Everything the tail refers to up to the last chunk is defined in it; the log
            # restarts with the tail and the entries defined since.
            record, marks = self._record(0, self._in_chunks) if self.tail_rows else (None, None)
            self._wal.rewrite(record)
            self._in_wal = marks or dict(self._in_chunks)
            self._tail_in_wal = self.tail_rows
            self._meta_stale = False
        elif self.tail_rows > self._tail_in_wal:
            record, marks = self._record(self._tail_in_wal, self._in_wal)
            self._wal.append(record)
            self._in_wal = marks
            self._tail_in_wal = self.tail_rows

    def _record(self, skip: int, since: dict[str, int]) -> tuple[bytearray, dict[str, int]]:
        columns = self._tail_from(skip)
        entries, marks = self._entries_since(since)
        return wal.encode_record(self.rows_sealed + skip, columns, entries), marks

    def _save_meta(self, *, closed: bool = False) -> None:
        save_json(self.meta_path, {
            "segment": self.id, "pid": os.getpid(), "schema_version": SCHEMA_VERSION,
            "chunk_rows": self._chunk_rows, "closed": closed, "chunks": self._chunks,
            "replaces": list(self.replaces),
            **({"part_of": self.part_of} if self.part_of is not None else {}),
            **({"parts": list(self.parts)} if self.parts else {}),
        })  # fmt: skip
        self._meta_stale = False

    def _save_index(self, *, closed: bool) -> None:
        """Save the index of every chunk sealed so far (after they are durable)."""
        idx = index.SegmentIndex(
            self.id, closed, self.replaces, os.getpid(), self._offset, self.rows_sealed,
            tuple(self.dicts["name"].values[: self._in_chunks["name"]]),
            tuple(self.dicts["service"].values[: self._in_chunks["service"]]),
            tuple(self._infos), self._rollup.total().rollup(), dict(self._rollup.records),
            self._rollup.end, tuple(self.dicts["resource"].values[: self._in_chunks["resource"]]),
            self.part_of, self.parts,
        )  # fmt: skip
        try:
            index.save(self.meta_path.parent, idx)
        except OSError as exc:  # a full disk: readers walk the segment instead
            log.warning("segment %s: index not saved: %s", self.id, exc)
            return
        self._indexed = len(self._infos)

    def close(self) -> None:
        """Seal the remaining rows into a last (short) chunk and retire the log."""
        if self.closed:
            return
        if self.tail_rows:
            self._seal(self.tail_rows)
        if self._meta_stale:
            os.fsync(self._fd)
        self._keys.close()
        self._durations.close()  # maintenance merges its records later (compaction.settle)
        self._rollup.close()  # before the catalog says closed: readers then take the file as final
        self._save_meta(closed=True)
        self._save_index(closed=True)
        self._wal.close(remove=True)
        os.close(self._fd)
        self.closed = True

    @property
    def chunk_rows(self) -> int:
        return self._chunk_rows

    @property
    def tail_in_wal(self) -> int:
        """Leading rows of the tail that are durable in the log already."""
        return self._tail_in_wal

    def abandon(self) -> None:
        """Drop file descriptors without writing (a forked child must not touch its parent's files)."""
        self._wal.abandon()
        self._rollup.abandon()
        self._keys.abandon()
        self._durations.abandon()
        try:
            os.close(self._fd)
        except OSError:
            pass
        self.closed = True
