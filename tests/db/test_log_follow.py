"""Following tail logs: a reader that re-reads only what each commit appended holds exactly what
a fresh reader holds, however the log changes (appends, rewrites at a seal, damage, in-place
replacement, an append still in progress)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kronicler.db import Database, wal
from kronicler.db.chunk import summarize
from kronicler.db.log_follow import GrowingColumns, LogFollower
from kronicler.db.reader import SegmentReader
from kronicler.db.rollup import Block
from kronicler.db.schema import COLUMNS

BASE = 1_700_000_000_000_000_000


def _columns(first: int, n: int, names: int = 5) -> dict[str, np.ndarray]:
    rows = np.arange(first, first + n, dtype=np.int64)
    out = {c: np.zeros(n, dtype=d) for c, d in COLUMNS.items()}
    out["start"] = BASE + rows * 1000
    out["duration"] = rows * 7 + 1
    out["name"] = (rows % names).astype(out["name"].dtype)
    out["status"] = np.where(rows % 11 == 0, 2, 1).astype(out["status"].dtype)
    return out


def _record(first: int, n: int) -> bytes:
    entries = {"name": [(c, f"fn{c}") for c in range(5)]} if first == 0 else {}
    return bytes(wal.encode_record(first, _columns(first, n), entries))


def _same(follower: LogFollower, path: Path) -> None:
    """The follower's log is what a whole read of the file gives, record for record."""
    want = wal.read_log(path)
    got = follower.log
    assert (got.damaged, got.trailing_rows) == (want.damaged, want.trailing_rows)
    assert [r.first_row for r in got.records] == [r.first_row for r in want.records]
    for a, b in zip(got.records, want.records, strict=True):
        assert a.entries == b.entries
        for c in COLUMNS:
            np.testing.assert_array_equal(a.columns[c], b.columns[c])


def test_appends_are_read_alone_and_a_rewrite_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "s.wal"
    writer = wal.WalWriter(path)
    follower = LogFollower(path)
    assert follower.read() and follower.log.records == ()  # an empty log
    assert not follower.read()
    row = 0
    for n in (3, 1, 40, 7):
        writer.append(_record(row, n))
        row += n
        assert follower.read()
        _same(follower, path)
    assert follower.appended is not None and [r.first_row for r in follower.appended] == [44]
    assert not follower.read()  # nothing changed
    writer.append(_record(row, 2))
    writer.append(_record(row + 2, 5))  # two commits between reads
    assert follower.read() and [r.first_row for r in follower.appended or []] == [51, 53]
    _same(follower, path)
    writer.rewrite(_record(30, 28))  # a seal kept rows 30.. only
    assert follower.read() and follower.appended is None
    _same(follower, path)
    writer.append(_record(58, 4))
    assert follower.read() and follower.appended is not None
    _same(follower, path)
    writer.rewrite(None)
    assert follower.read() and follower.log.records == ()
    writer.close(remove=True)
    assert follower.read() and follower.log.records == ()


def test_a_log_replaced_in_place_is_read_whole(tmp_path: Path) -> None:
    # Same inode, longer than before: only the first record's header tells it is another log.
    path = tmp_path / "s.wal"
    cols = _columns(5, 10)
    path.write_bytes(wal.encode_record(5, cols, {}))
    follower = LogFollower(path)
    follower.read()
    with open(path, "r+b") as f:  # a first record of the same length, then a valid one
        f.write(wal.encode_record(100, cols, {}) + _record(110, 3))
    assert follower.read() and follower.appended is None
    assert [r.first_row for r in follower.log.records] == [100, 110]
    _same(follower, path)


def test_an_append_in_progress_waits_and_damage_is_read_as_a_whole_read_finds_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.wal"
    whole = _record(0, 10) + _record(10, 10)
    path.write_bytes(whole[: len(whole) - 9])  # the second record half written
    follower = LogFollower(path)
    assert follower.read() and [r.first_row for r in follower.log.records] == [0]
    _same(follower, path)
    path.write_bytes(whole)  # the append completes
    assert follower.read() and [r.first_row for r in follower.log.records] == [0, 10]
    _same(follower, path)
    third = bytearray(_record(20, 5))
    third[-1] ^= 0xFF  # a damaged record, then a good one
    with open(path, "ab") as f:
        f.write(bytes(third) + _record(25, 5))
    assert follower.read()
    assert follower.log.damaged == 1
    _same(follower, path)
    with open(path, "ab") as f:
        f.write(_record(30, 2))
    assert follower.read() and follower.appended is None  # read whole again: damage is counted
    _same(follower, path)


def test_growing_columns_never_change_rows_handed_out() -> None:
    cols = GrowingColumns({"a": np.arange(3, dtype=np.int64)})
    first = cols.take()["a"]
    for step in range(1, 8):
        cols.append({"a": [np.full(step, step, dtype=np.int64), np.zeros(1, np.int64)]})
    np.testing.assert_array_equal(first, [0, 1, 2])
    want = np.concatenate([[0, 1, 2], *[[*[s] * s, 0] for s in range(1, 8)]])
    np.testing.assert_array_equal(cols.take()["a"], want)


def test_growing_columns_built_from_pieces_have_room_for_the_next_appends() -> None:
    """A rebuilt tail (every seal rebuilds one) takes the next commits' rows in place: its
    buffers are neither exactly full nor read-only, so no append copies the rows before it."""
    pieces: dict[str, list[np.ndarray]] = {
        "a": [np.arange(3, dtype=np.int64), np.arange(3, 5, dtype=np.int32)]
    }
    cols = GrowingColumns.of(pieces, {"a": np.dtype(np.int64)})
    first = cols.take()["a"]
    assert first.dtype == np.int64
    np.testing.assert_array_equal(first, [0, 1, 2, 3, 4])
    buffer = cols._buf["a"]
    for step in range(1, 20):
        cols.append({"a": [np.full(step, step, dtype=np.int64)]})
    assert cols._buf["a"] is buffer  # 190 rows more: within the room it was built with
    np.testing.assert_array_equal(first, [0, 1, 2, 3, 4])
    want = np.concatenate([[0, 1, 2, 3, 4], *[[s] * s for s in range(1, 20)]])
    np.testing.assert_array_equal(cols.take()["a"], want)
    nothing: dict[str, list[np.ndarray]] = {"a": []}
    empty = GrowingColumns.of(nothing, {"a": np.dtype(np.uint8)})
    assert empty.take()["a"].dtype == np.uint8 and len(empty.take()["a"]) == 0


def _blocks_equal(a: Block, b: Block) -> None:
    for f in ("codes", "count", "zero_count", "errors", "min", "max", "first_start",
              "last_start", "bounds", "keys", "counts"):  # fmt: skip
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    np.testing.assert_allclose(a.sum, b.sum, rtol=1e-12)
    np.testing.assert_allclose(a.m2, b.m2, rtol=1e-9)


@pytest.mark.parametrize("prewalk", [False, True])
def test_a_following_reader_holds_what_a_fresh_reader_holds_after_every_commit(
    tmp_path: Path, prewalk: bool
) -> None:
    """A writer commits batches of random sizes with small chunks (so seals rewrite the log);
    after every commit the long-lived reader's tail, tail summary and statistics equal a fresh
    reader's and brute force over every row written, and most commits are followed in place.
    With ``prewalk``, the reader walks each new chunk ahead of the refresh (as the server's
    warmer does, without the lock), and the refresh takes it from there."""
    rng = np.random.default_rng(7)
    written: list[tuple[str, int, int]] = []
    with Database.open(tmp_path / "db", chunk_rows=150, flush_interval=60) as db:
        db.append(["warm"], [BASE], [1])
        db.flush()
        segdir = tmp_path / "db" / "segments"
        (seg_id,) = {p.stem for p in segdir.glob("*.kseg")}
        follower = SegmentReader(segdir, seg_id)
        written.append(("warm", BASE, 1))
        builds, extended = follower._tail_gen, 0
        walked_ahead = sealed = 0
        for step in range(60):
            n = int(rng.integers(1, 60))
            names = [f"f{step // 4}.{int(x)}" for x in rng.integers(0, 3, n)]  # new ones too
            starts = BASE + 1000 + step * 1000 + np.arange(n)
            durations = rng.integers(0, 10**7, n)
            db.append(names, starts, durations)
            written += zip(names, starts.tolist(), durations.tolist(), strict=True)
            db.flush()
            before = follower._tail_gen
            if prewalk:
                ahead = follower._end
                walked_ahead += follower.prewalk()
                follower.refresh()
                assert follower._prewalked is None or follower._prewalked[0] > ahead
            else:
                follower.refresh()
            chunks = len(follower.chunks)
            sealed = max(sealed, chunks)
            extended += follower._tail_gen == before
            view = follower.view()
            fresh = SegmentReader(segdir, seg_id)
            fresh.refresh()
            want = fresh.view()
            for c in COLUMNS:
                np.testing.assert_array_equal(view.tail[c], want.tail[c], err_msg=c)
            assert view.tail_attributes == want.tail_attributes
            assert view.names == want.names
            _blocks_equal(view.tail_block(), Block.of(summarize(dict(want.tail))))
            if step % 7 == 0:  # the statistics, through the query path, against brute force
                got = {
                    name: (s.summary.count, s.summary.min, s.summary.max, s.summary.sum)
                    for name, s in db.summaries().items()
                }
                brute: dict[str, list[int]] = {}
                for name, _, d in written:
                    brute.setdefault(name, []).append(d)
                assert got == {k: (len(v), min(v), max(v), float(sum(v))) for k, v in brute.items()}
            fresh.close()
        follower.close()
    assert extended >= 30, f"only {extended} of 60 commits were followed in place"
    assert follower._tail_gen - builds >= 3  # and seals rebuilt it
    if prewalk:  # a commit seals one chunk at most here: each was walked ahead of its refresh
        assert walked_ahead == sealed >= 3


def test_rows_missing_between_appended_records_are_counted_as_a_whole_read_counts_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "s.kseg").write_bytes(b"")
    writer = wal.WalWriter(tmp_path / "s.wal")
    writer.append(_record(0, 10))
    reader = SegmentReader(tmp_path, "s")
    reader.refresh()
    writer.append(_record(15, 5))  # rows 10..14 were in a record lost before it
    reader.refresh()
    fresh = SegmentReader(tmp_path, "s")
    fresh.refresh()
    assert fresh.damage.log_rows == 5
    assert reader.damage == fresh.damage
    for c in COLUMNS:
        np.testing.assert_array_equal(reader.view().tail[c], fresh.view().tail[c])
    writer.close()


def _only_segment(path: Path) -> tuple[Path, str]:
    """The segment folder of the database at ``path`` and the id of its one segment."""
    segdir = path / "segments"
    (seg_id,) = {p.stem for p in segdir.glob("*.kseg")}
    return segdir, seg_id


def test_a_chunk_walked_ahead_is_checked_as_a_refresh_checks_it(tmp_path: Path) -> None:
    """A damaged new chunk is not taken ahead: the refresh walks it, and finds and counts the
    damage exactly as a fresh reader does; a chunk walked ahead from a place the reader has moved
    past is not used."""
    with Database.open(tmp_path / "db", chunk_rows=100, flush_interval=60) as db:
        db.append(["a"] * 50, BASE + np.arange(50), np.arange(50))
        db.flush()
        segdir, seg_id = _only_segment(tmp_path / "db")
        reader = SegmentReader(segdir, seg_id)
        reader.refresh()
        assert not reader.prewalk()  # nothing sealed yet
        db.append(["b"] * 120, BASE + 100 + np.arange(120), np.arange(120))
        db.flush()  # chunk 0 sealed: 100 rows
        kseg = segdir / f"{seg_id}.kseg"
        data = bytearray(kseg.read_bytes())
        data[len(data) // 2] ^= 0xFF  # inside chunk 0's pages
        kseg.write_bytes(bytes(data))
        assert not reader.prewalk()  # its checksum fails: left to the refresh
        assert reader._prewalked is None
        reader.refresh()
        fresh = SegmentReader(segdir, seg_id)
        fresh.refresh()
        assert reader.damage == fresh.damage and reader.damage.chunk_rows == 100
        assert reader.view().rows == fresh.view().rows == 70
        reader.close()
        fresh.close()
    with Database.open(tmp_path / "db2", chunk_rows=100, flush_interval=60) as db:
        db.append(["a"] * 150, BASE + np.arange(150), np.arange(150))
        db.flush()
        segdir, seg_id = _only_segment(tmp_path / "db2")
        reader = SegmentReader(segdir, seg_id)
        assert reader.prewalk()  # chunk 0, from the start
        pre = reader._prewalked
        reader.refresh()  # takes it
        assert reader._prewalked is None and len(reader.chunks) == 1
        reader._prewalked = pre  # a stale slot: from a place the walk has left behind
        db.append(["a"] * 100, BASE + 200 + np.arange(100), np.arange(100))
        db.flush()  # chunk 1 sealed
        reader.refresh()
        assert reader._prewalked is None  # dropped, and chunk 1 walked as usual
        assert [c.seq for c in reader.chunks] == [0, 1] and reader.view().rows == 250
        reader.close()
