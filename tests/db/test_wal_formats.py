"""Tail logs of every format replay: raw records (written now) and zstd records (written before).

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
from pathlib import Path
from typing import Any

import numpy as np

from kronicler.db import Database

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
        "trace": [(int(h) << 64) | int(lo) for h, lo in
                  zip(c["trace_hi"][order], c["trace_lo"][order], strict=True)],  # fmt: skip
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


if __name__ == "__main__":
    write_fixture(Path(sys.argv[1]))
