"""Merged sorted-duration records (``durations_merge``): a closed segment's ``.kdur`` records are
rewritten into coarser ones; exact statistics stay equal to brute force over the rows written,
with merged and unmerged records side by side, damaged merged records, and merges refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kronicler import query as q
from kronicler.db import Database, compaction, durations, durations_merge
from kronicler.db.durations import SUFFIX, Group, read_groups, read_runs
from kronicler.db.stats import DEFAULT_QUANTILES
from kronicler.server import Client, KroniclerServer, ServerOptions
from tests.db.test_durations import (
    _append,
    _brute,
    _check,
    _covered,
    _reopened_answers_hold,
    _rows,
    _same_as_scan,
)

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("f0", "f1", "f2", "f4")


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records of ~300 rows as written, merged by maintenance into records of up to 2,000 rows, runs
    encoded in blocks of 64 values (so merged runs hold several)."""
    monkeypatch.setattr(durations, "GROUP_ROWS", 300)
    monkeypatch.setattr(durations_merge, "RECORD_ROWS", 2000)
    monkeypatch.setattr(durations, "RUN_BLOCK_ROWS", 64)


def _maintained(db: Database, path: Path) -> None:
    """``db`` closed, then a maintenance step run (it merges every closed segment's records)."""
    db.close()
    compaction.write_tree(path / "segments")


def _files(path: Path) -> list[Path]:
    return sorted((path / "segments").glob(f"*{SUFFIX}"))


def _written(
    path: Path, n: int, seed: int
) -> tuple[list[dict[str, np.ndarray]], Path, tuple[Group, ...]]:
    """``n`` rows of 3 functions written and closed in chunks of 50: the rows, the segment's
    ``.kdur`` file and its records."""
    written = [_rows(n, seed, 3)]
    db = Database(path, chunk_rows=50)
    _append(db, written[0])
    _maintained(db, path)
    (f,) = _files(path)
    return written, f, read_groups(f)


def _cli_exact(path: Path, name: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "kronicler", "stats", "--path", str(path),
                          "--function", name, "--exact", "--json"], capture_output=True,
                         text=True, env=env, timeout=120, check=True).stdout  # fmt: skip
    rows: list[dict[str, object]] = json.loads(out)
    assert len(rows) == 1
    return rows[0]


def test_old_and_merged_records_side_by_side(
    tmp_path: Path, small: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segment as written before the merge (its records as they were appended), a merged one,
    and a live one: exact stats equal brute force through Python, gRPC and the CLI."""
    written = []
    monkeypatch.setattr(durations_merge, "RECORD_ROWS", 1)  # as an older Kronicler left it
    db = Database(tmp_path, chunk_rows=50)
    written.append(_rows(5000, 1, 6))
    _append(db, written[-1])
    db.close()
    (old,) = _files(tmp_path)
    old_groups = read_groups(old)
    assert len(old_groups) > 10 and max(g.rows for g in old_groups) <= 350
    monkeypatch.setattr(durations_merge, "RECORD_ROWS", 2000)
    db = Database(tmp_path, chunk_rows=50)
    written.append(_rows(7000, 2, 6))
    _append(db, written[-1])
    db.close()
    (new,) = [f for f in _files(tmp_path) if f != old]
    assert durations_merge.coarsen(new)  # as maintenance does
    merged = read_groups(new)
    # 7,000 rows in records of <= 2,000 rows: 4 records of ~1,750, each chunks adjacent
    assert len(merged) == 4 and all(1500 <= g.rows <= 2000 for g in merged)
    assert [g.first for g in merged[1:]] == [g.last + 1 for g in merged[:-1]]
    assert sum(g.rows for g in merged) == 7000
    assert read_groups(old) == old_groups  # the other segment's file is not touched
    assert new.stat().st_size < 0.8 * sum(g.rows for g in merged) / 5000 * old.stat().st_size
    live = Database(tmp_path, chunk_rows=50)
    written.append(_rows(900, 3, 6))
    _append(live, written[-1])
    live.flush()
    for name in (*NAMES, "absent"):
        want, errors = _brute(written, name)
        _check(live.stats(name, exact=True), want, errors, name)
        _same_as_scan(live, name)
    assert _covered(live, "f0")[:2] == [100, 140]  # every chunk of both closed segments
    with KroniclerServer(live, ServerOptions(address="127.0.0.1:0")) as srv, Client(
        srv.address, timeout=10
    ) as client:  # fmt: skip
        for name in ("f0", "f4"):
            want, errors = _brute(written, name)
            asked = (*DEFAULT_QUANTILES, 0.0, 0.37, 1.0)  # what _check reads
            (row,) = client.stats(q.Filter.make(name), exact=True, quantiles=asked).rows
            _check(row, want, errors, name)
    live.close()
    for name in ("f0", "f4"):
        want, errors = _brute(written, name)
        got = _cli_exact(tmp_path, name)
        assert (got["count"], got["errors"], got["min_ns"], got["max_ns"], got["p50_ns"]) == (
            len(want), errors, int(want[0]), int(want[-1]),
            int(want[int((len(want) - 1) * 0.5)]))  # fmt: skip


def test_merged_runs_hold_each_functions_sorted_durations(tmp_path: Path, small: None) -> None:
    written = _rows(6000, 5, 4)
    db = Database(tmp_path, chunk_rows=64)
    _append(db, written)
    _maintained(db, tmp_path)
    (f,) = _files(tmp_path)
    groups = read_groups(f)
    assert len(groups) == 4  # 20 records of 300 rows: 4 of 1,500
    durations_all = np.concatenate([
        read_runs(f, [(g, k)])[0] for g in groups for k in range(len(g.codes))])  # fmt: skip
    assert sorted(durations_all.tolist()) == sorted(written["duration_ns"].tolist())
    for g in groups:  # each run sorted, long ones in blocks
        for k in range(len(g.codes)):
            run, good = read_runs(f, [(g, k)])
            assert good == [True] and (np.diff(run) >= 0).all() and len(run) == g.counts[k]
    assert any(c > 64 for g in groups for c in g.counts)


@pytest.mark.parametrize("damage", ["run", "block", "directory"])
def test_damaged_merged_records_are_read_around(tmp_path: Path, small: None, damage: str) -> None:
    """A damaged byte of a merged record is found by its checksums; its chunks are read from
    their pages, and the answers stay those of brute force."""
    written, f, groups = _written(tmp_path, 6000, 7)
    assert len(groups) == 4  # 20 records of 300 rows: 4 of 1,500
    data = bytearray(f.read_bytes())
    g = groups[1]
    if damage == "run":  # the first bytes of every run of the second record
        for k in range(len(g.codes)):
            data[int(g.offsets[k]) + 3] ^= 0xFF
    elif damage == "block":  # the last byte of each run: inside its last block
        for k in range(len(g.codes)):
            data[int(g.offsets[k] + g.lengths[k]) - 1] ^= 0x01
    else:  # the second record's directory: reading stops there
        data[int(g.offsets[0]) - 30] ^= 0xFF
    f.write_bytes(bytes(data))
    db = _reopened_answers_hold(tmp_path, written, ("f0", "f1", "f2"))
    chunks = 6000 // 50
    lost = g.last - g.first + 1 if damage != "directory" else chunks - groups[0].last - 1
    assert _covered(db, "f0") == [chunks - lost]
    db.close()


def test_a_merge_that_cannot_read_a_run_leaves_the_file(
    tmp_path: Path, small: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durations_merge, "RECORD_ROWS", 1)  # the records as written
    written, f, groups = _written(tmp_path, 3000, 9)
    data = bytearray(f.read_bytes())
    data[int(groups[2].offsets[0]) + 2] ^= 0xFF
    f.write_bytes(bytes(data))
    durations._groups_cache.clear()
    assert not durations_merge.coarsen(f, record_rows=2000)
    assert f.read_bytes() == bytes(data)
    assert not [p for p in f.parent.iterdir() if p.name.endswith(".tmp")]
    assert durations_merge.coarsen(f, record_rows=1) is False  # nothing to merge
    shutil.copy(f, tmp_path / "copy")
    data[int(groups[2].offsets[0]) + 2] ^= 0xFF  # repaired: now it merges
    f.write_bytes(bytes(data))
    durations._groups_cache.clear()
    assert durations_merge.coarsen(f, record_rows=2000)
    db = Database(tmp_path)
    want, errors = _brute(written, "f1")
    _check(db.stats("f1", exact=True), want, errors, "f1")
    db.close()


def _group(first: int, last: int, rows: int, counts: list[int]) -> Group:
    n = len(counts)
    z = np.zeros(n, dtype=np.int64)
    return Group(first, last, rows, np.arange(n, dtype=np.uint32), np.array(counts), z, z, z, z)


def test_plan_cuts_adjacent_records_evenly_within_the_bound() -> None:
    g = [_group(i * 10, i * 10 + 9, 100, [60, 40]) for i in range(10)]
    parts = durations_merge.plan(g, record_rows=450)
    assert sorted(len(p) for p in parts) == [3, 3, 4]
    assert [x for p in parts for x in p] == g
    assert [len(p) for p in durations_merge.plan(g, record_rows=10**6)] == [10]
    # a gap in the chunks (a record lost, a chunk skipped) starts a new part
    gap = g[:3] + [_group(35, 39, 100, [60, 40])] + g[4:6]
    assert [len(p) for p in durations_merge.plan(gap, record_rows=10**6)] == [3, 3]
    # a record bigger than the bound stays alone; uneven records still fit the bound
    odd = [_group(0, 9, 5000, [5000]), *(_group(10 + i, 10 + i, 1, [1]) for i in range(5))]
    parts = durations_merge.plan(odd, record_rows=3)
    assert parts[0] == [odd[0]] and [x for p in parts for x in p] == odd
    assert all(len(p) == 1 or sum(x.rows for x in p) <= 3 for p in parts)


def test_a_function_with_more_durations_than_a_pass_is_merged_in_passes(
    tmp_path: Path, small: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ties across pass bounds, and values repeated more than a pass holds: every duration
    once, sorted."""
    monkeypatch.setattr(durations_merge, "PASS_ROWS", 100)
    written = _rows(5000, 11, 2, wide=True)
    db = Database(tmp_path, chunk_rows=64)
    _append(db, written)
    _maintained(db, tmp_path)
    (f,) = _files(tmp_path)
    groups = read_groups(f)
    assert len(groups) == 3 and max(int(c) for g in groups for c in g.counts) > 1000
    db = Database(tmp_path)
    for name in ("f0", "f1"):
        want, errors = _brute([written], name)
        _check(db.stats(name, exact=True), want, errors, name)
    assert _covered(db, "f0") == [-(-5000 // 64)]
    db.close()


def test_a_writer_leaves_its_records_to_maintenance(tmp_path: Path, small: None) -> None:
    """Closing a segment does not merge (a writer's thread never pays it); every maintenance
    step merges each closed segment once, never the live one, and answers stay brute force's."""
    written = []
    for seed in (1, 2):
        db = Database(tmp_path, chunk_rows=50)
        written.append(_rows(3000, seed, 3))
        _append(db, written[-1])
        db.close()
    closed = _files(tmp_path)
    assert all(len(read_groups(f)) == 10 for f in closed)  # as written: 300 rows each
    live = Database(tmp_path, chunk_rows=50)
    written.append(_rows(1000, 3, 3))
    _append(live, written[-1])
    live.flush()  # sealed chunks and a record of the live segment
    (mine,) = [f for f in _files(tmp_path) if f not in closed]
    before = read_groups(mine)
    assert live.retain(max_age_ns=10**18, wait=10) == 0  # nothing retired, maintenance ran
    assert [len(read_groups(f)) for f in closed] == [2, 2]  # 3,000 rows: 2 of 1,500
    assert read_groups(mine) == before  # the live segment is left alone
    stamps = [f.stat().st_ino for f in closed]
    compaction.write_tree(tmp_path / "segments")  # once merged, not rewritten again
    assert [f.stat().st_ino for f in closed] == stamps
    for name in ("f0", "f1", "f2"):
        want, errors = _brute(written, name)
        _check(live.stats(name, exact=True), want, errors, name)
    live.close()


def test_a_file_merged_between_reading_its_directories_and_its_runs(
    tmp_path: Path, small: None, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Maintenance replaces a segment's file while a question reads it: the question reads the
    old file whole (directories and runs from one open file), not damage."""
    written = [_rows(4000, 4, 3)]
    db = Database(tmp_path, chunk_rows=50)
    _append(db, written[0])
    db.close()
    (f,) = _files(tmp_path)
    real = durations.read_groups
    merged: list[bool] = []

    def then_merged(path: Path, fd: int | None = None) -> tuple[Group, ...]:
        out = real(path, fd)
        if not merged:
            merged.append(durations_merge.coarsen(f))  # right after the directories were read
        return out

    monkeypatch.setattr(durations, "read_groups", then_merged)
    db = Database(tmp_path)
    with caplog.at_level("WARNING", logger="kronicler"):
        want, errors = _brute(written, "f0")
        _check(db.stats("f0", exact=True), want, errors, "f0")
        assert merged == [True]
        assert _covered(db, "f0") == [4000 // 50]  # every chunk from the records
    assert not [r for r in caplog.records if "damaged" in r.getMessage()]
    assert len(real(f)) == 3  # 14 records of ~300 rows merged into 3 of <= 2,000
    db.close()
