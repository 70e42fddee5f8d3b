"""Prefix and suffix roll-up records: what a range that holds a segment from one of its ends reads.

A closed segment's ``.roll`` file holds, beside the tree's nodes, the records of chunks 0 to
``k * FANOUT - 1`` and of ``k * FANOUT`` to its last chunk (:func:`kronicler.db.rollup.suffixes`).
Segments written before them (the fixture ``data/rollup_v1``, written by that build) still read
as they are, and ``add_edge_records`` (``kronicler upgrade``) adds them; a lost or damaged one is
rebuilt from the nodes under it. Every answer is checked against brute force over the same rows.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kronicler.db import Database, backfill, index, rollup
from kronicler.db.page import HEADER_SIZE
from kronicler.db.rollup import FANOUT, ChunkTree
from kronicler.db.scan import TimeRange
from tests.oracle.interfaces import CliApi, PythonApi
from tests.oracle.layouts import writer_env
from tests.oracle.truth import Query, Rows, check_table, expected_stats

sys.path.insert(0, str(Path(__file__).parent / "data" / "rollup_v1"))
from make_fixture import CHUNK, rows  # noqa: E402

FIXTURE = Path(__file__).parent / "data" / "rollup_v1"
QS = (0.0, 0.5, 0.99, 1.0)


def _windows(truth: Rows) -> list[tuple[int | None, int | None]]:
    """Windows holding segments from their first chunk, up to their last, both, and neither."""
    s = np.sort(truth.start)
    at = [int(s[int(f * (s.size - 1))]) for f in (0.05, 0.3, 0.5, 0.7, 0.95)]
    return [(None, at[2]), (None, at[4]), (at[0], None), (at[1], None), (at[1], at[3]),
            (at[0], at[4] + 1), (at[2], at[2] + 1), (None, None)]  # fmt: skip


def _check(db: Database, truth: Rows) -> None:
    for since, until in _windows(truth):
        q = Query((), None, since, until)
        got = PythonApi(db).stats(q, quantiles=QS)
        check_table(got, "function", expected_stats(truth, q), QS, False, q.label())


def _edge_keys(segdir: Path) -> dict[str, set[tuple[int, int]]]:
    """Per segment, the prefix and suffix runs its index lists."""
    out = {}
    for path in sorted(segdir.glob(f"*{index.SUFFIX}")):
        idx = index.load(segdir, path.stem)
        assert idx is not None
        last = len(idx.chunks) - 1
        out[path.stem] = {k for k in idx.records if (k[0] == 0 and k[1] % FANOUT == FANOUT - 1
                          and k[1] >= 2 * FANOUT - 1) or (k[1] == last and k[0] % FANOUT == 0
                          and 0 < k[0] < last - FANOUT + 1)}  # fmt: skip
    return out


def _edges_used(db: Database, window: TimeRange) -> int:
    """How many prefix or suffix records the plans of ``window`` read, over every segment (a
    node of the plan that is such a run: its record, or a run of whole siblings from the first
    chunk or to the last, which the record holds)."""
    used = 0
    edges = {k for keys in _edge_keys(db.path / "segments").values() for k in keys}
    for seg in db._reads.snapshot().segments:
        tree = ChunkTree(seg.chunks, closed=seg.closed, records=seg.reader.rollups.records)
        runs = {(n.first, n.last) for n in tree.plan(window).nodes}
        used += len(runs & edges & set(seg.reader.rollups.records))
    return used


def test_segments_from_before_edge_records_read_and_are_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "db"
    shutil.copytree(FIXTURE, path)
    segdir = path / "segments"
    truth = Rows.concat(rows())
    assert all(not keys for keys in _edge_keys(segdir).values())  # as the older build wrote
    window = TimeRange.of(None, _windows(truth)[0][1])
    with Database.open(path, readonly=True) as db:
        _check(db, truth)
        assert _edges_used(db, window) == 0

    assert sorted(backfill.add_edge_records(segdir)) == sorted(_edge_keys(segdir))
    # 44 chunks: prefixes to 15, 23, 31, 39 and suffixes from 8 to 32 (40-43 is a tree node)
    want = {(0, 15), (0, 23), (0, 31), (0, 39), (8, 43), (16, 43), (24, 43), (32, 43)}
    # 33 chunks: the last alone in its level-1 node (the suffixes start from its summary page)
    want_33 = {(0, 15), (0, 23), (0, 31), (8, 32), (16, 32), (24, 32)}
    assert sorted(_edge_keys(segdir).values(), key=len) == [want_33, want]
    with Database.open(path, readonly=True) as db:
        _check(db, truth)
        assert _edges_used(db, window) >= 1  # a prefix record
        assert _edges_used(db, TimeRange.of(_windows(truth)[3][0], None)) >= 1  # a suffix
    assert backfill.add_edge_records(segdir) == []  # nothing more to add


def test_a_new_segment_writes_them_and_a_damaged_one_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "db"
    parts = rows()
    for part in parts:
        with Database.open(path, chunk_rows=CHUNK, flush_interval=3600) as db:
            assert db.append(**part.append_kwargs()) == len(part)
    segdir = path / "segments"
    written = _edge_keys(segdir)
    assert sorted(len(keys) for keys in written.values()) == [6, 8]  # 33 and 44 chunks
    assert backfill.add_edge_records(segdir) == []  # a new writer wrote every one
    truth = Rows.concat(parts)
    with Database.open(path, readonly=True) as db:
        _check(db, truth)
    # flip a byte in the payload of every edge record: each is rebuilt from the nodes under it
    for seg, keys in written.items():
        idx = index.load(segdir, seg)
        assert idx is not None
        with open(rollup.path_of(segdir, seg), "r+b") as fh:
            for key in keys:
                offset, size = idx.records[key]
                fh.seek(offset + HEADER_SIZE + size // 3)
                byte = fh.read(1)
                fh.seek(-1, 1)
                fh.write(bytes([byte[0] ^ 0x5A]))
    with Database.open(path, readonly=True) as db:
        _check(db, truth)


@pytest.mark.parametrize("left", ["garbage", "torn record"])
def test_an_upgrade_killed_midway_leaves_bytes_that_the_next_one_cuts(
    tmp_path: Path, left: str
) -> None:
    path = tmp_path / "db"
    shutil.copytree(FIXTURE, path)
    segdir = path / "segments"
    roll = sorted(segdir.glob(f"*{rollup.SUFFIX}"))[0]
    size = roll.stat().st_size
    with open(roll, "ab") as fh:  # what a killed run left past the records the index lists
        fh.write(b"\x07" * 300 if left == "garbage" else roll.read_bytes()[: HEADER_SIZE + 40])
    assert len(backfill.add_edge_records(segdir)) == 2
    idx = index.load(segdir, roll.stem)
    assert idx is not None and roll.stat().st_size == idx.records_end > size
    reads = rollup.RollupIndex(roll)
    reads.refresh(final=True)  # a walk finds exactly the records the index lists
    assert reads.records == dict(idx.records)
    reads.close()
    with Database.open(path, readonly=True) as db:
        _check(db, Rows.concat(rows()))


def _same_rows(got: list[dict[str, Any]], was: list[dict[str, Any]]) -> None:
    """Equal rows; moments merged in another order may differ in their last bit."""
    assert [sorted(r) for r in got] == [sorted(r) for r in was]
    for g, w in zip(got, was, strict=True):
        for key, value in w.items():
            if isinstance(value, float):
                assert math.isclose(g[key], value, rel_tol=1e-12), (key, g, w)
            else:
                assert g[key] == value, (key, g, w)


def test_kronicler_upgrade_adds_them_and_the_cli_answers_the_same(tmp_path: Path) -> None:
    path = tmp_path / "db"
    shutil.copytree(FIXTURE, path)
    truth = Rows.concat(rows())
    cli = CliApi(path=path)
    second = 10**9  # the CLI's --since and --until are whole seconds
    base = int(truth.start.min()) // second * second
    queries = [Query((), None, since, until) for since, until in
               [(None, base + 4 * second), (base + 3 * second, None), (base + 2 * second,
                base + 8 * second)]]  # fmt: skip
    before = [cli.stats(q, quantiles=QS) for q in queries]
    out = subprocess.run(
        [sys.executable, "-m", "kronicler", "upgrade", "--path", str(path)], capture_output=True,
        text=True, env=writer_env(), check=True, timeout=120,
    )  # fmt: skip
    assert "edge roll-ups to 2 segment(s)" in out.stdout
    assert all(_edge_keys(path / "segments").values())
    for q, was in zip(queries, before, strict=True):
        got = cli.stats(q, quantiles=QS)
        _same_rows(got, was)
        check_table(got, "function", expected_stats(truth, q), QS, False, q.label())
