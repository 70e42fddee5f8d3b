"""Lazily opened segments under the roll-up across segments (``segments.ktree``).

A closed segment opens from its index's head: its chunk directory is checked, its function lists
and roll-up read, only when a question first needs them. A segment a tree node answers for
whole never needs them. What was left unread is read later from files that may have changed
since the open: answers must still be brute force's (or a fresh database's, where rows were lost).
The databases and helpers are those of ``test_segment_tree.py``.
"""

from __future__ import annotations

from pathlib import Path

from kronicler.db import Database, compaction, segment_tree
from kronicler.db.scan import TimeRange
from tests.db import test_segment_tree
from tests.db.test_corruption import _flip, _pages
from tests.db.test_segment_tree import (
    _check_brute,
    _same,
    _segdir,
    _windows,
    _without_tree,
    _write_tree,
)
from tests.oracle.interfaces import PythonApi
from tests.oracle.truth import Query, Rows, check_table, expected_stats

# the same databases: eight time-disjoint segments of one writer, and two overlapping writers
built = test_segment_tree.built
db_copy = test_segment_tree.db_copy


def _covered(db: Database, since: int | None, until: int | None) -> set[str]:
    """The segments a node answers for in a question over the window (its reader's state)."""
    snap = db._reads.snapshot()
    across = db._reads._across(snap, TimeRange.of(since, until), None)
    return set(across)


def test_segments_a_node_answers_whole_are_not_looked_into(db_copy: tuple[Path, Rows]) -> None:
    """A closed segment opens from its index's head alone: for a segment that a node answers
    for, a question checks no chunk directory and reads no function list or roll-up (what it
    needs of the segment, its rows, chunks and time range, the head says); the segments the
    window cuts are read as before. Every answer is what it is without the file, and brute
    force's."""
    path, truth = db_copy
    assert _write_tree(path)
    covered = 0
    for w in _windows(path):
        with Database.open(path, readonly=True) as db:
            got = db.summaries(since=w[0], until=w[1])
            held = _covered(db, *w)
            for reader in db._reads.readers.values():
                table = reader.chunks.table
                assert table is not None
                if reader.id in held:
                    assert not (table.checked or table.decoded or reader.rollup.decoded), w
            covered += len(held)
        _same(got, _without_tree(path, *w), f"{w}")
        _check_brute(path, truth, *w, where=f"{w}")
    assert covered > 0


def test_changes_after_a_lazy_open_are_seen_by_the_next_question(
    db_copy: tuple[Path, Rows],
) -> None:
    """What a lazy open left unread is read later from files that may have changed since: an
    index rewritten with the same chunks (as maintenance rewrites one), a page damaged, a
    member retired. The same open database then answers as a new one does (brute force's
    where nothing was lost)."""
    path, truth = db_copy
    assert _write_tree(path)
    segdir = _segdir(path)
    tree = segment_tree.TreeFile.open(segdir / segment_tree.FILE)
    assert tree is not None
    members = tree.members
    everything = (members[0].start_min, max(m.start_max for m in members) + 1)
    rewritten, damaged, retired = members[1], members[2], members[0]

    def brute(db: Database, since: int, until: int) -> None:
        q = Query(since=since, until=until)
        check_table(PythonApi(db).stats(q), "function", expected_stats(truth, q), (0.5, 0.99),
                    exact=False, where=f"{since} {until}")  # fmt: skip

    with Database.open(path, readonly=True) as db:
        assert db.summaries(since=everything[0], until=everything[1])
        assert {rewritten.id, damaged.id} <= _covered(db, *everything)
        tables = {m.id: db._reads.readers[m.id].chunks.table for m in (rewritten, damaged)}
        assert all(t is not None and not (t.checked or t.decoded) for t in tables.values())
        table = tables[rewritten.id]
        assert table is not None
        # a new file with the same chunks (another inode): its lists are taken from it
        idx = segdir / f"{rewritten.id}.kidx"
        raw = idx.read_bytes()
        idx.unlink()
        idx.write_bytes(raw)
        cut = (rewritten.start_min + 1, rewritten.start_max)
        brute(db, *cut)
        assert table.decoded and not db._reads.readers[rewritten.id].index_failures
        # a page of a member damaged since: found when a window first cuts its chunk
        offset, size = _pages(segdir, damaged.id, 1)["duration"]
        _flip(segdir / f"{damaged.id}.kseg", offset + size - 3)
        cut = (damaged.start_min + 1, damaged.start_max)
        after_damage = db.summaries(since=cut[0], until=cut[1])
        # a member retired since the open
        compaction.delete_segment(segdir, retired.id)
        after_retired = db.summaries(since=everything[0], until=everything[1])
    _same(after_damage, _without_tree(path, *cut), "damaged")
    _same(after_retired, _without_tree(path, *everything), "retired")
