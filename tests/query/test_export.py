"""Data out: Arrow, pandas and the ``kronicler export`` command, checked against the rows written
(the shop dataset) and read back by DuckDB."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kronicler import query
from kronicler.db import Database
from kronicler.query import export
from tests.query.shop_data import ShopData

duckdb = pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kronicler", *argv], capture_output=True, text=True, timeout=120
    )


def test_to_arrow_has_readable_columns_equal_to_the_rows_written(
    shop_db: Database, shop: ShopData
) -> None:
    table = shop_db.to_arrow()
    assert table.column_names == list(export.COLUMNS)
    assert table.num_rows == len(shop.names)
    starts = table.column("start").cast("int64").to_numpy()
    assert np.all(np.diff(starts) >= 0)  # oldest first
    order = np.argsort(shop.start, kind="stable")
    assert sorted(starts.tolist()) == sorted(shop.start.tolist())
    by_span = {int(s, 16): i for i, s in enumerate(table.column("span_id").to_pylist())}
    names, durations = table.column("name").to_pylist(), table.column("duration_ns").to_pylist()
    statuses, routes = table.column("status").to_pylist(), table.column("attributes").to_pylist()
    for i in order[:: max(1, len(order) // 500)].tolist():
        row = by_span[int(shop.span_id[i])]
        assert names[row] == shop.names[i]
        assert durations[row] == int(shop.duration[i])
        assert statuses[row] == ("ERROR" if shop.status[i] == 2 else "OK")
        attrs = dict(routes[row])
        assert attrs.get("http.route", "") == shop.route[i]


def test_filters_and_columns(shop_db: Database, shop: ShopData) -> None:
    flt = query.Filter.make("shop.pay", attributes={"http.status_code": 500})
    table = shop_db.to_arrow(["name", "duration_ns"], where=flt)
    assert table.column_names == ["name", "duration_ns"]
    expected = shop.mask(names="shop.pay")  # every shop.pay call carries status code 500
    assert table.num_rows == int(expected.sum())
    assert sorted(table.column("duration_ns").to_pylist()) == sorted(
        shop.duration[expected].tolist()
    )
    with pytest.raises(ValueError, match="nope"):
        shop_db.to_arrow(["nope"])


def test_to_pandas(shop_db: Database, shop: ShopData) -> None:
    pytest.importorskip("pandas")
    frame = shop_db.to_pandas(["name", "start", "duration_ns"])
    assert len(frame) == len(shop.names)
    assert str(frame["start"].dtype).startswith("datetime64[ns")
    assert frame.groupby("name").size().to_dict() == {
        n: int((shop.names == n).sum()) for n in set(shop.names.tolist())
    }


def test_pieces_are_bounded_and_cover_every_row(shop_db: Database, shop: ShopData) -> None:
    sizes = [len(p) for p in export.pieces(shop_db, piece_rows=700)]
    assert sum(sizes) == len(shop.names)
    assert max(sizes) <= 700 and len(sizes) >= len(shop.names) // 700


def test_hex_ids() -> None:
    hi = np.array([0, 0x0123456789ABCDEF], dtype=np.uint64)
    lo = np.array([1, 0xFEDCBA9876543210], dtype=np.uint64)
    assert export.hex_ids(hi, lo).tolist() == [
        "00000000000000000000000000000001", "0123456789abcdeffedcba9876543210",
    ]  # fmt: skip


def test_cli_parquet_read_back_by_duckdb(shop_path: Path, shop: ShopData, tmp_path: Path) -> None:
    out = tmp_path / "calls.parquet"
    result = run("export", "--path", str(shop_path), str(out), "--progress")
    assert result.returncode == 0, result.stderr
    assert f"{len(shop.names):,} of" in result.stderr  # the progress line
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT name, count(*), sum(duration_ns), min(start), "
        f"count(*) FILTER (WHERE status = 'ERROR') FROM '{out}' GROUP BY name ORDER BY name"
    ).fetchall()
    for name, count, total, first, errors in rows:
        m = shop.names == name
        assert count == int(m.sum())
        assert total == int(shop.duration[m].sum())
        assert errors == int((shop.status[m] == 2).sum())
        assert int(first.timestamp() * 1e6) == int(shop.start[m].min()) // 1000
    routes = con.execute(
        f"SELECT attributes['http.route'] AS r, count(*) FROM '{out}' "
        "WHERE name = 'shop.fast' GROUP BY r"
    ).fetchall()
    assert routes == [("/a", int((shop.names == "shop.fast").sum()))]


def test_cli_csv_and_jsonl(shop_path: Path, shop: ShopData, tmp_path: Path) -> None:
    out = tmp_path / "pay.csv"
    result = run("export", "--path", str(shop_path), "-f", "shop.pay", "--since",
                 "@1700000000", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == int((shop.names == "shop.pay").sum())
    assert rows[0].keys() == set(export.COLUMNS)
    assert rows[0]["start"].endswith("Z") and len(rows[0]["trace_id"]) == 32
    assert json.loads(rows[0]["attributes"])["http.route"] == "/b"
    result = run("export", "--path", str(shop_path), "--format", "jsonl",
                 "--columns", "name,duration_ns,parent_span_id", "-")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(shop.names)
    assert set(lines[0]) == {"name", "duration_ns", "parent_span_id"}


def test_cli_refuses_what_it_cannot_do(shop_path: Path, tmp_path: Path) -> None:
    result = run("export", "--path", str(shop_path), str(tmp_path / "x.txt"))
    assert result.returncode == 1 and "--format" in result.stderr
    result = run("export", "--path", str(tmp_path / "none"), str(tmp_path / "x.csv"))
    assert result.returncode == 1 and "not a Kronicler database" in result.stderr
    assert not (tmp_path / "none").exists()
