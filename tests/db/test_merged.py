"""Kept merges of sets of segments (:mod:`kronicler.db.merged`): a whole-history question or a
range asked again answers from one pool entry, and that answer is exactly the merge a query
makes without it (and the brute force), through segments added, compacted away, deleted by
retention or with a chunk condemned, live writers sealing chunks and growing tails, chunk edges,
and pools roomy or tiny.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kronicler.db import Database, merged, rollup
from kronicler.db.page import HEADER_SIZE
from kronicler.db.reads import _NodeKey
from kronicler.db.rollup import Block, merge
from kronicler.db.scan import FunctionSummary, TimeRange
from kronicler.db.snapshot import Snapshot
from kronicler.db.summary import Summary
from tests.db.test_rollup import _bounds, _time_ordered
from tests.oracle.interfaces import PythonApi
from tests.oracle.truth import Query, Rows, check_table, expected_stats, generate

CHUNK = 16
FUNCTIONS = ("a.one", "a.two", "b.three", "c.four", "d.five")
QS = (0.0, 0.5, 0.99, 1.0)
DAY = 86_400 * 10**9
FEW = settings(max_examples=20, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


def _segment(path: Path, rows: Rows, *, close: bool = True) -> Database:
    """One writer's segment of ``rows`` (closed, or left open with its writer)."""
    db = Database.open(path, chunk_rows=CHUNK, flush_interval=0.05)
    assert db.append(**rows.append_kwargs()) == len(rows)
    assert db.flush(30)
    if close:
        db.close()
    return db


def _rows(rng: np.random.Generator, n: int, lane: int, base: int, names: tuple[str, ...]) -> Rows:
    return _time_ordered(generate(rng, n, names, base=base, span=10**10, lane=lane), rng)


def _uncached(
    db: Database, since: int | None, until: int | None, names: list[str] | None = None
) -> dict[str, FunctionSummary]:
    """The same question asked of each segment alone (no set of segments, so no kept merge),
    the answers merged per function the slow way (``Summary.merge_all``). Ask it of another
    reader than the one under test: its questions would change what that one keeps."""
    reads = db._reads
    per: dict[str, list[FunctionSummary]] = {}
    for seg in reads.snapshot().segments:
        one = reads.summaries(names, since=since, until=until, snapshot=Snapshot((seg,)))
        for name, fs in one.items():
            per.setdefault(name, []).append(fs)
    out = {}
    for name, fss in per.items():
        total = Summary.merge_all([f.summary for f in fss])
        first, last = min(f.first_start for f in fss), max(f.last_start for f in fss)
        out[name] = FunctionSummary(total, sum(f.errors for f in fss), first, last)
    return out


def _same(got: dict[str, FunctionSummary], want: dict[str, FunctionSummary], where: str) -> None:
    """Integer fields and buckets bit for bit; sum and m2 up to float rounding."""
    assert sorted(got) == sorted(want), where
    for name, g in got.items():
        w = want[name]
        a, b = g.summary, w.summary
        label = f"{where} [{name}]"
        assert (a.count, a.min, a.max, a.zero_count) == (b.count, b.min, b.max, b.zero_count), label
        assert (g.errors, g.first_start, g.last_start) == (w.errors, w.first_start, w.last_start)
        np.testing.assert_array_equal(a.keys, b.keys, err_msg=label)
        np.testing.assert_array_equal(a.counts, b.counts, err_msg=label)
        assert a.sum == pytest.approx(b.sum, rel=1e-12), label
        assert a.m2 == pytest.approx(b.m2, rel=1e-9, abs=1e-6), label


def _ask(db: Database, truth: Rows, since: int | None, until: int | None,
         names: tuple[str, ...] = ()) -> None:  # fmt: skip
    """The question against the brute force, through the query layer."""
    q = Query(names, None, since, until)
    got = PythonApi(db).stats(q, quantiles=QS)
    check_table(got, "function", expected_stats(truth, q), QS, False, q.label())


def damage_a_chunk(
    path: Path, readers: tuple[Database, Database], truth: Rows, at: Callable[[int], int]
) -> Rows:
    """Damage the duration page of chunk ``at(chunks)`` of the segment with the most chunks;
    each of ``readers`` must then leave its rows out. Returns ``truth`` without them."""
    db = readers[0]
    seg = max(db._reads.snapshot().segments, key=lambda v: len(v.chunks))
    pos = at(len(seg.chunks))
    chunk = seg.chunks[pos]
    with Database.open(path, readonly=True) as other:  # its rows, read by another reader
        (twin,) = [v for v in other._reads.snapshot().segments if v.id == seg.id]
        wanted = ["name", "start", "duration"]
        with other._reads.chunk_columns(twin, twin.chunks[pos], wanted) as (cols, _):
            names = [seg.names[c] for c in cols["name"].tolist()]
            gone = list(zip(names, cols["start"].tolist(), cols["duration"].tolist(),
                            strict=True))  # fmt: skip
    with open(seg.reader.data_path, "r+b") as fh:
        fh.seek(chunk.pages["duration"][0] + HEADER_SIZE + 2)
        fh.write(b"\x00\x01\x02\x03")
    for reader in readers:  # the first to decode the page finds the damage
        assert len(reader.scan(["duration"])) == len(truth) - chunk.rows
    keep = np.ones(len(truth), bool)
    for name, start, duration in gone:
        hit = (truth.name == name) & (truth.start == start) & (truth.duration == duration) & keep
        keep[np.flatnonzero(hit)[0]] = False
    return truth.take(np.flatnonzero(keep))


def _kept(db: Database) -> list[merged.SetKey]:
    return [k for k in db._reads.pool._frames if isinstance(k, merged.SetKey)]


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Rows]]:
    """Eighteen closed segments from three lanes whose times overlap (a few functions each,
    chunks of 16 rows), and a live writer with sealed chunks and a tail of 5 rows."""
    rng = np.random.default_rng(41)
    path = tmp_path_factory.mktemp("merged") / "db"
    base = time.time_ns() - DAY
    parts = [_rows(rng, int(rng.integers(20, 120)), i % 3, base + (i // 3) * 10**9,
                   FUNCTIONS[i % 3 : i % 3 + 3]) for i in range(18)]  # fmt: skip
    yield from with_live(path, parts, _rows(rng, 5 * CHUNK + 5, 3, base + 2 * 10**9, FUNCTIONS))


def with_live(path: Path, closed: list[Rows], live: Rows) -> Iterator[tuple[Path, Rows]]:
    """A database of ``closed`` (a segment each) and ``live`` (a writer left open, closed when
    the caller is done): yields its path and every row (a module fixture's body)."""
    for rows in closed:
        _segment(path, rows)
    writer = _segment(path, live, close=False)
    try:
        yield path, Rows.concat([*closed, live])
    finally:
        writer.close()


@FEW
@given(data=st.data(), tiny=st.booleans())
def test_a_question_asked_again_equals_the_merge_without_kept_sets(
    many: tuple[Path, Rows], data: st.DataObject, tiny: bool
) -> None:
    """Every question three times (the third answers from kept merges), then all of history:
    equal to each segment's answer merged the slow way, and to the brute force, with a pool
    roomy enough to keep everything or one that keeps a few blocks."""
    path, truth = many
    pool = (48 << 10) if tiny else 64 << 20
    with (
        Database.open(path, readonly=True, bufferpool_bytes=pool) as db,
        Database.open(path, readonly=True) as ref,
    ):
        since, until = _bounds(truth, data)
        names = data.draw(st.sampled_from([(), ("a.one",), ("b.three", "d.five")]))
        wanted = [*names, "zz"] if names else None  # a name no segment holds, too
        for s, u in [(since, until)] * 3 + [(None, None)] * 2:
            _ask(db, truth, s, u, names)
            got = db.summaries(wanted, since=s, until=u)
            _same(got, _uncached(ref, s, u, wanted), f"{s}..{u} {names}")
        if not tiny:
            assert _kept(db)  # the whole history's tree, at least


def test_whole_history_is_one_kept_entry_and_a_new_segment_merges_only_its_group(
    tmp_path: Path,
) -> None:
    """A reader that stays open while writers add closed segments: from the second question
    on, all of history is one pool entry (no load at all), and a segment added costs its own
    group and the root, not a merge of every segment."""
    rng = np.random.default_rng(7)
    path = tmp_path / "db"
    base = time.time_ns() - DAY
    parts: list[Rows] = []
    # A group ends after a segment whose id (its time and a random token) hashes to a boundary,
    # 1 in merged.FANOUT: 24 segments are all one group in (7/8)**23 ~ 4.7% of runs, and the
    # question below needs groups. So segments are added until the history spans two (a group
    # ends after merged.MAX_GROUP segments at the latest).
    while len(parts) < 24 or (
        len(parts) <= merged.MAX_GROUP and not any(map(merged._boundary, _segment_ids(path)[:-1]))
    ):
        parts.append(_rows(rng, 40, len(parts) % 4, base + len(parts) * 10**9, FUNCTIONS))
        _segment(path, parts[-1])
    with Database.open(path, readonly=True) as db:
        pool = db._reads.pool
        _ask(db, Rows.concat(parts), None, None)
        misses = pool.stats.misses
        before = _views(db)
        _ask(db, Rows.concat(parts), None, None)
        # one kept entry, already there (else: evicted, or which segments' views were new)
        assert pool.stats.misses == misses, (pool.stats, _changed(before, _views(db)))
        (root,) = db._reads._whole_keys
        groups = [p.key for p in root.parts]  # a group of one segment is that segment's block
        assert 1 < len(groups) < len(parts) and any(isinstance(g, merged.SetKey) for g in groups)
        for i in range(3):
            parts.append(_rows(rng, 40, i, base + (40 + i) * 10**9, FUNCTIONS))
            _segment(path, parts[-1])
            misses = pool.stats.misses
            _ask(db, Rows.concat(parts), None, None)
            assert pool.stats.misses - misses <= 2  # the last group (or a new one) and the root
            assert len(_kept(db)) <= len(groups) + 2 + i  # old roots leave the pool


def _segment_ids(path: Path) -> list[str]:
    """The segments' ids, in the order a snapshot holds them."""
    return sorted(p.stem for p in (path / "segments").glob("*.kseg"))


def _views(db: Database) -> dict[str, object]:
    """The reader's current view of each segment (the same object until the segment changes)."""
    return {r.id: r.view() for r in db._reads.readers.values()}


def _changed(before: dict[str, object], after: dict[str, object]) -> list[str]:
    return [s for s in sorted({*before, *after}) if before.get(s) is not after.get(s)]


def test_a_pool_too_small_to_keep_the_merge_merges_the_segments_flat(
    many: tuple[Path, Rows],
) -> None:
    """A merge that does not stay in the pool would be made again, with its groups, at every
    question: after one such, the reader merges the segments' blocks directly."""
    path, truth = many
    with Database.open(path, readonly=True, bufferpool_bytes=4 << 10) as db:
        _ask(db, truth, None, None)
        assert db._reads._unkept  # the tree's merges were one-offs
        misses = db._reads.pool.stats.misses
        _ask(db, truth, None, None)
        assert db._reads.pool.stats.misses == misses  # no merge loaded: the blocks, flat


def test_kept_merges_follow_compaction_retention_and_a_condemned_chunk(tmp_path: Path) -> None:
    """One long-lived reader asks all of history and a range, twice each, and a window that
    moves at every question, after every change: segments compacted into one, old ones deleted
    by retention, a chunk found damaged (in the middle of the windows)."""
    rng = np.random.default_rng(3)
    path = tmp_path / "db"
    now = time.time_ns()
    old = [_rows(rng, 30, i, now - 40 * DAY + i * 10**9, FUNCTIONS) for i in range(3)]
    # 10-20 chunks a segment: a window holds roll-up nodes of 8 chunks (its stable parts)
    new = [_rows(rng, int(rng.integers(10, 20)) * CHUNK, i % 4, now - DAY + (i // 4) * 10**10,
                 FUNCTIONS) for i in range(9)]  # fmt: skip
    for rows in old + new:
        _segment(path, rows)
    truth = Rows.concat(old + new)
    mid = int(np.sort(truth.start)[len(truth) // 2])

    moved = [0]

    def check() -> None:
        starts = np.sort(truth.start)
        n = len(starts)
        lo, hi, step = int(starts[n // 5]), int(starts[-n // 5]), int(starts[5] - starts[0])
        moving = []
        for _ in range(3):  # a window moved by a few rows at each question
            moving.append((lo + moved[0] * step, hi + moved[0] * step))
            moved[0] += 1
        for s, u in [(None, None), (None, None), (mid, None), (mid, None), (mid, None), *moving]:
            _ask(db, truth, s, u)
            _same(db.summaries(since=s, until=u), _uncached(ref, s, u), f"{s}..{u}")

    with Database.open(path, readonly=True) as db, Database.open(path, readonly=True) as ref:
        check()
        with Database.open(path) as admin:
            assert admin.retain(max_age_ns=30 * DAY) == 3
        truth = Rows.concat(new)
        check()
        with Database.open(path, chunk_rows=CHUNK) as admin:
            assert admin.compact(small_rows=1 << 20, group_rows=1 << 20) > 1
        check()
        assert len(db._reads.snapshot().segments) < len(new)
        # a chunk's duration page damaged: the query that meets it drops the chunk and asks again
        truth = damage_a_chunk(path, (db, ref), truth, lambda n: n // 2)
        check()


def test_a_live_writer_sealing_chunks_and_growing_its_tail(tmp_path: Path) -> None:
    """Closed segments and two live writers: after every commit (a tail that grows, chunks
    sealed), all of history and a range equal the brute force and the merge without kept
    sets; a live writer's roll-up is merged beside the closed segments' tree, and the kept
    merge of both leaves the pool once a seal makes it stale."""
    rng = np.random.default_rng(17)
    path = tmp_path / "db"
    base = time.time_ns() - DAY
    closed = [_rows(rng, 50, i, base + i * 10**9, FUNCTIONS) for i in range(6)]
    for rows in closed:
        _segment(path, rows)
    writers = [Database.open(path, chunk_rows=CHUNK, flush_interval=0.05) for _ in range(2)]
    try:
        written: list[Rows] = []
        with (
            Database.open(path, readonly=True) as db,
            Database.open(path, readonly=True) as ref,
        ):
            for step in range(8):
                for lane, w in enumerate(writers):
                    rows = _rows(rng, int(rng.integers(1, 2 * CHUNK)), 6 + lane,
                                 base + (10 + step) * 10**9, FUNCTIONS)  # fmt: skip
                    assert w.append(**rows.append_kwargs()) == len(rows)
                    assert w.flush(30)
                    written.append(rows)
                truth = Rows.concat(closed + written)
                mid = int(np.sort(truth.start)[len(truth) // 3])
                for s, u in [(None, None), (None, None), (mid, None), (mid, None), (mid, None)]:
                    _ask(db, truth, s, u)
                    _same(db.summaries(since=s, until=u), _uncached(ref, s, u), f"{step}")
                assert len(db._reads._whole_keys) <= 2  # the closed tree and its merge with live
    finally:
        for w in writers:
            w.close()


@pytest.mark.parametrize("seed", range(4))
def test_a_block_taken_and_merged_leaves_out_exactly_the_functions_not_wanted(seed: int) -> None:
    """``merge`` drops the rows a lookup leaves out before adding buckets: the same as merging
    the blocks whole and taking the wanted rows afterwards."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(int(rng.integers(1, 6))):
        n = int(rng.integers(50, 400))
        groups = rng.integers(0, 12, n)
        cols: dict[str, np.ndarray] = {
            "start": rng.integers(0, 10**9, n),
            "duration": rng.lognormal(12, 2, n).astype(np.int64),
            "status": rng.integers(0, 3, n).astype(np.uint8),
        }
        blocks.append(Block.of_rows(groups, cols))
    wanted = np.flatnonzero(rng.random(12) < 0.4)
    lookup = np.full(12, -1, np.int64)
    lookup[wanted] = np.arange(wanted.size)
    got = merge([(lookup, b) for b in blocks])
    whole = merge([(None, b) for b in blocks])
    rows = np.flatnonzero(np.isin(whole.codes, wanted))
    want = whole.take(rows)
    np.testing.assert_array_equal(got.codes, lookup[want.codes])
    for f in ("count", "zero_count", "errors", "min", "max", "first_start", "last_start",
              "bounds", "keys", "counts"):  # fmt: skip
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)
    np.testing.assert_allclose(got.sum, want.sum, rtol=1e-12)
    np.testing.assert_allclose(got.m2, want.m2, rtol=1e-9)


def _joined_node_window(db: Database) -> tuple[int, int, tuple[int, int]]:
    """A window over the only segment whose plan holds a run of whole chunks joined into a
    node no record holds (some of chunks 9-12, within one level-1 node: the window cuts 8 and
    13, and the chunks whose time ranges overlap theirs)."""
    (seg,) = db._reads.snapshot().segments
    lo, hi = seg.chunks.column("start_min"), seg.chunks.column("start_max")
    since, until = int(hi[8]), int(lo[13]) + 1  # cuts chunks 8 and 13 (a row of each inside)
    plan = rollup.ChunkTree(seg.chunks, closed=True, records=seg.reader.rollups.records).plan(
        TimeRange.of(since, until)
    )
    joined = [(n.first, n.last) for n in plan.nodes if n.level == 1 and 8 <= n.first < n.last < 13]
    assert len(joined) == 1 and joined[0] not in seg.reader.rollups.records
    return since, until, joined[0]


def _nodes_kept(db: Database) -> set[tuple[int, int]]:
    return {(k.first, k.last) for k in db._reads.pool._frames if isinstance(k, _NodeKey)}


def test_a_joined_run_asked_first_merges_its_chunks_with_the_rest(tmp_path: Path) -> None:
    """The first time a window is asked, a run of whole chunks the plan joins into one node
    (no record holds it) gives its chunks' blocks to the query's one merge; the node itself is
    merged, and kept, when the window's plan is asked again. Every answer equals the brute
    force."""
    rng = np.random.default_rng(11)
    rows = _time_ordered(generate(rng, 40 * CHUNK, FUNCTIONS, base=DAY, span=10**10), rng)
    _segment(tmp_path, rows)
    with Database.open(tmp_path, readonly=True) as db:
        since, until, run = _joined_node_window(db)
        _ask(db, rows, since, until)
        assert run not in _nodes_kept(db)  # its chunks were merged with the rest
        # asked again, the cut chunks answer from their slices: another plan, asked first
        _ask(db, rows, since, until)
        assert run not in _nodes_kept(db)
        _ask(db, rows, since, until)
        assert run in _nodes_kept(db)  # that plan asked again: the node merged and kept
        _ask(db, rows, since, until)


def test_a_damaged_chunk_of_a_joined_run_asked_first_costs_its_rows(tmp_path: Path) -> None:
    """A chunk of such a run whose summary page is damaged: the first question finds it, the
    chunk is condemned and the question answered again without its rows."""
    rng = np.random.default_rng(12)
    rows = _time_ordered(generate(rng, 40 * CHUNK, FUNCTIONS, base=DAY, span=10**10), rng)
    _segment(tmp_path, rows)
    with Database.open(tmp_path, readonly=True) as db:
        since, until, (first, _) = _joined_node_window(db)
        (seg,) = db._reads.snapshot().segments
        chunk = seg.chunks[first]
        with db._reads.chunk_columns(seg, chunk, ["start"]) as (cols, _):
            gone = set(cols["start"].tolist())
    with open(seg.reader.data_path, "r+b") as fh:
        fh.seek(chunk.pages["summary"][0] + HEADER_SIZE + 2)
        fh.write(b"\x00\x01\x02\x03")
    keep = np.flatnonzero(~np.isin(rows.start, list(gone)))
    with Database.open(tmp_path, readonly=True) as db:
        _ask(db, rows.take(keep), since, until)
        assert db._reads.damage().chunks == 1
        _ask(db, rows.take(keep), since, until)


@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data(), tiny=st.booleans())
def test_whole_history_with_live_tails_appended_between_asks(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, tiny: bool
) -> None:
    """Two live writers append between asks (tails growing past and within their last summary,
    chunks sealed now and then), the reader warming its view or not: all of history, of every
    function and of a few, equals the brute force and the merge without kept sets, asked once
    and again; with a roomy pool the merge of the whole-history entry with the tails' summaries
    is kept, so the next ask merges that entry plus only the rows appended since."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    path = tmp_path_factory.mktemp("tails") / "db"
    base = time.time_ns() - DAY
    closed = [_rows(rng, 40, i, base + i * 10**9, FUNCTIONS) for i in range(3)]
    for rows in closed:
        _segment(path, rows)
    pool = (48 << 10) if tiny else 64 << 20
    writers = [Database.open(path, chunk_rows=CHUNK, flush_interval=0.05) for _ in range(2)]
    try:
        written: list[Rows] = []
        with (
            Database.open(path, readonly=True, bufferpool_bytes=pool) as db,
            Database.open(path, readonly=True) as ref,
        ):
            for step in range(data.draw(st.integers(2, 5), label="steps")):
                lane = data.draw(st.integers(0, 1), label="writer")
                rows = _rows(rng, data.draw(st.integers(1, 2 * CHUNK), label="rows"), 3 + lane,
                             base + (10 + step) * 10**9, FUNCTIONS)  # fmt: skip
                assert writers[lane].append(**rows.append_kwargs()) == len(rows)
                assert writers[lane].flush(30)
                written.append(rows)
                truth = Rows.concat(closed + written)
                reads = db._reads
                if data.draw(st.booleans(), label="warm"):  # as the server's warmer does
                    with db.snapshot() as view:
                        assert view.warm()
                        view.merge_whole()
                    if not tiny:  # made before any question, and the next one finds it
                        made = reads._tail_keys[-1]
                        assert made in reads.pool
                        db.summaries()
                        assert reads._tail_keys[-1] is made
                names = data.draw(st.sampled_from([(), ("a.one",), ("b.three", "d.five")]))
                wanted = list(names) if names else None
                for _ in range(2):
                    _ask(db, truth, None, None, names)
                    got = db.summaries(wanted)
                    _same(got, _uncached(ref, None, None, wanted), f"{step} {names}")
                if not tiny:  # the kept merge with the tails' summaries, in the pool
                    assert reads._tail_keys and reads._tail_keys[-1] in reads.pool
                assert len(reads._tail_keys) <= 4
    finally:
        for w in writers:
            w.close()
