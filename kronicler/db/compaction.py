"""Compaction: merge many small finished segments into one.

Every process that writes starts a segment, so short-lived writers (scripts, cron jobs, restarted
workers) leave many small segments, each with a short, poorly compressed last chunk, and every
query pays a little for each. Compaction rewrites a group of small finished segments as one new
segment, rows ordered by start time, then deletes the old ones.

It is safe against crashes and concurrent readers without any lock, through the new segment's
catalog: it names the segments it ``replaces`` and is written before the new segment's data.
Readers ignore a segment that replaces others until it is closed (a compaction in progress, or one
whose process died: its leftovers are deleted by the next compaction), and from the moment it is
closed they ignore the replaced segments instead. The replaced files are deleted afterwards; if
that is interrupted, readers still ignore them and the next compaction deletes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from kronicler.db.reader import SegmentReader
from kronicler.db.schema import COLUMNS, SpanBatch
from kronicler.db.writer import TEXT_COLUMNS, SegmentWriter

#: Segments with fewer rows than this are "small" and may be merged.
DEFAULT_SMALL_ROWS = 1 << 20
#: Upper bound on the rows one compaction reads into memory (~60 bytes each).
DEFAULT_GROUP_ROWS = 1 << 22


def _process_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def finished(reader: SegmentReader) -> bool:
    """True when nobody writes the segment any more (closed, or its writer process is gone)."""
    return reader.closed or not _process_alive(reader.pid)


def visible(readers: Iterable[SegmentReader]) -> list[SegmentReader]:
    """The segments a query should read: compactions in progress and replaced segments left out."""
    readers = list(readers)
    replaced = {old for r in readers if r.replaces and r.closed for old in r.replaces}
    return [r for r in readers if r.id not in replaced and not (r.replaces and not r.closed)]


def rows_of(reader: SegmentReader) -> int:
    return reader.rows_sealed + len(reader.tail["start"])


def plan(
    readers: Mapping[str, SegmentReader],
    own_segment: str | None,
    *,
    small_rows: int = DEFAULT_SMALL_ROWS,
    group_rows: int = DEFAULT_GROUP_ROWS,
) -> list[list[SegmentReader]]:
    """Groups (of two or more) of small finished segments, oldest first, each within group_rows."""
    candidates = [
        r for r in visible(readers.values())
        if r.id != own_segment and finished(r) and 0 < rows_of(r) < small_rows
    ]  # fmt: skip
    candidates.sort(key=lambda r: r.id)  # ids start with the creation time
    groups: list[list[SegmentReader]] = []
    current: list[SegmentReader] = []
    total = 0
    for r in candidates:
        if current and total + rows_of(r) > group_rows:
            groups.append(current)
            current, total = [], 0
        current.append(r)
        total += rows_of(r)
    groups.append(current)
    return [g for g in groups if len(g) >= 2]


def _segment_rows(reader: SegmentReader) -> dict[str, np.ndarray]:
    pieces: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
    for chunk in reader.chunks:
        span_ids = reader.decode_page(chunk, "span_id")
        for c in COLUMNS:
            pieces[c].append(span_ids if c == "span_id" else reader.decode_page(chunk, c, span_ids))
    for c in COLUMNS:
        pieces[c].append(reader.tail[c])
    return {c: np.concatenate(p).astype(COLUMNS[c]) for c, p in pieces.items()}


def _texts(reader: SegmentReader, kind: str, codes: np.ndarray) -> list[str]:
    table = np.array(reader.dictionary(kind).values, dtype=object)
    return list(table[codes]) if len(codes) else []


def rewrite(directory: Path, group: list[SegmentReader], chunk_rows: int | None = None) -> str:
    """Write the rows of ``group`` as one new segment (closed) and return its id."""
    columns: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
    texts: dict[str, list[str]] = {k: [] for k in TEXT_COLUMNS}
    for reader in group:
        rows = _segment_rows(reader)
        for c in COLUMNS:
            if c not in TEXT_COLUMNS:
                columns[c].append(rows[c])
        for k in TEXT_COLUMNS:
            texts[k].extend(_texts(reader, k, rows[k]))
    merged = {c: np.concatenate(p) for c, p in columns.items() if p}
    order = np.argsort(merged["start"], kind="stable")
    options = {} if chunk_rows is None else {"chunk_rows": chunk_rows}
    writer = SegmentWriter(directory, replaces=tuple(r.id for r in group), **options)
    text_arrays = {k: np.array(texts[k], dtype=object) for k in TEXT_COLUMNS}
    step = 1 << 16
    for lo in range(0, len(order), step):
        idx = order[lo : lo + step]
        text = {k: text_arrays[k][idx].tolist() for k in TEXT_COLUMNS}
        writer.add(SpanBatch(
            text["name"], merged["start"][idx], merged["duration"][idx], merged["status"][idx],
            merged["kind"][idx], text["service"], merged["trace_hi"][idx],
            merged["trace_lo"][idx], merged["span_id"][idx], merged["parent_span_id"][idx],
            text["attributes"],
        ))  # fmt: skip
        writer.seal_full()
    writer.close()
    return writer.id


def delete_segment(directory: Path, segment: str) -> None:
    for suffix in (".meta", ".wal", ".kseg"):
        (directory / f"{segment}{suffix}").unlink(missing_ok=True)


def sweep(directory: Path, readers: Mapping[str, SegmentReader]) -> list[str]:
    """Delete replaced segments, and outputs of compactions whose process died; returns ids."""
    gone: list[str] = []
    for r in readers.values():
        if r.replaces and r.closed:
            gone.extend(old for old in r.replaces if old in readers)
        elif r.replaces and not _process_alive(r.pid):
            gone.append(r.id)
    for segment in gone:
        delete_segment(directory, segment)
    return gone
