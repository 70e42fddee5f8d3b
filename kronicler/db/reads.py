"""The read side of a database: every segment, kept current, and the queries over them.

A query first refreshes the segment readers (a few ``stat`` calls when nothing changed), then works
from roll-ups, zone maps and per-chunk summaries, decoding column pages only where a time range
cuts a chunk or raw rows are asked for. Decoded pages and chunk summaries are cached in one
byte-bounded bufferpool. Segments a compaction has replaced, or is still writing, are left out.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from kronicler.db import compaction
from kronicler.db.bufferpool import BufferPool
from kronicler.db.chunk import ChunkSummary, summarize
from kronicler.db.reader import ChunkInfo, SegmentReader
from kronicler.db.scan import FunctionSummary, Scan, TimeRange, merge_scans
from kronicler.db.schema import COLUMNS, parse_attributes
from kronicler.db.stats import Call
from kronicler.db.summary import Summary

log = logging.getLogger("kronicler.db.database")


class SegmentSet:
    """The segments of one directory and the bufferpool over their pages. Thread-safe."""

    def __init__(self, directory: Path, bufferpool_bytes: int) -> None:
        self._segdir = directory
        # lock protects readers (and their refreshes); the pool has its own lock.
        self.lock = threading.RLock()
        self.readers: dict[str, SegmentReader] = {}
        self.pool = BufferPool(bufferpool_bytes, load=self._load_page)

    def forget(self, segment: str) -> None:
        """Drop a deleted segment's reader and cached pages (call with ``lock`` held)."""
        reader = self.readers.pop(segment, None)
        if reader is not None:
            reader.close()
        self.pool.drop(partial(_in_segment, segment))

    def close(self) -> None:
        with self.lock:
            for reader in self.readers.values():
                reader.close()
            self.readers.clear()

    def refresh(self) -> list[SegmentReader]:
        """Refresh and return the visible segments' readers (call with ``lock`` held)."""
        try:
            files = os.listdir(self._segdir)
        except FileNotFoundError:
            files = []
        ids = {f[:-5] for f in files if f.endswith(".kseg")}
        for gone in set(self.readers) - ids:
            self.forget(gone)
        for seg_id in sorted(ids - set(self.readers)):
            self.readers[seg_id] = SegmentReader(self._segdir, seg_id)
        for reader in self.readers.values():
            try:
                reader.refresh()
            except OSError as exc:  # deleted under us by retention in another process
                log.debug("segment %s unreadable: %s", reader.id, exc)
        return compaction.visible(self.readers[i] for i in sorted(self.readers))

    def _load_page(self, key: tuple[str, int, str]) -> Any:
        seg_id, seq, column = key
        reader = self.readers[seg_id]
        chunk = reader.chunks[seq]
        if column == "summary":
            return _Cached(reader.load_summary(chunk))
        span_ids = None
        if column == "parent_span_id":
            with self.pool.read_page((seg_id, seq, "span_id")) as guard:
                span_ids = guard.data
        return reader.decode_page(chunk, column, span_ids)

    def chunk_summary(self, reader: SegmentReader, chunk: ChunkInfo) -> ChunkSummary:
        with self.pool.read_page((reader.id, chunk.seq, "summary")) as guard:
            cached: _Cached = guard.data
            return cached.value

    def chunk_columns(
        self, reader: SegmentReader, chunk: ChunkInfo, columns: Iterable[str]
    ) -> dict[str, np.ndarray]:
        out = {}
        for column in columns:
            with self.pool.read_page((reader.id, chunk.seq, column)) as guard:
                out[column] = guard.data
        return out

    def functions(self) -> list[str]:
        """Names of every function with at least one stored call, sorted."""
        with self.lock:
            names: set[str] = set()
            for seg in self.refresh():
                values = seg.dicts["name"].values
                names.update(values[c] for c in seg.rollup.summaries)
                names.update(values[c] for c in np.unique(seg.tail["name"]).tolist())
            return sorted(names)

    def services(self) -> list[str]:
        with self.lock:
            out: set[str] = set()
            for seg in self.refresh():
                out.update(v for v in seg.dicts["service"].values)
            return sorted(out)

    def time_range(self) -> tuple[int, int] | None:
        """(earliest, latest) start time over every stored call, or None when empty."""
        with self.lock:
            lo, hi = None, None
            for seg in self.refresh():
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

        with self.lock:
            for seg in self.refresh():
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
                            take(seg, self.chunk_summary(seg, chunk))
                        else:
                            cols = self.chunk_columns(seg, chunk, ("name", "start", "duration",
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
        with self.lock:
            for seg in self.refresh():
                codes = _wanted_codes(seg, wanted)
                if codes is not None and codes.size == 0:
                    continue
                for chunk in seg.chunks:
                    cover = window.covers(chunk.start_min, chunk.start_max)
                    if cover == 0 or not _has_codes(chunk, codes):
                        continue
                    only = None if codes is None else codes[np.isin(codes, chunk.codes)]
                    cols = self.chunk_columns(seg, chunk, need)
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
        with self.lock:
            best: list[tuple[int, SegmentReader, ChunkInfo | None, int]] = []
            candidates = []
            for seg in self.refresh():
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
                cols = self.chunk_columns(seg, chunk, ("name", "start", "duration"))
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
        cols = seg.tail if chunk is None else self.chunk_columns(seg, chunk, COLUMNS)
        v = {c: cols[c][row] for c in COLUMNS}
        return Call(
            name=seg.dicts["name"].values[int(v["name"])],
            service=seg.dicts["service"].values[int(v["service"])],
            start=int(v["start"]), duration=int(v["duration"]), status=int(v["status"]),
            kind=int(v["kind"]), trace_id=(int(v["trace_hi"]) << 64) | int(v["trace_lo"]),
            span_id=int(v["span_id"]), parent_span_id=int(v["parent_span_id"]),
            attributes=parse_attributes(seg.dictionary("attributes").values[int(v["attributes"])]),
        )  # fmt: skip


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
