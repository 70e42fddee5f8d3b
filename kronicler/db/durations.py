"""Sorted durations per function over groups of chunks: exact statistics from a few big reads.

Exact statistics of one function (``stats(name, exact=True)``) need every one of its durations.
In the chunks they are one run per chunk (rows are ordered by function): at 1B rows a function
with 1% of the calls has ~11,500 runs of ~870 rows, read as ~34,000 small pages (name, duration,
status) at ~0.3 ms of CPU each, ~10 s in all; and its columns (~240 MB) do not fit the pool, so a
second question pays the same. Fewer, bigger reads are needed, not faster small ones.

So the writer also appends a ``<id>.kdur`` side file: it keeps, per function, the durations of
the chunks sealed since its last record and, once they hold :data:`GROUP_ROWS` rows (and at
close), appends one *group* record: the chunk range it covers, then per function its count,
error count and its durations sorted (delta-coded by :func:`kronicler.db.codec.encode`: sorted
durations step by little). One function's durations over 512K rows are then one ``pread``;
its exact quantiles are ranks over the concatenated runs (``np.partition``, linear: no sort,
no merge).

Layout of a record: a head (magic, directory bytes, CRC-32 of the directory, bytes of the runs),
the directory (first and last chunk, rows covered, then one entry per function: code, count,
errors, run bytes, CRC-32 of the run), then the runs in directory order. Each run has its own
CRC, so reading one function checks only its own bytes.

Trade-offs, measured (``bench/bench_seal.py``, ``bench/bench_scale.py``'s rows): the writer holds
up to :data:`GROUP_ROWS` durations (8 bytes each: 4 MB; a writer of 3M rows must not grow by
40 MB, ``tests/db/test_durability.py``) and sorts them function by function once per group;
see the README's Performance section for its append CPU. Records of 512K rows take 1.35 B/row
on ``bench_db.py``'s rows (against 2.7 B/row for the duration column itself): fewer calls per
function in a record make wider sorted steps. So once the segment is closed, maintenance
merges its records into records of up to a whole segment (:mod:`kronicler.db.durations_merge`:
0.67 B/row for a 16.8M-row segment); the format is the same, and a reader takes records of any
size, reading a segment's directories and runs through one open file, so a file replaced by
its merged one meanwhile is never mixed with it. The file is best-effort, like the index: a
record that is torn, damaged, a copy, or names chunks the reader does not hold (a crash between chunk and catalog, a
damaged chunk) is not used, and the chunks no good record covers (the live tail, older segments
without the file, lost records) are read from the chunks as before, so every answer is the same
either way (the mean and deviations may differ in the last bits: summed in another order).
Reading stops at the first record that does not check. Segments written before the file
existed get it from :func:`kronicler.db.backfill.backfill`, a maintenance step.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from kronicler._record import record
from kronicler.db import codec
from kronicler.db.fileio import SideFile
from kronicler.errors import CorruptPageError

if TYPE_CHECKING:
    from kronicler.db.snapshot import SegmentView

SUFFIX: Final = ".kdur"
#: Rows of the chunks one record covers (at least; a record closes at the chunk that passes it).
GROUP_ROWS: Final = 1 << 19  # 4 MB of durations held; 4M rows would be 32 MB

#: Values per block of a run longer than this (:func:`encode_run`).
RUN_BLOCK_ROWS: Final = 1 << 20

_MAGIC = b"KDU1"
_HEAD = struct.Struct("<4sIIQ")  # magic, directory bytes, crc32 of the directory, bytes of runs
_SPAN = struct.Struct("<IIQ")  # first chunk, last chunk (inclusive), rows covered
_ENTRY = np.dtype(
    [("code", "<u4"), ("count", "<u8"), ("errors", "<u8"), ("length", "<u4"), ("crc", "<u4")]
)
assert _HEAD.size == 20 and _SPAN.size == 16 and _ENTRY.itemsize == 28
_CACHED = 256  # segments whose record directories are remembered (a few KB each)

log = logging.getLogger(__name__)


def path_of(directory: Path, segment_id: str) -> Path:
    return directory / f"{segment_id}{SUFFIX}"


@record
class Group:
    """One record's directory: which chunks it covers and where each function's run lies.

    Fields:
        first, last: the chunks covered (inclusive); rows: their rows in all.
        codes: the functions present (segment-local name codes, ascending), with per code its
            ``counts``, ``errors``, and its run's byte ``offsets`` in the file, ``lengths``, ``crcs``.
    """

    first: int
    last: int
    rows: int
    codes: np.ndarray
    counts: np.ndarray
    errors: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    crcs: np.ndarray


def encode_group(
    first: int, last: int, codes: np.ndarray, runs: Iterable[np.ndarray | Iterable[np.ndarray]],
    errors: np.ndarray,
) -> bytes:  # fmt: skip
    """One record covering chunks ``first..last``: per code ``codes[i]`` (ascending) its sorted
    durations (``runs``, made one at a time; a run may come as pieces, each sorted and each
    beginning at or above the last one's end) and ``errors[i]``."""
    parts, entries = [], np.zeros(len(codes), _ENTRY)
    for i, run in enumerate(runs):
        count, data = encode_run([run] if isinstance(run, np.ndarray) else run)
        parts.append(data)
        entries[i] = (int(codes[i]), count, int(errors[i]), len(data), zlib.crc32(data))
    rows = int(entries["count"].sum())
    directory = _SPAN.pack(first, last, rows) + entries.tobytes()
    body = b"".join(parts)
    return _HEAD.pack(_MAGIC, len(directory), zlib.crc32(directory), len(body)) + directory + body


def encode_run(pieces: Iterable[np.ndarray]) -> tuple[int, bytes]:
    """One function's sorted durations (in ``pieces`` that follow each other), delta-coded, and
    their count. A run longer than :data:`RUN_BLOCK_ROWS` (a merged record's, see
    :mod:`kronicler.db.durations_merge`) is cut into blocks of at most that many, so encoding it
    needs a block's temporaries, not the whole run's several copies, and never the run whole (a
    block costs ~10 bytes; the reader decodes either form, ``codec.decode_into``)."""
    ends: list[int] = []
    blocks: list[bytes] = []
    for piece in pieces:
        for lo in range(0, len(piece), RUN_BLOCK_ROWS):
            block = piece[lo : lo + RUN_BLOCK_ROWS]
            blocks.append(codec.encode(block, codec.CODEC_DELTA))
            ends.append((ends[-1] if ends else 0) + len(block))
    if not blocks:
        return 0, codec.encode(np.zeros(0, np.int64), codec.CODEC_DELTA)
    return ends[-1], blocks[0] if len(blocks) == 1 else codec.join_blocks(ends, blocks)


#: Directory bytes read with each record's head (one ``pread`` for both when the directory is
#: no longer: ~100 functions take 2.8 KB).
_DIRECTORY_GUESS = 4096


def _parse(records: list[tuple[bytes, int, int]]) -> tuple[list[Group], int]:
    """The directories of ``records`` (directory bytes, where its runs begin in the file, their
    bytes in all), parsed in one pass, up to the first whose entries do not add up to its head
    and span; and the number of records that do. The groups' arrays are slices of arrays shared
    by all of them (a billion rows make ~1,900 records; one at a time took ~40 numpy calls each).
    """
    if not records:
        return [], 0
    spans = [_SPAN.unpack_from(d, 0) for d, _, _ in records]
    sizes = [(len(d) - _SPAN.size) // _ENTRY.itemsize for d, _, _ in records]
    entries = np.frombuffer(b"".join(d[_SPAN.size :] for d, _, _ in records), _ENTRY)
    lengths = entries["length"].astype(np.int64)
    counts, errors = entries["count"].astype(np.int64), entries["errors"].astype(np.int64)
    bounds = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    before = np.concatenate(([0], np.cumsum(lengths)))  # run bytes before each entry, in all
    rows_before = np.concatenate(([0], np.cumsum(counts)))
    body = np.array([n for _, _, n in records], dtype=np.int64)
    rows = np.array([r for _, _, r in spans], dtype=np.int64)
    adds_up = (np.diff(before[bounds]) == body) & (np.diff(rows_before[bounds]) == rows)
    good = int(np.argmin(adds_up)) if not adds_up.all() else len(records)
    runs_at = np.array([at for _, at, _ in records], dtype=np.int64)
    offsets = before[:-1] + np.repeat(runs_at - before[bounds[:-1]], sizes)
    codes, crcs = entries["code"].copy(), entries["crc"].copy()
    out = []
    for (first, last, n), a, b in zip(spans[:good], bounds[:good].tolist(),
                                      bounds[1 : good + 1].tolist(), strict=True):  # fmt: skip
        out.append(Group(first, last, n, codes[a:b], counts[a:b], errors[a:b], offsets[a:b],
                         lengths[a:b], crcs[a:b]))  # fmt: skip
    return out, good


_groups_cache: OrderedDict[tuple[str, int, int, int], tuple[Group, ...]] = OrderedDict()


def read_groups(path: Path, fd: int | None = None) -> tuple[Group, ...]:
    """The good records' directories, up to the first bad one (none when the file is missing).

    One ``pread`` per record for its head and directory (two when the directory is longer than
    guessed); the runs are not read. Remembered per file (inode), size and modification time, so
    a closed segment's directories are read once. ``fd``: the file already open (then left open),
    so that the runs are read from the very file these directories describe (maintenance may
    replace it by a merged one meanwhile: :mod:`kronicler.db.durations_merge`).
    """
    own = fd is None
    if fd is None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return ()
    try:
        st = os.fstat(fd)
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        found = _groups_cache.get(key)
        if found is not None:
            _groups_cache.move_to_end(key)
            return found
        records: list[tuple[bytes, int, int]] = []
        heads: list[int] = []  # where each record begins
        at = 0
        while at + _HEAD.size <= st.st_size:
            got = os.pread(fd, _HEAD.size + _DIRECTORY_GUESS, at)
            magic, dir_len, crc, body_len = _HEAD.unpack_from(got, 0)
            end = at + _HEAD.size + dir_len + body_len
            directory = got[_HEAD.size : _HEAD.size + dir_len]
            if len(directory) < dir_len and end <= st.st_size:
                directory = os.pread(fd, dir_len, at + _HEAD.size)
            if (magic != _MAGIC or len(directory) != dir_len or zlib.crc32(directory) != crc
                    or dir_len < _SPAN.size or (dir_len - _SPAN.size) % _ENTRY.itemsize
                    or end > st.st_size):  # fmt: skip
                log.warning("%s: record at byte %d is damaged or torn; the chunks it would "
                            "cover are read from their pages", path, at)  # fmt: skip
                break
            records.append((directory, at + _HEAD.size + dir_len, body_len))
            heads.append(at)
            at = end
    finally:
        if own:
            os.close(fd)
    groups, good = _parse(records)
    if good < len(records):
        log.warning("%s: record at byte %d does not add up", path, heads[good])
    out = tuple(groups)
    _groups_cache[key] = out
    while len(_groups_cache) > _CACHED:
        _groups_cache.popitem(last=False)
    return out


def read_runs(
    path: Path, wanted: list[tuple[Group, int]], fd: int | None = None
) -> tuple[np.ndarray, list[bool]]:
    """The sorted durations of entry ``i`` of each ``(group, i)``, one ``pread`` each, decoded
    side by side into one array (each run sorted, the runs one after another), and which runs
    it holds: a run whose bytes do not check is left out (its chunks are then read from their
    pages).

    Why one array: a function with 1% of a billion calls has ~1,900 runs; decoded into their
    own arrays they cost an allocation each, a copy when joined, and a few numpy calls each in
    every pass of the exact statistics (~60 ms of the ~0.8 s cold answer, measured).
    """
    out = np.empty(sum(int(g.counts[i]) for g, i in wanted), dtype=np.int64)
    good: list[bool] = []
    pos = 0
    own = fd is None
    if fd is None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return out[:0], [False] * len(wanted)
    try:
        for group, i in wanted:
            length, count = int(group.lengths[i]), int(group.counts[i])
            data = os.pread(fd, length, int(group.offsets[i]))
            if len(data) != length or zlib.crc32(data) != int(group.crcs[i]):
                log.warning("%s: a run of chunks %d-%d is damaged", path, group.first, group.last)
                good.append(False)
                continue
            try:
                codec.decode_into(data, out[pos : pos + count])
            except CorruptPageError as exc:
                log.warning("%s: a run of chunks %d-%d: %s", path, group.first, group.last, exc)
                good.append(False)
                continue
            pos += count
            good.append(True)
    finally:
        if own:
            os.close(fd)
    return out[:pos], good


class DurationWriter:
    """Collects the durations of sealed chunks and appends one record per :data:`GROUP_ROWS`.

    Best-effort like :class:`~kronicler.db.attr_keys.KeyWriter`: a failed write is logged and
    cut back, and those chunks are read from their pages.
    """

    def __init__(self, path: Path, group_rows: int | None = None) -> None:
        self.path = path
        self._file = SideFile(path, "sorted durations")
        self._group_rows = GROUP_ROWS if group_rows is None else group_rows
        self._first = -1
        self._last = -1
        self._rows = 0
        # per chunk since the last record: its codes, rows per code, errors per code, durations
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(
        self, seq: int, codes: np.ndarray, ends: np.ndarray, errors: np.ndarray,
        durations: np.ndarray,
    ) -> None:  # fmt: skip
        """Chunk ``seq``, rows ordered by function: code ``codes[i]`` holds rows up to
        ``ends[i]``, ``errors[i]`` of them errors."""
        if self._file.abandoned:
            return
        if self._parts and seq != self._last + 1:  # a chunk skipped: start a new group
            self.flush()
        if not self._parts:
            self._first = seq
        counts = np.diff(np.asarray(ends, dtype=np.int64), prepend=0)
        self._parts.append((np.asarray(codes, np.uint32), counts, np.asarray(errors, np.int64),
                            np.array(durations, dtype=np.int64)))  # fmt: skip
        self._last = seq
        self._rows += len(durations)
        if self._rows >= self._group_rows:
            self.flush()

    def flush(self) -> None:
        """Append a record for the chunks collected so far (none: nothing).

        Function by function: its slices of the chunks joined and sorted, encoded, let go, so
        the flush holds one function's durations beyond what the group held already.
        """
        if not self._parts or self._file.abandoned:
            return
        parts, self._parts, self._rows = self._parts, [], 0
        codes = np.concatenate([p[0] for p in parts])
        counts = np.concatenate([p[1] for p in parts])
        errors = np.concatenate([p[2] for p in parts])
        part_of = np.repeat(np.arange(len(parts)), [len(p[0]) for p in parts]).tolist()
        his = np.concatenate([np.cumsum(p[1]) for p in parts])
        los = (his - counts).tolist()
        his = his.tolist()
        present, inverse = np.unique(codes, return_inverse=True)
        errs = np.bincount(inverse, weights=errors, minlength=len(present)).astype(np.int64)
        order = np.argsort(inverse, kind="stable").tolist()  # each code's slices, chunk by chunk
        bounds = np.cumsum(np.bincount(inverse, minlength=len(present))).tolist()

        def runs() -> Iterator[np.ndarray]:
            lo = 0
            for hi in bounds:
                run = np.concatenate([parts[part_of[e]][3][los[e] : his[e]]
                                      for e in order[lo:hi]])  # fmt: skip
                run.sort()
                yield run
                lo = hi

        data = encode_group(self._first, self._last, present, runs(), errs)
        self._file.append(data)  # if it fails, these chunks are read from their pages

    def close(self) -> None:
        """Append the last record (maintenance later merges the closed segment's records into
        coarser ones: :func:`kronicler.db.durations_merge.coarsen`)."""
        self.flush()
        self._file.close()

    def abandon(self) -> None:
        self._file.abandon()
        self._parts = []


@record
class StoredRuns:
    """What a segment's records give of one function (see :func:`stored_runs`).

    Fields:
        runs: its durations in the usable records (one array, each record's run sorted, the
            runs one after another; none when they hold none); errors: their error calls.
        covered: the chunks those records cover (the function's rows there are all in ``runs``).
    """

    runs: list[np.ndarray]
    errors: int
    covered: frozenset[int]


def stored_runs(seg: SegmentView, code: int) -> StoredRuns:
    """The sorted durations of function ``code`` that ``seg``'s records hold for its chunks.

    A record is used only when the view holds every chunk it covers, undamaged (no ``keep``), with
    the rows it counted, and its run of this function checks; any other chunk is left to the
    caller (the live tail, chunks sealed after the last record, lost or damaged records).
    """
    path = path_of(seg.reader.data_path.parent, seg.id)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return StoredRuns([], 0, frozenset())
    try:  # directories and runs from one file, even if maintenance replaces it meanwhile
        return _stored_runs(seg, code, path, fd)
    finally:
        os.close(fd)


def _stored_runs(seg: SegmentView, code: int, path: Path, fd: int) -> StoredRuns:
    groups = read_groups(path, fd)
    if not groups:
        return StoredRuns([], 0, frozenset())
    chunks = seg.chunks  # columns: no ChunkInfo made
    seqs, good = chunks.column("seq"), chunks.column("clean")
    rows = np.concatenate(([0], np.cumsum(chunks.column("rows"))))
    wanted: list[tuple[Group, int]] = []
    empty: list[Group] = []  # usable records in which the function has no rows
    after = -1  # records cover ascending chunks: one that goes back (a copy) is not used
    for g in groups:
        i = int(np.searchsorted(seqs, g.first))
        j = i + g.last - g.first + 1  # seqs are distinct and ascending: all there iff seqs[j-1]
        if (g.first <= after or g.last < g.first or j > len(seqs) or seqs[i] != g.first
                or seqs[j - 1] != g.last or not good[i:j].all()
                or int(rows[j] - rows[i]) != g.rows):  # fmt: skip
            continue
        after = g.last
        k = int(np.searchsorted(g.codes, code))
        if k < len(g.codes) and int(g.codes[k]) == code:
            wanted.append((g, k))
        else:
            empty.append(g)
    joined, read = read_runs(path, wanted, fd)
    errors, covered = 0, set[int]()
    for (g, k), ok in zip(wanted, read, strict=True):
        if ok:
            errors += int(g.errors[k])
            covered.update(range(g.first, g.last + 1))
    for g in empty:
        covered.update(range(g.first, g.last + 1))
    return StoredRuns([joined] if joined.size else [], errors, frozenset(covered))
