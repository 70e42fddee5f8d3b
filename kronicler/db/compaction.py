"""Compaction: merge many small finished segments into one, exclusively, never duplicating a row.

Every process that writes starts a segment, so short-lived writers (scripts, cron jobs, restarted
workers) leave many small segments, each with a short, poorly compressed last chunk, and every
query pays a little for each. Compaction rewrites a group of small finished segments as one new
segment, rows ordered by start time, then deletes the old ones.

Publishing. The new segment's catalog names the segments it ``replaces`` and is written before its
data. Readers ignore an output until it is closed; from the moment it is closed (one atomic catalog
replace) they ignore the replaced segments instead. The replaced files are deleted afterwards.
An output written as several segments (the time-disjoint rewrite, ``disjoint.py``) is published
the same way by its last segment: the others are written ``part_of`` it and readers take them only
once it is published, and only while the listing holds every part it names (its ``parts``) or no
longer any segment it replaces; a part whose last segment is gone stands alone once the segments
it replaces are gone too.

The rules that make it exclusive and exact (compaction and retention share them):

* **One maintainer at a time.** A compaction holds the database's maintenance lock (``lock.py``,
  a ``flock`` the kernel frees if the holder dies) from planning to the last deletion; retention
  takes the same lock. A second compaction does not wait by default (``wait=0``): it raises
  ``MaintenanceBusyError`` ("another compaction or retention is running"), since the running one is
  doing its work; pass ``wait=`` seconds to wait, bounded.
* **Re-check before publishing.** Just before closing its output, a compaction checks that every
  segment it merged is still on disk and that no other published output already replaces one of
  them; if either fails it deletes its output instead of publishing it.
* **One winner per replaced segment.** If two published outputs ever claim the same segment (two
  compactions that did not share the lock, e.g. from an older Kronicler), readers take the one
  with the smaller id (created first) and ignore the other whole; the next maintenance run deletes
  the loser. Never both, so never duplicated rows.
* **Leaves first.** A segment is deleted only after every segment it replaces is gone (data file
  first: readers find segments by it), so a crash at any point leaves no replaced rows uncovered.
* **Leftovers.** Under the lock nobody else compacts, so an unpublished output (or part of one)
  whose process is gone (or is this process) is a leftover of a killed compaction: the next run
  deletes it.
* **Age is kept.** Only segments whose newest rows are within ``group_span_ns`` (an hour by
  default) are merged together, so a merged segment does not keep old rows past their retention.
* **Stopping.** A caller may pass ``stop`` (asked between groups, between the segments a rewrite
  reads and between the pieces of 64Ki rows it writes): when it answers True, the output being
  written is deleted unpublished and the groups merged so far stay merged. ``serve`` runs
  compaction in the background this way (``kronicler/server/maintenance.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import numpy as np

from kronicler._record import record
from kronicler.db import attr_keys, durations, index, rollup, segment_tree
from kronicler.db.lock import MaintenanceLock
from kronicler.db.metadata import load_json
from kronicler.db.page import CHUNK_ROWS
from kronicler.db.published import claims, unpublished, visible
from kronicler.db.reader import SegmentReader
from kronicler.db.schema import COLUMNS, TEXT_COLUMNS, SpanBatch
from kronicler.db.snapshot import ChunkInfo
from kronicler.db.writer import SegmentWriter
from kronicler.errors import KroniclerError

#: A segment's files: the data file first (readers find segments by it), then its side files.
SEGMENT_SUFFIXES = (
    ".kseg",
    ".wal",
    ".meta",
    index.SUFFIX,
    rollup.SUFFIX,
    attr_keys.SUFFIX,
    durations.SUFFIX,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Segments with fewer rows than this are "small" and may be merged.
DEFAULT_SMALL_ROWS = 1 << 20
#: Upper bound on the rows one compaction reads into memory (~60 bytes each).
DEFAULT_GROUP_ROWS = 1 << 22
#: Segments are merged only with others whose newest row is at most this much newer or older.
DEFAULT_GROUP_SPAN_NS = 3600 * 10**9


#: Rows written to the output between two questions to ``stop``.
_STEP_ROWS = 1 << 16


@record
class Merge:
    """One published compaction output.

    Fields:
        output: the new segment's id (of a time-disjoint rewrite: the last segment, which
            publishes the group); sources: the ids of the segments it replaces; rows: rows it
            holds (with its parts); parts: a time-disjoint rewrite's other output segments.
    """

    output: str
    sources: tuple[str, ...]
    rows: int
    parts: tuple[str, ...] = ()


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


def rows_of(reader: SegmentReader) -> int:
    return reader.rows_sealed + len(reader.tail["start"])


def newest_start(reader: SegmentReader) -> int | None:
    """Start time of the segment's newest row (what retention ages it by); None when empty."""
    ends = [c.start_max for c in reader.chunks]
    if len(reader.tail["start"]):
        ends.append(int(reader.tail["start"].max()))
    return max(ends) if ends else None


def segment_ids(directory: Path) -> set[str]:
    """The ids of the segments in ``directory`` (by their data files)."""
    try:
        return {f[:-5] for f in os.listdir(directory) if f.endswith(".kseg")}
    except FileNotFoundError:
        return set()


def open_readers(
    directory: Path, known: Mapping[str, SegmentReader] | None = None
) -> dict[str, SegmentReader]:
    """A fresh reader of every segment in ``directory`` (maintenance's own view, not the
    cache's); ``known``: readers opened earlier by the caller, refreshed and reused."""
    readers = {}
    known = known or {}
    for seg_id in sorted(segment_ids(directory)):
        reader = known.get(seg_id)
        if reader is None:
            reader = SegmentReader(directory, seg_id)
        try:
            reader.refresh()
        except OSError as exc:  # deleted meanwhile (by an older Kronicler without the lock)
            log.debug("segment %s unreadable: %s", seg_id, exc)
            reader.close()
            continue
        reader.close()  # its descriptor only: reopened on demand, so thousands of segments fit
        readers[seg_id] = reader
    return readers


def plan(
    readers: Mapping[str, SegmentReader],
    own_segment: str | None,
    *,
    small_rows: int = DEFAULT_SMALL_ROWS,
    group_rows: int = DEFAULT_GROUP_ROWS,
    group_span_ns: int = DEFAULT_GROUP_SPAN_NS,
) -> list[list[SegmentReader]]:
    """Groups (of two or more) of small finished segments of similar age, each within group_rows."""
    candidates = [
        r for r in visible(readers.values())
        if r.id != own_segment and finished(r) and 0 < rows_of(r) < small_rows
    ]  # fmt: skip
    newest = {r.id: newest_start(r) or 0 for r in candidates}
    candidates.sort(key=lambda r: (newest[r.id], r.id))
    groups: list[list[SegmentReader]] = []
    current: list[SegmentReader] = []
    total = 0
    for r in candidates:
        if current and (
            total + rows_of(r) > group_rows or newest[r.id] - newest[current[0].id] > group_span_ns
        ):
            groups.append(current)
            current, total = [], 0
        current.append(r)
        total += rows_of(r)
    groups.append(current)
    return [g for g in groups if len(g) >= 2]


def chunk_columns(reader: SegmentReader, chunk: ChunkInfo) -> dict[str, np.ndarray]:
    """Every column of the chunk's kept rows (text columns as the segment's codes)."""
    span_ids = reader.decode_page(chunk, "span_id")
    return {c: span_ids if c == "span_id" else reader.decode_page(chunk, c, span_ids)
            for c in COLUMNS}  # fmt: skip


def _segment_rows(reader: SegmentReader) -> dict[str, np.ndarray]:
    pieces: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
    for chunk in reader.chunks:
        for c, a in chunk_columns(reader, chunk).items():
            pieces[c].append(a)
    for c in COLUMNS:
        pieces[c].append(reader.tail[c])
    return {c: np.concatenate(p).astype(COLUMNS[c]) for c, p in pieces.items()}


def _texts(reader: SegmentReader, kind: str, codes: np.ndarray) -> list[str]:
    table = np.array(reader.dictionary(kind).values, dtype=object)
    return list(table[codes]) if len(codes) else []


def conflict(directory: Path, sources: set[str], output: str) -> str | None:
    """Why publishing ``output`` (replacing ``sources``) would be wrong now, or None."""
    for seg in sorted(sources):
        if not (directory / f"{seg}.kseg").exists():
            return f"segment {seg} was deleted meanwhile"
    for meta in directory.glob("*.meta"):
        other = meta.stem
        if other == output or other in sources or not (directory / f"{other}.kseg").exists():
            continue
        doc = load_json(meta) or {}
        taken = sources.intersection(str(x) for x in doc.get("replaces", ()))
        if doc.get("closed") and taken and doc.get("part_of") is None:  # a group claims by its last
            return f"segment {other} already replaces {sorted(taken)}"
    return None


def rewrite(
    directory: Path,
    group: list[SegmentReader],
    chunk_rows: int | None = None,
    stop: Callable[[], bool] | None = None,
) -> str | None:
    """Write the rows of ``group`` as one new segment and publish it; returns its id.

    None (and nothing published) when a source is gone, when the re-check before publishing
    finds the group changed, or when ``stop()`` answered True (the unpublished output deleted).
    """
    columns: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
    texts: dict[str, list[str]] = {k: [] for k in TEXT_COLUMNS}
    for reader in group:
        if stop is not None and stop():
            reader.close()
            log.info("compaction stopped before merging %d segment(s)", len(group))
            return None
        try:
            rows = _segment_rows(reader)
            for k in TEXT_COLUMNS:
                texts[k].extend(_texts(reader, k, rows[k]))
        except FileNotFoundError as exc:  # deleted by a process that ignores the lock
            log.warning("compaction skips a group: segment %s is gone (%s)", reader.id, exc)
            return None
        finally:
            reader.close()
        for c in COLUMNS:
            if c not in TEXT_COLUMNS:
                columns[c].append(rows[c])
    merged = {c: np.concatenate(p) for c, p in columns.items() if p}
    order = np.argsort(merged["start"], kind="stable")
    writer = SegmentWriter(directory, replaces=tuple(r.id for r in group),
                           chunk_rows=CHUNK_ROWS if chunk_rows is None else chunk_rows)  # fmt: skip
    try:
        text_arrays = {k: np.array(texts[k], dtype=object) for k in TEXT_COLUMNS}
        for lo in range(0, len(order), _STEP_ROWS):
            if stop is not None and stop():
                log.info("compaction stopped: output %s deleted unpublished", writer.id)
                writer.abandon()
                delete_segment(directory, writer.id)
                return None
            idx = order[lo : lo + _STEP_ROWS]
            text = {k: text_arrays[k][idx].tolist() for k in TEXT_COLUMNS}
            writer.add(SpanBatch(
                text["name"], merged["start"][idx], merged["duration"][idx],
                merged["status"][idx], merged["kind"][idx], text["service"],
                merged["trace_hi"][idx], merged["trace_lo"][idx], merged["span_id"][idx],
                merged["parent_span_id"][idx], text["attributes"], text["resource"],
            ))  # fmt: skip
            writer.seal_full()
        why = conflict(directory, {r.id for r in group}, writer.id)
        if why is not None:
            log.warning("compaction output %s not published: %s", writer.id, why)
            writer.abandon()
            delete_segment(directory, writer.id)
            return None
        writer.close()  # publishes: the closed catalog makes readers switch over
    except BaseException:
        writer.abandon()
        delete_segment(directory, writer.id)
        raise
    return writer.id


def delete_segment(directory: Path, segment: str) -> None:
    # The data file first: readers find segments by it, so the segment vanishes at once, whole.
    for suffix in SEGMENT_SUFFIXES:
        (directory / f"{segment}{suffix}").unlink(missing_ok=True)


def delete_tree(directory: Path, segment: str, readers: Mapping[str, SegmentReader]) -> list[str]:
    """Delete ``segment`` after every segment it replaces (recursively); returns the ids deleted.

    Leaves first: until the segment is gone, its claim still hides the segments it replaces.
    """
    order: list[str] = []
    seen: set[str] = set()

    def visit(seg: str) -> None:
        seen.add(seg)
        reader = readers.get(seg)
        for old in () if reader is None else reader.replaces:
            if old in readers and old not in seen:
                visit(old)
        order.append(seg)

    visit(segment)
    for seg in order:
        delete_segment(directory, seg)
    return order


def sweep(directory: Path, readers: Mapping[str, SegmentReader]) -> list[str]:
    """Delete what earlier maintenance left behind; returns the segment ids deleted.

    Call with the maintenance lock held: replaced segments, losing outputs (when every row they
    hold is elsewhere), unpublished outputs of dead compactions, and catalog or log files whose
    segment file is gone.
    """
    gone: dict[str, None] = {}  # ordered set
    me = os.getpid()
    for r in readers.values():
        if unpublished(r, readers) and (r.pid == me or not _process_alive(r.pid)):
            delete_segment(directory, r.id)
            gone[r.id] = None
    live = {k: v for k, v in readers.items() if k not in gone}
    owner, losers = claims(live.values())
    for old in sorted(owner):
        if old in live and old not in gone:
            gone.update(dict.fromkeys(delete_tree(directory, old, live)))
    for loser in sorted(losers):
        if all(old in owner or old in live for old in live[loser].replaces):
            for seg in (loser, *live[loser].parts):  # the last segment first: the group goes
                delete_segment(directory, seg)
                gone[seg] = None
        else:
            log.warning("keeping segment %s: it alone holds rows of a deleted segment", loser)
    _sweep_orphans(directory)
    return list(gone)


def _sweep_orphans(directory: Path) -> None:
    """Catalog and log files left by a deletion that was interrupted after the data file went."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    data = {n[:-5] for n in names if n.endswith(".kseg")}
    stems = {n.rsplit(".", 1)[0] for n in names if n.endswith(SEGMENT_SUFFIXES[1:])}
    for stem in sorted(stems - data):
        if (directory / f"{stem}.kseg").exists():
            continue  # created since the listing
        doc = load_json(directory / f"{stem}.meta")
        # A writer saves its catalog just before creating its data file: leave a live one be.
        pid = None if doc is None else doc.get("pid")
        starting = doc is not None and not doc.get("closed") and not doc.get("replaces")
        if starting and isinstance(pid, int) and _process_alive(pid):
            continue
        delete_segment(directory, stem)


def compact(
    directory: Path,
    own_segment: str | None = None,
    *,
    small_rows: int = DEFAULT_SMALL_ROWS,
    group_rows: int = DEFAULT_GROUP_ROWS,
    group_span_ns: int = DEFAULT_GROUP_SPAN_NS,
    chunk_rows: int | None = None,
    wait: float = 0.0,
    stop: Callable[[], bool] | None = None,
    report: Callable[[Merge], None] | None = None,
) -> int:
    """Merge small finished segments, holding the maintenance lock; returns how many were replaced.

    Raises MaintenanceBusyError when another compaction or retention still holds the lock after
    ``wait`` seconds. ``stop`` is asked between groups and pieces (see the module docstring);
    ``report`` is told of every published output.
    """
    check_positive(small_rows=small_rows, group_rows=group_rows, group_span_ns=group_span_ns)
    stop = latch(stop)

    def work(readers: dict[str, SegmentReader]) -> int:
        merged = 0
        groups = plan(readers, own_segment, small_rows=small_rows, group_rows=group_rows,
                      group_span_ns=group_span_ns)  # fmt: skip
        for group in groups:
            if stop is not None and stop():
                break
            output = rewrite(directory, group, chunk_rows, stop)
            if output is None:
                continue
            merged += len(group)
            if report is not None:
                report(Merge(output, tuple(r.id for r in group), sum(map(rows_of, group))))
            for r in group:
                delete_tree(directory, r.id, readers)
        return merged

    return maintain(directory, work, wait=wait, stop=stop)


def latch(stop: Callable[[], bool] | None) -> Callable[[], bool] | None:
    """``stop`` that, once it answered True, answers True without asking again (a caller's
    ``stop`` may count or block; maintenance asks it once more before the roll-up across
    segments)."""
    if stop is None:
        return None
    asked = stop
    stopped = False

    def latched() -> bool:
        nonlocal stopped
        stopped = stopped or asked()
        return stopped

    return latched


def check_positive(**values: object) -> None:
    """ValueError naming the first of ``values`` that is not a positive integer."""
    for what, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")


def maintain(
    directory: Path,
    work: Callable[[dict[str, SegmentReader]], T],
    *,
    wait: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> T:
    """Run ``work`` on fresh readers of every segment, holding the maintenance lock, after
    sweeping what earlier maintenance left; returns what ``work`` returns. Before the lock goes
    the roll-up across segments is brought up to date (rewritten only when the closed segments
    differ from its members, so also after an earlier update was stopped), and the closed
    segments' sorted-duration records are merged (:func:`settle`), unless ``stop()``."""
    with MaintenanceLock(directory, wait=wait):
        readers = open_readers(directory)
        try:
            for seg in sweep(directory, readers):
                readers.pop(seg).close()
            out = work(readers)
            settle(directory, readers, stop)
            return out
        finally:
            for reader in readers.values():
                reader.close()


def write_tree(directory: Path, *, wait: float = 0.0) -> bool:
    """Merge the closed segments' sorted-duration records and bring the roll-up across segments
    up to date (:func:`settle`), as a maintenance step of its own (``kronicler upgrade``): under
    the maintenance lock (MaintenanceBusyError after ``wait`` seconds). True when the roll-up
    across segments was written."""
    with MaintenanceLock(directory, wait=wait):
        readers: dict[str, SegmentReader] = {}
        try:
            return settle(directory, readers)
        finally:
            for reader in readers.values():
                reader.close()


def settle(
    directory: Path, readers: dict[str, SegmentReader], stop: Callable[[], bool] | None = None
) -> bool:
    """What every maintenance run leaves: each visible closed segment's sorted-duration records
    merged into records of up to a segment (:func:`kronicler.db.durations_merge.coarsen`: about
    half their bytes; a no-op, a read of the record heads, once done), then the roll-up across
    segments brought up to date (:func:`update_tree`; True when written). A writer closes its
    segment with one record per 512K rows, so that the merge (about 1 s per 10M rows) is paid
    here, in the background, and never on a writer's thread. ``stop`` is asked between segments
    and node merges. ``readers``: the caller's, reused (new ones are added for it to close).
    Call holding the maintenance lock."""
    from kronicler.db import durations_merge  # maintenance only: kept off a reader's import

    try:
        now = open_readers(directory, known=readers)
    except (OSError, KroniclerError) as exc:
        log.warning("maintenance of %s left unfinished: %s", directory, exc)
        return False
    for seg_id, reader in now.items():
        readers.setdefault(seg_id, reader)
    for reader in visible(now.values()):
        if stop is not None and stop():
            return False
        if reader.closed:
            durations_merge.coarsen(durations.path_of(directory, reader.id))
    if stop is not None and stop():
        return False
    return update_tree(directory, readers, stop)


def update_tree(
    directory: Path,
    readers: dict[str, SegmentReader] | None = None,
    stop: Callable[[], bool] | None = None,
) -> bool:
    """Rewrite the roll-up across segments (``segment_tree.py``) for the segments now, when
    they changed; ``readers``: the caller's, reused (new ones are added to it for the caller to
    close); ``stop``: asked between node merges (stopped: nothing written). Call holding the
    maintenance lock. Never fails the maintenance: the file is only a
    shortcut, so a failure is logged and the old file (or none) stays."""
    own = readers is None
    readers = {} if readers is None else readers
    try:
        now = open_readers(directory, known=readers)
        for seg_id, reader in now.items():
            readers.setdefault(seg_id, reader)
        return segment_tree.update(directory, [r.view() for r in visible(now.values())], stop)
    except (OSError, KroniclerError) as exc:
        log.warning("roll-up across segments of %s not written: %s", directory, exc)
        return False
    finally:
        if own:
            for reader in readers.values():
                reader.close()
