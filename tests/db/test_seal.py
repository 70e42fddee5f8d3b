"""Sealing a chunk: rows ordered by function, id pages stored in start order, and back exactly.

Stories: full spans with random trace ids (traces of 1-10 spans, many functions, tied start
times) go through a real writer into chunks ordered by function; every row comes back exactly
through ``scan``, ``slowest``, compaction and a damaged-dictionary read; the trace id pages are
stored in start order (where a trace's spans are neighbours) and take a fraction of the bytes
they took in function order; damaged start-ordered pages raise only CorruptPageError.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kronicler.db import Database, chunk, codec
from kronicler.db.page import HEADER_SIZE, parse_header
from kronicler.db.schema import COLUMN_IDS, COLUMNS
from kronicler.errors import CorruptPageError

from .conftest import BASE_NS, damage_outcomes

ID_COLUMNS = ("trace_hi", "trace_lo", "span_id", "parent_span_id")


def traced_rows(n: int, seed: int, functions: int = 40) -> dict[str, np.ndarray]:
    """Spans of traces of 1-10 spans with random ids, in start order, children next to parents;
    one start in eight repeats its neighbour's (ties must keep a stable order)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, functions + 1)
    codes = rng.choice(functions, n, p=p / p.sum())
    start = BASE_NS + np.arange(n, dtype=np.int64) * 1000 + rng.integers(0, 1000, n)
    tie = rng.random(n) < 0.125
    tie[0] = False
    start[tie] = start[np.flatnonzero(tie) - 1]
    start = np.maximum.accumulate(start)
    sizes = rng.integers(1, 11, n)
    trace_of = np.repeat(np.arange(n), sizes)[:n]
    hi = rng.integers(1, 2**64 - 1, n, dtype=np.uint64)[trace_of]
    lo = rng.integers(1, 2**64 - 1, n, dtype=np.uint64)[trace_of]
    span = rng.integers(1, 2**64 - 1, n, dtype=np.uint64)
    first = np.r_[True, trace_of[1:] != trace_of[:-1]]
    root = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    parent_row = np.where(rng.random(n) < 0.5, root, np.arange(n) - 1)
    parent = np.where(first, 0, span[np.maximum(parent_row, 0)]).astype(np.uint64)
    return {
        "code": codes, "start": start, "duration": rng.integers(1, 10**7, n),
        "trace_hi": hi, "trace_lo": lo, "span_id": span, "parent_span_id": parent,
    }  # fmt: skip


def write(path: Path, rows: dict[str, np.ndarray], chunk_rows: int) -> None:
    n = rows["start"].size
    trace = np.stack([rows["trace_hi"], rows["trace_lo"]], axis=1).astype(">u8")
    with Database.open(path, chunk_rows=chunk_rows) as db:
        for i in range(0, n, 1000):
            j = min(i + 1000, n)
            db.append([f"f{c}" for c in rows["code"][i:j]], rows["start"][i:j],
                      rows["duration"][i:j], trace_id=trace[i:j].view(np.uint8).reshape(-1, 16),
                      span_id=rows["span_id"][i:j], parent_span_id=rows["parent_span_id"][i:j])  # fmt: skip


def as_table(cols: dict[str, np.ndarray]) -> np.ndarray:
    """Rows as sorted tuples (start, span_id, ...): equal tables hold exactly the same rows."""
    keys = ["start", "span_id", "duration", "trace_hi", "trace_lo", "parent_span_id"]
    table = np.stack([np.asarray(cols[k]).astype(np.uint64) for k in keys], axis=1)
    return table[np.lexsort(table.T[::-1])]


def stored_pages(path: Path) -> list[tuple[int, bytes]]:
    """(column id, payload) of every page of every segment file."""
    out = []
    for f in sorted(path.rglob("*.kseg")):
        data, pos = f.read_bytes(), 0
        while pos < len(data):
            header = parse_header(data[pos : pos + HEADER_SIZE])
            assert header is not None
            out.append((header.column, data[pos + HEADER_SIZE : pos + header.size]))
            pos += header.size
    return out


def test_full_spans_come_back_exactly_with_their_ids_stored_in_start_order(tmp_path):
    rows = traced_rows(12_000, seed=1)
    write(tmp_path / "db", rows, chunk_rows=5000)  # two full chunks and a short last one
    want = as_table(rows)
    with Database.open(tmp_path / "db", readonly=True) as db:
        got = db.scan(["start", "span_id", "duration", *ID_COLUMNS[:2], "parent_span_id"])
        assert np.array_equal(as_table(got.columns), want)
        # slowest() reads the ids of a few rows through the pool
        top = db.slowest("f3", k=5)
        mine = np.flatnonzero(rows["code"] == 3)
        best = mine[np.lexsort((rows["start"][mine], -rows["duration"][mine]))[:5]]
        assert [c.span_id for c in top] == rows["span_id"][best].tolist()
        assert [c.trace_id for c in top] == [
            int(rows["trace_hi"][i]) << 64 | int(rows["trace_lo"][i]) for i in best
        ]
        assert [c.parent_span_id for c in top] == rows["parent_span_id"][best].tolist()
    pages = stored_pages(tmp_path / "db")
    for name in ("trace_hi", "trace_lo", "parent_span_id"):
        payloads = [p for c, p in pages if c == COLUMN_IDS[name]]
        assert len(payloads) == 3
        assert all(codec.is_timed(p) for p in payloads), name
    # random distinct span ids gain nothing from an order: stored raw, decoded without one
    assert not any(codec.is_timed(p) for c, p in pages if c == COLUMN_IDS["span_id"])


def test_trace_ids_in_start_order_take_a_fraction_of_their_bytes_in_function_order():
    rows = traced_rows(20_000, seed=2)
    columns = {"name": rows["code"].astype(np.uint32), "start": rows["start"]}
    columns |= {c: rows[c] for c in ID_COLUMNS}
    ordered = chunk.by_function(columns)
    order = codec.start_order(ordered["start"])
    for name in ("trace_hi", "trace_lo"):
        by_function = codec.encode(ordered[name], codec.CODEC_IDS)
        timed = codec.encode_timed(ordered[name], codec.CODEC_IDS, lambda: order)
        assert len(timed) < 0.75 * len(by_function), (name, len(timed), len(by_function))
        back = codec.decode_timed(timed, np.dtype(np.uint64), order, rows=20_000)
        assert np.array_equal(back, ordered[name])
    parents = codec.encode_parents(ordered["parent_span_id"], ordered["span_id"])
    timed = codec.encode_parents_timed(ordered["parent_span_id"], ordered["span_id"], lambda: order)
    assert len(timed) < 0.5 * len(parents), (len(timed), len(parents))
    back = codec.decode_timed(timed, np.dtype(np.uint64), order, ordered["span_id"])
    assert np.array_equal(back, ordered["parent_span_id"])


def test_compaction_and_a_restart_keep_every_row_of_start_ordered_pages(tmp_path):
    rows = traced_rows(9_000, seed=3)
    half = {k: v[:4_500] for k, v in rows.items()}
    rest = {k: v[4_500:] for k, v in rows.items()}
    write(tmp_path / "db", half, chunk_rows=1500)
    write(tmp_path / "db", rest, chunk_rows=1500)
    with Database.open(tmp_path / "db") as db:
        assert db.compact() >= 1
    with Database.open(tmp_path / "db", readonly=True) as db:
        got = db.scan(["start", "span_id", "duration", *ID_COLUMNS[:2], "parent_span_id"])
    assert np.array_equal(as_table(got.columns), as_table(rows))


def test_a_start_ordered_page_needs_the_start_times_and_damage_raises_corrupt_page_only():
    rows = traced_rows(3_000, seed=4)
    start, hi = rows["start"], rows["trace_hi"]
    order = codec.start_order(start)
    data = codec.encode_timed(hi, codec.CODEC_IDS, lambda: order)
    assert codec.is_timed(data)
    with pytest.raises(ValueError, match="start times"):
        chunk.decode_column("trace_hi", data, None, rows=3000)
    with pytest.raises(CorruptPageError):  # the plain decoder refuses it rather than guess
        codec.decode(data, np.dtype(np.uint64), rows=3000)
    with pytest.raises(CorruptPageError):  # an order of another length
        codec.decode_timed(data, np.dtype(np.uint64), order[:-1])
    got = chunk.decode_column("trace_hi", data, None, rows=3000, start=lambda: start)
    assert np.array_equal(got, hi)
    outcomes = damage_outcomes(
        data, lambda b: codec.decode_timed(b, np.dtype(np.uint64), order, rows=3000), 4
    )
    assert outcomes["corrupt"] > 0


def test_id_columns_stored_in_start_order_are_exactly_those_of_the_schema():
    assert set(ID_COLUMNS) == chunk.TIMED_COLUMNS
    assert chunk.TIMED_COLUMNS.issubset(COLUMNS)
    assert not chunk.TIMED_COLUMNS & chunk.BLOCK_COLUMNS  # a timed page is never cut in blocks


def test_segments_written_before_timed_and_plane_pages_read_exactly(tmp_path):
    # Written by the build before this format (b3d3359): the same rows, chunks of 700 ordered
    # by function, id pages in function order, NARROW and DELTA pages as one zstd frame.
    import shutil

    shutil.copytree(Path(__file__).parent / "data" / "ordered_pages_v1", tmp_path / "db")
    pages = stored_pages(tmp_path / "db")
    assert not any(codec.is_timed(p) for _, p in pages)
    rows = traced_rows(2000, seed=11)
    with Database.open(tmp_path / "db", readonly=True) as db:
        got = db.scan(["start", "span_id", "duration", *ID_COLUMNS[:2], "parent_span_id"])
        assert np.array_equal(as_table(got.columns), as_table(rows))
        stats = db.stats("f0", exact=True)
    mine = np.sort(rows["duration"][rows["code"] == 0])
    assert (
        stats.count == mine.size
        and stats.max == mine[-1]
        and stats.p50 == mine[int(0.5 * (mine.size - 1))]
    )
