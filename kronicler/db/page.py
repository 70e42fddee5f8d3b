"""Pages: the unit of storage, each carrying a header and a checksum.

A segment file is a chain of pages. A page holds one column of one chunk (a run of up to
``CHUNK_ROWS`` consecutive rows of a writing process), encoded by :mod:`kronicler.db.codec`; a chunk
also has a dictionary page (text values first used by it) and, last, a summary page (per-function
statistics of the chunk). Because the summary page is written last, a chunk whose summary page is
present and valid is complete.

Every page starts with a fixed header naming itself (magic, format version, column, chunk number,
row count, payload length, min/max where meaningful) and ends the header with a CRC-32 of the header
fields and the payload. A write torn by a crash fails the check and is dropped on open; nothing
before it is affected because pages are only ever appended.

The logical page size is fixed: a page holds ``CHUNK_ROWS`` rows (the last chunk of a closed segment
may hold fewer). The bytes on disk vary with the data because pages are compressed; a fixed byte
size would pad small or well-compressed pages and cost more than the data itself.
"""

from __future__ import annotations

import zlib
from struct import Struct
from typing import Final

from kronicler._record import record
from kronicler.errors import CorruptPageError

MAGIC: Final = b"KPG1"
FORMAT_VERSION: Final = 1
CHUNK_ROWS: Final = 65_536

# Special "column" ids for the non-column pages of a chunk.
DICT_PAGE: Final = 100
SUMMARY_PAGE: Final = 101
#: The dictionary page's ``min`` field (unused otherwise): its chunk's rows are ordered by
#: (function, start). Chunks written before that order existed carry 0.
ORDERED_BY_FUNCTION: Final = 1

#: magic, version, column, chunk, rows, payload length, min, max, crc32
HEADER = Struct("<4sHHIIIqqI")
HEADER_SIZE: Final = HEADER.size
assert HEADER_SIZE == 40
_CRC_OFFSET: Final = HEADER_SIZE - 4


@record
class PageHeader:
    """Decoded page header.

    Fields:
        column: column id (see ``schema.COLUMN_IDS``) or DICT_PAGE / SUMMARY_PAGE.
        chunk: chunk number within its segment (0, 1, 2, ...).
        rows: rows in the chunk.
        length: payload bytes following the header.
        min, max: smallest and largest value of the column (0 where not meaningful).
        crc: CRC-32 of the header fields before it and of the payload.
    """

    column: int
    chunk: int
    rows: int
    length: int
    min: int
    max: int
    crc: int

    @property
    def size(self) -> int:
        """Bytes the page takes on disk, header included."""
        return HEADER_SIZE + self.length


def build_page(
    column: int, chunk: int, rows: int, payload: bytes, lo: int = 0, hi: int = 0
) -> bytes:
    """Header plus payload, ready to append."""
    head = HEADER.pack(MAGIC, FORMAT_VERSION, column, chunk, rows, len(payload), lo, hi, 0)
    crc = zlib.crc32(payload, zlib.crc32(head[:_CRC_OFFSET]))
    return head[:_CRC_OFFSET] + crc.to_bytes(4, "little") + payload


def parse_header(raw: bytes | memoryview) -> PageHeader | None:
    """The header at the start of ``raw``, or None when it is not a page header (torn or garbage)."""
    if len(raw) < HEADER_SIZE:
        return None
    magic, version, column, chunk, rows, length, lo, hi, crc = HEADER.unpack_from(raw, 0)
    if magic != MAGIC or version != FORMAT_VERSION:
        return None
    return PageHeader(column, chunk, rows, length, lo, hi, crc)


def check_page(
    header: PageHeader, raw_header: bytes | memoryview, payload: bytes | memoryview
) -> bool:
    """True when the payload and header match the stored checksum."""
    crc = zlib.crc32(payload, zlib.crc32(bytes(raw_header[:_CRC_OFFSET])))
    return crc == header.crc and len(payload) == header.length


def verified_payload(raw: bytes | memoryview, where: str) -> tuple[PageHeader, memoryview]:
    """Parse and verify a whole page (header + payload); raises CorruptPageError on mismatch."""
    view = memoryview(raw)
    header = parse_header(view)
    if header is None:
        raise CorruptPageError(f"no page header at {where}")
    payload = view[HEADER_SIZE : HEADER_SIZE + header.length]
    if not check_page(header, view, payload):
        raise CorruptPageError(f"checksum mismatch in page at {where}")
    return header, payload
