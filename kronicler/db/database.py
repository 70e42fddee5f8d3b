"""The database facade: one object to append spans and to ask for statistics.

Writes: ``append`` validates a batch in the caller's thread (so bad input fails loudly and stores
nothing), then hands it to the write queue; one background thread per process owns this process's
segment. Reads: every query first refreshes the segment readers (a few ``stat`` calls when nothing
changed), then works from zone maps, roll-ups and per-chunk summaries, decoding column pages only
where a time range cuts a chunk or raw rows are asked for. Decoded pages and summaries are cached in
a bounded bufferpool.

Many processes may open the same directory: each writes its own segment and reads everybody's.
After ``fork`` the child gets a fresh writer (its own segment) on first append; an ``atexit`` hook,
and a multiprocessing finaliser in forked children, flush what is queued on a normal exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from kronicler.db import compaction
from kronicler.db.bufferpool import BufferPool
from kronicler.db.chunk import ChunkSummary, summarize
from kronicler.db.metadata import ensure_catalog
from kronicler.db.queue import DEFAULT_CAPACITY_ROWS, DEFAULT_FLUSH_INTERVAL, WriteQueue
from kronicler.db.reader import ChunkInfo, SegmentReader
from kronicler.db.retention import retain
from kronicler.db.scan import FunctionSummary, Scan, TimeRange, merge_scans
from kronicler.db.schema import COLUMNS, SpanBatch, parse_attributes
from kronicler.db.stats import Call, Stats
from kronicler.db.summary import Summary
from kronicler.db.writer import SegmentWriter
from kronicler.errors import ClosedError, DatabaseError

log = logging.getLogger(__name__)

DEFAULT_PATH = ".kronicler"
DEFAULT_BUFFERPOOL_BYTES = 64 << 20
_MAX_TAIL_CHUNKS = 4  # unwritten rows held while writes fail, in chunks
DEFAULT_SEGMENT_ROWS = 1 << 24  # ~16.8M rows, ~90-280 MB; then the writer starts a new segment
DEFAULT_SEGMENT_SECONDS = 3600.0  # ...or after an hour, so retention by age can reach it
_MAX_ATTRIBUTE_SETS = 200_000  # ...or when this many distinct attribute sets are held in memory
SEGMENTS = "segments"

_open_databases: weakref.WeakSet[Database] = weakref.WeakSet()


class Database:
    """A Kronicler span database in a directory. Thread-safe."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        bufferpool_bytes: int = DEFAULT_BUFFERPOOL_BYTES,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        queue_rows: int = DEFAULT_CAPACITY_ROWS,
        chunk_rows: int | None = None,
        segment_rows: int = DEFAULT_SEGMENT_ROWS,
        segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
    ) -> None:
        for what, value in (("bufferpool_bytes", bufferpool_bytes), ("queue_rows", queue_rows),
                            ("segment_rows", segment_rows), ("chunk_rows", chunk_rows)):  # fmt: skip
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value <= 0):  # fmt: skip
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        if not isinstance(segment_seconds, (int, float)) or not segment_seconds > 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds!r}")
        if not isinstance(flush_interval, (int, float)) or not flush_interval > 0:
            raise ValueError(
                f"flush_interval must be a positive number of seconds, got {flush_interval!r}"
            )
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / SEGMENTS).mkdir(exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create database directory {self.path}: {exc}") from exc
        ensure_catalog(self.path)
        self._segdir = self.path / SEGMENTS
        self._flush_interval = flush_interval
        self._queue_rows = queue_rows
        self._chunk_rows = chunk_rows
        self._segment_rows = segment_rows
        self._segment_seconds = float(segment_seconds)
        # _read_lock protects the readers and the bufferpool bookkeeping of refreshes.
        self._read_lock = threading.RLock()
        self._readers: dict[str, SegmentReader] = {}
        self._pool = BufferPool(bufferpool_bytes, load=self._load_page)
        self._writer: SegmentWriter | None = None
        self._failures = 0  # failed writes and commits (see flush)
        self._failures_seen = 0
        self._lost_rows = 0  # rows given up after writes kept failing
        self._logged: set[str] = set()
        self._queue = self._new_queue()
        self._closed = False
        _open_databases.add(self)

    @classmethod
    def open(cls, path: str | os.PathLike[str] = DEFAULT_PATH, **options: Any) -> Database:
        """Open (creating if missing) the database at ``path``."""
        return cls(path, **options)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"

    # -- writing -------------------------------------------------------------------------------
    def _new_queue(self) -> WriteQueue[SpanBatch]:
        return WriteQueue(
            self._consume, self._commit, capacity_rows=self._queue_rows,
            flush_interval=self._flush_interval,
        )  # fmt: skip

    def append(
        self,
        names: Sequence[str] | np.ndarray,
        start_unix_nano: Sequence[int] | np.ndarray,
        duration_ns: Sequence[int] | np.ndarray,
        **columns: Any,
    ) -> int:
        """Validate one batch (ValueError, nothing stored) and queue it; returns rows accepted."""
        unknown = set(columns) - {
            "status", "kind", "service", "trace_id", "span_id", "parent_span_id", "attributes",
        }  # fmt: skip
        if unknown:
            raise ValueError(f"unknown column(s) {sorted(unknown)}")
        batch = SpanBatch.build(names, start_unix_nano, duration_ns, **columns)
        return self.append_batch(batch)

    def append_batch(self, batch: SpanBatch, *, count_drop: bool = True) -> int:
        """Queue an already validated batch. Never blocks; a full queue drops and counts it
        (``count_drop=False``: refused but not counted, for a caller that will retry)."""
        if self._closed:
            raise ClosedError(f"{self!r} is closed")
        if len(batch) == 0:
            return 0
        return len(batch) if self._queue.put(batch, count_drop=count_drop) else 0

    def _consume(self, batches: list[SpanBatch]) -> None:
        if self._writer is None:
            self._writer = SegmentWriter(self._segdir, **self._writer_options())
        for batch in batches:
            self._writer.add(batch)
        try:
            self._writer.seal_full()
        except OSError as exc:  # disk full, I/O error: the rows stay in the tail for a retry
            self._failed("write", exc)
            self._shed_if_stuck()
            return
        writer = self._writer
        if (
            writer.rows_sealed >= self._segment_rows
            or len(writer.dicts["attributes"]) >= _MAX_ATTRIBUTE_SETS
            or time.monotonic() - writer.opened >= self._segment_seconds
        ):
            # Rotate: the old segment seals its tail and closes, so retention can delete it
            # whole, and the writer's dictionaries (held in memory) start afresh.
            writer.close()
            self._writer = None

    def _writer_options(self) -> dict[str, Any]:
        return {} if self._chunk_rows is None else {"chunk_rows": self._chunk_rows}

    def _commit(self) -> None:
        if self._writer is not None:
            try:
                self._writer.commit()
            except OSError as exc:
                self._failed("commit", exc)
                self._shed_if_stuck()

    def _failed(self, what: str, exc: OSError) -> None:
        self._failures += 1
        if what not in self._logged:
            self._logged.add(what)
            log.error("kronicler could not %s to %s: %s", what, self._segdir, exc)

    def _shed_if_stuck(self) -> None:
        """While writes fail, give up the segment once its unwritten tail grows too large.

        What the segment already holds on disk stays readable; the rows only in memory are
        counted as dropped; the next batch starts a new segment (which may find space again).
        """
        writer = self._writer
        if writer is None or writer.tail_rows <= _MAX_TAIL_CHUNKS * writer.chunk_rows:
            return
        self._lost_rows += writer.tail_rows - writer.tail_in_wal
        writer.abandon()
        self._writer = None

    def flush(self, timeout: float | None = None) -> bool:
        """Make everything appended so far durable and visible.

        False if ``timeout`` passed, or if a write failed (disk full, I/O error) since the
        previous flush: then some rows may be missing or not yet durable.
        """
        ok = self._queue.flush(timeout)
        failures = self._failures + self._queue.lost
        clean = failures == self._failures_seen
        self._failures_seen = failures
        return ok and clean

    def close(self, timeout: float | None = None) -> None:
        """Flush, seal this process's segment and release files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.close(timeout)
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as exc:
                log.error("kronicler could not close segment %s: %s", self._writer.id, exc)
        with self._read_lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()
        _open_databases.discard(self)

    @property
    def dropped(self) -> int:
        """Rows dropped because the write queue was full (or lost to a write error)."""
        return self._queue.dropped + self._queue.lost + self._lost_rows

    def _after_fork_in_child(self) -> None:
        # The parent's queue, thread and segment belong to the parent; start afresh, lazily.
        if self._writer is not None:
            self._writer.abandon()
            self._writer = None
        self._queue = self._new_queue()
        self._read_lock = threading.RLock()
        self._readers = {}
        self._pool = BufferPool(self._pool.capacity_bytes, load=self._load_page)

    # -- reading: segment bookkeeping ------------------------------------------------------------
    def _segments(self) -> list[SegmentReader]:
        """Refresh and return every segment's reader (call with _read_lock held)."""
        if self._closed:
            raise ClosedError(f"{self!r} is closed")
        try:
            files = os.listdir(self._segdir)
        except FileNotFoundError:
            files = []
        ids = {f[:-5] for f in files if f.endswith(".kseg")}
        for gone in set(self._readers) - ids:
            self._readers.pop(gone).close()
            self._pool.drop(partial(_in_segment, gone))
        for seg_id in sorted(ids - set(self._readers)):
            self._readers[seg_id] = SegmentReader(self._segdir, seg_id)
        for reader in self._readers.values():
            try:
                reader.refresh()
            except OSError as exc:  # deleted under us by retention in another process
                log.debug("segment %s unreadable: %s", reader.id, exc)
        return compaction.visible(self._readers[i] for i in sorted(self._readers))

    def _load_page(self, key: tuple[str, int, str]) -> Any:
        seg_id, seq, column = key
        reader = self._readers[seg_id]
        chunk = reader.chunks[seq]
        if column == "summary":
            return _Cached(reader.load_summary(chunk))
        span_ids = None
        if column == "parent_span_id":
            with self._pool.read_page((seg_id, seq, "span_id")) as guard:
                span_ids = guard.data
        return reader.decode_page(chunk, column, span_ids)

    def _chunk_summary(self, reader: SegmentReader, chunk: ChunkInfo) -> ChunkSummary:
        with self._pool.read_page((reader.id, chunk.seq, "summary")) as guard:
            cached: _Cached = guard.data
            return cached.value

    def _chunk_columns(
        self, reader: SegmentReader, chunk: ChunkInfo, columns: Iterable[str]
    ) -> dict[str, np.ndarray]:
        out = {}
        for column in columns:
            with self._pool.read_page((reader.id, chunk.seq, column)) as guard:
                out[column] = guard.data
        return out

    # -- reading: queries ------------------------------------------------------------------------
    def functions(self) -> list[str]:
        """Names of every function with at least one stored call, sorted."""
        with self._read_lock:
            names: set[str] = set()
            for seg in self._segments():
                values = seg.dicts["name"].values
                names.update(values[c] for c in seg.rollup.summaries)
                names.update(values[c] for c in np.unique(seg.tail["name"]).tolist())
            return sorted(names)

    def services(self) -> list[str]:
        with self._read_lock:
            out: set[str] = set()
            for seg in self._segments():
                out.update(v for v in seg.dicts["service"].values)
            return sorted(out)

    def time_range(self) -> tuple[int, int] | None:
        """(earliest, latest) start time over every stored call, or None when empty."""
        with self._read_lock:
            lo, hi = None, None
            for seg in self._segments():
                starts = [c.start_min for c in seg.chunks]
                ends = [c.start_max for c in seg.chunks]
                if len(seg.tail["start"]):
                    starts.append(int(seg.tail["start"].min()))
                    ends.append(int(seg.tail["start"].max()))
                if starts:
                    lo = min(starts) if lo is None else min(lo, *starts)
                    hi = max(ends) if hi is None else max(hi, *ends)
            return None if lo is None or hi is None else (lo, hi)

    def summaries(
        self,
        names: Sequence[str] | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
    ) -> dict[str, FunctionSummary]:
        """Merged summary per function over ``since <= start < until`` (exact at the edges)."""
        window = TimeRange.of(since, until)
        wanted = None if names is None else set(_check_names(names))
        parts: dict[str, list[tuple[Summary, int, int, int]]] = {}

        def take(seg: SegmentReader, cs: ChunkSummary) -> None:
            values = seg.dicts["name"].values
            for i, code in enumerate(cs.codes.tolist()):
                name = values[code]
                if wanted is None or name in wanted:
                    parts.setdefault(name, []).append((
                        cs.summaries[i], int(cs.errors[i]),
                        int(cs.first_start[i]), int(cs.last_start[i]),
                    ))  # fmt: skip

        with self._read_lock:
            for seg in self._segments():
                codes = _wanted_codes(seg, wanted)
                if codes is not None and codes.size == 0:
                    continue
                if window.everything:
                    r = seg.rollup
                    for code, summary in r.summaries.items():
                        name = seg.dicts["name"].values[code]
                        if wanted is None or name in wanted:
                            parts.setdefault(name, []).append((
                                summary, r.errors[code], r.first_start[code], r.last_start[code],
                            ))  # fmt: skip
                else:
                    for chunk in seg.chunks:
                        cover = window.covers(chunk.start_min, chunk.start_max)
                        if cover == 0 or not _has_codes(chunk, codes):
                            continue
                        if cover == 2:
                            take(seg, self._chunk_summary(seg, chunk))
                        else:
                            cols = self._chunk_columns(seg, chunk, ("name", "start", "duration",
                                                                    "status"))  # fmt: skip
                            take(seg, summarize(_select(cols, window.mask(cols["start"]))))
                tail = seg.tail
                if len(tail["start"]):
                    if window.everything:
                        take(seg, seg.tail_summary())
                    else:
                        take(seg, summarize(_select(tail, window.mask(tail["start"]))))
        out = {}
        for name, items in parts.items():
            out[name] = FunctionSummary(
                Summary.merge_all(s for s, _, _, _ in items), sum(e for _, e, _, _ in items),
                min(f for _, _, f, _ in items), max(la for _, _, _, la in items),
            )  # fmt: skip
        return out

    def stats(
        self,
        name: str | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
        exact: bool = False,
    ) -> Stats | dict[str, Stats]:
        """Statistics of one function (a ``Stats``) or of every function (name -> ``Stats``)."""
        if name is not None and not isinstance(name, str):
            raise ValueError(f"name must be text, got {name!r}")
        names = None if name is None else [name]
        if exact:
            scan = self.scan(("name", "duration", "status"), names=names, since=since, until=until)
            result = scan.exact_stats()
        else:
            result = {
                n: Stats.from_summary(fs.summary, fs.errors)
                for n, fs in self.summaries(names, since=since, until=until).items()
            }
        if name is not None:
            return result.get(name, Stats.empty())
        return dict(sorted(result.items()))

    def scan(
        self,
        columns: Sequence[str],
        *,
        names: Sequence[str] | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> Scan:
        """Decoded rows (``since <= start < until``, name in ``names``) of the given columns."""
        if isinstance(columns, str):
            columns = [columns]
        bad = [c for c in columns if c not in COLUMNS]
        if bad:
            raise ValueError(f"unknown column(s) {bad}; columns are {list(COLUMNS)}")
        window = TimeRange.of(since, until)
        wanted = None if names is None else set(_check_names(names))
        need = list(dict.fromkeys([*columns, "name", "start"]))
        pieces = []
        with self._read_lock:
            for seg in self._segments():
                codes = _wanted_codes(seg, wanted)
                if codes is not None and codes.size == 0:
                    continue
                for chunk in seg.chunks:
                    cover = window.covers(chunk.start_min, chunk.start_max)
                    if cover == 0 or not _has_codes(chunk, codes):
                        continue
                    only = None if codes is None else codes[np.isin(codes, chunk.codes)]
                    cols = self._chunk_columns(seg, chunk, need)
                    whole = cover == 2 and (only is None or chunk.codes.size == only.size)
                    pieces.append((seg, cols if whole else _filter(cols, window, only)))
                if len(seg.tail["start"]):
                    pieces.append((seg, _filter(seg.tail, window, codes)))
            return merge_scans(pieces, list(columns))

    def slowest(
        self,
        name: str | None = None,
        *,
        k: int = 10,
        since: int | None = None,
        until: int | None = None,
    ) -> list[Call]:
        """The ``k`` slowest calls (of ``name``, or of any function), slowest first."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        window = TimeRange.of(since, until)
        wanted = None if name is None else set(_check_names([name]))
        with self._read_lock:
            best: list[tuple[int, SegmentReader, ChunkInfo | None, int]] = []
            candidates = []
            for seg in self._segments():
                codes = _wanted_codes(seg, wanted)
                if codes is not None and codes.size == 0:
                    continue
                if len(seg.tail["start"]):
                    self._top_rows(seg, None, seg.tail, window, codes, k, best)
                for chunk in seg.chunks:
                    if window.covers(chunk.start_min, chunk.start_max) == 0:
                        continue
                    present = chunk.max_duration
                    if codes is not None:
                        present = present[np.isin(chunk.codes, codes)]
                    if present.size:
                        candidates.append((int(present.max()), seg, chunk))
            candidates.sort(key=lambda c: -c[0])
            for bound, seg, chunk in candidates:
                if len(best) >= k and bound <= best[-1][0]:
                    break  # no row of this or any later chunk can enter the top k
                cols = self._chunk_columns(seg, chunk, ("name", "start", "duration"))
                self._top_rows(seg, chunk, cols, window, codes, k, best)
            return [self._call(seg, chunk, row) for _, seg, chunk, row in best]

    def _top_rows(
        self,
        seg: SegmentReader,
        chunk: ChunkInfo | None,
        cols: dict[str, np.ndarray],
        window: TimeRange,
        codes: np.ndarray | None,
        k: int,
        best: list[tuple[int, SegmentReader, ChunkInfo | None, int]],
    ) -> None:
        mask = window.mask(cols["start"])
        if codes is not None:
            mask &= _name_mask(cols["name"], codes)
        rows = np.nonzero(mask)[0]
        if rows.size == 0:
            return
        durations = cols["duration"][rows]
        if rows.size > k:
            top = np.argpartition(durations, -k)[-k:]
            rows, durations = rows[top], durations[top]
        best.extend((int(d), seg, chunk, int(r)) for d, r in zip(durations, rows, strict=True))
        best.sort(key=lambda item: -item[0])
        del best[k:]

    def _call(self, seg: SegmentReader, chunk: ChunkInfo | None, row: int) -> Call:
        cols = seg.tail if chunk is None else self._chunk_columns(seg, chunk, COLUMNS)
        v = {c: cols[c][row] for c in COLUMNS}
        return Call(
            name=seg.dicts["name"].values[int(v["name"])],
            service=seg.dicts["service"].values[int(v["service"])],
            start=int(v["start"]), duration=int(v["duration"]), status=int(v["status"]),
            kind=int(v["kind"]), trace_id=(int(v["trace_hi"]) << 64) | int(v["trace_lo"]),
            span_id=int(v["span_id"]), parent_span_id=int(v["parent_span_id"]),
            attributes=parse_attributes(seg.dictionary("attributes").values[int(v["attributes"])]),
        )  # fmt: skip

    # -- maintenance -----------------------------------------------------------------------------
    def retain(self, *, max_age_ns: int | None = None, max_bytes: int | None = None) -> int:
        """Delete closed segments older than ``max_age_ns`` or beyond ``max_bytes``; returns count."""
        with self._read_lock:
            self._segments()
            own = None if self._writer is None else self._writer.id
            shown = {r.id: r for r in self._segments()}
            removed = retain(self._segdir, shown, own, max_age_ns, max_bytes)
            for seg_id in removed:
                reader = self._readers.pop(seg_id, None)
                if reader is not None:
                    reader.close()
                self._pool.drop(partial(_in_segment, seg_id))
            return len(removed)

    def compact(
        self,
        *,
        small_rows: int = compaction.DEFAULT_SMALL_ROWS,
        group_rows: int = compaction.DEFAULT_GROUP_ROWS,
    ) -> int:
        """Merge small finished segments into larger ones; returns how many were replaced.

        Safe to run while other processes write and read the directory (see compaction.py).
        """
        if small_rows <= 0 or group_rows <= 0:
            raise ValueError(
                f"small_rows and group_rows must be positive, got {small_rows}, {group_rows}"
            )
        with self._read_lock:
            self._segments()
            compaction.sweep(self._segdir, self._readers)
            own = None if self._writer is None else self._writer.id
            groups = compaction.plan(
                {r.id: r for r in self._segments()}, own, small_rows=small_rows,
                group_rows=group_rows,
            )  # fmt: skip
            for group in groups:
                compaction.rewrite(self._segdir, group, self._chunk_rows)
            self._segments()
            replaced = compaction.sweep(self._segdir, self._readers)
            for seg_id in replaced:
                reader = self._readers.pop(seg_id, None)
                if reader is not None:
                    reader.close()
                self._pool.drop(partial(_in_segment, seg_id))
            return sum(len(g) for g in groups)

    def size_bytes(self) -> int:
        """Bytes taken by every file of the database directory."""
        total = 0
        for root, _, files in os.walk(self.path):
            for f in files:
                try:
                    total += os.stat(os.path.join(root, f)).st_size
                except FileNotFoundError:
                    pass
        return total


class _Cached:
    """A decoded summary page in the bufferpool (which accounts pages by ``nbytes``)."""

    __slots__ = ("value", "nbytes")

    def __init__(self, value: ChunkSummary) -> None:
        self.value = value
        self.nbytes = 64 + sum(s.keys.nbytes + s.counts.nbytes + 96 for s in value.summaries)


def _in_segment(segment: str, key: tuple[str, int, str]) -> bool:
    return key[0] == segment


def _check_names(names: Iterable[str]) -> list[str]:
    if isinstance(names, str):
        raise ValueError(f"names must be a sequence of text, got the single text {names!r}")
    out = list(names)
    for n in out:
        if not isinstance(n, str):
            raise ValueError(f"function names must be text, got {n!r}")
    return out


def _wanted_codes(seg: SegmentReader, wanted: set[str] | None) -> np.ndarray | None:
    if wanted is None:
        return None
    codes = seg.dicts["name"].codes
    return np.array(sorted(codes[n] for n in wanted if n in codes), dtype=np.uint32)


def _has_codes(chunk: ChunkInfo, codes: np.ndarray | None) -> bool:
    return codes is None or bool(np.isin(codes, chunk.codes).any())


def _select(cols: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    rows = np.flatnonzero(mask)  # once, rather than once per column
    return {c: a.take(rows) for c, a in cols.items()}


def _name_mask(names: np.ndarray, codes: np.ndarray) -> np.ndarray:
    if codes.size == 1:
        return names == codes[0]
    return np.isin(names, codes, kind="table")


def _filter(
    cols: dict[str, np.ndarray], window: TimeRange, codes: np.ndarray | None
) -> dict[str, np.ndarray]:
    mask = None if window.everything else window.mask(cols["start"])
    if codes is not None:
        by_name = _name_mask(cols["name"], codes)
        mask = by_name if mask is None else mask & by_name
    if mask is None or bool(mask.all()):
        return cols
    return _select(cols, mask)


@atexit.register
def _close_all() -> None:
    for db in list(_open_databases):
        try:
            db.close(timeout=10.0)
        except Exception as exc:  # exiting: report, never raise
            log.error("kronicler could not close %r at exit: %s", db, exc)


def _after_fork_in_child() -> None:
    for db in list(_open_databases):
        db._after_fork_in_child()


class _ForkHook:
    """Registered with multiprocessing so its worker processes flush on their (os._exit) exit."""

    def __call__(self, _: object) -> None:
        from multiprocessing import util

        util.Finalize(None, _close_all, exitpriority=10)


_FORK_HOOK = _ForkHook()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
    # multiprocessing clears its finalisers in a new child after os-level fork hooks have run, then
    # calls its own after-fork hooks: register there so the finaliser survives.
    from multiprocessing import util as _mp_util

    _mp_util.register_after_fork(_FORK_HOOK, _FORK_HOOK)
