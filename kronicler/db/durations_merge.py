"""Coarser sorted-duration records for a closed segment: the ``.kdur`` file rewritten at close.

A writer appends a ``.kdur`` record per :data:`~kronicler.db.durations.GROUP_ROWS` (512K) rows,
because it holds their durations until then (4 MB). Sorted durations cost less the more calls
of a function one record holds: the delta-coded steps between them shrink. Measured on
``bench_db.py``'s rows (100 Zipf functions, lognormal durations), bytes per row of the records:
512K rows 1.35, 4M 0.92, 8M 0.79, 16M 0.67, 32M 0.55 (about 3 bits fewer per row each time
the record grows 8x). At 512K the file was a fifth of the database (1.35 of 6.77 B/row at 100M
rows); that is what kept the database above 6 B/row.

So when a segment is closed (the writer's close, which compaction's outputs and backfill go
through too), :func:`coarsen` rewrites its file with the consecutive records merged into
records of up to :data:`RECORD_ROWS` rows, split evenly (records of 33M, 33M, 33M rather than
64M and 36M). Per function, its runs of the merged records are read into one array, sorted in
place (introsort on a few sorted runs: 0.2 s per 8M values) and encoded in blocks
(:func:`~kronicler.db.durations.encode_run`), one function at a time. The format is the same:
a record is a fact about a run of chunks, whatever its size, so every reader (older ones too)
reads merged and unmerged records alike, side by side in one database.

Trade-offs:
- Memory at close: one function's durations of one merged record (8 bytes each), bounded by
  :data:`RUN_ROWS` (64 MB), plus one block's temporaries; a record closes early rather than
  exceed it (a function with most of the calls makes smaller records).
- Time at close: decoding, sorting and encoding every duration once more, ~1-2 s per 10M rows
  on this machine's loaded cores; the writer's append rate pays it once per segment.
- A record is used only when every chunk it covers is readable: one damaged chunk now sends the
  exact statistics of a merged record's rows (up to 64M) to the pages, not 512K's.
- A reader that read the directories of the old file and then opens the new one finds runs
  that do not check: it reads those chunks from their pages (the same answer, slower, logged)
  until it reads the new directories, at its next question.

The rewrite is atomic (:func:`kronicler.db.metadata.atomic_write`): a crash leaves the old file
(and a temporary one that the next writable open removes). Anything that goes wrong (a run that
does not check, a full disk) leaves the old file as it was, logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import numpy as np

from kronicler.db.durations import Group, encode_group, read_groups, read_runs
from kronicler.db.metadata import atomic_write
from kronicler.errors import KroniclerError

#: Rows a merged record covers at most (records are split evenly below it).
RECORD_ROWS: Final = 1 << 26
#: Calls of one function a merged record holds at most: what the merge holds in memory (8 B each).
RUN_ROWS: Final = 1 << 23

log = logging.getLogger(__name__)


class _RunLost(KroniclerError):
    """A run of a record does not check: the file is left as it is."""


def plan(groups: Sequence[Group], record_rows: int, run_rows: int) -> list[list[Group]]:
    """``groups`` cut into consecutive parts, each merged into one record: records of adjacent
    chunks (a record after a gap, or after a skipped chunk, starts a new part), each part within
    ``record_rows`` rows and ``run_rows`` calls of any function, of about equal rows."""
    parts: list[list[Group]] = []
    stretch: list[Group] = []  # records of adjacent chunks
    for g in groups:
        if stretch and g.first != stretch[-1].last + 1:
            parts.extend(_split(stretch, record_rows, run_rows))
            stretch = []
        stretch.append(g)
    if stretch:
        parts.extend(_split(stretch, record_rows, run_rows))
    return parts


def _split(stretch: list[Group], record_rows: int, run_rows: int) -> list[list[Group]]:
    """Adjacent records cut into the fewest parts of about equal rows within both bounds."""
    rows = np.array([g.rows for g in stretch], dtype=np.int64)
    codes = np.concatenate([g.codes for g in stretch]).astype(np.int64)
    counts = np.concatenate([g.counts for g in stretch])
    per_code = np.bincount(codes, weights=counts) if codes.size else np.zeros(1)
    want = max(-(-int(rows.sum()) // record_rows), -(-int(per_code.max()) // run_rows), 1)
    while True:
        # cut where the running rows pass each 1/want of the total
        marks = np.cumsum(rows) * want // max(int(rows.sum()), 1)
        cuts = np.flatnonzero(np.diff(marks, prepend=0)) + 1
        bounds = sorted({0, *cuts[cuts < len(stretch)].tolist(), len(stretch)})
        parts = [stretch[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        if want >= len(stretch) or all(_fits(p, record_rows, run_rows) for p in parts):
            return parts
        want += 1


def _fits(part: list[Group], record_rows: int, run_rows: int) -> bool:
    if len(part) == 1:
        return True  # a record as written: kept whatever its size
    codes = np.concatenate([g.codes for g in part]).astype(np.int64)
    counts = np.concatenate([g.counts for g in part])
    most = int(np.bincount(codes, weights=counts).max()) if codes.size else 0
    return sum(g.rows for g in part) <= record_rows and most <= run_rows


def _merged(path: Path, part: list[Group]) -> bytes:
    """One record for the chunks of ``part``: each function's runs joined and sorted."""
    present = np.unique(np.concatenate([g.codes for g in part]))
    errors = np.zeros(len(present), dtype=np.int64)
    for g in part:
        errors[np.searchsorted(present, g.codes)] += g.errors

    def runs() -> Iterator[np.ndarray]:
        for code in present.tolist():
            wanted = []
            for g in part:
                k = int(np.searchsorted(g.codes, code))
                if k < len(g.codes) and int(g.codes[k]) == code:
                    wanted.append((g, k))
            joined, good = read_runs(path, wanted)
            if not all(good):
                raise _RunLost(f"{path}: a run of function code {code} does not check")
            joined.sort()  # in place: a few sorted runs, no second copy
            yield joined

    return encode_group(part[0].first, part[-1].last, present, runs(), errors)


def coarsen(path: Path, *, record_rows: int | None = None, run_rows: int | None = None) -> bool:
    """Rewrite the ``.kdur`` file at ``path`` with its consecutive records merged (see the
    module docstring); True when it was rewritten. A file with nothing to merge is left alone;
    records after the first that does not check are dropped (no reader uses them)."""
    groups = read_groups(path)
    parts = plan(groups, RECORD_ROWS if record_rows is None else record_rows,
                 RUN_ROWS if run_rows is None else run_rows)  # fmt: skip
    if all(len(p) == 1 for p in parts):
        return False
    try:
        atomic_write(path, (_merged(path, p) for p in parts))
    except (OSError, _RunLost) as exc:
        log.warning("%s: sorted durations not merged (the records stay as written): %s",
                    path, exc)  # fmt: skip
        return False
    return True
