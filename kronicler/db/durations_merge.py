"""Coarser sorted-duration records for a closed segment: its ``.kdur`` file rewritten in maintenance.

A writer appends a ``.kdur`` record per :data:`~kronicler.db.durations.GROUP_ROWS` (512K) rows,
because it holds their durations until then (4 MB). Sorted durations cost less the more calls
of a function one record holds: the delta-coded steps between them shrink. Measured on
``bench_db.py``'s rows (100 Zipf functions, lognormal durations), bytes per row of the records:
512K rows 1.35, 4M 0.92, 8M 0.79, 16M 0.67, 32M 0.55, 64M 0.49 (about 3 bits fewer per row
each time the record grows 8x). At 512K the file was a fifth of the database (1.35 of 6.77
B/row, 100M rows by one writer).

So once a segment is closed, every maintenance run (``kronicler.db.compaction.settle``:
compaction, the time-disjoint one, retention, hence ``serve --compact-every``; ``kronicler
upgrade``; and ``backfill``), holding the maintenance lock, has :func:`coarsen` rewrite its
file with the consecutive records merged into records of up to :data:`RECORD_ROWS` rows, split
evenly: in practice one record per segment (a writer's segment and a time-disjoint
compaction's output both hold up to 33.5M rows by default). A writer never pays it: its thread
would stall 1-2 s at each segment rotation, and a capturing application would shed rows
meanwhile.
Per function, its runs of the merged records are read into one array, sorted in place
(introsort on a few sorted runs: 0.2 s per 8M values) and encoded in blocks
(:func:`~kronicler.db.durations.encode_run`), one function at a time. The format is the same:
a record is a fact about a run of chunks, whatever its size, so every reader (older ones too)
reads merged and unmerged records alike, side by side in one database.

Trade-offs:
- Memory: up to :data:`PASS_ROWS` durations (8 bytes each: 32 MB) plus one block's
  temporaries, whatever the record's size: a function with more calls is merged in passes over
  ranges of its values, each pass decoding its runs again (decoding is the cheap part).
- Time: decoding, sorting and encoding every duration once more, 0.6-1.3 s per 10M rows on
  this machine under others' load, in the maintenance run (a background process of ``serve``).
  Until it runs, a closed segment keeps its 512K-row records (1.35 B/row).
- Memory: the merge of a 10M-row segment took 46 MB beyond the process's own.
- A record is used only when every chunk it covers is readable: one damaged chunk now sends the
  exact statistics of a merged record's rows (a segment's) to the pages, not 512K's.
- A reader replaced under: it reads a segment's record directories and runs through one
  open file (:func:`kronicler.db.durations.stored_runs`), so it reads the old file or the new
  one whole, never the one's directories with the other's runs.

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
RECORD_ROWS: Final = 1 << 27
#: Durations the merge holds at a time (8 B each): a function with more is merged in passes.
PASS_ROWS: Final = 1 << 22

log = logging.getLogger(__name__)


class _RunLost(KroniclerError):
    """A run of a record does not check: the file is left as it is."""


def plan(groups: Sequence[Group], record_rows: int) -> list[list[Group]]:
    """``groups`` cut into consecutive parts, each merged into one record: records of adjacent
    chunks (a record after a gap, or after a skipped chunk, starts a new part), cut into the
    fewest parts of about equal rows within ``record_rows`` (a record bigger than that alone)."""
    parts: list[list[Group]] = []
    stretch: list[Group] = []  # records of adjacent chunks
    for g in [*groups, None]:
        if stretch and (g is None or g.first != stretch[-1].last + 1):
            parts.extend(_even(stretch, record_rows))
            stretch = []
        if g is not None:
            stretch.append(g)
    return parts


def _even(stretch: list[Group], record_rows: int) -> list[list[Group]]:
    """Adjacent records cut into the fewest parts of about equal rows within ``record_rows``."""
    rows = np.cumsum([g.rows for g in stretch])
    total = max(int(rows[-1]), 1)
    for want in range(max(-(-total // record_rows), 1), len(stretch) + 1):
        marks = rows * want // total  # cut where the running rows pass each 1/want of them
        bounds = sorted({0, *(np.flatnonzero(np.diff(marks, prepend=0)) + 1).tolist()})
        cut = [stretch[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        if all(len(c) == 1 or sum(g.rows for g in c) <= record_rows for c in cut):
            return cut
    return [[g] for g in stretch]


def _merged(path: Path, part: list[Group]) -> bytes:
    """One record for the chunks of ``part``: each function's runs joined and sorted."""
    present = np.unique(np.concatenate([g.codes for g in part]))
    errors = np.zeros(len(present), dtype=np.int64)
    for g in part:
        errors[np.searchsorted(present, g.codes)] += g.errors

    def runs() -> Iterator[Iterator[np.ndarray]]:
        for code in present.tolist():
            wanted = []
            for g in part:
                k = int(np.searchsorted(g.codes, code))
                if k < len(g.codes) and int(g.codes[k]) == code:
                    wanted.append((g, k))
            yield _sorted_pieces(path, wanted)

    return encode_group(part[0].first, part[-1].last, present, runs(), errors)


def _read(path: Path, wanted: list[tuple[Group, int]]) -> np.ndarray:
    runs, good = read_runs(path, wanted)
    if not all(good):
        raise _RunLost(f"{path}: a run of chunks {wanted[0][0].first}- does not check")
    return runs


def _sorted_pieces(path: Path, wanted: list[tuple[Group, int]]) -> Iterator[np.ndarray]:
    """The durations of the runs ``wanted`` (one function's), sorted, in pieces of about
    :data:`PASS_ROWS` (more only where one value repeats): one piece when they fit, else one
    pass over the runs per piece, each run decoded again and its values in the piece's range
    kept (the passes' bounds are quantiles of a sample of every run)."""
    count = sum(int(g.counts[k]) for g, k in wanted)
    if count <= PASS_ROWS:
        joined = _read(path, wanted)
        joined.sort()  # in place: a few sorted runs, no second copy
        yield joined
        return
    step = max(count // max(PASS_ROWS // 4, 1), 1)  # runs are sorted: every step-th samples
    sample = np.sort(np.concatenate([_read(path, [w])[::step] for w in wanted]))
    per_pass = max(len(sample) * PASS_ROWS // count, 1)
    bounds = np.unique(sample[per_pass::per_pass]).tolist()
    for lo, hi in zip([None, *bounds], [*bounds, None], strict=True):
        pieces = []
        for w in wanted:
            run = _read(path, [w])
            a = 0 if lo is None else int(np.searchsorted(run, lo))
            b = len(run) if hi is None else int(np.searchsorted(run, hi))
            pieces.append(run[a:b].copy())  # a copy: the run is let go
        piece = np.concatenate(pieces)
        piece.sort()
        yield piece


def coarsen(path: Path, *, record_rows: int | None = None) -> bool:
    """Rewrite the ``.kdur`` file at ``path`` with its consecutive records merged into records
    of up to ``record_rows`` (:data:`RECORD_ROWS`) rows; True when it was rewritten. A file with
    nothing to merge is left alone; records after the first that does not check are dropped
    (no reader uses them)."""
    parts = plan(read_groups(path), RECORD_ROWS if record_rows is None else record_rows)
    if all(len(p) == 1 for p in parts):
        return False
    try:
        atomic_write(path, (_merged(path, p) for p in parts))
    except (OSError, _RunLost) as exc:
        log.warning("%s: sorted durations not merged (the records stay as written): %s",
                    path, exc)  # fmt: skip
        return False
    return True
