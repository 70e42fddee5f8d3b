"""Roll-ups: any time range answered from O(log n) node summaries plus the chunks it cuts.

The story: writers seal many small chunks into several segments (two closed, one still open with
an unsealed tail), the roll-up files hold a node per run of 8, 64, ... chunks, and every range,
every function filter, must give exactly the brute force over the raw rows: with the records,
without them (rebuilt from chunk summaries), with a torn or damaged record file, with a chunk lost
to damage inside a node, and through a pool too small to hold a query's blocks. Plans are checked
on their own against the chunks they stand for, and a range over a closed segment must read a
handful of blocks, not one per chunk.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kronicler.db import Database, index, merged, rollup
from kronicler.db.chunk import ChunkSummary, summarize
from kronicler.db.chunk_table import Chunks
from kronicler.db.page import HEADER_SIZE
from kronicler.db.reader import SegmentReader
from kronicler.db.reads import _PageKey, _PlanKey
from kronicler.db.rollup import FANOUT, Block, ChunkTree, Node, RollupIndex
from kronicler.db.scan import TimeRange
from kronicler.db.snapshot import ChunkInfo
from kronicler.db.summary import Summary, quantiles_of
from tests.oracle.interfaces import PythonApi
from tests.oracle.truth import Query, Rows, check_table, expected_stats, generate

CHUNK = 16
FUNCTIONS = ("a.one", "a.two", "b.three", "c.four")
BASE = 1_800_000_000_000_000_000
QS = (0.0, 0.5, 0.99, 1.0)
FEW = settings(max_examples=25, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


def _time_ordered(rows: Rows, rng: np.random.Generator) -> Rows:
    """Rows in roughly increasing start order, as a live writer appends them: sorted, then
    neighbours swapped so that adjacent chunks' time ranges overlap a little."""
    order = np.argsort(rows.start, kind="stable")
    swap = np.flatnonzero(rng.random(len(order) - 1) < 0.3)
    for i in swap.tolist():
        order[i], order[i + 1] = order[i + 1], order[i]
    return rows.take(order)


def _write(path: Path, rows: Rows, *, close: bool = True) -> Database:
    db = Database.open(path, chunk_rows=CHUNK, flush_interval=0.05)
    for piece in np.array_split(np.arange(len(rows)), 3):
        assert db.append(**rows.take(piece).append_kwargs()) == len(piece)
        assert db.flush(30)
    if close:
        db.close()
    return db


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Rows]]]:
    """Three segments: 1,500 rows (94 chunks, three levels) and 700 rows, closed; 405 rows
    from a writer still open (25 chunks and a tail of 5 rows)."""
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("rollup") / "db"
    parts = []
    for lane, (n, names) in enumerate([(1500, FUNCTIONS), (700, FUNCTIONS[:2]), (405, FUNCTIONS)]):
        rows = _time_ordered(generate(rng, n, names, base=BASE, span=10**10, lane=lane), rng)
        parts.append(rows)
    for rows in parts[:2]:
        _write(path, rows)
    live = _write(path, parts[2], close=False)
    try:
        yield path, parts
    finally:
        live.close()


def _bounds(truth: Rows, data: st.DataObject) -> tuple[int | None, int | None]:
    def bound() -> int | None:
        if data.draw(st.booleans(), "open bound") and data.draw(st.booleans()):
            return None
        i = data.draw(st.integers(0, len(truth) - 1))
        return int(truth.start[i]) + data.draw(st.sampled_from([-1, 0, 1]))

    since, until = bound(), bound()
    if since is not None and until is not None and since >= until:
        since, until = until, since + 1
    return since, until


def _check(db: Database, truth: Rows, data: st.DataObject) -> None:
    since, until = _bounds(truth, data)
    names = data.draw(st.sampled_from([(), ("a.one",), ("b.three", "c.four")]))
    q = Query(names, None, since, until)
    got = PythonApi(db).stats(q, quantiles=QS)
    check_table(got, "function", expected_stats(truth, q), QS, False, q.label())
    assert db.summaries(["zz"], since=since, until=until) == {}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst / "segments"


def _roll_files(path: Path) -> list[Path]:
    return sorted(path.glob(f"**/*{rollup.SUFFIX}"))


# -- answers equal the brute force -------------------------------------------------------------


@FEW
@given(data=st.data())
def test_ranges_match_brute_force(written: tuple[Path, list[Rows]], data: st.DataObject) -> None:
    path, parts = written
    assert len(_roll_files(path)) == 3  # the live writer has completed nodes too
    with Database.open(path, readonly=True) as db:
        _check(db, Rows.concat(parts), data)


@pytest.fixture(scope="module")
def sliced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Rows]]]:
    """Three segments of 256-row chunks (time slices of 16 rows, which ranges cut): 3,000 and
    1,200 rows closed, 900 from a writer still open (three chunks and a tail of 132 rows)."""
    rng = np.random.default_rng(23)
    path = tmp_path_factory.mktemp("sliced") / "db"
    parts = [_time_ordered(generate(rng, n, FUNCTIONS, base=BASE, span=10**10, lane=lane), rng)
             for lane, n in enumerate([3000, 1200, 900])]  # fmt: skip
    dbs = []
    for i, rows in enumerate(parts):
        db = Database.open(path, chunk_rows=256, flush_interval=0.05)
        assert db.append(**rows.append_kwargs()) == len(rows)
        assert db.flush(30)
        if i < 2:
            db.close()
        else:
            dbs.append(db)
    try:
        yield path, parts
    finally:
        for db in dbs:
            db.close()


@FEW
@given(data=st.data(), tiny=st.booleans())
def test_a_range_asked_again_and_moved_matches_brute_force(
    sliced: tuple[Path, list[Rows]], data: st.DataObject, tiny: bool
) -> None:
    """One reader asks a range three times (from the second, its edge chunks answer from time
    slices, one slice's rows and a segment's whole parts merged as one entry), then the range
    moved by a nanosecond at either edge (the same slices, other rows), over closed segments
    and a live one with a tail, through a roomy pool and one that holds a few blocks."""
    path, parts = sliced
    truth = Rows.concat(parts)
    with Database.open(
        path, readonly=True, bufferpool_bytes=(64 << 10) if tiny else 64 << 20
    ) as db:
        since, until = _bounds(truth, data)
        moved = (None if since is None else since + 1, None if until is None else until - 1)
        if moved[0] is not None and moved[1] is not None and moved[0] >= moved[1]:
            moved = (since, until)
        for s, u in [(since, until)] * 3 + [moved, (since, until)]:
            q = Query((), None, s, u)
            got = PythonApi(db).stats(q, quantiles=QS)
            check_table(got, "function", expected_stats(truth, q), QS, False, q.label())


@pytest.mark.parametrize("damage", ["deleted", "torn", "garbage", "flipped"])
def test_missing_or_bad_records_are_rebuilt(
    written: tuple[Path, list[Rows]], tmp_path: Path, damage: str
) -> None:
    path, parts = written
    copy = tmp_path / "db"
    _copy(path, copy)
    for f in _roll_files(copy):
        size = f.stat().st_size
        if damage == "deleted":
            f.unlink()
        elif damage == "torn":
            os.truncate(f, size // 2 + 7)
        elif damage == "garbage":
            with open(f, "r+b") as fh:
                fh.seek(HEADER_SIZE + 3)
                fh.write(b"\xff" * 64)
        else:  # a payload byte of every record flipped: each fails its checksum on load
            idx = RollupIndex(f)
            idx.refresh()
            with open(f, "r+b") as fh:
                for offset, length in idx.records.values():
                    fh.seek(offset + HEADER_SIZE + length // 3)
                    byte = fh.read(1)
                    fh.seek(-1, os.SEEK_CUR)
                    fh.write(bytes([byte[0] ^ 0x5A]))
            idx.close()
    truth = Rows.concat(parts)
    with Database.open(copy, readonly=True) as db:
        lo, hi = int(truth.start.min()), int(truth.start.max())
        for since, until in [(None, None), (lo + (hi - lo) // 5, hi - (hi - lo) // 4),
                             (lo, hi), (lo + 1, None), (None, lo + (hi - lo) // 2)]:  # fmt: skip
            for names in [(), ("a.two",)]:
                q = Query(names, None, since, until)
                got = PythonApi(db).stats(q, quantiles=QS)
                check_table(got, "function", expected_stats(truth, q), QS, False, q.label())


@FEW
@given(data=st.data())
def test_a_tiny_pool_merges_as_it_goes(
    written: tuple[Path, list[Rows]], data: st.DataObject
) -> None:
    path, parts = written
    with Database.open(path, readonly=True, bufferpool_bytes=64 * 1024) as db:
        _check(db, Rows.concat(parts), data)


@pytest.mark.parametrize("pool", [64 << 20, 96 * 1024])
def test_one_reader_asked_many_ranges_reuses_slices_and_joined_runs(
    tmp_path: Path, pool: int
) -> None:
    """One open database asked range after range, as a dashboard does: chunks cut a second
    time answer from their time slices, and runs of whole siblings and slices from blocks
    merged once and kept (or evicted, with a pool that holds a few blocks), always equal to
    the brute force."""
    rng = np.random.default_rng(5)
    path = tmp_path / "db"
    parts = [_time_ordered(generate(rng, n, FUNCTIONS, base=BASE, span=10**10, lane=lane), rng)
             for lane, n in enumerate([9000, 4000])]  # fmt: skip
    for rows in parts:  # 256-row chunks: slices of 16 rows, which windows cut
        db = Database.open(path, chunk_rows=256, flush_interval=0.05)
        assert db.append(**rows.append_kwargs()) == len(rows)
        db.close()
    truth = Rows.concat(parts)
    starts = np.sort(truth.start)
    prev = (int(starts[0]), int(starts[-1]) + 1)
    with Database.open(path, readonly=True, bufferpool_bytes=pool) as db:
        for i in range(24):
            a, b = np.sort(rng.integers(0, len(starts), 2))
            since, until = int(starts[a]) + int(rng.integers(-1, 2)), int(starts[b]) + 1
            if i % 3 == 2:  # the same range again, or one sharing its left edge
                since, until = prev if i % 2 else (prev[0], max(until, prev[0] + 1))
            prev = (since, until)
            for names in [(), ("a.one", "c.four")]:
                q = Query(names, None, since, until)
                got = PythonApi(db).stats(q, quantiles=QS)
                check_table(got, "function", expected_stats(truth, q), QS, False, q.label())
        if pool > 1 << 20:
            frames = list(db._reads.pool._frames)
            kinds = {(k.column, k.block is not None) for k in frames
                     if isinstance(k, _PageKey) and k.column == "slices"}  # fmt: skip
            # slices (with their rows), joined runs of them; a segment's whole parts as one
            assert kinds == {("slices", False), ("slices", True)}
            assert any(isinstance(k, _PlanKey) for k in frames)


@pytest.mark.parametrize("indexed", [True, False])
def test_a_damaged_chunk_inside_nodes_is_left_out(tmp_path: Path, indexed: bool) -> None:
    """Chunk 9's rows are lost; the nodes holding it (chunks 8-15, 0-63) summarise them, so
    ranges over them must open those nodes down to the chunks that survive. Without its index
    the segment's walk finds the damage on open; with it, the first read of the page does."""
    rng = np.random.default_rng(5)
    rows = _time_ordered(generate(rng, 1200, FUNCTIONS, base=BASE, span=10**10), rng)
    path = tmp_path / "db"
    _write(path, rows)
    (seg,) = (path / "segments").glob("*.kseg")
    with Database.open(path, readonly=True) as db:
        chunk = db._reads.snapshot().segments[0].chunks[9]
    with open(seg, "r+b") as fh:
        offset, _ = chunk.pages["duration"]
        fh.seek(offset + HEADER_SIZE + 2)
        fh.write(b"\x00\x01\x02\x03")
    if not indexed:
        (path / "segments" / f"{seg.stem}{index.SUFFIX}").unlink()
    truth = rows.take(np.r_[0 : 9 * CHUNK, 10 * CHUNK : len(rows)])
    with Database.open(path, readonly=True) as db:
        if indexed:
            assert db.damaged.chunks == 0  # no page read yet
            assert len(db.scan(["duration"])) == len(truth)
        assert db.damaged.chunks == 1
        lo, hi = int(truth.start.min()), int(truth.start.max())
        for since, until in [(None, None), (lo, hi + 1), (lo + 1, None),
                             (int(rows.start[5 * CHUNK]), int(rows.start[40 * CHUNK]))]:  # fmt: skip
            q = Query((), None, since, until)
            got = PythonApi(db).stats(q, quantiles=QS)
            check_table(got, "function", expected_stats(truth, q), QS, False, q.label())


# -- what is written and what a range reads ---------------------------------------------------


def test_a_closed_segment_has_every_node_a_reader_starts_from(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rows = _time_ordered(generate(rng, 75 * CHUNK + 3, FUNCTIONS, base=BASE, span=10**9), rng)
    _write(tmp_path / "db", rows)  # 76 chunks: 0-75
    (f,) = _roll_files(tmp_path)
    idx = RollupIndex(f)
    idx.refresh(final=True)
    full = {(j * 8, j * 8 + 7) for j in range(9)} | {(0, 63)}
    clipped = {(72, 75), (64, 75)}  # the right edge at levels 1 and 2
    prefixes = {(0, k * 8 - 1) for k in range(2, 10)}  # as each level-1 node completes
    suffixes = {(k * 8, 75) for k in range(1, 10)}  # at close
    assert set(idx.records) == full | clipped | prefixes | suffixes
    for first, last in prefixes | suffixes:
        block = idx.load(rollup.edge_node(first, last))
        assert block is not None
        assert int(block.count.sum()) == len(rows.take(np.arange(first * CHUNK, min(
            (last + 1) * CHUNK, len(rows)))))  # fmt: skip
    node = Node(2, 64, 75)
    block = idx.load(node)
    assert block is not None and int(block.count.sum()) == 11 * CHUNK + 3
    idx.close()


def test_a_range_reads_a_few_blocks_not_every_chunk(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = _time_ordered(generate(rng, 600 * CHUNK, FUNCTIONS, base=BASE, span=10**10), rng)
    rows = rows.take(np.argsort(rows.start, kind="stable"))  # no overlap: 2 cut chunks at most
    _write(tmp_path / "db", rows)
    since, until = int(rows.start[37 * CHUNK + 5]), int(rows.start[571 * CHUNK + 9])
    with Database.open(tmp_path / "db", readonly=True) as db:
        got = db.summaries(since=since, until=until)
        misses = db._reads.pool.stats.misses
    assert sum(s.summary.count for s in got.values()) == 571 * CHUNK + 9 - (37 * CHUNK + 5)
    # 600 chunks, levels 1-3: at most 7 blocks per level and edge, plus 2 cut chunks' 4 columns
    # (534 chunk summaries before roll-ups).
    assert misses <= 2 * (FANOUT - 1) * 4 + 2 * 4, misses


def test_a_range_holding_whole_segments_answers_from_their_roll_ups(tmp_path: Path) -> None:
    """A segment whose every chunk lies inside the window is answered by the roll-up its index
    (or its walk) gives: no record or summary page read. Three segments one after another in
    time, the last still open with a tail: windows holding all, holding the first two and
    cutting the third, and cutting only the first; each equal to the brute force, and the first
    read nothing from disk but the tail's rows held in memory."""
    rng = np.random.default_rng(9)
    path = tmp_path / "db"
    parts = [_time_ordered(generate(rng, n, FUNCTIONS, base=BASE + i * 10**11, span=10**10), rng)
             for i, n in enumerate([900, 500, 300])]  # fmt: skip
    for rows in parts[:2]:
        _write(path, rows)
    live = _write(path, parts[2], close=False)
    truth = Rows.concat(parts)
    try:
        with Database.open(path, readonly=True) as db:
            (lo, hi), third = (int(truth.start.min()), int(truth.start.max())), parts[2].start
            snap = db._reads.snapshot()
            assert [s.closed for s in snap.segments] == [True, True, False]
            assert snap.segments[2].tail_rows > 0  # the live writer's unsealed rows
            windows = [(lo, hi + 1), (lo - 5, int(np.sort(third)[len(third) // 2])),
                       (int(np.sort(parts[0].start)[400]), hi + 1), (None, None)]  # fmt: skip
            for i, (since, until) in enumerate(windows):
                q = Query((), None, since, until)
                got = PythonApi(db).stats(q, quantiles=QS)
                check_table(got, "function", expected_stats(truth, q), QS, False, q.label())
                if i == 0:  # no page, record or summary read: the pool holds only the
                    # kept merge of the two closed segments' roll-ups (made, not read)
                    assert all(isinstance(k, merged.SetKey) for k in db._reads.pool._frames)
            assert db._reads.pool.stats.misses > 0  # the windows that cut a segment read some
    finally:
        live.close()


def test_an_indexed_segment_opens_without_walking_its_roll_up_file(tmp_path: Path) -> None:
    """The segment index says where the roll-up records are: a closed segment's ``.roll`` is
    never walked on open, a live one's only past what its index lists; ranges still read the
    records (a handful of blocks) and equal the brute force."""
    rng = np.random.default_rng(4)
    rows = _time_ordered(generate(rng, 600 * CHUNK, FUNCTIONS, base=BASE, span=10**10), rng)
    rows = rows.take(np.argsort(rows.start, kind="stable"))
    path = tmp_path / "db"
    _write(path, rows)
    segdir = path / "segments"
    (closed,) = [p.stem for p in segdir.glob("*.kseg")]
    live_rows = generate(rng, 75 * CHUNK, FUNCTIONS, base=BASE + 2 * 10**10, span=10**9, lane=1)
    live = Database.open(path, chunk_rows=CHUNK, flush_interval=3600)
    try:
        for piece in (np.arange(45 * CHUNK), np.arange(45 * CHUNK, 75 * CHUNK)):
            assert live.append(**live_rows.take(piece).append_kwargs()) == len(piece)
            assert live.flush(30)  # the first commit saves an index (45 chunks), the second not
        (seg_live,) = [p.stem for p in segdir.glob("*.kseg") if p.stem != closed]
        for seg in (closed, seg_live):
            listed = index.load(segdir, seg)
            assert listed is not None and listed.records
            walked = RollupIndex(rollup.path_of(segdir, seg))
            walked.refresh()
            reader = SegmentReader(segdir, seg)
            try:
                reader.refresh()
                assert reader.rollups.records == walked.records
                past = len(walked.records) - len(listed.records)
                assert reader.rollups.headers_read == past
                assert past > 0 if seg == seg_live else past == 0
            finally:
                reader.close()
                walked.close()
        truth = Rows.concat([rows, live_rows])
        since, until = int(rows.start[37 * CHUNK + 5]), int(rows.start[571 * CHUNK + 9])
        with Database.open(path, readonly=True) as db:
            got = db.summaries(since=since, until=until)
            assert db._reads.pool.stats.misses <= 2 * (FANOUT - 1) * 4 + 2 * 4
            for since_, until_ in [(since, until), (None, int(live_rows.start[50 * CHUNK]))]:
                q = Query((), None, since_, until_)
                got_t = PythonApi(db).stats(q, quantiles=QS)
                check_table(got_t, "function", expected_stats(truth, q), QS, False, q.label())
        assert sum(s.summary.count for s in got.values()) == 571 * CHUNK + 9 - (37 * CHUNK + 5)
    finally:
        live.close()


# -- the parts on their own --------------------------------------------------------------------


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_merged_blocks_equal_merge_all(sizes: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    chunks: list[dict[str, np.ndarray]] = []
    for n in sizes:
        chunks.append({
            "name": rng.integers(0, 5, n).astype(np.uint32),
            "duration": np.where(rng.random(n) < 0.1, 0, rng.lognormal(12, 2, n)).astype(np.int64),
            "status": rng.choice(np.array([0, 2], np.uint8), n),
            "start": rng.integers(0, 10**12, n).astype(np.int64),
        })  # fmt: skip
    lookup = np.array([0, 1, -1, 3, 4])  # function 2 left out, the others renumbered as given
    merged = rollup.merge([(lookup, Block.of(summarize(c))) for c in chunks])
    for i, g in enumerate(merged.codes.tolist()):
        code = int(np.flatnonzero(lookup == g)[0])
        sel = [c for c in chunks if (c["name"] == code).any()]
        want = Summary.merge_all(Summary.from_values(c["duration"][c["name"] == code]) for c in sel)
        got = merged.summary(i)
        assert (got.count, got.zero_count, got.min, got.max, got.sum) == (
            want.count, want.zero_count, want.min, want.max, want.sum)  # fmt: skip
        assert np.array_equal(got.keys, want.keys) and np.array_equal(got.counts, want.counts)
        assert got.m2 == pytest.approx(want.m2, rel=1e-9)
        fs = merged.function_summary(i)
        every = np.concatenate([c["status"][c["name"] == code] for c in sel])
        starts = np.concatenate([c["start"][c["name"] == code] for c in sel])
        assert fs.errors == int((every == 2).sum())
        assert (fs.first_start, fs.last_start) == (int(starts.min()), int(starts.max()))
    assert 2 not in merged.codes.tolist()


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    n=st.integers(0, 700),
    seed=st.integers(0, 2**32 - 1),
    closed=st.booleans(),
    lost=st.integers(0, 3),
    dropped=st.integers(0, 2),
    edges=st.sampled_from(["none", "some", "all"]),
)
def test_a_plan_stands_for_exactly_the_chunks_in_range(
    n: int, seed: int, closed: bool, lost: int, dropped: int, edges: str
) -> None:
    rng = np.random.default_rng(seed)
    seqs = np.arange(n)
    if n and lost:
        seqs = np.setdiff1d(seqs, rng.choice(n, lost))  # damaged chunks are not in the view
    lo = np.sort(rng.integers(0, 10**6, seqs.size)) + rng.integers(-3000, 1, seqs.size)
    hi = lo + rng.integers(0, 4000, seqs.size)
    dirty = set(rng.choice(seqs, min(dropped, seqs.size), replace=False).tolist()) if n else set()
    chunks = [
        ChunkInfo(int(s), 0, 0, 1, 0, int(a), int(b),
                  keep=np.zeros(0, np.int64) if int(s) in dirty else None)
        for s, a, b in zip(seqs.tolist(), lo.tolist(), hi.tolist(), strict=True)
    ]  # fmt: skip
    # the prefix and suffix records a segment of n chunks has (some lost)
    runs = [(0, k * FANOUT - 1) for k in range(2, n // FANOUT + 1)]
    runs += [(k * FANOUT, n - 1) for k in range(1, (n - 1) // FANOUT + 1) if k * FANOUT < n - 1]
    kept = {"none": 0.0, "some": 0.5, "all": 1.0}[edges]
    records = {r for r in runs if rng.random() < kept}
    tree = ChunkTree(Chunks(None, chunks), closed=closed, records=records)
    for since, until in [(None, None), *rng.integers(-5000, 10**6 + 5000, (8, 2)).tolist()]:
        if since is not None and since > until:
            since, until = until, since
        window = TimeRange.of(since, until)
        plan = tree.plan(window)
        covered: list[int] = []
        for node in plan.nodes:
            run = [p for p, c in enumerate(chunks) if node.first <= c.seq <= node.last]
            assert [chunks[p].seq for p in run] == list(range(node.first, node.last + 1))
            # a node, or a run of whole sibling nodes (chunks at level 1) within one parent,
            # joined: made of whole children, clipped only at a closed segment's end
            assert all(chunks[p].keep is None for p in run)
            if (node.first, node.last) in records and (node.first == 0 or closed):
                covered += run  # a prefix or suffix record (or a run the tree joined, the same)
                continue
            width, child = FANOUT**node.level, FANOUT ** (node.level - 1)
            assert node.first // width == node.last // width, node
            whole_children = node.first % child == 0 and (node.last + 1) % child == 0
            assert whole_children or (closed and run[-1] == len(chunks) - 1), node
            assert all(chunks[p].keep is None for p in run)
            assert all(window.covers(chunks[p].start_min, chunks[p].start_max) == 2 for p in run)
            covered += run
        assert all(window.covers(chunks[p].start_min, chunks[p].start_max) == 2
                   for p in plan.whole)  # fmt: skip
        assert all(window.covers(chunks[p].start_min, chunks[p].start_max) == 1 for p in plan.cut)
        covered += plan.whole + plan.cut
        want = [p for p, c in enumerate(chunks) if window.covers(c.start_min, c.start_max)]
        assert sorted(covered) == want  # each chunk once, and only those the window touches
        if edges == "all":  # what the window holds from either end is one record there
            whole = [window.covers(c.start_min, c.start_max) == 2 for c in chunks] + [False]
            e = whole.index(False) // FANOUT * FANOUT
            if e >= 2 * FANOUT and seqs[e - 1] == e - 1 and not dirty & set(range(e)):
                below = [x for x in plan.nodes if x.first < e] + [
                    p for p in plan.whole if chunks[p].seq < e]  # fmt: skip
                assert len(below) == 1, (e, plan)
            q = len(chunks) - whole[-2::-1].index(False) if False in whole[:-1] else 0
            s = -(-int(seqs[q]) // FANOUT) * FANOUT if q < len(chunks) else n
            at = len(chunks) - 1 - (n - 1 - s)
            if closed and 0 < s < n - 1 and q <= at and seqs[at] == s and n - 1 == seqs[-1] and (
                not dirty & set(range(s, n))
            ):  # fmt: skip
                above = [x for x in plan.nodes if x.last >= s] + [
                    p for p in plan.whole if chunks[p].seq >= s]  # fmt: skip
                assert len(above) == 1, (s, plan)


# -- a writer killed at any moment ------------------------------------------------------------

KILLED_WRITER = """
import sys, numpy as np
from kronicler.db import Database
path, lane = sys.argv[1], int(sys.argv[2])
db = Database.open(path, chunk_rows=16, flush_interval=0.01)
i = 0
while True:
    rows = np.arange(i, i + 50)
    db.append([f"f{r % 3}" for r in rows.tolist()], rows * 1000 + lane, (rows * 7919) % 100_000 + 1)
    i += 50
    if i % 200 == 0:
        db.flush()
        print(i, flush=True)
"""


def _killed_rows(lane: int, n: int) -> dict[str, np.ndarray]:
    rows = np.arange(n)
    return {"name": np.array([f"f{r % 3}" for r in rows.tolist()]),
            "start": rows * 1000 + lane, "duration": (rows * 7919) % 100_000 + 1}  # fmt: skip


def test_writers_killed_mid_seal_leave_roll_ups_that_agree(tmp_path: Path) -> None:
    """SIGKILL lands anywhere: between a chunk and its roll-up record, in the middle of a record.
    Whatever survives, every range answers exactly what the surviving rows hold."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    rng = np.random.default_rng(1)
    for lane in range(3):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(lane)],
                                stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
        assert proc.stdout is not None
        for _ in range(int(rng.integers(3, 12))):
            proc.stdout.readline()  # wait until that much is flushed
        time.sleep(float(rng.uniform(0, 0.2)))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert _roll_files(tmp_path)
    with Database.open(tmp_path, readonly=True) as db:
        starts = np.sort(db.scan(["start"]).columns["start"])
        kept = np.bincount(starts % 1000, minlength=3)  # rows per lane: a prefix of each
        truth = [_killed_rows(lane, int(n)) for lane, n in enumerate(kept.tolist())]
        every = {c: np.concatenate([t[c] for t in truth]) for c in ("name", "start", "duration")}
        assert np.array_equal(np.sort(every["start"]), starts)
        top = int(every["start"].max())
        for since, until in [(None, None), (0, top + 1), (777, top // 2), (top // 3, None),
                             (5000, 5001), (123_457, 98_765_433)]:  # fmt: skip
            got = db.summaries(since=since, until=until)
            sel = (every["start"] >= (since or 0)) & (every["start"] < (until or top + 1))
            for name in ("f0", "f1", "f2"):
                want = every["duration"][sel & (every["name"] == name)]
                if not want.size:
                    assert name not in got
                    continue
                s = got[name].summary
                assert (s.count, s.min, s.max, s.sum) == (want.size, want.min(), want.max(),
                                                          float(want.sum()))  # fmt: skip


def _ordered_chunk(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A sealed chunk's rows, ordered by (function, start) as the writer stores them, and the
    function of each row (its name code)."""
    names = rng.integers(0, 6, n).astype(np.uint32)
    cols = {
        "start": rng.integers(0, 10**6, n).astype(np.int64),
        "duration": np.where(rng.random(n) < 0.1, 0, rng.lognormal(12, 2, n)).astype(np.int64),
        "status": rng.choice(np.array([0, 2], np.uint8), n),
    }
    order = np.lexsort((cols["start"], names))
    return {c: a[order] for c, a in cols.items()}, names[order]


def _same_blocks(got: Block, want: Block, *, bitwise: bool) -> None:
    for f in ("codes", "count", "zero_count", "errors", "min", "max", "first_start",
              "last_start", "sum", "bounds", "keys", "counts"):  # fmt: skip
        assert np.array_equal(getattr(got, f), getattr(want, f)), f
    if bitwise:
        assert np.array_equal(got.m2, want.m2)
    else:
        assert np.allclose(got.m2, want.m2, rtol=1e-9, atol=0)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    slices=st.sampled_from([1, 3, 16]),
    edges=st.tuples(st.integers(-1, 300), st.integers(-1, 300), st.integers(-1, 1)),
)
def test_a_cut_chunk_summarised_in_its_order_or_by_slices_equals_summarize(
    n: int, seed: int, slices: int, edges: tuple[int, int, int]
) -> None:
    """A range's edge chunk: its rows in the range summarised function by function in their
    stored order (no sort) give exactly what ``summarize`` gives, and so do the chunk's time
    slices (whole ones merged, the rows of the cut ones summarised), and so do the same rows
    in any order summarised by code (``Block.of_rows``, how a query sums many chunks' edges).
    One seed in three has few distinct starts: equal starts must stay in one slice."""
    rng = np.random.default_rng(seed)
    cols, names = _ordered_chunk(rng, n)
    if seed % 3 == 0:
        cols["start"] //= 100_000  # still ordered by (function, start)
    codes, counts = np.unique(names, return_counts=True)
    ends = np.cumsum(counts)
    starts = np.sort(cols["start"])

    def bound(i: int) -> int | None:
        return None if i < 0 else int(starts[min(i, n - 1)]) + edges[2]

    since, until = bound(edges[0]), bound(edges[1])
    if since is not None and until is not None and since > until:
        since, until = until, since
    window = TimeRange.of(since, until)
    mask = window.mask(cols["start"])
    picked = {c: a[mask] for c, a in cols.items()} | {"name": names[mask]}
    want = Block.of(summarize(picked))
    _same_blocks(Block.of_ordered(cols, codes, ends, np.flatnonzero(mask)), want, bitwise=True)
    shuffled = rng.permutation(np.flatnonzero(mask))
    by_code = Block.of_rows(names[shuffled].astype(np.int64),
                            {c: a[shuffled] for c, a in cols.items()})  # fmt: skip
    _same_blocks(by_code, want, bitwise=False)
    cut = rollup.ChunkSlices.of(cols, codes, ends, slices)
    assert 1 <= len(cut.blocks) <= min(slices, n)
    assert cut.edges.size == len(cut.blocks) and bool((np.diff(cut.edges) > 0).all())
    rows = [cut.slice_rows(i) for i in range(len(cut.blocks))]
    for i, (r, blk) in enumerate(zip(rows, cut.blocks, strict=True)):  # none empty
        assert r.start.size == int(blk.count.sum()) > 0 and bool((np.diff(r.start) >= 0).all())
        # the slice's rows in start order (stored order among equal starts), and its
        # summaries bit for bit those of its rows summarised alone
        at = np.flatnonzero(cut.window(i).mask(cols["start"]))
        at = at[np.argsort(cols["start"][at], kind="stable")]
        for c in ("start", "duration", "status"):
            np.testing.assert_array_equal(getattr(r, c), cols[c][at])
        np.testing.assert_array_equal(codes[r.code], names[at])
        _same_blocks(blk, Block.of_ordered(cols, codes, ends, np.sort(at)), bitwise=True)
    assert sum(r.start.size for r in rows) == n
    runs, partial = cut.cut(window)
    assert all(j > i for i, j in runs) and len(partial) <= 2  # cut slices: at the edges
    groups, picked_cols = [np.zeros(0, np.int64)], {c: [v[:0]] for c, v in cols.items()}
    for i in partial:
        lo, hi = rows[i].within(window)
        groups.append(codes[rows[i].code[lo:hi]].astype(np.int64))
        for c in cols:
            picked_cols[c].append(getattr(rows[i], c)[lo:hi])
    edge = Block.of_rows(np.concatenate(groups),
                         {c: np.concatenate(p) for c, p in picked_cols.items()})  # fmt: skip
    got = rollup.merge([(None, b) for b in [*(cut.joined(i, j) for i, j in runs), edge]])
    _same_blocks(got, want, bitwise=False)


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(
    sizes=st.lists(st.integers(0, 60), min_size=0, max_size=8),
    seed=st.integers(0, 2**32 - 1),
    zeros=st.floats(0.0, 1.0),
)
def test_quantiles_of_many_summaries_equal_each_ones_quantiles(
    sizes: list[int], seed: int, zeros: float
) -> None:
    rng = np.random.default_rng(seed)
    qs = (0.0, 0.001, 0.5, 0.9, 0.99, 0.999, 1.0)
    sums = [
        Summary.from_values(
            np.where(rng.random(k) < zeros, 0, rng.lognormal(10, 3, k)).astype(np.int64)
        )
        for k in sizes
    ]
    got = quantiles_of(sums, qs)
    assert got.shape == (len(sums), len(qs))
    for row, s in zip(got, sums, strict=True):
        if s.count:
            assert row.tolist() == s.quantiles(qs)
        else:
            assert np.isnan(row).all()


def test_merged_bucket_counts_stay_exact_past_2_53() -> None:
    """Bucket counts add in float64 while their total is below 2**53; past it, in int64."""
    keys = np.array([100, 200], np.int32)

    def block(counts: list[int]) -> Block:
        c = np.array(counts, np.int64)
        s = Summary(int(c.sum()), 0.0, 0.0, 1, 2, 0, keys, c)
        one = np.zeros(1, np.int64)
        return Block.of(ChunkSummary(np.array([3], np.uint32), [s], one, one, one))

    big = [2**60 + 1, 3]
    merged = rollup.merge([(None, block(big)), (None, block([5, 2**59 + 7]))])
    assert merged.counts.tolist() == [2**60 + 6, 2**59 + 10]
    small = rollup.merge([(None, block([1, 2])), (None, block([3, 4]))])
    assert small.counts.tolist() == [4, 6]


def test_a_chunk_cut_again_keeps_its_slices_not_its_columns(tmp_path: Path) -> None:
    """A range asked twice: the second time its edge chunks are cut into slices, and their
    start, duration and status pages leave the pool (each slice's rows, in start order, stand
    in for them); a range moved within the same edge slices merges the same parts.
    Every answer equals the brute force."""
    rng = np.random.default_rng(11)
    path = tmp_path / "db"
    rows = _time_ordered(generate(rng, 4096, FUNCTIONS, base=BASE, span=10**10), rng)
    db = Database.open(path, chunk_rows=1024, flush_interval=0.05)
    assert db.append(**rows.append_kwargs()) == len(rows)
    db.close()
    starts = np.sort(rows.start)
    since, until = int(starts[1500]), int(starts[2600])
    with Database.open(path, readonly=True) as db:
        pool = db._reads.pool
        misses = []
        for s, u in [(since, until), (since, until), (since + 1, until - 1), (since, until)]:
            q = Query((), None, s, u)
            got = PythonApi(db).stats(q, quantiles=QS)
            check_table(got, "function", expected_stats(rows, q), QS, False, q.label())
            misses.append(pool.stats.misses)
        # the second time: slices; the third: the second's whole parts merged as one entry
        # (the same ones: the edges moved within their slices); the fourth: nothing loaded
        assert misses[1] > misses[0] and misses[3] == misses[2] == misses[1] + 1
        frames = list(pool._frames)
        sliced = {k.seq for k in frames if isinstance(k, _PageKey) and k.column == "slices"}
        assert len(sliced) == 2  # the chunks holding the two edges
        # their columns left the pool once the slices and the cut slices' rows were built
        columns = [k for k in frames if isinstance(k, _PageKey) and k.seq in sliced
                   and k.column in ("start", "duration", "status")]  # fmt: skip
        assert not columns
        plans = [k for k in frames if isinstance(k, _PlanKey)]
        assert len(plans) == 1  # the whole slices of both edge chunks, as one entry
