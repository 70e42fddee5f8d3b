"""Retention: delete whole segments that are too old or beyond a size budget.

A segment's age is its newest row's start time, whether a writer or a compaction made it
(compaction only merges segments of similar age, so a merged segment does not keep old rows much
longer; a time-disjoint compaction's outputs each cover their own stretch of time, so the one
holding the oldest rows goes first and no row outlives ``max_age`` by more than one output's
span, see ``disjoint.py``). Only finished segments are deleted: closed ones, and those whose writer process is gone; a
live writer's segment is never touched (a long-running writer closes its segment every hour or
2^24 rows, so its old rows become deletable too). Deleting a segment removes its data file first
(readers find segments by it), then its log and catalog; a reader in another process that still has
the file open keeps reading it until its next refresh.

Retention takes the same maintenance lock as compaction (``lock.py``), so it never deletes a
segment a compaction is merging (which the compaction would then publish again): it waits for a
running compaction, up to ``wait`` seconds (two minutes by default, since retention is a policy
that should happen), then raises ``MaintenanceBusyError``. Under the lock it first sweeps what
earlier maintenance left (replaced segments, a killed compaction's unpublished output); then it
chooses among the visible segments only, and deletes a compaction's output only after any segment
it replaces that is still on disk, so those rows never come back.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from kronicler.db import compaction
from kronicler.db.reader import SegmentReader

#: Seconds retention waits for a running compaction to finish.
DEFAULT_WAIT_SECONDS = 120.0


def _segment_bytes(directory: Path, seg_id: str) -> int:
    total = 0
    for suffix in compaction.SEGMENT_SUFFIXES:
        try:
            total += (directory / f"{seg_id}{suffix}").stat().st_size
        except FileNotFoundError:
            pass
    return total


def _tree(seg_id: str, readers: Mapping[str, SegmentReader]) -> set[str]:
    """The segment and, recursively, those it replaces that are still on disk."""
    out, todo = set(), [seg_id]
    while todo:
        seg = todo.pop()
        if seg in out or seg not in readers:
            continue
        out.add(seg)
        todo.extend(readers[seg].replaces)
    return out


def retain(
    directory: Path,
    own_segment: str | None,
    max_age_ns: int | None,
    max_bytes: int | None,
    *,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> list[str]:
    """Delete segments past the limits, holding the maintenance lock; returns the ids removed
    (visible segments only, oldest first; the leftovers swept on the way are not counted)."""
    for what, value in (("max_age_ns", max_age_ns), ("max_bytes", max_bytes)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 0):  # fmt: skip
            raise ValueError(f"{what} must be an integer >= 0, got {value!r}")
    return compaction.maintain(
        directory,
        lambda readers: _retain(directory, readers, own_segment, max_age_ns, max_bytes),
        wait=wait,
    )


def _retain(
    directory: Path,
    readers: Mapping[str, SegmentReader],
    own_segment: str | None,
    max_age_ns: int | None,
    max_bytes: int | None,
) -> list[str]:
    # Sources of a compaction still running in a process without the lock (an older Kronicler):
    # deleting them would let that compaction publish them again.
    busy = {
        old for r in readers.values() if r.replaces and not compaction.finished(r)
        for old in r.replaces
    }  # fmt: skip
    newest: dict[str, int] = {}
    for r in compaction.visible(readers.values()):
        if r.id != own_segment and r.id not in busy and compaction.finished(r):
            newest[r.id] = compaction.newest_start(r) or 0  # an empty segment is as old as any
    deletable = sorted(newest, key=lambda s: (newest[s], s))
    remove: list[str] = []
    if max_age_ns is not None:
        cutoff = time.time_ns() - max_age_ns
        remove = [s for s in deletable if newest[s] < cutoff]
    if max_bytes is not None:
        sizes = {s: _segment_bytes(directory, s) for s in readers}
        total = sum(sizes.values())
        total -= sum(sizes[t] for s in remove for t in _tree(s, readers))
        for s in deletable:
            if total <= max_bytes:
                break
            if s not in remove:
                remove.append(s)
                total -= sum(sizes[t] for t in _tree(s, readers))
    for seg_id in remove:
        compaction.delete_tree(directory, seg_id, readers)
    return remove
