"""Sorted durations per group of chunks (``.kdur``): ``stats(name, exact=True)`` answers from the
records and from the chunks they do not cover, and equals brute force over the rows written and
the scan's answer, whatever the records' state (many segments, live tails, chunk edges, torn,
damaged, missing or backfilled files, compaction)."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kronicler import query
from kronicler.db import Database, compaction, durations, durations_merge
from kronicler.db.backfill import backfill
from kronicler.db.durations import SUFFIX, read_groups, stored_runs
from kronicler.db.lock import MaintenanceLock
from kronicler.db.stats import DEFAULT_QUANTILES, Stats
from kronicler.errors import MaintenanceBusyError
from kronicler.query import Filter

BASE_NS = 1_700_000_000_000_000_000
COLS = ("name", "duration", "status")


def _rows(n: int, seed: int, functions: int, wide: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, functions + 1)
    names = np.array([f"f{i}" for i in rng.choice(functions, n, p=p / p.sum())])
    if wide:  # ties, zeros and 2**40-wide steps
        duration = rng.choice([0, 7, 7, 1 << 40, 3], n) + rng.integers(0, 3, n)
    else:
        duration = rng.lognormal(np.log(1e6), 1.5, n).astype(np.int64)
    start = BASE_NS + seed * 10**12 + np.arange(n, dtype=np.int64) * 1000
    status = np.where(rng.random(n) < 0.1, 2, 0).astype(np.uint8)
    return {"names": names, "start_unix_nano": start, "duration_ns": duration.astype(np.int64),
            "status": status}  # fmt: skip


def _append(db: Database, rows: dict[str, np.ndarray]) -> None:
    db.append(list(rows["names"]), rows["start_unix_nano"], rows["duration_ns"],
              status=rows["status"])  # fmt: skip


def _brute(written: list[dict[str, np.ndarray]], name: str) -> tuple[np.ndarray, int]:
    names = np.concatenate([w["names"] for w in written])
    mask = names == name
    d = np.concatenate([w["duration_ns"] for w in written])[mask]
    s = np.concatenate([w["status"] for w in written])[mask]
    return np.sort(d), int(np.count_nonzero(s == 2))


def _check(got: Stats, want: np.ndarray, errors: int, name: str) -> None:
    if not len(want):
        assert got.count == 0 and got.p50 is None
        return
    n = len(want)
    assert (got.key, got.count, got.errors, got.exact) == (name, n, errors, True)
    assert (got.min, got.max) == (float(want[0]), float(want[-1]))
    for q in (*DEFAULT_QUANTILES, 0.0, 0.37, 1.0):
        assert got.quantile(q) == float(want[int(math.floor(q * (n - 1)))]), q
    assert got.mean == pytest.approx(float(want.astype(np.float64).mean()), rel=1e-9)
    std = float(np.std(want.astype(np.float64), ddof=1)) if n > 1 else 0.0
    assert got.stddev == pytest.approx(std, rel=1e-9, abs=1e-6)


def _same_as_scan(db: Database, name: str) -> None:
    """The records' answer equals the scan's (the road taken before the records)."""
    with db.snapshot() as view:
        new = view.stats(name, exact=True)
        old = view.scan(COLS, names=[name]).exact_stats().get(name, Stats.empty())
    assert new.to_dict() == pytest.approx(old.to_dict(), rel=1e-9)


def _segments(path: Path) -> Path:
    return path / "segments"


def _reopened_answers_hold(
    path: Path, written: list[dict[str, np.ndarray]], names: tuple[str, ...]
) -> Database:
    """The database at ``path`` opened afresh (its files changed by the test): exact stats of
    ``names`` equal brute force and the scan; returns it open."""
    durations._groups_cache.clear()  # same size and time stamp possible within a test
    db = Database(path)
    for name in names:
        want, errors = _brute(written, name)
        _check(db.stats(name, exact=True), want, errors, name)
        _same_as_scan(db, name)
    return db


def _covered(db: Database, name: str) -> list[int]:
    """How many chunks of each segment the records cover for ``name``."""
    with db.snapshot() as view:
        snap = view._open()
        return [len(stored_runs(seg, seg.name_codes[name]).covered)
                for seg in snap.segments if name in seg.name_codes]  # fmt: skip


@pytest.fixture
def small_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records of ~300 rows, left as written (merged records: test_durations_merge)."""
    monkeypatch.setattr(durations, "GROUP_ROWS", 300)
    monkeypatch.setattr(durations_merge, "RECORD_ROWS", 1)


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    sizes=st.lists(st.integers(1, 900), min_size=1, max_size=4),
    chunk_rows=st.integers(1, 97),
    group_rows=st.integers(1, 500),
    merged=st.tuples(st.integers(1, 2000), st.integers(1, 500)),
    live=st.booleans(),
    wide=st.booleans(),
    maintained=st.booleans(),
)
def test_exact_stats_equal_brute_force(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
    sizes: list[int], chunk_rows: int, group_rows: int, merged: tuple[int, int], live: bool,
    wide: bool, maintained: bool,
) -> None:  # fmt: skip
    monkeypatch.setattr(durations, "GROUP_ROWS", group_rows)
    # records merged by maintenance (when ``maintained``) into records of up to ``merged[0]`` rows, a function's durations
    # merged ``merged[1]`` at a time (in passes), its runs encoded in blocks of 50
    monkeypatch.setattr(durations_merge, "RECORD_ROWS", merged[0])
    monkeypatch.setattr(durations_merge, "PASS_ROWS", merged[1])
    monkeypatch.setattr(durations, "RUN_BLOCK_ROWS", 50)
    path = tmp_path_factory.mktemp("kdur")
    written = []
    db = None
    for i, n in enumerate(sizes):  # a segment per writer; the last one left open when ``live``
        db = Database(path, chunk_rows=chunk_rows)
        rows = _rows(n, i, 4, wide)
        _append(db, rows)
        written.append(rows)
        if live and i == len(sizes) - 1:
            db.flush()  # sealed chunks, a record or not, and a tail
        else:
            db.close()
    if maintained:
        compaction.write_tree(path / "segments")  # merges the closed segments' records
    reader = Database(path) if not live else db
    assert reader is not None
    for name in ("f0", "f1", "f3", "absent"):
        want, errors = _brute(written, name)
        _check(reader.stats(name, exact=True), want, errors, name)
        _same_as_scan(reader, name)
    reader.close()
    if db is not reader:
        assert db is not None
        db.close()


def test_records_cover_closed_segments_and_leave_the_live_tail(
    tmp_path: Path, small_groups: None
) -> None:
    written = [_rows(3000, 1, 5)]
    db = Database(tmp_path, chunk_rows=64)
    _append(db, written[0])
    db.close()
    db = Database(tmp_path, chunk_rows=64)
    written.append(_rows(1000, 2, 5))
    _append(db, written[1])
    db.flush()
    # The closed segment's 47 chunks are all covered; the live one's up to its last record.
    covered = _covered(db, "f0")
    assert covered[0] == 47 and 0 < covered[1] < 1000 // 64 + 1
    for name in ("f0", "f4"):
        want, errors = _brute(written, name)
        _check(db.stats(name, exact=True), want, errors, name)
    db.close()


def _one_file(path: Path) -> Path:
    (found,) = [p for p in _segments(path).iterdir() if p.name.endswith(SUFFIX)]
    return found


@pytest.mark.parametrize("damage", ["torn", "run", "directory", "missing", "copy", "foreign"])
def test_damaged_records_are_read_around(tmp_path: Path, small_groups: None, damage: str) -> None:
    written = [_rows(4000, 3, 3)]
    db = Database(tmp_path, chunk_rows=50)
    _append(db, written[0])
    db.close()
    f = _one_file(tmp_path)
    data = bytearray(f.read_bytes())
    groups = read_groups(f)
    assert len(groups) > 3
    first_run = [int(g.offsets[0]) for g in groups]
    if damage == "torn":  # a crash mid-append: the last record is cut
        data = data[: len(data) - 10]
    elif damage == "run":  # a byte of every function's run in the third record
        for k in range(len(groups[2].codes)):
            data[int(groups[2].offsets[k]) + 3] ^= 0xFF
    elif damage == "directory":  # the third record's directory: reading stops there
        data[first_run[2] - 30] ^= 0xFF
    elif damage == "copy":  # the first record once more, at the end: its rows are counted once
        data += data[: int(groups[0].offsets[-1] + groups[0].lengths[-1])]
    elif damage == "foreign":  # a record of chunks the segment does not hold
        data += durations.encode_group(1000, 1001, np.array([0]), [np.array([1, 2, 3])],
                                       np.array([0]))  # fmt: skip
    if damage == "missing":
        f.unlink()
    else:
        f.write_bytes(bytes(data))
    db = _reopened_answers_hold(tmp_path, written, ("f0", "f1", "f2"))
    chunks = 4000 // 50
    expect = {"torn": chunks - (groups[-1].last - groups[-1].first + 1), "missing": 0,
              "run": chunks - (groups[2].last - groups[2].first + 1),
              "directory": groups[1].last + 1, "copy": chunks, "foreign": chunks}  # fmt: skip
    assert _covered(db, "f0") == [expect[damage]]
    db.close()


def test_compaction_writes_the_merged_segments_records(tmp_path: Path, small_groups: None) -> None:
    written = []
    for i in range(4):
        db = Database(tmp_path, chunk_rows=40)
        written.append(_rows(500 + 50 * i, 10 + i, 4))
        _append(db, written[-1])
        db.close()
    db = Database(tmp_path, chunk_rows=40)
    assert db.compact() == 4
    segs = db.snapshot()._open().segments
    assert len(segs) == 1
    assert _covered(db, "f0") == [len(segs[0].chunks)]
    for name in ("f0", "f3"):
        want, errors = _brute(written, name)
        _check(db.stats(name, exact=True), want, errors, name)
    db.close()
    kept = {p.name.rsplit(".", 1)[0] for p in _segments(tmp_path).iterdir()
            if p.name.endswith(SUFFIX)}  # fmt: skip
    assert kept == {segs[0].id}  # the replaced segments' files went with them


def test_backfill_writes_the_file_of_older_segments(tmp_path: Path, small_groups: None) -> None:
    written = []
    for i in range(2):
        db = Database(tmp_path, chunk_rows=30)
        written.append(_rows(700, 20 + i, 3))
        _append(db, written[-1])
        db.close()
    for f in _segments(tmp_path).iterdir():
        if f.name.endswith(SUFFIX):
            f.unlink()  # as written before the file existed
    live = Database(tmp_path, chunk_rows=30)
    written.append(_rows(400, 30, 3))
    _append(live, written[-1])
    live.flush()
    assert _covered(live, "f0")[:2] == [0, 0]
    with MaintenanceLock(_segments(tmp_path)), pytest.raises(MaintenanceBusyError):
        backfill(_segments(tmp_path))
    before = {f.name: f.read_bytes() for f in _segments(tmp_path).iterdir() if f.is_file()}
    killed = _segments(tmp_path) / f"gone{SUFFIX}.tmp"  # a killed backfill's, segment deleted
    killed.write_bytes(b"partial")
    done = backfill(_segments(tmp_path))
    assert len(done) == 2  # the closed ones; the open segment writes its own
    after = {f.name: f.read_bytes() for f in _segments(tmp_path).iterdir() if f.is_file()}
    assert {n: b for n, b in after.items() if n in before} == before  # additive only
    assert sorted(set(after) - set(before)) == sorted(f"{s}{SUFFIX}" for s in done)
    assert not [n for n in after if n.endswith(".tmp")]
    with live.snapshot() as view:
        segs = view._open().segments
    assert _covered(live, "f0")[:2] == [len(segs[0].chunks), len(segs[1].chunks)]
    for name in ("f0", "f2"):
        want, errors = _brute(written, name)
        _check(live.stats(name, exact=True), want, errors, name)
    assert backfill(_segments(tmp_path)) == []
    live.close()


def test_the_writer_holds_one_group_of_durations(tmp_path: Path) -> None:
    """A record per ``group_rows``: the writer never keeps more than a group (plus a chunk)."""
    w = durations.DurationWriter(tmp_path / f"x{SUFFIX}", group_rows=100)
    rng = np.random.default_rng(0)
    written = []
    for seq in range(10):
        d = rng.integers(0, 1000, 40)
        written.append(d)
        w.add(seq, np.array([1, 5]), np.array([15, 40]), np.array([2, 0]), d)
        assert w._rows < 100
    w.flush()
    groups = read_groups(tmp_path / f"x{SUFFIX}")
    assert [(g.first, g.last, g.rows) for g in groups] == [(0, 2, 120), (3, 5, 120), (6, 8, 120),
                                                           (9, 9, 40)]  # fmt: skip
    assert [g.errors.tolist() for g in groups] == [[6, 0], [6, 0], [6, 0], [2, 0]]
    w.close()
    assert durations_merge.coarsen(tmp_path / f"x{SUFFIX}")  # as maintenance does
    (merged,) = read_groups(tmp_path / f"x{SUFFIX}")
    assert (merged.first, merged.last, merged.rows, merged.errors.tolist()) == (0, 9, 400, [20, 0])
    runs, good = durations.read_runs(tmp_path / f"x{SUFFIX}", [(merged, 0), (merged, 1)])
    assert good == [True, True]
    assert runs[:150].tolist() == np.sort(np.concatenate([d[:15] for d in written])).tolist()
    assert runs[150:].tolist() == np.sort(np.concatenate([d[15:] for d in written])).tolist()


def test_stats_read_the_records(tmp_path: Path, small_groups: None) -> None:
    """A well-formed file whose durations are one more than the chunks' own, and no errors: the
    answer follows it, so the records are what ``stats(name, exact=True)`` reads."""
    from kronicler.db.reader import SegmentReader

    written = [_rows(1500, 5, 3)]
    db = Database(tmp_path, chunk_rows=50)
    _append(db, written[0])
    db.close()
    f = _one_file(tmp_path)
    f.unlink()
    reader = SegmentReader(_segments(tmp_path), f.name[: -len(SUFFIX)])
    reader.refresh()
    w = durations.DurationWriter(f)
    for chunk in reader.view().chunks:
        assert chunk.code_ends is not None
        w.add(chunk.seq, chunk.codes, chunk.code_ends, np.zeros(len(chunk.codes), np.int64),
              reader.decode_stored(chunk, "duration") + 1)  # fmt: skip
    w.close()
    reader.close()
    db = Database(tmp_path)
    want, errors = _brute(written, "f1")
    expected = (len(want), 0, float(want[0] + 1), float(want[-1] + 1))
    got = db.stats("f1", exact=True)
    assert errors > 0 and (got.count, got.errors, got.min, got.max) == expected
    # The query layer (CLI, gRPC, dashboard) reads them too for a few functions over all time,
    # with its own quantiles; a time range or many functions still scan the rows.
    table = query.stats(db, Filter(functions=("f1", "f2")), exact=True, quantiles=(0.5, 0.9))
    by_key = {r.key: r for r in table.rows}
    got = by_key["f1"]
    assert (got.count, got.errors, got.min, got.max) == expected
    assert [q for q, _ in got.quantiles] == [0.5, 0.9]
    scanned = query.stats(db, Filter(functions=("f1",), since=0), exact=True).rows[0]
    assert (scanned.count, scanned.errors, scanned.min, scanned.max) == (
        len(want), errors, float(want[0]), float(want[-1])
    )  # fmt: skip
    db.close()


def test_record_directories_are_parsed_together_and_checked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Records read in one pass: a directory longer than one read takes, the runs found where
    they are, and reading stops at a record whose directory (its checksum good) does not add
    up to its rows."""
    rng = np.random.default_rng(11)
    codes = np.arange(0, 600, 2)  # 300 functions: a directory of 8.4 KB
    runs = [np.sort(rng.integers(0, 10**9, int(rng.integers(1, 9)))) for _ in codes]
    big = durations.encode_group(0, 4, codes, runs, np.arange(len(codes)))
    small = durations.encode_group(5, 9, np.array([1, 7]), [np.array([5]), np.array([1, 2])],
                                   np.array([0, 1]))  # fmt: skip
    # the small record once more, its span claiming a row its runs do not hold
    head = struct.Struct("<4sIIQ")
    magic, dir_len, _, body_len = head.unpack_from(small, 0)
    directory = bytearray(small[head.size : head.size + dir_len])
    first, last, rows = struct.unpack_from("<IIQ", directory, 0)
    struct.pack_into("<IIQ", directory, 0, 10, 14, rows + 1)
    wrong = (head.pack(magic, dir_len, zlib.crc32(directory), body_len) + bytes(directory)
             + small[head.size + dir_len :])  # fmt: skip
    path = tmp_path / f"x{SUFFIX}"
    path.write_bytes(big + small + wrong + big)
    durations._groups_cache.clear()
    with caplog.at_level("WARNING"):
        groups = read_groups(path)
    assert [(g.first, g.last, g.rows) for g in groups] == [(0, 4, sum(map(len, runs))), (5, 9, 3)]
    assert "does not add up" in caplog.text
    assert np.array_equal(groups[0].codes, codes) and groups[1].codes.tolist() == [1, 7]
    assert groups[1].errors.tolist() == [0, 1]
    wanted = [(groups[0], i) for i in range(len(codes))] + [(groups[1], 0), (groups[1], 1)]
    joined, read = durations.read_runs(path, wanted)
    assert all(read)
    assert np.array_equal(joined, np.concatenate([*runs, [5], [1, 2]]))
