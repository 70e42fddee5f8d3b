"""The segment index opens without building per-chunk objects, and decodes its bulk on first use.

Opening a segment from its index (format 3) reads the chunk directory as arrays: no ChunkInfo is
made, the function lists and the roll-up are neither decompressed nor checked until a question
needs them. These stories check that what is made later equals what a walk of the same segment
finds, field by field; that an index of format 2 (written before, the fixture ``index_v2``) still
reads; and that damage, or a lie behind the checksum, in any part of an index is refused, counted
once, and walked around, with every answer equal to brute force over the rows written.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kronicler.db import Database, index
from kronicler.db.chunk_table import NONE, Chunks
from kronicler.db.reader import SegmentReader
from kronicler.db.reads import _whole_block
from kronicler.db.rollup import Block
from kronicler.db.snapshot import ChunkInfo
from kronicler.errors import CorruptPageError, IndexUnusableError
from tests.db.conftest import make_rows
from tests.db.test_index import _check, _truth, _write

FIXTURE = Path(__file__).parent / "data" / "index_v2"
BASE = 1_700_000_000_000_000_000
# (seed, rows, functions) of the fixture's two segments, as data/index_v2/make_fixture.py wrote
FIXTURE_ROWS = ((31, 1400, 5), (32, 900, 4))


def _segments(db_dir: Path) -> list[str]:
    return sorted(p.stem for p in (db_dir / "segments").glob("*.kseg"))


def _reader(db_dir: Path, seg: str) -> SegmentReader:
    reader = SegmentReader(db_dir / "segments", seg)
    reader.refresh()
    return reader


def _walked(db_dir: Path, seg: str, tmp: Path) -> SegmentReader:
    """A reader of a copy of the segment without its index: it walks every page."""
    copy = tmp / f"walked-{seg}"
    (copy / "segments").mkdir(parents=True)
    for p in (db_dir / "segments").glob(f"{seg}.*"):
        if p.suffix != index.SUFFIX:
            shutil.copy(p, copy / "segments" / p.name)
    return _reader(copy, seg)


def _same_chunk(a: ChunkInfo, b: ChunkInfo) -> None:
    for f in ("seq", "offset", "length", "rows", "first_row", "start_min", "start_max", "pages",
              "keep", "summary"):  # fmt: skip
        assert getattr(a, f) == getattr(b, f), f
    for f in ("codes", "max_duration", "code_ends", "blocks"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), f
        if x is not None:
            assert np.array_equal(x, y) and x.dtype == y.dtype, f


def _same_block(a: Block, b: Block) -> None:
    for f in ("codes", "count", "zero_count", "errors", "min", "max", "first_start",
              "last_start", "bounds", "keys", "counts"):  # fmt: skip
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    # the writer merges in another order than the walk: the float sums differ in the last bits
    assert np.allclose(a.sum, b.sum, rtol=1e-12) and np.allclose(a.m2, b.m2, rtol=1e-9)


def _equal_to_the_walk(db_dir: Path, tmp: Path, version: int) -> None:
    for seg in _segments(db_dir):
        raw = index.path_of(db_dir / "segments", seg).read_bytes()
        assert index._PREFIX.unpack_from(raw)[1] == version
        indexed, walked = _reader(db_dir, seg), _walked(db_dir, seg, tmp)
        try:
            assert indexed._indexed > 0 and indexed.index_failures == 0
            mine, theirs = indexed.view(), walked.view()
            assert len(mine.chunks) == len(theirs.chunks) > 0
            # columns first (no object made), then every chunk in a scattered order
            for name in ("seq", "offset", "rows", "first_row", "start_min", "start_max",
                         "kept_rows", "clean"):  # fmt: skip
                field = "kept_rows" if name == "kept_rows" else name
                want = [c.keep is None if name == "clean" else getattr(c, field)
                        for c in theirs.chunks]  # fmt: skip
                assert mine.chunks.column(name).tolist() == want, name
            order = np.random.default_rng(1).permutation(len(theirs.chunks)).tolist()
            for i in order:
                _same_chunk(mine.chunks[i], theirs.chunks[i])
            assert mine.rows == theirs.rows
            # the roll-up, decoded straight into a block, as the walk merges its chunks
            _same_block(_whole_block(mine), _whole_block(theirs))
            assert mine.rollup.codes == tuple(sorted(theirs.rollup.summaries))
            for code, s in theirs.rollup.summaries.items():
                got = mine.rollup.summaries[code]
                assert (got.count, got.min, got.max, got.zero_count) == (
                    s.count, s.min, s.max, s.zero_count)  # fmt: skip
                assert np.array_equal(got.keys, s.keys) and np.array_equal(got.counts, s.counts)
                for f in ("errors", "first_start", "last_start"):
                    assert getattr(mine.rollup, f)[code] == getattr(theirs.rollup, f)[code], f
            # the dictionary pages of the indexed chunks: each chunk's attribute texts
            for c in theirs.chunks:
                assert indexed.chunk_attributes(c.seq) == walked.chunk_attributes(c.seq)
            assert indexed.attribute_dictionary(mine.dict_pages, ()).values == (
                walked.attribute_dictionary(theirs.dict_pages, ()).values
            )
        finally:
            indexed.close()
            walked.close()


# -- what the open does, and what a question makes ----------------------------------------------
def test_opening_makes_no_chunk_object_and_decodes_no_list_or_roll_up(tmp_path):
    parts = [make_rows(2400, seed=s, functions=6, base=BASE + s * 10**10) for s in range(2)]
    for p in parts:
        _write(tmp_path, p, 200)
    t = _truth(parts)
    with Database.open(tmp_path, readonly=True) as db:
        readers = list(db._open_reads().refresh())
        tables = [r.chunks.table for r in readers]
        assert all(t is not None and len(t) == 12 for t in tables)

        def made() -> int:
            return sum(sum(c is not None for c in t._made) for t in tables if t)

        def decoded() -> tuple[int, int]:
            return (sum(t.decoded for t in tables if t),
                    sum(r.rollup.decoded for r in readers))  # fmt: skip

        assert (made(), decoded()) == (0, (0, 0))
        assert db.functions() == sorted(set(t["names"].tolist()))
        assert db.time_range() == (int(t["start"].min()), int(t["start"].max()))
        assert (made(), decoded()) == (0, (0, 0))
        stats = db.stats()  # whole history: the roll-ups, not a chunk
        assert {k: s.count for k, s in stats.items()} == {
            fn: int((t["names"] == fn).sum()) for fn in set(t["names"].tolist())
        }
        assert (made(), decoded()) == (0, (0, 2))
        # the roll-up record locations stay the index's array until a plan looks one up
        records = [r.rollups.records for r in readers]
        assert all(isinstance(x, index.Records) and len(x) and not x.made for x in records)
        lo, hi = int(t["start"][100]), int(t["start"][900])  # the first segment's chunks 0-4
        window = db.summaries(since=lo, until=hi)
        inside = (t["start"] >= lo) & (t["start"] < hi)
        assert sum(s.summary.count for s in window.values()) == int(inside.sum())
        assert 0 < made() <= 5  # of the 24: only chunks the window holds or cuts
        assert decoded()[0] == 1  # the other segment holds nothing of the window
        assert [isinstance(x, index.Records) and x.made for x in records] == [True, False]
        _check(db, t)  # then every question, against brute force


def test_decoded_chunks_and_roll_up_equal_what_a_walk_finds(tmp_path):
    db_dir = tmp_path / "db"
    for s, (n, cr) in enumerate(((3000, 170), (1300, 1300), (700, 60))):  # 18, 1 and 12 chunks
        _write(db_dir, make_rows(n, seed=s, functions=7, base=BASE + s * 10**10), cr)
    _equal_to_the_walk(db_dir, tmp_path, index.VERSION)


def _read_in_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read indexes as a large one is read (a few KB here, read whole at once otherwise): the
    header first, then the head and the roll-up frames, the function lists on first use."""
    monkeypatch.setattr(index, "_FIRST_READ", index.HEADER.size)


def test_an_index_read_in_parts_equals_the_walk_and_brute_force(tmp_path, monkeypatch):
    _read_in_parts(monkeypatch)
    db_dir = tmp_path / "db"
    parts = [make_rows(n, seed=s, functions=7, base=BASE + s * 10**10)
             for s, n in enumerate((3000, 1300, 700))]  # fmt: skip
    for p, cr in zip(parts, (170, 1300, 60), strict=True):
        _write(db_dir, p, cr)
    _equal_to_the_walk(db_dir, tmp_path, index.VERSION)
    with Database.open(db_dir, readonly=True) as db:
        _check(db, _truth(parts))
        assert all(r._indexed and not r.index_failures for r in db._open_reads().readers.values())


@pytest.mark.parametrize("change", ["same chunks", "other chunks", "gone"])
def test_an_index_changed_after_the_open_gives_its_lists_only_with_the_same_chunks(
    tmp_path, change, monkeypatch
):  # fmt: skip
    """The lists of a closed segment's index are read when first needed, from the file the
    open read. Maintenance that rewrites it keeping its chunks (more roll-up records listed)
    gives the same lists; a file gone or with other chunks is refused and the segment walked:
    either way every answer equals brute force."""
    _read_in_parts(monkeypatch)
    path, seg, truth = _one_segment(tmp_path)
    with Database.open(tmp_path, readonly=True) as db:
        (reader,) = db._open_reads().refresh()
        table = reader.chunks.table
        assert reader._indexed and table is not None and not table.decoded  # lists not read yet
        idx = index.decode(path.read_bytes(), seg)
        if change == "same chunks":
            fewer = dict(list(idx.records.items())[:-1])  # another file, the same chunks
            assert fewer != dict(idx.records)
            index.save(path.parent, dataclasses.replace(idx, records=fewer))
        elif change == "other chunks":
            chunks = list(idx.chunks)
            index.save(path.parent, dataclasses.replace(
                idx, chunks=chunks[:-1], end=chunks[-1].offset, rows=chunks[-1].first_row,
                records={}, records_end=0))  # fmt: skip
        else:
            path.unlink()
        _check(db, truth)
        assert (reader.index_failures, reader._indexed > 0) == (
            (0, True) if change == "same chunks" else (1, False))  # fmt: skip
        _check(db, truth)


def test_an_index_of_format_2_still_reads(tmp_path):
    """Written by the build before format 3 (data/index_v2/make_fixture.py): read as it is,
    equal to the walk, every answer equal to brute force; re-encoded, format 3, the same."""
    db_dir = tmp_path / "db"
    shutil.copytree(FIXTURE, db_dir)
    parts = [make_rows(n, seed=s, functions=f, base=BASE + s * 10**10)
             for s, n, f in FIXTURE_ROWS]  # fmt: skip
    _equal_to_the_walk(db_dir, tmp_path, 2)
    with Database.open(db_dir, readonly=True) as db:
        _check(db, _truth(parts))
        assert all(r._indexed and not r.index_failures for r in db._open_reads().readers.values())
    for seg in _segments(db_dir):
        path = index.path_of(db_dir / "segments", seg)
        old = index.decode(path.read_bytes(), seg)
        path.write_bytes(index.encode(old))
        new = index.decode(path.read_bytes(), seg)
        for f in ("segment", "closed", "replaces", "pid", "end", "rows", "names", "services",
                  "records", "records_end", "resources"):  # fmt: skip
            assert getattr(new, f) == getattr(old, f), f
        for a, b in zip(new.chunks, old.chunks, strict=True):
            _same_chunk(a, b)
    _equal_to_the_walk(db_dir, tmp_path / "again", index.VERSION)
    with Database.open(db_dir, readonly=True) as db:
        _check(db, _truth(parts))


def test_upgrading_rewrites_closed_indexes_of_format_2_once(tmp_path):
    db_dir = tmp_path / "db"
    shutil.copytree(FIXTURE, db_dir)
    segdir = db_dir / "segments"
    live = make_rows(300, seed=8, functions=3, base=BASE + 10**13)
    writer = Database.open(db_dir, chunk_rows=100, flush_interval=3600)
    try:
        writer.append(**live)
        assert writer.flush()
        assert sorted(index.upgrade(segdir)) == _segments(db_dir)[:2]  # the two closed ones
        versions = {index._PREFIX.unpack_from(p.read_bytes())[1] for p in segdir.glob("*.kidx")}
        assert versions == {index.VERSION}
        assert index.upgrade(segdir) == []
        parts = [make_rows(n, seed=s, functions=f, base=BASE + s * 10**10)
                 for s, n, f in FIXTURE_ROWS]  # fmt: skip
        with Database.open(db_dir, readonly=True) as db:
            _check(db, _truth([*parts, live]))
    finally:
        writer.close()


def test_the_largest_duration_per_chunk_equals_its_objects_and_slowest_brute_force(tmp_path):
    """``slowest`` ranks chunks by ``Chunks.largest`` (no ChunkInfo made): per chunk it must be
    what the chunk's own lists give, for indexed chunks, chunks walked past the index (a live
    segment), and a selection of them; the slowest calls in any window, brute force's."""
    rows = make_rows(2600, seed=12, functions=6, base=BASE)
    first = {k: v[:2000] if isinstance(v, (list, np.ndarray)) else v for k, v in rows.items()}
    live = _write(tmp_path, first, 40, close=False)  # an index at this commit
    rest: dict[str, Any] = {k: v[2000:] if isinstance(v, (list, np.ndarray)) else v
                            for k, v in rows.items()}  # fmt: skip
    live.append(**rest)
    assert live.flush()  # 15 chunks more, past the index
    try:
        with Database.open(tmp_path, readonly=True) as db:
            (seg,) = db._open_reads().snapshot().segments
            assert seg.chunks.table is not None and len(seg.chunks) > len(seg.chunks.table)
            sel = seg.chunks.without(set(range(0, len(seg.chunks), 3)))
            for chunks in (seg.chunks, sel):
                for codes in (None, np.array([1], np.uint32), np.array([0, 4, 5], np.uint32)):
                    want = []
                    for c in chunks:
                        m = c.max_duration if codes is None else c.max_duration[
                            np.isin(c.codes, codes)]  # fmt: skip
                        want.append(int(m.max()) if m.size else NONE)
                    assert chunks.largest(codes).tolist() == want
            t = _truth([rows])
            start, duration, names = t["start"], t["duration"], t["names"]
            for lo, hi in ((400, 900), (0, 2599), (1700, 1701), (2000, 2600)):
                since, until = int(start[lo]), int(start[hi - 1]) + (hi == 2600)
                for fn in (None, "app.f0", "app.f5"):
                    m = (start >= since) & (start < until)
                    if fn is not None:
                        m &= names == fn
                    order = np.lexsort((start[m], -duration[m]))[:6]
                    got = db.slowest(fn, k=6, since=since, until=until)
                    assert [(c.duration, c.start) for c in got] == list(
                        zip(duration[m][order].tolist(), start[m][order].tolist(), strict=True)
                    ), (lo, hi, fn)
    finally:
        live.close()


def test_chunks_select_and_answer_columns_like_their_objects():
    infos = [ChunkInfo(s, s * 10, 10, 3, s * 3, 100 + s, 200 + s,
                       keep=np.zeros(1, np.int64) if s == 4 else None)
             for s in (0, 1, 2, 4, 7)]  # fmt: skip
    chunks = Chunks(None, infos)
    assert chunks.column("seq").tolist() == [0, 1, 2, 4, 7]
    assert chunks.column("kept_rows").tolist() == [3, 3, 3, 1, 3]
    assert chunks.column("clean").tolist() == [True, True, True, False, True]
    left = chunks.without({1, 7, 99})
    assert [c.seq for c in left] == [0, 2, 4] and left[-1] is infos[3]
    assert left.column("start_min").tolist() == [100, 102, 104]
    assert chunks[1:3] == (infos[1], infos[2])
    with pytest.raises(IndexError):
        chunks[5]  # noqa: B018


def test_chunks_made_one_by_one_equal_what_a_walk_finds(tmp_path):
    """A range's edge chunks are made a few at a time (from their own rows of the table), later
    ones from the whole table's: every ChunkInfo equals what a walk of the segment finds, in
    any order of asking, and so does the table making them all at once."""
    db_dir = tmp_path / "db"
    _write(db_dir, make_rows(6000, seed=9, functions=6, base=BASE), 150)  # 40 chunks
    (seg,) = _segments(db_dir)
    walked = _walked(db_dir, seg, tmp_path)
    try:
        theirs = walked.view().chunks
        raw = index.path_of(db_dir / "segments", seg).read_bytes()
        chunks = index.decode(raw, seg).chunks
        assert isinstance(chunks, Chunks) and chunks.table is not None and len(theirs) == 40
        table = chunks.table
        for i in [39, 0, 17, 5, 6, *range(40)]:  # a few alone, then one by one past 1/8
            _same_chunk(table.info(i), theirs[i])
        for a, b in zip(index.decode(raw, seg).chunks, theirs, strict=True):
            _same_chunk(a, b)
    finally:
        walked.close()


# -- damage and lies ---------------------------------------------------------------------------
def _frames(raw: bytes) -> list[bytes]:
    lengths = index.HEADER.unpack_from(raw, 0)[3::2]
    out, pos = [], index.HEADER.size
    for n in lengths:
        out.append(raw[pos : pos + n])
        pos += n
    return out


def _framed(frames: list[bytes]) -> bytes:
    """An index file of these frames whose checksums all match (a lie, not damage)."""
    checks = [x for f in frames for x in (zlib.crc32(f), len(f))]
    return index.HEADER.pack(index.MAGIC, index.VERSION, *checks) + b"".join(frames)


def _one_segment(tmp_path: Path) -> tuple[Path, str, dict[str, np.ndarray]]:
    rows = make_rows(2000, seed=5, functions=5)
    _write(tmp_path, rows, 250)
    (path,) = (tmp_path / "segments").glob(f"*{index.SUFFIX}")
    return path, path.stem, _truth([rows])


@pytest.mark.parametrize("in_parts", [False, True])
@pytest.mark.parametrize("where", ["header", "head", "lists", "roll-up", "truncated", "longer"])
def test_damage_in_any_part_is_refused_counted_once_and_walked_around(
    tmp_path, where, in_parts, caplog, monkeypatch
):  # fmt: skip
    if in_parts:  # read as a large index is: header and head first, the lists when first needed
        monkeypatch.setattr(index, "_FIRST_READ", index.HEADER.size)
    path, seg, truth = _one_segment(tmp_path)
    raw = bytearray(path.read_bytes())
    lengths = index.HEADER.unpack_from(raw, 0)[3::2]
    starts = np.cumsum([index.HEADER.size, *lengths])
    if where == "header":
        raw[10] ^= 0x01  # the head frame's checksum
    elif where in ("head", "lists", "roll-up"):
        frame = ("head", "lists", "roll-up").index(where)
        raw[int(starts[frame] + starts[frame + 1]) // 2] ^= 0x20
    elif where == "truncated":
        raw = raw[:-7]
    else:
        raw += b"\0"
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="kronicler"), Database.open(tmp_path) as db:
        reader = next(iter(db._open_reads().refresh()))
        lazy = where in ("lists", "roll-up")  # found when first read, not at open
        assert (reader.index_failures, reader._indexed > 0) == ((0, True) if lazy else (1, False))
        _check(db, truth)  # the roll-up and the lists are read here: damage found, walked
        assert (reader.index_failures, reader._indexed) == (1, 0)
        _check(db, truth)
        warned = [r for r in caplog.records if "index unusable" in r.getMessage()]
        assert len(warned) == 1 and "index of" in warned[0].getMessage()


def _lying_lists(idx: index.SegmentIndex, how: str) -> index.SegmentIndex:
    chunks = list(idx.chunks)
    c = chunks[1]
    if how == "a code with no text":
        lie = dataclasses.replace(c, codes=np.array([*c.codes[:-1], 77], np.uint32))
    elif how == "codes not ascending":
        lie = dataclasses.replace(c, codes=c.codes[::-1].copy())
    elif how == "row ranges past the chunk":
        assert c.code_ends is not None
        lie = dataclasses.replace(c, code_ends=c.code_ends + 1)
    else:  # "row ranges not ascending"
        assert c.code_ends is not None
        lie = dataclasses.replace(c, code_ends=c.code_ends[::-1].copy())
    chunks[1] = lie
    return dataclasses.replace(idx, chunks=tuple(chunks))


LIES = ["a code with no text", "codes not ascending", "row ranges past the chunk",
        "row ranges not ascending", "another roll-up", "garbage lists", "garbage roll-up"]  # fmt: skip


@pytest.mark.parametrize("how", LIES)
def test_a_lie_behind_the_checksums_is_refused_when_first_read(tmp_path, how, caplog):
    """A part decoded on first use that passes its checksum but is inconsistent (a writer's
    bug, not damage) raises IndexUnusableError there; the reader then walks the segment and
    every answer is still brute force's."""
    path, seg, truth = _one_segment(tmp_path)
    other = make_rows(600, seed=9, functions=3, base=BASE + 10**12)
    _write(tmp_path / "other", other, 200)
    (other_path,) = (tmp_path / "other" / "segments").glob(f"*{index.SUFFIX}")
    idx = index.decode(path.read_bytes(), seg)
    frames = _frames(path.read_bytes())
    if how == "another roll-up":
        frames[2] = _frames(other_path.read_bytes())[2]
    elif how == "garbage roll-up":
        frames[2] = frames[2][:40] + bytes(len(frames[2]) - 40)
    elif how == "garbage lists":
        frames[1] = frames[1][: len(frames[1]) // 2]
    else:
        frames[1] = _frames(index.encode(_lying_lists(idx, how)))[1]
    path.write_bytes(_framed(frames))
    lie = index.decode(path.read_bytes(), seg)  # the head is sound: it opens
    part = "roll-up" if "roll-up" in how else "lists"
    for _ in range(2):  # refused, and refused again (remembered)
        with pytest.raises(IndexUnusableError):
            if part == "lists":
                lie.chunks[0]  # noqa: B018
            else:
                lie.rollup.stored_block()
    table = lie.chunks.table if isinstance(lie.chunks, Chunks) else None
    assert table is not None and (table.failed is not None) == (part == "lists")
    assert (lie.rollup.failed is not None) == (part == "roll-up")
    assert isinstance(IndexUnusableError(""), CorruptPageError)
    with caplog.at_level(logging.WARNING, logger="kronicler"), Database.open(tmp_path) as db:
        _check(db, truth)
        reader = next(iter(db._open_reads().readers.values()))
        assert (reader.index_failures, reader._indexed) == (1, 0)
        assert len([r for r in caplog.records if "index unusable" in r.getMessage()]) == 1


@pytest.mark.parametrize("how", ["rows", "a gap", "pages"])
def test_a_chunk_directory_that_lies_is_refused_when_first_used(tmp_path, how, caplog):
    """A closed segment's chunk directory is checked when a question first uses it, not at
    open: one that passes its checksum but does not tile the segment (a writer's bug) opens,
    is refused there, and the segment is walked; every answer is still brute force's."""
    path, seg, truth = _one_segment(tmp_path)
    idx = index.decode(path.read_bytes(), seg)
    c0, c1 = idx.chunks[0], idx.chunks[1]
    pages = dict(c0.pages)
    pages["start"] = (pages["start"][0], pages["start"][1] + 1)
    lie = {
        "rows": dataclasses.replace(idx, rows=idx.rows + 1),
        "a gap": dataclasses.replace(idx, chunks=(
            c0, dataclasses.replace(c1, offset=c1.offset + 1), *idx.chunks[2:])),
        "pages": dataclasses.replace(idx, chunks=(
            dataclasses.replace(c0, pages=pages), *idx.chunks[1:])),
    }[how]  # fmt: skip
    path.write_bytes(index.encode(lie))
    with pytest.raises(CorruptPageError):
        index.decode(path.read_bytes(), seg)  # decoded whole, it is refused at once
    with caplog.at_level(logging.WARNING, logger="kronicler"), Database.open(tmp_path) as db:
        reader = next(iter(db._open_reads().refresh()))
        table = reader.chunks.table
        assert reader._indexed and not reader.index_failures  # opened from its head
        assert table is not None and not table.checked
        _check(db, truth)
        assert (reader.index_failures, reader._indexed) == (1, 0)
        assert table.failed is not None
        _check(db, truth)
        assert len([r for r in caplog.records if "index unusable" in r.getMessage()]) == 1


def test_a_chunk_condemned_by_a_bad_index_is_not_lost(tmp_path):
    """A roll-up node built from chunks meets the bad lists (``reader.chunk``): the query that
    met it condemns that chunk, but only the index was bad, so the walk keeps the chunk."""
    path, seg, truth = _one_segment(tmp_path)
    frames = _frames(path.read_bytes())
    idx = index.decode(path.read_bytes(), seg)
    frames[1] = _frames(index.encode(_lying_lists(idx, "codes not ascending")))[1]
    path.write_bytes(_framed(frames))
    with Database.open(tmp_path, readonly=True) as db:
        reader: Any = next(iter(db._open_reads().refresh()))
        reader.condemn(0, "met while the index was bad")
        with pytest.raises(IndexUnusableError):
            reader.chunk(3)
        lo, hi = int(truth["start"][300]), int(truth["start"][1700])
        window = db.summaries(since=lo, until=hi)
        inside = (truth["start"] >= lo) & (truth["start"] < hi)
        assert sum(s.summary.count for s in window.values()) == int(inside.sum())
        assert db.damaged.rows == 0 and reader.index_failures == 1
        _check(db, truth)
