"""Finding chunks in a segment file: walk their pages, check every one, salvage what is intact.

A segment file is a chain of chunks, each a chain of pages ending with its summary page, so a chunk
is found by walking page headers from where the previous chunk ended. The walk checks every page
against its checksum when the chunk is first found: one sequential read of the chunk (~5 bytes a
row, far cheaper than decoding its summary page, which the walk does anyway), done once per reading
process. Damage is then known before any query runs, so every query (statistics from summaries,
scans of raw rows, slowest calls) sees the same set of chunks.

A walk ends three ways: a complete, valid chunk (:class:`FoundChunk`); None, when the chunk is not
wholly on disk yet (its writer is mid-write, or died writing it); or CorruptPageError, when a page
is damaged. Only the caller, with the segment's catalog, can tell "not yet written" from "damaged
past its end", so a page reaching past ``limit`` is reported as None.
"""

from __future__ import annotations

import os

from kronicler._record import record
from kronicler.db.chunk import ChunkSummary, decode_entries, decode_summary
from kronicler.db.page import (
    DICT_PAGE,
    HEADER_SIZE,
    MAGIC,
    ORDERED_BY_FUNCTION,
    SUMMARY_PAGE,
    PageHeader,
    check_page,
    parse_header,
)
from kronicler.db.schema import COLUMN_IDS, COLUMNS, LATER_COLUMNS
from kronicler.errors import CorruptPageError

_COLUMN_NAMES = {i: n for n, i in COLUMN_IDS.items()}
# Pages every chunk has: its dictionary and every column but those added by later schemas
# (a chunk written before them reads them as code 0, see kronicler.db.schema).
_REQUIRED = frozenset(COLUMNS).difference(LATER_COLUMNS) | {"dictionary"}

Entries = dict[str, list[tuple[int, str]]]


@record
class FoundChunk:
    """A complete chunk whose every page passed its checksum.

    Fields:
        length: bytes of all its pages; summary_header: its summary page's header (rows, times).
        pages: column name (and "dictionary") -> (offset, size) of its page.
        entries: the dictionary entries it defines; summary: its decoded summary page.
        ordered: its rows are ordered by function (its dictionary page says so).
    """

    length: int
    summary_header: PageHeader
    pages: dict[str, tuple[int, int]]
    entries: Entries
    summary: ChunkSummary
    ordered: bool


def walk_chunk(fd: int, where: str, offset: int, limit: int, seq: int) -> FoundChunk | None:
    """Walk and check the pages of chunk ``seq`` at ``offset``, reading no byte past ``limit``."""
    pages: dict[str, tuple[int, int]] = {}
    pos = offset
    entries: Entries | None = None
    ordered = False
    while pos + HEADER_SIZE <= limit:
        raw_head = os.pread(fd, HEADER_SIZE, pos)
        header = parse_header(raw_head)
        if header is None:
            raise CorruptPageError(f"no page header at {where}@{pos}")
        if header.chunk != seq:
            raise CorruptPageError(f"page of chunk {header.chunk} in chunk {seq} at {where}@{pos}")
        if pos + header.size > limit:
            return None
        payload = os.pread(fd, header.length, pos + HEADER_SIZE)
        if not check_page(header, raw_head, payload):
            raise CorruptPageError(f"checksum mismatch in page at {where}@{pos}")
        if header.column == DICT_PAGE:
            entries = decode_entries(payload)
            ordered = header.min == ORDERED_BY_FUNCTION
            pages["dictionary"] = (pos, header.size)
        elif header.column == SUMMARY_PAGE:
            if entries is None or not _REQUIRED.issubset(pages):
                raise CorruptPageError(f"chunk {seq} at {where}@{offset} lacks pages")
            summary = decode_summary(payload)
            if sum(s.count for s in summary.summaries) != header.rows:
                raise CorruptPageError(f"summary of chunk {seq} at {where}@{offset} counts "
                                       "other rows than its header")  # fmt: skip
            pages["summary"] = (pos, header.size)
            length = pos + header.size - offset
            return FoundChunk(length, header, pages, entries, summary, ordered)
        else:
            name = _COLUMN_NAMES.get(header.column)
            if name is None or name in pages:
                raise CorruptPageError(f"unexpected page kind {header.column} at {where}@{pos}")
            pages[name] = (pos, header.size)
        pos += header.size
    return None


def salvage_entries(fd: int, offset: int, length: int, seq: int) -> Entries | None:
    """The dictionary entries of a damaged chunk, if its dictionary page is intact.

    Rows elsewhere that use the texts it defined then survive. The page is found by searching the
    chunk's bytes for a page header, so damage to the pages before it does not hide it (a chance
    match inside a payload fails the checksum).
    """
    data = os.pread(fd, length, offset)
    pos = data.find(MAGIC)
    while pos >= 0:
        header = parse_header(data[pos : pos + HEADER_SIZE])
        if header is not None and header.column == DICT_PAGE and header.chunk == seq:
            payload = data[pos + HEADER_SIZE : pos + header.size]
            if check_page(header, data[pos : pos + HEADER_SIZE], payload):
                try:
                    return decode_entries(payload)
                except CorruptPageError:
                    return None
        pos = data.find(MAGIC, pos + 1)
    return None
