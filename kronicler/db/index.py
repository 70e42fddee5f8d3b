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

Format: a fixed header (magic, format version, CRC-32 and length of the body), then the body,
zstd-compressed: a JSON head (segment id, flags, texts, section lengths) and little-endian numpy
arrays, struct of arrays, so decoding is vectorised and costs O(chunks x functions). The file is
replaced atomically (:func:`kronicler.db.metadata.atomic_write`); a missing, truncated or damaged
index, or one of another format version, is no index: the reader walks the segment instead.
Measured at 10M rows (153 chunks, 100 functions): 142 KB on disk, 0.014 B/row; the roll-up
record locations add 32 bytes per record (one per ~7 chunks).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from struct import Struct
from typing import Any, Final

import numpy as np

from kronicler.db import codec, zstd
from kronicler.db.metadata import atomic_write
from kronicler.db.schema import COLUMNS
from kronicler.db.snapshot import ChunkInfo, Rollup
from kronicler.db.summary_codec import decode_summaries, encode_summaries
from kronicler.errors import CorruptPageError, SchemaVersionError

SUFFIX: Final = ".kidx"
MAGIC: Final = b"KIX1"
VERSION: Final = 2  # 2: where the roll-up records are
#: magic, version, 2 pad, crc32 of the compressed body, compressed body length
HEADER = Struct("<4sH2xIQ")
assert HEADER.size == 20
#: page kinds of a chunk in file order: its columns, then its dictionary and summary pages
PAGE_KINDS: Final = (*COLUMNS, "dictionary", "summary")
_CHUNK_FIELDS = 6  # offset, length, rows, first_row, start_min, start_max
_RECORD_FIELDS = 4  # first chunk, last chunk, offset, size
# Name of each array section and its dtype, in body order.
_SECTIONS: Final = (
    ("chunks", np.int64),  # (n, _CHUNK_FIELDS)
    ("pages", np.int64),  # (n, len(PAGE_KINDS)) page sizes, header included
    ("ordered", np.uint8),  # per chunk: 1 when its rows are ordered by function
    ("n_codes", np.uint32),  # per chunk: functions present
    ("codes", np.uint32),  # flat over chunks: name codes, ascending within a chunk
    ("max_duration", np.int64),  # flat: the largest duration per (chunk, function)
    ("code_ends", np.uint32),  # flat: end row of each function's rows (ordered chunks)
    ("rollup_codes", np.uint32),
    ("rollup_errors", np.int64),
    ("rollup_first", np.int64),
    ("rollup_last", np.int64),
    ("records", np.int64),  # (k, _RECORD_FIELDS): the .roll file's records
)


def path_of(directory: Path, segment: str) -> Path:
    return directory / f"{segment}{SUFFIX}"


@dataclass(frozen=True, slots=True)
class SegmentIndex:
    """What a segment's index records.

    Fields:
        segment: the segment id; closed: written by ``close`` (nothing follows ``end``);
        replaces, pid: as in the segment's ``.meta`` (see compaction.py).
        end: bytes of the segment file its chunks cover; rows: rows in them.
        names, services, resources: texts of the name, service and resource codes those chunks
            define (code = position); attribute texts stay in the dictionary pages (read lazily).
        chunks: the chunk directory (``codes``, ``max_duration`` and ``code_ends`` filled in).
        rollup: per-function statistics merged over every chunk.
        records: ``(first, last) -> (offset, size)`` of the roll-up records in the ``.roll``
            file, which they cover up to ``records_end`` bytes (see ``rollup.RollupIndex``).
    """

    segment: str
    closed: bool
    replaces: tuple[str, ...]
    pid: int | None
    end: int
    rows: int
    names: tuple[str, ...]
    services: tuple[str, ...]
    chunks: tuple[ChunkInfo, ...]
    rollup: Rollup
    records: Mapping[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    records_end: int = 0
    resources: tuple[str, ...] = ()


def encode(idx: SegmentIndex) -> bytes:
    """The index file's bytes."""
    n = len(idx.chunks)
    table = np.array(
        [[c.offset, c.length, c.rows, c.first_row, c.start_min, c.start_max] for c in idx.chunks],
        dtype=np.int64,
    ).reshape(n, _CHUNK_FIELDS)
    pages = np.array(
        [[c.pages[k][1] for k in PAGE_KINDS] for c in idx.chunks], dtype=np.int64
    ).reshape(n, len(PAGE_KINDS))
    r = idx.rollup
    rcodes = sorted(r.summaries)
    arrays: dict[str, np.ndarray] = {
        "chunks": table,
        "pages": pages,
        "ordered": np.array([c.code_ends is not None for c in idx.chunks], dtype=np.uint8),
        "n_codes": np.array([c.codes.size for c in idx.chunks], dtype=np.uint32),
        "codes": _flat([c.codes for c in idx.chunks], np.uint32),
        "max_duration": _flat([c.max_duration for c in idx.chunks], np.int64),
        "code_ends": _flat(
            [
                c.code_ends if c.code_ends is not None else np.zeros(c.codes.size)
                for c in idx.chunks
            ],
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
    blobs = [arrays[name].astype(f"<{np.dtype(dt).str[1:]}").tobytes() for name, dt in _SECTIONS]
    summaries = encode_summaries([(c, r.summaries[c]) for c in rcodes])
    head = json.dumps({
        "segment": idx.segment, "closed": idx.closed, "replaces": list(idx.replaces),
        "pid": idx.pid, "end": idx.end, "rows": idx.rows, "chunks": n,
        "names": list(idx.names), "services": list(idx.services), "resources": list(idx.resources),
        "sections": [len(b) for b in blobs], "summaries": len(summaries),
        "records_end": idx.records_end,
    }, separators=(",", ":")).encode()  # fmt: skip
    body = zstd.compressor(3).compress(
        len(head).to_bytes(4, "little") + head + b"".join(blobs) + summaries
    )
    return HEADER.pack(MAGIC, VERSION, zlib.crc32(body), len(body)) + body


def save(directory: Path, idx: SegmentIndex) -> None:
    """Write the index atomically: readers see the previous one or this one, never part."""
    atomic_write(path_of(directory, idx.segment), encode(idx))


def load(directory: Path, segment: str) -> SegmentIndex | None:
    """The segment's index; None when it has none. A damaged one raises CorruptPageError."""
    try:
        raw = path_of(directory, segment).read_bytes()
    except FileNotFoundError:
        return None
    return decode(raw, segment)


def decode(raw: bytes, segment: str) -> SegmentIndex:
    """Inverse of :func:`encode`; anything inconsistent raises CorruptPageError."""
    if len(raw) < HEADER.size:
        raise CorruptPageError(f"index of {segment}: {len(raw)} bytes, shorter than its header")
    magic, version, crc, length = HEADER.unpack_from(raw, 0)
    if magic != MAGIC:
        raise CorruptPageError(f"index of {segment}: not an index file")
    if version != VERSION:
        raise CorruptPageError(f"index of {segment}: format version {version}, not {VERSION}")
    body = memoryview(raw)[HEADER.size :]
    if len(body) != length or zlib.crc32(body) != crc:
        raise CorruptPageError(f"index of {segment}: checksum mismatch (truncated or damaged)")
    try:
        return _decode(zstd.decompressor().decompress(bytes(body)), segment)
    except (*codec.BAD_BYTES, AttributeError, RecursionError, SchemaVersionError) as exc:
        raise CorruptPageError(f"index of {segment} does not decode: {exc}") from None


def _decode(data: bytes, segment: str) -> SegmentIndex:
    size = int.from_bytes(data[:4], "little")
    head: dict[str, Any] = json.loads(data[4 : 4 + size])
    if head["segment"] != segment:
        raise CorruptPageError(f"index of {segment} names segment {head['segment']!r}")
    n = int(head["chunks"])
    pos = 4 + size
    arrays: dict[str, np.ndarray] = {}
    for (name, dt), length in zip(_SECTIONS, head["sections"], strict=True):
        arrays[name] = np.frombuffer(data, dtype=np.dtype(dt).newbyteorder("<"),
                                     count=int(length) // np.dtype(dt).itemsize, offset=pos)  # fmt: skip
        pos += int(length)
    summaries = decode_summaries(data[pos : pos + int(head["summaries"])])
    names = tuple(str(t) for t in head["names"])
    services = tuple(str(t) for t in head["services"])
    resources = tuple(str(t) for t in head.get("resources", ()))
    chunks = _chunks(arrays, n, len(names), int(head["end"]), int(head["rows"]), segment)
    rollup = _rollup(arrays, summaries, len(names), segment)
    records_end = int(head["records_end"])
    records = _records(arrays["records"], n, records_end, segment)
    pid = head["pid"]
    return SegmentIndex(
        segment, bool(head["closed"]), tuple(str(x) for x in head["replaces"]),
        pid if isinstance(pid, int) else None, int(head["end"]), int(head["rows"]),
        names, services, chunks, rollup, records, records_end, resources,
    )  # fmt: skip


def _chunks(
    a: dict[str, np.ndarray], n: int, n_names: int, end: int, rows: int, segment: str
) -> tuple[ChunkInfo, ...]:
    table = a["chunks"].reshape(n, _CHUNK_FIELDS)
    sizes = a["pages"].reshape(n, len(PAGE_KINDS))
    n_codes = a["n_codes"].astype(np.int64)
    if a["ordered"].size != n or n_codes.size != n:
        raise CorruptPageError(f"index of {segment}: per-chunk arrays of the wrong length")
    offset, length, count, first = (table[:, i] for i in range(4))
    # The chunks tile the file from 0 to ``end``, their rows number from 0 to ``rows``, and
    # their pages tile each chunk: a damaged index cannot point a read anywhere else.
    bounds = np.r_[0, np.cumsum(length)]
    if (n and (not np.array_equal(offset, bounds[:-1]) or np.any(length <= 0))) or bounds[
        -1
    ] != end:
        raise CorruptPageError(f"index of {segment}: chunks do not tile the segment")
    if not np.array_equal(first, np.r_[0, np.cumsum(count)][:-1]) or int(count.sum()) != rows:
        raise CorruptPageError(f"index of {segment}: chunk row counts do not add up")
    if np.any(sizes <= 0) or not np.array_equal(sizes.sum(axis=1), length):
        raise CorruptPageError(f"index of {segment}: pages do not tile their chunks")
    total = int(n_codes.sum())
    codes, maxes, ends = a["codes"], a["max_duration"], a["code_ends"]
    if not (codes.size == maxes.size == ends.size == total):
        raise CorruptPageError(f"index of {segment}: function lists of the wrong length")
    if total and int(codes.max()) >= n_names:
        raise CorruptPageError(f"index of {segment}: a name code with no text")
    page_at = offset[:, None] + np.concatenate(
        (np.zeros((n, 1), np.int64), np.cumsum(sizes, axis=1)[:, :-1]), axis=1
    )
    cuts = np.concatenate(([0], np.cumsum(n_codes)))
    # Checked for every chunk at once: codes ascend, and row ranges ascend up to the chunk's
    # rows, within each chunk (a first entry is compared with nothing before it).
    first_of = np.zeros(total, dtype=bool)
    first_of[cuts[:-1][n_codes > 0]] = True
    rising = np.ones(total, dtype=bool)
    rising[1:] = np.diff(codes.astype(np.int64)) > 0
    bad = ~(rising | first_of)
    if bad.any():
        i = int(np.searchsorted(cuts, int(np.flatnonzero(bad)[0]), side="right")) - 1
        raise CorruptPageError(f"index of {segment}: chunk {i}'s codes are not ascending")
    ordered = a["ordered"].astype(bool)
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
    # one read-only copy of each flat array (the decompressed body is not kept); chunks take
    # views of it
    codes_f, maxes_f, ends_f = _frozen(codes), _frozen(maxes.astype(np.int64)), _frozen(ends64)
    rows_of = table.tolist()
    at_of, sizes_of, cuts_of = page_at.tolist(), sizes.tolist(), cuts.tolist()
    ordered_of = ordered.tolist()
    out = []
    for i in range(n):
        lo, hi = cuts_of[i], cuts_of[i + 1]
        ce = ends_f[lo:hi] if ordered_of[i] else None
        pages = dict(zip(PAGE_KINDS, zip(at_of[i], sizes_of[i], strict=True), strict=True))
        r = rows_of[i]
        out.append(ChunkInfo(
            i, r[0], r[1], r[2], r[3], r[4], r[5], pages, codes_f[lo:hi], maxes_f[lo:hi],
            code_ends=ce,
        ))  # fmt: skip
    return tuple(out)


def _rollup(
    a: dict[str, np.ndarray], summaries: list[tuple[int, Any]], n_names: int, segment: str
) -> Rollup:
    codes = a["rollup_codes"].tolist()
    if [c for c, _ in summaries] != codes or any(c >= n_names for c in codes):
        raise CorruptPageError(f"index of {segment}: its roll-up does not match its codes")
    if not (len(codes) == a["rollup_errors"].size == a["rollup_first"].size
            == a["rollup_last"].size):  # fmt: skip
        raise CorruptPageError(f"index of {segment}: roll-up arrays of the wrong length")
    return Rollup(
        {c: s for c, s in summaries},
        dict(zip(codes, a["rollup_errors"].tolist(), strict=True)),
        dict(zip(codes, a["rollup_first"].tolist(), strict=True)),
        dict(zip(codes, a["rollup_last"].tolist(), strict=True)),
    )


def _records(
    a: np.ndarray, n: int, end: int, segment: str
) -> dict[tuple[int, int], tuple[int, int]]:
    """The roll-up record locations, checked: runs of the indexed chunks, within ``end``."""
    if a.size % _RECORD_FIELDS:
        raise CorruptPageError(f"index of {segment}: roll-up records of the wrong length")
    t = a.reshape(-1, _RECORD_FIELDS)
    first, last, offset, size = (t[:, i] for i in range(_RECORD_FIELDS))
    if np.any((first < 0) | (last <= first) | (last >= n) | (offset < 0) | (size <= 0)) or (
        t.size and int((offset + size).max()) > end
    ):
        raise CorruptPageError(f"index of {segment}: a roll-up record out of place")
    return {(int(f), int(la)): (int(o), int(z)) for f, la, o, z in t.tolist()}


def _flat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a)  # a copy: the decompressed body is not kept
    a.setflags(write=False)
    return a
