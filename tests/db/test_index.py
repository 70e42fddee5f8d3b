"""The segment index: opening reads it and no chunk page, and every answer stays brute force's.

Segments here are closed (indexed at close), live (indexed at a commit, with chunks and a tail
past the index), old (their index removed: walked), killed mid-write, or carry a damaged index.
Each answer is checked against numpy over the rows written, and an indexed segment must answer
exactly as the same segment read by a walk.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from kronicler.db import Database, index, merged, zstd
from kronicler.db.chunk import BLOCK_ROWS
from kronicler.db.page import HEADER_SIZE
from kronicler.db.reader import SegmentReader
from kronicler.db.reads import _PageKey, _RunsKey
from kronicler.db.writer import INDEX_EVERY
from kronicler.errors import CorruptPageError
from tests.db.conftest import make_rows
from tests.db.test_corruption import (
    BASE,
    CR,
    FLUSHES,
    _all,
    _check_against,
    _flip,
    _healthy,
    _pages,
    _survivors,
    _victim_rows,
    poison_page,
)

ROOT = Path(__file__).resolve().parents[2]


def _write(db_dir: Path, rows: dict[str, Any], chunk_rows: int, *, close: bool = True) -> Database:
    db = Database.open(db_dir, chunk_rows=chunk_rows, flush_interval=3600)
    db.append(**rows)
    assert db.flush()
    if close:
        db.close()
    return db


def _truth(parts: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {
        "names": np.concatenate([np.array(p["names"]) for p in parts]),
        "start": np.concatenate([p["start_unix_nano"] for p in parts]),
        "duration": np.concatenate([p["duration_ns"] for p in parts]),
        "status": np.concatenate([p["status"] for p in parts]),
        "span": np.concatenate([p["span_id"] for p in parts]),
        "parent": np.concatenate([p["parent_span_id"] for p in parts]),
    }


def _check(db: Database, t: dict[str, np.ndarray]) -> None:
    """Every question the index or the per-function runs answer, against brute force."""
    names, start, duration = t["names"], t["start"], t["duration"]
    fns = sorted(set(names.tolist()))
    assert db.functions() == fns
    assert db.time_range() == (int(start.min()), int(start.max()))
    stats = db.stats()
    assert sorted(stats) == fns
    lo, hi = int(np.quantile(start, 0.2)), int(np.quantile(start, 0.7))
    window = db.summaries(since=lo, until=hi)
    for fn in fns:
        m = names == fn
        d = np.sort(duration[m])
        st = stats[fn]
        assert (st.count, st.min, st.max) == (d.size, d[0], d[-1]), fn
        assert st.errors == int((t["status"][m] == 2).sum()), fn
        exact = db.stats(fn, exact=True)
        assert (exact.count, exact.p50, exact.p99) == (
            d.size, np.quantile(d, 0.5, method="lower"), np.quantile(d, 0.99, method="lower"),
        ), fn  # fmt: skip
        top = db.slowest(fn, k=4)
        order = np.lexsort((start[m], -duration[m]))[:4]
        assert [(c.duration, c.start) for c in top] == list(
            zip(duration[m][order].tolist(), start[m][order].tolist(), strict=True)
        ), fn
        first = np.flatnonzero(m)[order[0]]
        assert (top[0].span_id, top[0].parent_span_id) == (t["span"][first], t["parent"][first])
        inside = m & (start >= lo) & (start < hi)
        scan = db.scan(["duration", "start"], names=[fn], since=lo, until=hi)
        assert sorted(scan.columns["duration"].tolist()) == sorted(duration[inside].tolist())
        assert (window[fn].summary.count if fn in window else 0) == int(inside.sum()), fn
    want = np.lexsort((start, -duration))[:5]
    assert [c.duration for c in db.slowest(k=5)] == duration[want].tolist()


def _pool(db: Database) -> Any:
    return db._open_reads().pool


# -- open --------------------------------------------------------------------------------------
def test_open_reads_the_index_and_no_chunk_page(tmp_path):
    parts = [make_rows(3000, seed=s, functions=6, base=BASE + s * 10**10) for s in range(3)]
    for p in parts:
        _write(tmp_path, p, 500)
    segdir = tmp_path / "segments"
    assert len(list(segdir.glob(f"*{index.SUFFIX}"))) == 3
    # Every chunk page zeroed: a walk would find nothing, the index needs none of them.
    for seg in segdir.glob("*.kseg"):
        seg.write_bytes(bytes(seg.stat().st_size))
    t = _truth(parts)
    with Database.open(tmp_path, readonly=True) as db:
        stats = db.stats()
        assert db.functions() == sorted(set(t["names"].tolist()))
        assert db.time_range() == (int(t["start"].min()), int(t["start"].max()))
        for fn, st in stats.items():
            assert st.count == int((t["names"] == fn).sum())
        # no page was read: the pool holds only the merge of the segments' roll-ups
        assert all(isinstance(k, merged.SetKey) for k in _pool(db)._frames)
        assert db.damaged.rows == 0
        # The first query that reads pages finds them damaged: then the walk counts the loss.
        assert len(db.scan(["duration"])) == 0
        assert db.damaged.rows == 9000 and db.damaged.chunks == 18
        assert db.stats() == {}


def test_indexed_answers_equal_brute_force_and_the_walk(tmp_path):
    """Closed, old (index removed), live (indexed at a commit, chunks and a tail past it)."""
    cr = 60
    closed = make_rows(2500, seed=1, functions=7, base=BASE)
    old = make_rows(1500, seed=2, functions=4, base=BASE + 10**9)
    _write(tmp_path, closed, cr)
    _write(tmp_path, old, cr)
    segdir = tmp_path / "segments"
    newest = max(segdir.glob(f"*{index.SUFFIX}"))
    newest.unlink()  # an old segment, written before indexes existed
    live_rows = make_rows(INDEX_EVERY * cr + 3 * cr + 17, seed=3, functions=9, base=BASE + 10**10)
    first = {k: (v[: INDEX_EVERY * cr] if isinstance(v, (list, np.ndarray)) else v)
             for k, v in live_rows.items()}  # fmt: skip
    rest: dict[str, Any] = {k: (v[INDEX_EVERY * cr :] if isinstance(v, (list, np.ndarray)) else v)
            for k, v in live_rows.items()}  # fmt: skip
    live = _write(tmp_path, first, cr, close=False)  # its commit saves an index
    live.append(**rest)
    assert live.flush()
    try:
        ids = {p.stem for p in segdir.glob(f"*{index.SUFFIX}")}
        assert len(ids) == 2
        live_id = next(
            i for i in ids if not json.loads((segdir / f"{i}.meta").read_bytes())["closed"]
        )
        live_reader = SegmentReader(segdir, live_id)
        live_reader.refresh()
        assert live_reader._indexed == INDEX_EVERY and len(live_reader.chunks) > INDEX_EVERY
        live_reader.close()
        t = _truth([closed, old, live_rows])
        with Database.open(tmp_path, readonly=True) as db:
            _check(db, t)
        for p in segdir.glob(f"*{index.SUFFIX}"):
            p.unlink()
        with Database.open(tmp_path, readonly=True) as db:
            _check(db, t)
    finally:
        live.close()


def test_one_function_decodes_only_the_blocks_that_hold_it(tmp_path):
    rows = make_rows(3 * BLOCK_ROWS * 2, seed=4, functions=12)
    _write(tmp_path, rows, 2 * BLOCK_ROWS + 100)
    t = _truth([rows])
    fn = "app.f11"  # a rare one
    with Database.open(tmp_path, readonly=True) as db:
        db.slowest(fn, k=len(rows["names"]))  # k above its calls: every chunk of it is read
        pool = _pool(db)
        reader = next(iter(db._open_reads().readers.values()))
        chunks = reader.chunks
        assert all(c.blocks is not None and c.blocks.size >= 2 for c in chunks)
        none = cast(Any, None)
        code = reader.dicts["name"].codes[fn]
        for c in chunks:
            whole = _PageKey(reader.id, c.seq, "duration", none, none)
            assert whole not in pool  # never the whole page
            runs = c.rows_of(np.array([code], np.uint32))
            assert runs is not None
            lo, hi = runs[0]
            block = c.block_of(lo, hi)
            assert _PageKey(reader.id, c.seq, "duration", none, none, block) in pool
            assert block[1] - block[0] < c.rows
            assert _PageKey(reader.id, c.seq, "name", none, none) not in pool
        _check(db, t)


def test_exact_stats_of_one_function_pin_one_entry_per_column_holding_only_its_rows(tmp_path):
    """The function's rows of all chunks of a segment are one pool entry per column, holding
    exactly its calls; no page is decoded whole, and the name page is not read at all. (Exact
    stats read this way the chunks that no ``.kdur`` record covers: asked of the scan here.)"""
    rows = make_rows(3 * BLOCK_ROWS * 2, seed=4, functions=12)
    _write(tmp_path, rows, 2 * BLOCK_ROWS + 100)
    t = _truth([rows])
    fn = "app.f11"
    mine = t["names"] == fn
    with Database.open(tmp_path, readonly=True) as db:
        for _ in range(2):  # loaded, then from the pool
            st = db.scan(("name", "duration", "status"), names=[fn]).exact_stats()[fn]
            d = np.sort(t["duration"][mine])
            assert (st.count, st.min, st.max, st.errors) == (
                d.size, d[0], d[-1], int((t["status"][mine] == 2).sum()),
            )  # fmt: skip
        pool = _pool(db)
        reader = next(iter(db._open_reads().readers.values()))
        code = reader.dicts["name"].codes[fn]
        seqs = tuple(c.seq for c in reader.chunks)
        none = cast(Any, None)
        for column in ("name", "duration", "status"):
            key = _RunsKey(reader.id, column, (code,), seqs, none, ())
            assert key in pool, column
        with pool.read_page(_RunsKey(reader.id, "duration", (code,), seqs, none, ())) as g:
            assert sorted(g.data.tolist()) == d.tolist()
        with pool.read_page(_RunsKey(reader.id, "name", (code,), seqs, none, ())) as g:
            assert g.data.tolist() == [code] * d.size
        for c in reader.chunks:
            for column in ("name", "duration", "status"):
                assert _PageKey(reader.id, c.seq, column, none, none) not in pool


# -- damage ------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["truncated", "flipped", "version", "garbage", "too long"])
def test_a_bad_index_is_walked_around_counted_and_logged_once(tmp_path, how, caplog):
    rows = make_rows(2000, seed=5, functions=5)
    _write(tmp_path, rows, 300)
    (path,) = (tmp_path / "segments").glob(f"*{index.SUFFIX}")
    raw = bytearray(path.read_bytes())
    if how == "truncated":
        raw = raw[: len(raw) // 2]
    elif how == "flipped":
        raw[len(raw) // 2] ^= 0x10
    elif how == "version":
        raw[4] += 1
    elif how == "garbage":
        raw = bytearray(os.urandom(len(raw)))
    else:  # a valid index claiming more bytes than the segment file holds
        seg = path.with_suffix(".kseg")
        seg.write_bytes(seg.read_bytes()[:-10])
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="kronicler"), Database.open(tmp_path) as db:
        if how == "too long":  # the walk finds the last chunk cut short: the rows before it
            assert sum(s.count for s in db.stats().values()) == 1800
            assert next(iter(db._open_reads().readers.values())).index_failures == 1
            return
        _check(db, _truth([rows]))
        reader = next(iter(db._open_reads().readers.values()))
        assert reader.index_failures == 1 and reader._indexed == 0
        warned = [r for r in caplog.records if "index unusable" in r.getMessage()]
        _check(db, _truth([rows]))
        assert len(warned) == 1
        assert len([r for r in caplog.records if "index unusable" in r.getMessage()]) == 1


def _indexed_victim(db_dir: Path) -> tuple[str, dict[str, dict[str, np.ndarray]]]:
    """test_corruption's layout, but the victim closed (so indexed): its texts first used in
    known chunks as there; its last chunk holds what the killed writer's log held."""
    parts = {"healthy1": _healthy(db_dir, 1, ["other", "a.base"], BASE - 10**9)}
    rows = parts["victim"] = _victim_rows()
    before = set(os.listdir(db_dir / "segments"))
    with Database.open(db_dir, chunk_rows=CR, flush_interval=3600) as db:
        lo = 0
        for hi in FLUSHES:
            db.append(rows["names"][lo:hi].tolist(), rows["start"][lo:hi], rows["duration"][lo:hi],
                      status=rows["status"][lo:hi], service=rows["service"][lo:hi].tolist(),
                      attributes=rows["attrs"][lo:hi].tolist())  # fmt: skip
            assert db.flush()
            lo = hi
    (seg,) = {f[:-5] for f in set(os.listdir(db_dir / "segments")) - before if f.endswith(".kseg")}
    parts["healthy2"] = _healthy(db_dir, 2, ["c.later", "zz"], BASE + 10**9)
    assert (db_dir / "segments" / f"{seg}{index.SUFFIX}").exists()
    return seg, parts


def _read_everything(db: Database, victim_last: int) -> None:
    """Queries that read every page kind once: damage is known at first read. The range stops
    just before the victim's last row (a range holding a whole segment reads its index's
    roll-up, no summary page), so the victim's other chunks are read from their pages."""
    db.scan(["name", "duration", "start", "status", "service", "attributes", "parent_span_id"])
    db.summaries(since=BASE - 10**10, until=victim_last)


@pytest.mark.parametrize("kind", ["column", "header", "dictionary", "summary", "poisoned"])
def test_damage_in_an_indexed_segment_is_found_at_first_read(tmp_path, kind, caplog):
    db_dir = tmp_path / "db"
    seg, parts = _indexed_victim(db_dir)
    segdir = db_dir / "segments"
    pages = _pages(segdir, seg, 1)
    if kind == "poisoned":  # passes its checksum, does not decode
        poison_page(segdir, seg, 1, "duration")
    else:
        where = {
            "column": pages["duration"][0] + HEADER_SIZE + 9,
            "header": pages["name"][0] + 17,
            "dictionary": pages["dictionary"][0] + HEADER_SIZE + 5,
            "summary": pages["summary"][0] + HEADER_SIZE + 30,
        }[kind]
        _flip(segdir / f"{seg}.kseg", where)
    survivors = _all({**parts, "victim": _survivors(parts["victim"], 1, kind == "dictionary")})
    with caplog.at_level(logging.WARNING, logger="kronicler"), Database.open(db_dir) as db:
        assert db.damaged.rows == 0  # not known at open: no page was read
        total = sum(s.count for s in db.stats().values())
        assert total == sum(len(p["start"]) for p in parts.values())
        _read_everything(db, int(parts["victim"]["start"].max()))
        _check_against(db, survivors)
        damage = db.damaged
        assert (damage.chunks, damage.records) == (1, 0)
        assert damage.rows == total - len(survivors["start"])
        if kind == "dictionary":
            assert damage.dependent_rows > 0
        reported = len(caplog.records)
        assert reported >= 1
        _check_against(db, survivors)
        assert len(caplog.records) == reported


# -- crashes -----------------------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from kronicler.db import Database
    sys.path.insert(0, sys.argv[3])
    from tests.db.conftest import make_rows
    db = Database.open(sys.argv[1], chunk_rows=int(sys.argv[2]), flush_interval=3600)
    i = 0
    while True:
        rows = make_rows(997, seed=i, functions=8, base=10**18 + i * 10**9)
        db.append(**rows)
        db.flush()
        print(i, flush=True)
        if i % 7 == 6:
            db.close()  # seal the tail and save the closed index, then a new segment
            db = Database.open(sys.argv[1], chunk_rows=int(sys.argv[2]), flush_interval=3600)
        i += 1
    """
)


def test_writers_killed_mid_seal_leave_indexes_that_agree_with_the_walk(tmp_path):
    """SIGKILL at random moments (mid-seal, mid-index-save, mid-close): whatever index is left
    (none, an older one, a closed one) gives the answers a walk of the same files gives."""
    rng = random.Random(7)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for run in range(3):
        db_dir = tmp_path / f"run{run}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db_dir), "40", str(ROOT)],
                                env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None
        for _ in range(rng.randint(2, 9)):  # batches written and flushed
            proc.stdout.readline()
        time.sleep(rng.uniform(0, 0.3))  # then somewhere in the next batch's seal or save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert list((db_dir / "segments").glob(f"*{index.SUFFIX}"))
        answers = []
        for walked in (False, True):
            if walked:
                for p in (db_dir / "segments").glob(f"*{index.SUFFIX}"):
                    p.unlink()
            with Database.open(db_dir, readonly=True) as db:
                fns = db.functions()
                answers.append((
                    {k: (s.count, s.min, s.max, s.errors) for k, s in db.stats().items()},
                    {fn: db.stats(fn, exact=True).p50 for fn in fns},
                    {fn: [(c.duration, c.start) for c in db.slowest(fn, k=3)] for fn in fns},
                    db.time_range(), db.damaged.rows,
                ))  # fmt: skip
        assert answers[0] == answers[1]
        counts = sum(c for c, *_ in answers[0][0].values())
        assert counts > 0 and answers[0][4] == 0
        assert json.dumps(answers[0][3])  # a time range exists


def test_an_index_that_passes_its_checksum_but_lies_is_refused(tmp_path):
    """Consistency checks behind the checksum: a wrong index can never point a read elsewhere."""
    _write(tmp_path, make_rows(1200, seed=6, functions=4), 300)
    (path,) = (tmp_path / "segments").glob(f"*{index.SUFFIX}")
    seg = path.stem
    idx = index.decode(path.read_bytes(), seg)
    c0, c1 = idx.chunks[0], idx.chunks[1]
    lies = {
        "another segment": dataclasses.replace(idx, segment="x"),
        "a gap": dataclasses.replace(
            idx, chunks=(c0, dataclasses.replace(c1, offset=c1.offset + 1), *idx.chunks[2:])
        ),  # fmt: skip
        "rows": dataclasses.replace(idx, rows=idx.rows + 1),
        "a code with no text": dataclasses.replace(idx, names=idx.names[:1]),
        "end": dataclasses.replace(idx, end=idx.end - 1),
        "a roll-up record past its file": dataclasses.replace(
            idx, records={(0, 1): (0, 64)}, records_end=63
        ),
        "a roll-up record of no chunk": dataclasses.replace(
            idx, records={(1, len(idx.chunks)): (0, 64)}, records_end=64
        ),
    }
    for lie in lies.values():
        with pytest.raises(CorruptPageError):
            index.decode(index.encode(lie), seg)
    body = zstd.compressor(3).compress(os.urandom(500))
    frames = [body, body, b""]
    checks = [x for f in frames for x in (zlib.crc32(f), len(f))]
    raw = index.HEADER.pack(index.MAGIC, index.VERSION, *checks) + b"".join(frames)
    with pytest.raises(CorruptPageError):
        index.decode(raw, seg)


def test_resource_texts_come_from_the_index(tmp_path):
    # An indexed segment's resource codes must resolve without walking its dictionary pages.
    n = 3000
    resources = [{"service.version": f"1.{i % 3}", "host.name": "web-1"} for i in range(n)]
    with Database.open(tmp_path, chunk_rows=512) as db:
        db.append([f"f{i % 5}" for i in range(n)], np.arange(n) + 10**18, np.arange(n) + 1,
                  resource=resources)  # fmt: skip
    with Database.open(tmp_path, readonly=True) as db:
        reader = next(iter(db._reads.refresh()))
        assert reader._indexed > 0  # opened from the index, not walked
        scan = db.scan(["duration", "resource"])
        got = sorted(
            (int(d), json.loads(scan.resources[int(c)])["service.version"])
            for d, c in zip(scan.columns["duration"], scan.columns["resource"], strict=True)
        )
    assert got == sorted((i + 1, f"1.{i % 3}") for i in range(n))
