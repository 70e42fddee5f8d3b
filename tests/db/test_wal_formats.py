"""Tail logs of every format replay: raw records (written now) and zstd records (written before).

Raw records are checked against their input for every kind of column a record can hold (one value,
a range that fits 1, 2 or 4 bytes, the full range with the extremes of its type), split into the
tail's pieces anyhow, below and above the size from which columns are narrowed; and damaged ones
are skipped without raising, even when the damage passes the checksum.

``data/wal_zstd`` was written by the code of commit 36c9b28, whose tail log compressed each record
with zstd: one process ran :func:`write_fixture` (``chunk_rows=50``; six appends, each flushed:
two chunks sealed, then log records of 10, 12 and 8 rows, and a last one of 5 rows that the
fixture then cut short by 7 bytes, as a crash mid-append leaves it) and ended with ``os._exit``.
Made with ``PYTHONPATH=<checkout of 36c9b28> python tests/db/test_wal_formats.py DIR``.

Every stored row must read back exactly as :func:`fixture_batches` made it, with the torn record
neither read nor counted as damage; and a database opened for writing on that directory must go
on storing beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kronicler.db import Database, wal
from kronicler.db.schema import COLUMNS, SpanBatch
from kronicler.db.writer import SegmentWriter

FIXTURE = Path(__file__).parent / "data" / "wal_zstd"
BASE = 1_700_000_000_000_000_000
SIZES = (70, 15, 25, 12, 8, 5)  # rows per flushed append; the last record is torn
TORN_BYTES = 7


def fixture_batches() -> list[dict[str, Any]]:
    """The appends of the fixture, in order (each batch introduces new texts)."""
    batches, row = [], 0
    for k, n in enumerate(SIZES):
        i = np.arange(row, row + n)
        batches.append({
            "names": [f"zstd.{k}.{j % 3}" for j in i.tolist()],
            "start_unix_nano": BASE + i * 1000,
            "duration_ns": (i + 1) * 10,
            "status": i % 3, "kind": i % 5, "service": f"svc{k % 2}",
            "trace_id": [((j + 1) << 70) | j for j in i.tolist()],
            "span_id": (i + 1).astype(np.uint64), "parent_span_id": i.astype(np.uint64),
            "attributes": [{"batch": k, "odd": bool(j % 2)} for j in i.tolist()],
            "resource": {"service.version": f"1.{k}"},
        })  # fmt: skip
        row += n
    return batches


def write_fixture(path: Path) -> None:
    """Write the fixture with the code on ``PYTHONPATH``, then die without closing."""
    db = Database(path, chunk_rows=50)
    for batch in fixture_batches():
        db.append(**batch)
        assert db.flush()
    [wal] = (path / "segments").glob("*.wal")
    data = wal.read_bytes()
    wal.write_bytes(data[:-TORN_BYTES])
    os._exit(0)


def _expected() -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {k: [] for k in ("name", "start", "duration", "status", "kind",
                                                  "service", "trace", "span", "parent",
                                                  "attributes", "resource")}  # fmt: skip
    for batch in fixture_batches()[:-1]:  # the torn record's rows were never durable
        n = len(batch["names"])
        rows["name"] += batch["names"]
        rows["start"] += batch["start_unix_nano"].tolist()
        rows["duration"] += batch["duration_ns"].tolist()
        rows["status"] += batch["status"].tolist()
        rows["kind"] += batch["kind"].tolist()
        rows["service"] += [batch["service"]] * n
        rows["trace"] += batch["trace_id"]
        rows["span"] += batch["span_id"].tolist()
        rows["parent"] += batch["parent_span_id"].tolist()
        rows["attributes"] += [json.dumps(a, sort_keys=True, separators=(",", ":"))
                               for a in batch["attributes"]]  # fmt: skip
        rows["resource"] += [json.dumps(batch["resource"], sort_keys=True,
                                        separators=(",", ":"))] * n  # fmt: skip
    return rows


def _stored(db: Database) -> dict[str, list[Any]]:
    scan = db.scan(["name", "start", "duration", "status", "kind", "service", "trace_hi",
                    "trace_lo", "span_id", "parent_span_id", "attributes", "resource"])  # fmt: skip
    c = scan.columns
    order = np.argsort(c["start"], kind="stable")
    return {
        "name": [scan.names[x] for x in c["name"][order]],
        "start": c["start"][order].tolist(),
        "duration": c["duration"][order].tolist(),
        "status": c["status"][order].tolist(),
        "kind": c["kind"][order].tolist(),
        "service": [scan.services[x] for x in c["service"][order]],
        "trace": [
            (int(h) << 64) | int(lo)
            for h, lo in zip(c["trace_hi"][order], c["trace_lo"][order], strict=True)
        ],  # fmt: skip
        "span": c["span_id"][order].tolist(),
        "parent": c["parent_span_id"][order].tolist(),
        "attributes": [scan.attributes[x] for x in c["attributes"][order]],
        "resource": [scan.resources[x] for x in c["resource"][order]],
    }


def _copy(tmp_path: Path) -> Path:
    path = tmp_path / "db"
    shutil.copytree(FIXTURE, path)
    return path


def test_a_zstd_tail_log_replays_every_durable_row(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    [wal] = (path / "segments").glob("*.wal")
    assert wal.read_bytes()[:4] == b"KWAL"  # the format before raw records
    with Database.open(path, readonly=True) as db:
        assert _stored(db) == _expected()
        damage = db.damaged
        assert (damage.log_rows, damage.records) == (0, 0)  # a torn last append is no damage


def test_a_database_grows_beside_a_zstd_tail_log(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    with Database.open(path, chunk_rows=16) as db:
        db.append(["new"] * 20, BASE + 10**9 + np.arange(20), np.full(20, 5))
        assert db.flush()
        before = _expected()
        stored = _stored(db)
        assert len(stored["name"]) == len(before["name"]) + 20
        assert {k: v[:-20] for k, v in stored.items()} == before
    with Database.open(path) as db:
        assert db.compact(small_rows=10_000) >= 1
    with Database.open(path, readonly=True) as db:
        stored = _stored(db)
        assert {k: v[:-20] for k, v in stored.items()} == before
        assert stored["name"][-20:] == ["new"] * 20


#: Ranges of values: exactly fitting 0, 1, 2 or 4 bytes, one more than fits, and the full type.
SPANS = {"one": 0, "byte": 255, "short": 65535, "int": 2**32 - 1, "over byte": 256,
         "over short": 65536, "over int": 2**32}  # fmt: skip
SHAPES = (*SPANS, "full")


def _column(rng: np.random.Generator, dtype: np.dtype, rows: int, shape: str) -> np.ndarray:
    info = np.iinfo(dtype)
    if shape == "full":  # the type's whole range, extremes included
        values = rng.integers(info.min, info.max, rows, dtype=dtype, endpoint=True)
        values[: min(rows, 2)] = [info.min, info.max][: min(rows, 2)]
        return values
    span = min(SPANS[shape], int(info.max) - int(info.min))
    base = int(info.min) + int(rng.integers(0, int(info.max) - int(info.min) - span, endpoint=True,
                                            dtype=np.uint64))  # fmt: skip
    steps = rng.integers(0, span, rows, endpoint=True, dtype=np.uint64)
    if rows > 1:
        steps[-1] = span  # the range's far end
    wrapped = steps + np.uint64(base & (2**64 - 1))  # base + step, in 64-bit two's complement
    return wrapped.view(np.int64) if dtype == np.int64 else wrapped.astype(dtype)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.sampled_from([0, 1, 7, wal.NARROW_FROM - 1, wal.NARROW_FROM, wal.NARROW_FROM + 13]),
    shapes=st.lists(st.sampled_from(SHAPES), min_size=len(COLUMNS), max_size=len(COLUMNS)),
    cuts=st.lists(st.integers(0, 5000), max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_raw_record_gives_back_exactly_its_columns(
    tmp_path_factory: Any, rows: int, shapes: list[str], cuts: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    columns = {c: _column(rng, d, rows, shape)
               for (c, d), shape in zip(COLUMNS.items(), shapes, strict=True)}  # fmt: skip
    edges = [0, *sorted(min(c, rows) for c in cuts), rows]
    pieces = {c: [a[lo:hi] for lo, hi in zip(edges, edges[1:], strict=False)]
              for c, a in columns.items()}  # fmt: skip
    entries = {"name": [(3, "f\u00e9"), (4, "g")]} if seed % 2 else {}
    path = tmp_path_factory.mktemp("wal") / "x.wal"
    writer = wal.WalWriter(path)
    writer.append(wal.encode_record(40, pieces, entries))
    writer.append(wal.encode_record(40 + rows, columns, {}))
    writer.close()
    found = wal.read_log(path)
    assert (found.trailing_rows, found.damaged) == (0, 0)
    assert [(r.first_row, len(r), r.entries) for r in found.records] == [
        (40, rows, entries), (40 + rows, rows, {})
    ]  # fmt: skip
    for record in found.records:
        for c, dtype in COLUMNS.items():
            assert record.columns[c].dtype == dtype
            assert np.array_equal(record.columns[c], columns[c]), c
    assert path.stat().st_size % 8 == 0  # so every record, and column, stays 8-byte aligned


def test_columns_are_narrowed_to_their_range_from_a_few_thousand_rows() -> None:
    rows = wal.NARROW_FROM
    columns = {c: np.full(rows, 7, d) for c, d in COLUMNS.items()}
    columns["duration"] = np.arange(rows, dtype=np.int64) * 1000  # 4 bytes a row
    columns["name"] = np.arange(rows, dtype=np.uint32) % 200 + 10**9  # 1 byte a row
    full = len(wal.encode_record(0, {c: a[:-1] for c, a in columns.items()}, {}))
    narrow = len(wal.encode_record(0, columns, {}))
    assert full >= (rows - 1) * sum(d.itemsize for d in COLUMNS.values())  # below: full width
    header = wal.RECORD.size + 8 + 8 * 2 + 8 * len(COLUMNS)  # meta "{}", widths, bases
    assert narrow == header + rows * (4 + 1)  # the constant columns take nothing


def test_the_writer_logs_raw_records_that_replay_aligned(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, chunk_rows=1 << 20)
    writer.add(SpanBatch.build(**fixture_batches()[0]))
    writer.commit()
    writer.add(SpanBatch.build(**fixture_batches()[1]))
    writer.commit()
    log = tmp_path / f"{writer.id}.wal"
    assert log.read_bytes()[:4] == wal.MAGIC
    records = wal.read_log(log).records
    assert [len(r) for r in records] == [SIZES[0], SIZES[1]]
    assert records[1].columns["duration"].tolist() == fixture_batches()[1]["duration_ns"].tolist()
    assert all(a.flags.aligned for r in records for a in r.columns.values())
    writer.abandon()


def test_damage_that_passes_the_checksum_is_skipped_not_raised(tmp_path: Path) -> None:
    rows = wal.NARROW_FROM + 1
    columns = {c: np.arange(rows, dtype=d) for c, d in COLUMNS.items()}
    good = wal.encode_record(0, columns, {"name": [(0, "f")]})
    meta = int.from_bytes(good[wal.RECORD.size : wal.RECORD.size + 4], "little")
    table = wal.RECORD.size + (4 + meta + 7) // 8 * 8  # after the meta, padded
    assert good[table] == len(COLUMNS)
    rng = np.random.default_rng(5)
    path = tmp_path / "x.wal"
    for _ in range(200):
        bad = bytearray(good)
        at = int(rng.integers(wal.RECORD.size, table + 80))
        bad[at] = int(rng.integers(0, 256))
        body = bytes(bad[wal.RECORD.size :])
        crc = zlib.crc32(body, zlib.crc32(bytes(bad[: wal.RECORD.size - 4])))
        bad[wal.RECORD.size - 4 : wal.RECORD.size] = crc.to_bytes(4, "little")
        path.write_bytes(bytes(bad) + bytes(good))
        found = wal.read_log(path)  # never raises
        assert len(found.records) in (1, 2) and all(len(r) == rows for r in found.records)


def test_a_narrowed_record_cut_short_is_not_read_nor_counted(tmp_path: Path) -> None:
    """A crash mid-append leaves the log's last record short: never durable, so no damage."""
    rows = wal.NARROW_FROM * 2
    columns = {c: np.arange(rows, dtype=d) for c, d in COLUMNS.items()}
    path = tmp_path / "x.wal"
    writer = wal.WalWriter(path)
    writer.append(wal.encode_record(0, {c: a[:10] for c, a in columns.items()}, {}))
    writer.append(wal.encode_record(10, columns, {"name": [(0, "f")]}))
    writer.close()
    whole = path.read_bytes()
    first = len(wal.encode_record(0, {c: a[:10] for c, a in columns.items()}, {}))
    for cut in np.linspace(first + 1, len(whole) - 1, 25).astype(int).tolist():
        path.write_bytes(whole[:cut])
        found = wal.read_log(path)
        assert [len(r) for r in found.records] == [10]
        assert (found.trailing_rows, found.damaged) == (0, 0)


if __name__ == "__main__":
    write_fixture(Path(sys.argv[1]))
