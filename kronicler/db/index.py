"""The segment index: a segment's chunk directory and roll-ups in one small file, read on open.

Without it a reader finds a segment's chunks by walking every page header and checking every
page's checksum (:mod:`kronicler.db.chunk_walk`): at 100M rows, 3-4 s before the first answer. The
writer therefore saves ``<segment>.kidx`` when it closes the segment (and, while it stays open,
after every few dozen chunks, see ``SegmentWriter``): per chunk its byte range, row count, time
range, page sizes, the functions present with their largest duration and their row ranges (rows of
a sealed chunk are ordered by function, then start), plus the name and service texts those chunks
define, the per-function roll-up over all of them, and where the records of the segment's roll-up
tree lie in its ``.roll`` file (:mod:`kronicler.db.rollup`: their summaries stay there, read
through the bufferpool when a time range needs them). Opening a segment reads this one file and
nothing else; only chunks and roll-up records past it (a live writer's newest) are walked.

Trade-off: pages of an indexed chunk are checked when a query first reads them (the bufferpool's
load verifies each page's checksum), not when the segment opens, so damage is known at first read
instead of at open; what it costs stays the same (see :mod:`kronicler.db.reader`). Summaries-only
answers (whole-history statistics) come from the index and read no page at all.

Format 3: a fixed header (magic, format version, then CRC-32 and length of each of three
frames), then the frames. The head (zstd): a JSON head (segment id, flags, texts, section
lengths) and little-endian numpy arrays, struct of arrays: the chunk table (byte ranges, rows,
time ranges, page sizes, functions per chunk), the roll-up's codes, errors and first and last
starts, the roll-up record locations. The function lists (zstd): per (chunk, function) its code,
largest duration and end row. The roll-up's summaries (:mod:`kronicler.db.summary_codec`).

Opening reads the file and decodes and checks the head alone; the chunk directory stays arrays
(:mod:`kronicler.db.chunk_table`: a ChunkInfo is made when a question first touches its chunk),
the function lists (~90% of the bytes) are checked and decoded when the first chunk is made, the
roll-up when a whole-history question first needs it (straight into a
:class:`~kronicler.db.rollup.Block`, no ``Summary`` objects). At a billion rows (59 segments,
15,301 chunks, 100 functions) the open took ~0.7 s of CPU building every chunk's object and
decoding 29 MB of lists and 5,900 summaries; it now decodes ~1 MB of heads, ~0.07 s.
A closed segment's chunk directory is also checked (that its chunks tile the file, its rows add
up, its pages tile each chunk) when first used, not at open: a time range that a node of the roll-up
across segments (:mod:`kronicler.db.segment_tree`) answers for holds most segments whole, and
needs of each only what the head says (rows, chunks, their time range: ``SegmentIndex.extent``).
At a billion rows (35 compacted segments) that spared ~4 ms of every cold range's ~15 ms of index
reading (a segment's checks are ~0.1 ms of numpy calls); the two segments a range cuts are checked.
The price: damage or an inconsistency in the lists, the roll-up or a closed segment's directory is
found when first read, not at open. It is refused then as at open (IndexUnusableError; the reader
forgets the index and walks the segment, and the query is asked again), the same trade-off as for
chunk pages. What the checks guard (a read pointed outside a chunk) needs the directory, so it
cannot happen before them; the head that gives the time range is behind its checksum.

Format 2 (one compressed body, one checksum) still reads, decompressing and checking everything at
open (about twice the open of format 3); :func:`upgrade` rewrites closed segments' indexes of
format 2 in format 3, a maintenance step. The file is replaced atomically
(:func:`kronicler.db.metadata.atomic_write`); a missing, truncated or damaged index, or one of
another format version, is no index: the reader walks the segment instead. Measured at 10M rows
(153 chunks, 100 functions): 142 KB on disk, 0.014 B/row; the roll-up record locations add 32
bytes per record (one per ~7 chunks).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import field
from functools import partial
from pathlib import Path
from struct import Struct
from typing import Any, BinaryIO, Final

import numpy as np

from kronicler._record import record
from kronicler.db import codec, zstd
from kronicler.db.chunk import ChunkSummary
from kronicler.db.chunk_table import FIELDS, Arrays, Chunks, ChunkTable, Lists
from kronicler.db.metadata import atomic_write
from kronicler.db.rollup import Block
from kronicler.db.schema import COLUMNS
from kronicler.db.snapshot import ChunkInfo, Rollup
from kronicler.db.summary_codec import decode_columns, decode_summaries, encode_summaries
from kronicler.errors import CorruptPageError, SchemaVersionError

SUFFIX: Final = ".kidx"
MAGIC: Final = b"KIX1"
#: 3: three frames, each checked at open, the function lists and roll-up decoded on first use;
#: 2: one frame holding everything (still read)
VERSION: Final = 3
#: magic, version, 2 pad, then per frame (head, lists, roll-up): its crc32 and byte length
HEADER = Struct("<4sH2x" + "IQ" * 3)
assert HEADER.size == 44
#: format 2's header: magic, version, 2 pad, crc32 of the compressed body, its length
HEADER_V2 = Struct("<4sH2xIQ")
assert HEADER_V2.size == 20
_PREFIX = Struct("<4sH")
#: bytes an open reads first: the header and the head frame fit (~21 KB at 2^25 rows)
_FIRST_READ: Final = 1 << 16
#: page kinds of a chunk in file order: its columns, then its dictionary and summary pages
PAGE_KINDS: Final = (*COLUMNS, "dictionary", "summary")
_CHUNK_FIELDS = len(FIELDS)  # offset, length, rows, first_row, start_min, start_max
_RECORD_FIELDS = 4  # first chunk, last chunk, offset, size
# Name of each array section of the head frame and its dtype, in order.
_HEAD: Final = (
    ("chunks", np.int64),  # (n, _CHUNK_FIELDS)
    ("pages", np.int64),  # (n, len(PAGE_KINDS)) page sizes, header included
    ("ordered", np.uint8),  # per chunk: 1 when its rows are ordered by function
    ("n_codes", np.uint32),  # per chunk: functions present
    ("rollup_codes", np.uint32),
    ("rollup_errors", np.int64),
    ("rollup_first", np.int64),
    ("rollup_last", np.int64),
    ("records", np.int64),  # (k, _RECORD_FIELDS): the .roll file's records
)
# ... and of the lists frame: flat over the chunks, ``n_codes[i]`` entries for chunk i.
_LISTS: Final = (
    ("codes", np.uint32),  # name codes, ascending within a chunk
    ("max_duration", np.int64),  # the largest duration per (chunk, function)
    ("code_ends", np.uint32),  # end row of each function's rows (ordered chunks)
)
# Format 2 kept every section in one body, in this order.
_SECTIONS_V2: Final = (*_HEAD[:4], *_LISTS, *_HEAD[4:])


def path_of(directory: Path, segment: str) -> Path:
    return directory / f"{segment}{SUFFIX}"


@record
class SegmentIndex:
    """What a segment's index records.

    Fields:
        segment: the segment id; closed: written by ``close`` (nothing follows ``end``);
        replaces, pid, part_of, parts: as in the segment's ``.meta`` (see compaction.py).
        end: bytes of the segment file its chunks cover; rows: rows in them.
        names, services, resources: texts of the name, service and resource codes those chunks
            define (code = position); attribute texts stay in the dictionary pages (read lazily).
        chunks: the chunk directory (``codes``, ``max_duration`` and ``code_ends`` filled in);
            decoded, a :class:`~kronicler.db.chunk_table.Chunks` making each ChunkInfo on use.
        rollup: per-function statistics merged over every chunk (decoded: on first use).
        records: ``(first, last) -> (offset, size)`` of the roll-up records in the ``.roll``
            file, which they cover up to ``records_end`` bytes (see ``rollup.RollupIndex``).
        extent: None, or (of a closed segment's index, whose chunk directory is checked when
            first used) the time range of its chunks' rows, ``(start_min, start_max)``.
    """

    segment: str
    closed: bool
    replaces: tuple[str, ...]
    pid: int | None
    end: int
    rows: int
    names: tuple[str, ...]
    services: tuple[str, ...]
    chunks: Sequence[ChunkInfo]
    rollup: Rollup
    records: Mapping[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    records_end: int = 0
    resources: tuple[str, ...] = ()
    part_of: str | None = None
    parts: tuple[str, ...] = ()
    extent: tuple[int, int] | None = None


def encode(idx: SegmentIndex) -> bytes:
    """The index file's bytes (format 3)."""
    chunks = list(idx.chunks)
    n = len(chunks)
    table = np.array(
        [[c.offset, c.length, c.rows, c.first_row, c.start_min, c.start_max] for c in chunks],
        dtype=np.int64,
    ).reshape(n, _CHUNK_FIELDS)
    sizes = [[c.pages[k][1] for k in PAGE_KINDS] for c in chunks]
    pages = np.array(sizes, dtype=np.int64).reshape(n, len(PAGE_KINDS))
    r = idx.rollup
    rcodes = list(r.codes)
    arrays: dict[str, np.ndarray] = {
        "chunks": table,
        "pages": pages,
        "ordered": np.array([c.code_ends is not None for c in chunks], dtype=np.uint8),
        "n_codes": np.array([c.codes.size for c in chunks], dtype=np.uint32),
        "codes": _flat([c.codes for c in chunks], np.uint32),
        "max_duration": _flat([c.max_duration for c in chunks], np.int64),
        "code_ends": _flat(
            [c.code_ends if c.code_ends is not None else np.zeros(c.codes.size) for c in chunks],
            np.uint32,
        ),
        "rollup_codes": np.array(rcodes, dtype=np.uint32),
        "rollup_errors": np.array([r.errors[c] for c in rcodes], dtype=np.int64),
        "rollup_first": np.array([r.first_start[c] for c in rcodes], dtype=np.int64),
        "rollup_last": np.array([r.last_start[c] for c in rcodes], dtype=np.int64),
        "records": np.array(
            [[*k, *v] for k, v in sorted(idx.records.items())], dtype=np.int64
        ).reshape(-1, _RECORD_FIELDS),
    }
    head_blobs = [_little(arrays[name], dt) for name, dt in _HEAD]
    list_blobs = [_little(arrays[name], dt) for name, dt in _LISTS]
    meta = json.dumps({
        "segment": idx.segment, "closed": idx.closed, "replaces": list(idx.replaces),
        "pid": idx.pid, "end": idx.end, "rows": idx.rows, "chunks": n,
        "names": list(idx.names), "services": list(idx.services), "resources": list(idx.resources),
        "sections": [len(b) for b in head_blobs], "lists": [len(b) for b in list_blobs],
        "records_end": idx.records_end,
        **({"part_of": idx.part_of} if idx.part_of is not None else {}),
        **({"parts": list(idx.parts)} if idx.parts else {}),
    }, separators=(",", ":")).encode()  # fmt: skip
    compressor = zstd.compressor(3)
    frames = (
        compressor.compress(len(meta).to_bytes(4, "little") + meta + b"".join(head_blobs)),
        compressor.compress(b"".join(list_blobs)),
        encode_summaries([(c, r.summaries[c]) for c in rcodes]),  # compressed by its codec
    )
    checks = [x for f in frames for x in (zlib.crc32(f), len(f))]
    return HEADER.pack(MAGIC, VERSION, *checks) + b"".join(frames)


def save(directory: Path, idx: SegmentIndex) -> None:
    """Write the index atomically: readers see the previous one or this one, never part."""
    atomic_write(path_of(directory, idx.segment), encode(idx))


def load(directory: Path, segment: str) -> SegmentIndex | None:
    """The segment's index; None when it has none. A damaged one raises CorruptPageError.

    Of a closed segment's index (format 3) it reads the header, the head and the roll-up
    frames, and checks the chunk directory when it is first used; the function lists (~90% of
    the bytes, 12 MB at a billion rows) when first needed (see :func:`_lists_later`): a time
    range needs the lists of the two segments it cuts, and a segment that a node of the
    roll-up across segments answers whole needs neither (``SegmentIndex.extent``)."""
    path = path_of(directory, segment)
    try:
        with open(path, "rb") as f:
            return _load(f, path, segment)
    except FileNotFoundError:
        return None


def _load(f: BinaryIO, path: Path, segment: str) -> SegmentIndex:
    first = f.read(_FIRST_READ)
    if len(first) < HEADER.size or first[: _PREFIX.size] != _PREFIX.pack(MAGIC, VERSION):
        return decode(first + f.read(), segment)  # short, format 2 or no index: as a whole
    checks = HEADER.unpack_from(first, 0)[2:]
    crcs, lengths = checks[0::2], checks[1::2]
    stat = os.fstat(f.fileno())
    if HEADER.size + sum(lengths) != stat.st_size:
        return decode(first + f.read(), segment)  # damaged: decode says how
    whole = len(first) == stat.st_size  # a small index: every frame read already
    head_end = HEADER.size + lengths[0]
    raw = first if len(first) >= head_end else first + f.read(head_end - len(first))
    if whole:
        rollup_frame = memoryview(raw)[head_end + lengths[1] :]
    else:
        f.seek(head_end + lengths[1])
        rollup_frame = memoryview(f.read(lengths[2]))
    frames: list[_Frame] = [
        partial(_checked, memoryview(raw)[HEADER.size : head_end], crcs[0], segment),
        _no_frame,  # set below, once the head says whether the segment is closed
        partial(_checked, rollup_frame, crcs[2], segment),
    ]
    meta, arrays, lists, summaries = _parts(frames, segment)
    closed = bool(meta.get("closed"))
    if whole:
        frames[1] = partial(_checked, memoryview(raw)[head_end : head_end + lengths[1]], crcs[1],
                            segment)  # fmt: skip
    elif not closed:  # a live writer saves its index again: take the lists now
        f.seek(head_end)
        frames[1] = partial(_checked, memoryview(f.read(lengths[1])), crcs[1], segment)
    else:
        frames[1] = partial(_lists_later, path, (stat.st_ino, stat.st_size, stat.st_mtime_ns),
                            segment, arrays, head_end, lengths[1], crcs[1])  # fmt: skip
    try:
        return _assemble(meta, arrays, lists, summaries, segment, later=closed)
    except (*codec.BAD_BYTES, AttributeError, RecursionError, SchemaVersionError) as exc:
        raise CorruptPageError(f"index of {segment} does not decode: {exc}") from None


def _lists_later(
    path: Path, seen: tuple[int, int, int], segment: str, arrays: dict[str, np.ndarray],
    at: int, length: int, crc: int,
) -> bytes | memoryview:  # fmt: skip
    """A closed segment's function lists frame, read when first needed from the file the open
    read (``seen``: its inode, size and change time). A closed segment's index is rewritten only
    by maintenance that keeps its chunks (``backfill.add_edge_records`` lists more roll-up
    records): a file rewritten since is used if its chunk directory is the one read at open;
    one gone or different is damage (IndexUnusableError: the reader walks the segment)."""
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            if (stat.st_ino, stat.st_size, stat.st_mtime_ns) == seen:
                f.seek(at)
                return _checked(memoryview(f.read(length)), crc, segment)
            raw = f.read()
    except OSError as exc:
        raise CorruptPageError(f"index of {segment}: its function lists cannot be read: "
                               f"{exc}") from None  # fmt: skip
    try:
        now = _frames(raw, segment)[1]  # checks the new file's header and head
    except codec.BAD_BYTES as exc:
        raise CorruptPageError(f"index of {segment} does not decode: {exc}") from None
    if any(
        not np.array_equal(now[k], arrays[k]) for k in ("chunks", "pages", "ordered", "n_codes")
    ):
        raise CorruptPageError(f"index of {segment} was rewritten with other chunks")
    checks = HEADER.unpack_from(raw, 0)[2:]
    at = HEADER.size + checks[1]
    return _checked(memoryview(raw)[at : at + checks[3]], checks[2], segment)


def upgrade(directory: Path, *, wait: float = 0.0) -> list[str]:
    """Rewrite the index of every closed segment in ``directory`` that is of format 2 in this
    format; returns their segment ids. Optional: format 2 still reads, but its open decompresses
    and checks everything (at a billion rows ~2x the open of format 3). A maintenance step:
    under the maintenance lock (MaintenanceBusyError after ``wait`` seconds), each file
    replaced atomically. Only closed segments' indexes, which no writer saves again; one that
    does not decode is left as it is (the reader walks that segment)."""
    from kronicler.db.lock import MaintenanceLock  # maintenance only: readers never lock

    done: list[str] = []
    with MaintenanceLock(directory, wait=wait):
        for path in sorted(Path(directory).glob(f"*{SUFFIX}")):
            raw = path.read_bytes()
            if raw[: _PREFIX.size] != _PREFIX.pack(MAGIC, 2):
                continue
            try:
                idx = decode(raw, path.stem)
            except CorruptPageError:
                continue
            if idx.closed:
                atomic_write(path, encode(idx))
                done.append(idx.segment)
    return done


def decode(raw: bytes, segment: str) -> SegmentIndex:
    """Inverse of :func:`encode` (format 3 or 2). Anything damaged or inconsistent raises
    CorruptPageError: in the head (the chunk directory, texts, record locations) now; in the
    function lists or the roll-up, decoded on first use, then (as IndexUnusableError, see
    :mod:`kronicler.db.chunk_table`)."""
    if len(raw) < _PREFIX.size:
        raise CorruptPageError(f"index of {segment}: {len(raw)} bytes, shorter than its header")
    magic, version = _PREFIX.unpack_from(raw, 0)
    if magic != MAGIC:
        raise CorruptPageError(f"index of {segment}: not an index file")
    if version not in (2, VERSION):
        raise CorruptPageError(f"index of {segment}: format version {version}, not {VERSION}")
    try:
        parts = _frames(raw, segment) if version == VERSION else _frames_v2(raw, segment)
        return _assemble(*parts, segment)
    except (*codec.BAD_BYTES, AttributeError, RecursionError, SchemaVersionError) as exc:
        raise CorruptPageError(f"index of {segment} does not decode: {exc}") from None


# The parts of an index file: its JSON head, the head's arrays, and functions that give the
# function lists' arrays (unchecked) and the roll-up's encoded summaries, when first needed.
_Parts = tuple[
    dict[str, Any], dict[str, np.ndarray], Callable[[], dict[str, np.ndarray]],
    Callable[[], bytes | memoryview],
]  # fmt: skip


#: gives one frame of an index file, checked
_Frame = Callable[[], bytes | memoryview]


def _frames(raw: bytes, segment: str) -> _Parts:
    """Format 3: the head checked and decompressed now; the other frames when first needed."""
    if len(raw) < HEADER.size:
        raise CorruptPageError(f"index of {segment}: {len(raw)} bytes, shorter than its header")
    checks = HEADER.unpack_from(raw, 0)[2:]
    lengths = checks[1::2]
    if HEADER.size + sum(lengths) != len(raw):
        raise CorruptPageError(f"index of {segment}: {len(raw)} bytes, its header says "
                               f"{HEADER.size + sum(lengths)} (truncated or damaged)")  # fmt: skip
    view, pos = memoryview(raw), HEADER.size
    frames: list[_Frame] = []
    for crc, length in zip(checks[0::2], lengths, strict=True):
        frames.append(partial(_checked, view[pos : pos + length], crc, segment))
        pos += length
    return _parts(frames, segment)


def _parts(frames: list[_Frame], segment: str) -> _Parts:
    """The head of ``frames`` (each gives its frame, checked) decompressed now; the function
    lists (``frames[1]``, looked up when first needed) and the roll-up later."""
    meta, arrays = _head(zstd.decompressor().decompress(frames[0]()), _HEAD, segment)

    def lists() -> dict[str, np.ndarray]:
        data = zstd.decompressor().decompress(frames[1]())
        return _sections(data, 0, _LISTS, meta["lists"])[0]

    return meta, arrays, lists, frames[2]


def _no_frame() -> bytes:
    raise AssertionError("a frame read before it was set")


def _checked(frame: memoryview, crc: int, segment: str) -> memoryview:
    """A frame whose checksum matches (the other frames are checked when first read: at a
    billion rows they are 13 MB, the head 1 MB)."""
    if zlib.crc32(frame) != crc:
        raise CorruptPageError(f"index of {segment}: checksum mismatch (damaged)")
    return frame


def _frames_v2(raw: bytes, segment: str) -> _Parts:
    """Format 2: one checksum and one compressed body holding every section."""
    if len(raw) < HEADER_V2.size:
        raise CorruptPageError(f"index of {segment}: {len(raw)} bytes, shorter than its header")
    _, _, crc, length = HEADER_V2.unpack_from(raw, 0)
    body = memoryview(raw)[HEADER_V2.size :]
    if len(body) != length or zlib.crc32(body) != crc:
        raise CorruptPageError(f"index of {segment}: checksum mismatch (truncated or damaged)")
    data = zstd.decompressor().decompress(body)
    meta, _ = _head(data, (), segment)
    found, pos = _sections(data, 4 + _head_size(data), _SECTIONS_V2, meta["sections"])
    summaries = data[pos : pos + int(meta["summaries"])]
    lists = {name: found.pop(name) for name, _ in _LISTS}
    return meta, found, lambda: lists, lambda: summaries


def _head_size(data: bytes) -> int:
    return int.from_bytes(data[:4], "little")


def _head(
    data: bytes, sections: tuple[tuple[str, type], ...], segment: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON head at the start of ``data`` and the arrays of ``sections`` after it."""
    size = _head_size(data)
    meta: dict[str, Any] = json.loads(data[4 : 4 + size])
    if meta["segment"] != segment:
        raise CorruptPageError(f"index of {segment} names segment {meta['segment']!r}")
    if not sections:
        return meta, {}
    return meta, _sections(data, 4 + size, sections, meta["sections"])[0]


def _sections(
    data: bytes, pos: int, sections: tuple[tuple[str, type], ...], lengths: list[int]
) -> tuple[dict[str, np.ndarray], int]:
    """Read-only arrays of ``sections`` (``lengths`` bytes each) from ``data`` at ``pos``."""
    out: dict[str, np.ndarray] = {}
    for (name, dt), length in zip(sections, lengths, strict=True):
        dtype = np.dtype(dt).newbyteorder("<")
        out[name] = np.frombuffer(data, dtype=dtype, count=int(length) // dtype.itemsize,
                                  offset=pos)  # fmt: skip
        pos += int(length)
    return out, pos


def _assemble(
    meta: dict[str, Any], arrays: dict[str, np.ndarray],
    lists: Callable[[], dict[str, np.ndarray]], summaries: Callable[[], bytes | memoryview],
    segment: str, *, later: bool = False,
) -> SegmentIndex:  # fmt: skip
    """The index of the decoded parts; ``later``: the chunk directory is checked when first
    used (a closed segment's: see ``SegmentIndex.extent``), not now."""
    names, services = _texts(meta["names"]), _texts(meta["services"])
    resources = _texts(meta.get("resources", []))
    n, end, rows = int(meta["chunks"]), int(meta["end"]), int(meta["rows"])
    table = _table(arrays, n, end, rows, segment, lists, len(names), later=later)
    extent = None
    if later and n:  # behind the head's checksum; the table's checks are of how chunks tile
        chunks = arrays["chunks"].reshape(n, _CHUNK_FIELDS)
        lo, hi = FIELDS.index("start_min"), FIELDS.index("start_max")
        extent = (int(chunks[:, lo].min()), int(chunks[:, hi].max()))
    rollup = _rollup(arrays, summaries, len(names), segment)
    records_end = int(meta["records_end"])
    records = _records(arrays["records"], n, records_end, segment)
    pid, part_of = meta["pid"], meta.get("part_of")
    return SegmentIndex(
        segment, bool(meta["closed"]), tuple(str(x) for x in meta["replaces"]),
        pid if isinstance(pid, int) else None, end, rows, names, services, Chunks(table),
        rollup, records, records_end, resources,
        str(part_of) if part_of is not None else None,
        tuple(str(x) for x in meta.get("parts", ())), extent,
    )  # fmt: skip


def _table(
    a: dict[str, np.ndarray], n: int, end: int, rows: int, segment: str,
    lists: Callable[[], dict[str, np.ndarray]], n_names: int, *, later: bool = False,
) -> ChunkTable:  # fmt: skip
    """The chunk directory, checked now (``later``: when first used); its function lists
    checked when first decoded."""

    def arrays() -> Arrays:
        table = a["chunks"].reshape(n, _CHUNK_FIELDS)
        sizes = a["pages"].reshape(n, len(PAGE_KINDS))
        n_codes = a["n_codes"].astype(np.int64)
        if a["ordered"].size != n or n_codes.size != n:
            raise CorruptPageError(f"index of {segment}: per-chunk arrays of the wrong length")
        offset, length, count, first = (table[:, i] for i in range(4))
        # The chunks tile the file from 0 to ``end``, their rows number from 0 to ``rows``, and
        # their pages tile each chunk: a damaged index cannot point a read anywhere else.
        bounds = _starts(length)
        if (n and (not np.array_equal(offset, bounds[:-1]) or np.any(length <= 0))) or bounds[
            -1
        ] != end:
            raise CorruptPageError(f"index of {segment}: chunks do not tile the segment")
        row_bounds = _starts(count)
        if not np.array_equal(first, row_bounds[:-1]) or int(row_bounds[-1]) != rows:
            raise CorruptPageError(f"index of {segment}: chunk row counts do not add up")
        if np.any(sizes <= 0) or not np.array_equal(sizes.sum(axis=1), length):
            raise CorruptPageError(f"index of {segment}: pages do not tile their chunks")
        ordered = a["ordered"].astype(bool)
        return _frozen(table), _frozen(sizes), _frozen(ordered), _frozen(_starts(n_codes))

    def checked(got: Arrays) -> Lists:
        table, _, ordered, cuts = got
        try:
            found = lists()
        except codec.BAD_BYTES as exc:
            raise CorruptPageError(f"index of {segment}: its function lists do not decode: "
                                   f"{exc}") from None  # fmt: skip
        return _lists(found, np.diff(cuts), cuts, ordered, table[:, 2], n_names, segment)

    return ChunkTable(PAGE_KINDS, n, arrays if later else arrays(), checked)


def _lists(
    a: dict[str, np.ndarray], n_codes: np.ndarray, cuts: np.ndarray, ordered: np.ndarray,
    count: np.ndarray, n_names: int, segment: str,
) -> Lists:  # fmt: skip
    """The function lists, checked: codes with texts, ascending within each chunk, and row
    ranges ascending up to the chunk's rows (chunks ordered by function)."""
    n, total = n_codes.size, int(cuts[-1])
    codes, maxes, ends = a["codes"], a["max_duration"], a["code_ends"]
    if not (codes.size == maxes.size == ends.size == total):
        raise CorruptPageError(f"index of {segment}: function lists of the wrong length")
    if total and int(codes.max()) >= n_names:
        raise CorruptPageError(f"index of {segment}: a name code with no text")
    # Checked for every chunk at once (a first entry is compared with nothing before it).
    first_of = np.zeros(total, dtype=bool)
    first_of[cuts[:-1][n_codes > 0]] = True
    rising = np.ones(total, dtype=bool)
    rising[1:] = np.diff(codes.astype(np.int64)) > 0
    bad = ~(rising | first_of)
    if bad.any():
        i = int(np.searchsorted(cuts, int(np.flatnonzero(bad)[0]), side="right")) - 1
        raise CorruptPageError(f"index of {segment}: chunk {i}'s codes are not ascending")
    ends64 = ends.astype(np.int64)
    in_order = np.ones(total, dtype=bool)
    in_order[1:] = np.diff(ends64) > 0
    last = cuts[1:][n_codes > 0] - 1
    owner = np.repeat(np.arange(n), n_codes)
    wrong = np.bincount(owner[~(in_order | first_of)], minlength=n) > 0
    wrong[n_codes > 0] |= (ends64[cuts[:-1][n_codes > 0]] <= 0) | (
        ends64[last] != count[n_codes > 0]
    )
    wrong &= ordered
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise CorruptPageError(f"index of {segment}: chunk {i}'s row ranges are wrong")
    return _frozen(codes), _frozen(maxes.astype(np.int64, copy=False)), _frozen(ends64)


def _rollup(
    a: dict[str, np.ndarray], summaries: Callable[[], bytes | memoryview], n_names: int,
    segment: str,
) -> Rollup:  # fmt: skip
    """The segment's roll-up: its codes checked now, its summaries decoded on first use."""
    codes = a["rollup_codes"]
    errors, first, last = a["rollup_errors"], a["rollup_first"], a["rollup_last"]
    if not len(codes) == errors.size == first.size == last.size:
        raise CorruptPageError(f"index of {segment}: roll-up arrays of the wrong length")
    if codes.size and (int(codes.max()) >= n_names or np.any(np.diff(codes.astype(np.int64)) <= 0)):
        raise CorruptPageError(f"index of {segment}: its roll-up does not match its codes")

    def load() -> Block:
        blob = summaries()
        c = decode_columns(blob)
        if not np.array_equal(c.groups, codes):
            raise CorruptPageError(f"index of {segment}: its roll-up does not match its codes")
        if not bool((c.count > 0).all()):  # never written so; take the general road
            kept = [s for _, s in decode_summaries(blob)]
            return Block.of(ChunkSummary(codes, kept, errors, first, last))
        return Block.of_columns(codes, c, errors, first, last)

    return Rollup.stored(codes.tolist(), load)


def _records(a: np.ndarray, n: int, end: int, segment: str) -> Records:
    """The roll-up record locations, checked: runs of the indexed chunks, within ``end``."""
    if a.size % _RECORD_FIELDS:
        raise CorruptPageError(f"index of {segment}: roll-up records of the wrong length")
    t = a.reshape(-1, _RECORD_FIELDS)
    first, last, offset, size = (t[:, i] for i in range(_RECORD_FIELDS))
    if np.any((first < 0) | (last <= first) | (last >= n) | (offset < 0) | (size <= 0)) or (
        t.size and int((offset + size).max()) > end
    ):
        raise CorruptPageError(f"index of {segment}: a roll-up record out of place")
    return Records(t)


class Records(Mapping[tuple[int, int], tuple[int, int]]):
    """Roll-up record locations, ``(first, last) -> (offset, size)``, kept as the index's
    array until first looked up: a range plans the segments it cuts (16 of 59 at a billion
    rows), and the ~100 records of each of the others cost the open a dict of tuples (~10 ms
    in all). Immutable."""

    __slots__ = ("_rows", "_map")

    def __init__(self, rows: np.ndarray) -> None:
        self._rows = rows  # (k, _RECORD_FIELDS) int64, checked
        self._map: dict[tuple[int, int], tuple[int, int]] | None = None

    def _made(self) -> dict[tuple[int, int], tuple[int, int]]:
        got = self._map
        if got is None:
            got = self._map = {(f, la): (o, z) for f, la, o, z in self._rows.tolist()}
        return got

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int]:
        return self._made()[key]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._made())

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def made(self) -> bool:
        """Whether a lookup has made the map yet."""
        return self._map is not None


def _little(a: np.ndarray, dtype: type) -> bytes:
    return a.astype(f"<{np.dtype(dtype).str[1:]}").tobytes()


def _texts(items: list[Any]) -> tuple[str, ...]:
    if not set(map(type, items)) <= {str}:  # (a type test per text: 100 texts, 59 segments)
        raise CorruptPageError("an index text is not text")
    return tuple(items)


def _starts(sizes: np.ndarray) -> np.ndarray:
    """Where each of ``sizes`` starts, and their total (n + 1 values, int64)."""
    out = np.zeros(sizes.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def _flat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = a.view()
    a.setflags(write=False)
    return a
