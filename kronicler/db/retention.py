"""Retention: delete whole segments that are too old or beyond a size budget.

Only closed segments (their writer sealed them) and segments whose writer process is gone are
deleted; a live writer's segment is never touched. Deleting a segment removes its three files; a
reader in another process that still has the file open keeps reading it until its next refresh.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from kronicler.db.compaction import finished
from kronicler.db.reader import SegmentReader


def _segment_bytes(directory: Path, seg_id: str) -> int:
    total = 0
    for suffix in (".kseg", ".wal", ".meta"):
        try:
            total += (directory / f"{seg_id}{suffix}").stat().st_size
        except FileNotFoundError:
            pass
    return total


def retain(
    directory: Path,
    readers: Mapping[str, SegmentReader],
    own_segment: str | None,
    max_age_ns: int | None,
    max_bytes: int | None,
) -> list[str]:
    """Delete segments past the limits; returns the ids removed, oldest first."""
    if max_age_ns is not None and max_age_ns < 0:
        raise ValueError(f"max_age_ns must be >= 0, got {max_age_ns}")
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    deletable = []
    newest: dict[str, int] = {}
    for seg_id, reader in readers.items():
        if seg_id == own_segment or not finished(reader):
            continue
        ends = [c.start_max for c in reader.chunks]
        if len(reader.tail["start"]):
            ends.append(int(reader.tail["start"].max()))
        newest[seg_id] = max(ends) if ends else 0
        deletable.append(seg_id)
    deletable.sort(key=lambda s: newest[s])
    remove: list[str] = []
    if max_age_ns is not None:
        cutoff = time.time_ns() - max_age_ns
        remove = [s for s in deletable if newest[s] < cutoff]
    if max_bytes is not None:
        sizes = {s: _segment_bytes(directory, s) for s in readers}
        total = sum(sizes.values())
        total -= sum(sizes[s] for s in remove)
        for s in deletable:
            if total <= max_bytes:
                break
            if s not in remove:
                remove.append(s)
                total -= sizes[s]
    for seg_id in remove:
        for suffix in (".meta", ".wal", ".kseg"):
            (directory / f"{seg_id}{suffix}").unlink(missing_ok=True)
    return remove
