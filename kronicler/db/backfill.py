"""Maintenance: give segments written by an older version what a new writer writes.

The writer appends a segment's sorted durations (:mod:`kronicler.db.durations`) as it seals; a
segment closed by an older version has none, and its exact statistics are read from its chunks,
page by page. :func:`backfill` reads each such segment's durations once and writes the file, so
a database upgraded in place answers as fast as a new one. It is a maintenance step, like
compaction: under the maintenance lock, writing under a temporary name and renaming.

Likewise the prefix and suffix roll-up records (:func:`kronicler.db.rollup.suffixes`), which let
a cold range read one record per segment edge instead of 5-10: :func:`add_edge_records` merges
them from the level-1 records a closed segment has, appends them to its ``.roll`` file and
rewrites its index to list them (a reader of the old index never looks past the records it
lists; one of the new index finds them written and synced).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from kronicler.db import durations_merge, index, rollup
from kronicler.db.compaction import open_readers
from kronicler.db.durations import SUFFIX, DurationWriter, path_of
from kronicler.db.fileio import append_all
from kronicler.db.lock import MaintenanceLock
from kronicler.db.page import verified_payload
from kronicler.db.schema import STATUS_ERROR
from kronicler.errors import CorruptPageError


def backfill(directory: Path, *, wait: float = 0.0, group_rows: int | None = None) -> list[str]:
    """Write the ``.kdur`` file of every closed segment that has none (segments written before
    it existed); returns their ids. A maintenance step: holds the maintenance lock (so no
    compaction or retention deletes a segment meanwhile; MaintenanceBusyError after ``wait``
    seconds), writes each file under a temporary name and renames it when complete, so a reader
    sees a whole file or none. Chunks whose rows are not ordered by function (written by older
    versions) or are damaged are left out of the records: queries read them from their pages.
    """
    directory = Path(directory)
    done: list[str] = []
    with MaintenanceLock(directory, wait=wait):
        for left in directory.glob(f"*{SUFFIX}.tmp"):  # of a killed backfill: none runs now
            left.unlink(missing_ok=True)
        readers = open_readers(directory)
        try:
            for seg_id, reader in sorted(readers.items()):
                final = path_of(directory, seg_id)
                if not reader.closed or final.exists():
                    continue
                temp = final.with_name(final.name + ".tmp")
                writer = DurationWriter(temp, group_rows)
                try:
                    for chunk in reader.view().chunks:
                        if chunk.code_ends is None or chunk.keep is not None:
                            writer.flush()  # records cover consecutive usable chunks only
                            continue
                        status = reader.decode_stored(chunk, "status")
                        errors = np.add.reduceat(status == STATUS_ERROR,
                                                 np.r_[0, chunk.code_ends[:-1]])  # fmt: skip
                        writer.add(chunk.seq, chunk.codes, chunk.code_ends, errors,
                                   reader.decode_stored(chunk, "duration"))  # fmt: skip
                    writer.close()
                    durations_merge.coarsen(
                        temp
                    )  # as every maintenance run does (compaction.settle)
                    if temp.exists():
                        os.replace(temp, final)
                        done.append(seg_id)
                finally:
                    writer.abandon()
                    temp.unlink(missing_ok=True)
        finally:
            for reader in readers.values():
                reader.close()
    return done


def add_edge_records(directory: Path, *, wait: float = 0.0) -> list[str]:
    """Add the prefix and suffix roll-up records a closed, indexed segment lacks (segments
    written before them); returns their ids. Merged from the segment's level-1 records (a
    segment missing one gets those up to it); under the maintenance lock; the records are
    appended and synced before the index listing them replaces the old one atomically, and
    bytes past the records the index lists (a killed run's) are cut first."""
    directory = Path(directory)
    done: list[str] = []
    with MaintenanceLock(directory, wait=wait):
        for path in sorted(directory.glob(f"*{index.SUFFIX}")):
            try:
                idx = index.load(directory, path.stem)
                if idx is None or not idx.closed or len(idx.chunks) <= rollup.FANOUT:
                    continue
                if _add_edges(directory, idx):
                    done.append(idx.segment)
            except (CorruptPageError, OSError):
                continue  # left as it is: a range reads the tree's records
    return done


def _add_edges(directory: Path, idx: index.SegmentIndex) -> bool:
    last = len(idx.chunks) - 1
    roll = rollup.path_of(directory, idx.segment)
    if not roll.exists() or roll.stat().st_size < idx.records_end:
        return False  # records lost (a crash before they reached the disk): rebuilt by queries
    records = rollup.RollupIndex(roll)
    records.seed(idx.records, idx.records_end, final=True)
    try:

        def group(first: int, end: int) -> rollup.Block | None:
            return records.load(rollup.Node(1, first, end))

        tail = None
        if last % rollup.FANOUT == 0:  # the last level-1 node is one chunk: no record
            offset, size = idx.chunks[last].pages["summary"]
            with open(directory / f"{idx.segment}.kseg", "rb") as fh:
                raw = os.pread(fh.fileno(), size, offset)
            payload = verified_payload(raw, f"{idx.segment} chunk {last} summary")[1]
            tail = rollup.Block.from_page(payload)
        found = [*rollup.prefixes(group, last), *rollup.suffixes(group, last, tail)]
    finally:
        records.close()
    new = [(n, b) for n, b in found if (n.first, n.last) not in idx.records]
    if not new:
        return False
    added = dict(idx.records)
    end = idx.records_end
    fd = os.open(roll, os.O_WRONLY | os.O_APPEND)
    try:
        os.ftruncate(fd, end)
        for node, block in new:
            page = rollup.record_page(node, block)
            append_all(fd, page, idx.records_end)
            added[(node.first, node.last)] = (end, len(page))
            end += len(page)
        os.fsync(fd)
    finally:
        os.close(fd)
    index.save(directory, replace(idx, records=added, records_end=end))
    return True
