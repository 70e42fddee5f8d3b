"""The segment reader: what one segment holds, kept current by cheap incremental refreshes.

A reader follows a segment that another thread or process may still be writing. ``refresh`` looks at
the file sizes: new complete chunks are discovered by walking page headers from where the previous
refresh stopped, and a changed log is re-read. (The segment file is self-describing, so the walk needs no catalog.) A chunk that is
only partly on disk (its writer is mid-write, or was killed) stops the walk;
the next refresh tries again from the same place, so readers never see half a chunk.

Per chunk the reader keeps only a zone map (time range, functions present, their largest duration);
column pages and full summaries are fetched through the bufferpool when a query needs them, so memory
does not grow with the database. The only per-segment state that grows is the roll-up: one merged
summary per function over all sealed chunks, which answers whole-history statistics without reading
any page.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kronicler.db import wal
from kronicler.db.chunk import (
    ChunkSummary,
    decode_column,
    decode_entries,
    decode_summary,
    summarize,
)
from kronicler.db.dictionary import Dictionary
from kronicler.db.metadata import load_json
from kronicler.db.page import (
    DICT_PAGE,
    HEADER_SIZE,
    SUMMARY_PAGE,
    check_page,
    parse_header,
    verified_payload,
)
from kronicler.db.schema import COLUMN_IDS, COLUMNS
from kronicler.db.summary import Summary
from kronicler.db.writer import TEXT_COLUMNS

log = logging.getLogger(__name__)

_COLUMN_NAMES = {i: n for n, i in COLUMN_IDS.items()}


@dataclass(slots=True)
class ChunkInfo:
    """Where a chunk lives and what it holds (its zone map).

    Fields:
        seq: chunk number in the segment.
        offset, length: byte range of the chunk's pages in the segment file.
        rows, first_row: row count, and segment-wide number of the first row.
        start_min, start_max: time range of the chunk's start times (ns).
        pages: column name (and "dictionary") -> (offset, length) of its page, header included.
        codes: name codes present; ``max_duration``, ``counts``: per code.
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


@dataclass(slots=True)
class Rollup:
    """Merged per-function statistics of every sealed chunk of a segment (local name codes)."""

    summaries: dict[int, Summary] = field(default_factory=dict)
    errors: dict[int, int] = field(default_factory=dict)
    first_start: dict[int, int] = field(default_factory=dict)
    last_start: dict[int, int] = field(default_factory=dict)


class SegmentReader:
    """Read access to one segment; ``refresh`` before use to pick up what was written since."""

    def __init__(self, directory: Path, segment_id: str) -> None:
        self.id = segment_id
        self.data_path = directory / f"{segment_id}.kseg"
        self.wal_path = directory / f"{segment_id}.wal"
        self.meta_path = directory / f"{segment_id}.meta"
        self.dicts = {name: Dictionary() for name in TEXT_COLUMNS}
        self._attributes_loaded = False
        self.chunks: list[ChunkInfo] = []
        self.rollup = Rollup()
        self.rows_sealed = 0
        self.closed = False
        self.replaces: tuple[str, ...] = ()  # segments this one (a compaction's output) replaces
        self.pid: int | None = None
        self.version = 0  # bumped whenever what the segment holds changes
        self._end = 0  # bytes of the segment file covered by known chunks
        self._fd = -1
        self._wal_sig: tuple[int, int, int] | None = None
        self._meta_sig: int | None = None
        self.tail: dict[str, np.ndarray] = {c: np.zeros(0, d) for c, d in COLUMNS.items()}
        self._tail_summary: ChunkSummary | None = None

    # -- refreshing ----------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Pick up new chunks and log rows; returns True when anything changed."""
        changed = self._refresh_chunks()
        changed = self._refresh_tail(changed) or changed
        if changed:
            self.version += 1
        return changed

    def _open(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.data_path, os.O_RDONLY)
        return self._fd

    def _refresh_chunks(self) -> bool:
        try:
            size = os.stat(self.data_path).st_size
        except FileNotFoundError:
            return False
        if not self.closed:
            try:
                meta_sig = os.stat(self.meta_path).st_mtime_ns
            except FileNotFoundError:
                meta_sig = None
            if meta_sig != self._meta_sig:
                self._meta_sig = meta_sig
                meta = load_json(self.meta_path) or {}
                self.closed = bool(meta.get("closed"))
                self.replaces = tuple(str(x) for x in meta.get("replaces", ()))
                pid = meta.get("pid")
                self.pid = pid if isinstance(pid, int) else None
        if size <= self._end:
            return False
        fd = self._open()
        found: list[tuple[ChunkInfo, ChunkSummary]] = []
        while self._end < size:
            first_row = found[-1][0].first_row + found[-1][0].rows if found else self.rows_sealed
            got = self._read_chunk(fd, self._end, size, len(self.chunks) + len(found), first_row)
            if got is None:
                break
            found.append(got)
            self._end = got[0].offset + got[0].length
        if not found:
            return False
        for info, _ in found:
            self.chunks.append(info)
            self.rows_sealed = info.first_row + info.rows
        self._merge_rollup([cs for _, cs in found])
        return True

    def _merge_rollup(self, summaries: list[ChunkSummary]) -> None:
        per_code: dict[int, list[Summary]] = {}
        for cs in summaries:
            for i, code in enumerate(cs.codes.tolist()):
                per_code.setdefault(code, []).append(cs.summaries[i])
                r = self.rollup
                r.errors[code] = r.errors.get(code, 0) + int(cs.errors[i])
                f, la = int(cs.first_start[i]), int(cs.last_start[i])
                r.first_start[code] = min(r.first_start.get(code, f), f)
                r.last_start[code] = max(r.last_start.get(code, la), la)
        for code, items in per_code.items():
            old = self.rollup.summaries.get(code)
            self.rollup.summaries[code] = Summary.merge_all(items if old is None else [old, *items])

    def _read_chunk(
        self, fd: int, offset: int, size: int, seq: int, first_row: int
    ) -> tuple[ChunkInfo, ChunkSummary] | None:
        """Walk the pages of the chunk at ``offset``; None when it is not complete and valid."""
        pages: dict[str, tuple[int, int]] = {}
        pos = offset
        entries: dict[str, list[tuple[int, str]]] | None = None
        while pos + HEADER_SIZE <= size:
            raw_head = os.pread(fd, HEADER_SIZE, pos)
            header = parse_header(raw_head)
            if header is None or header.chunk != seq or pos + header.size > size:
                return None
            if header.column in (DICT_PAGE, SUMMARY_PAGE):
                payload = os.pread(fd, header.length, pos + HEADER_SIZE)
                if not check_page(header, raw_head, payload):
                    log.warning("dropping torn chunk %d of segment %s", seq, self.id)
                    return None
                if header.column == DICT_PAGE:
                    entries = decode_entries(payload)
                    pages["dictionary"] = (pos, header.size)
                else:
                    if entries is None or len(pages) != len(COLUMNS) + 1:
                        return None
                    try:
                        cs = decode_summary(payload)
                    except Exception:  # a damaged page that still passed its checksum
                        log.warning("unreadable summary in chunk %d of %s", seq, self.id)
                        return None
                    self._define(entries)
                    info = ChunkInfo(
                        seq, offset, pos + header.size - offset, header.rows, first_row,
                        header.min, header.max, pages, cs.codes, cs.max_duration,
                    )  # fmt: skip
                    return info, cs
            else:
                name = _COLUMN_NAMES.get(header.column)
                if name is None:
                    return None
                pages[name] = (pos, header.size)
            pos += header.size
        return None

    def _refresh_tail(self, chunks_changed: bool) -> bool:
        try:
            st = os.stat(self.wal_path)
            sig = (st.st_size, st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            sig = None
        if sig == self._wal_sig and not chunks_changed:
            return False
        self._wal_sig = sig
        pieces: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
        for record in wal.read_records(self.wal_path) if sig else ():
            self._define(record.entries)
            skip = self.rows_sealed - record.first_row
            if skip >= len(record):
                continue
            for c, arr in record.columns.items():
                pieces[c].append(arr[max(skip, 0) :])
        old_rows = len(self.tail["start"])
        self.tail = {
            c: np.concatenate(p) if p else np.zeros(0, COLUMNS[c]) for c, p in pieces.items()
        }
        self._tail_summary = None
        return chunks_changed or len(self.tail["start"]) != old_rows or sig is not None

    def _define(self, entries: dict[str, list[tuple[int, str]]]) -> None:
        for kind, items in entries.items():
            if kind == "attributes" and not self._attributes_loaded:
                continue  # loaded on first use: see dictionary()
            d = self.dicts[kind]
            for code, text in items:
                d.define(code, text)

    def dictionary(self, kind: str) -> Dictionary:
        """The segment's dictionary of ``kind`` ("name", "service" or "attributes").

        Attribute sets can be as many as the rows (a URL, a user id), so they are read from the
        dictionary pages only when a query first needs them, not kept by every reader.
        """
        if kind == "attributes" and not self._attributes_loaded:
            self._attributes_loaded = True
            fd = self._open()
            for chunk in self.chunks:
                offset, size = chunk.pages["dictionary"]
                raw = os.pread(fd, size, offset)
                entries = decode_entries(verified_payload(raw, f"{self.data_path}@{offset}")[1])
                self._define({"attributes": entries.get("attributes", [])})
            for record in wal.read_records(self.wal_path):
                self._define({"attributes": record.entries.get("attributes", [])})
        return self.dicts[kind]

    # -- reading -------------------------------------------------------------------------------
    def tail_summary(self) -> ChunkSummary:
        if self._tail_summary is None:
            self._tail_summary = summarize(self.tail)
        return self._tail_summary

    def read_page(self, chunk: ChunkInfo, column: str) -> bytes | memoryview:
        offset, size = chunk.pages[column]
        raw = os.pread(self._open(), size, offset)
        _, payload = verified_payload(raw, f"{self.data_path}@{offset}")
        return payload

    def decode_page(self, chunk: ChunkInfo, column: str, span_ids: np.ndarray | None = None) -> Any:
        return decode_column(column, self.read_page(chunk, column), span_ids)

    def load_summary(self, chunk: ChunkInfo) -> ChunkSummary:
        offset = chunk.offset + chunk.length
        # The summary page is the chunk's last page; find it from the last column page.
        last_col = max(chunk.pages.values())
        pos = last_col[0] + last_col[1]
        fd = self._open()
        while pos < offset:
            header = parse_header(os.pread(fd, HEADER_SIZE, pos))
            assert header is not None
            if header.column == SUMMARY_PAGE:
                raw = os.pread(fd, header.size, pos)
                return decode_summary(verified_payload(raw, f"{self.data_path}@{pos}")[1])
            pos += header.size
        raise AssertionError("chunk without summary page")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
