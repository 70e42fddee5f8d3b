"""Maintenance: give segments written before the ``.kdur`` side file existed their file.

The writer appends a segment's sorted durations (:mod:`kronicler.db.durations`) as it seals; a
segment closed by an older version has none, and its exact statistics are read from its chunks,
page by page. :func:`backfill` reads each such segment's durations once and writes the file, so
a database upgraded in place answers as fast as a new one. It is a maintenance step, like
compaction: under the maintenance lock, writing under a temporary name and renaming.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kronicler.db.compaction import open_readers
from kronicler.db.durations import SUFFIX, DurationWriter, path_of
from kronicler.db.lock import MaintenanceLock
from kronicler.db.schema import STATUS_ERROR


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
