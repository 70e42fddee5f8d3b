"""A database written before the ``resource`` column (schema 1) still reads, and grows.

``data/schema1`` was written by the previous release's code (schema version 1): a closed segment
of three chunks (120 rows) and a segment whose writer died after a flush (30 rows only in its
tail log). Its chunks lack the resource page and its log records the resource column; both read
as "no resource", the catalog is upgraded when the database is opened for writing, and a
compaction carries old and new rows together.

The fixture was made with the code of commit 807e0de (schema 1): one process appended 120 rows
(``v1.a``/``v1.b``, durations 10..1200 ns, kind SERVER, service ``old``, attributes
``{"route": "/x"}``) with ``chunk_rows=50`` and closed; a second appended 30 rows (``v1.tail``,
durations 100..3000 ns, kind CLIENT), flushed and ended with ``os._exit`` (no close).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kronicler import query as q
from kronicler.db import Database
from kronicler.db.schema import SCHEMA_VERSION
from kronicler.errors import SchemaVersionError

FIXTURE = Path(__file__).parent / "data" / "schema1"
RELEASE = {"service.version": "2.0", "host.name": "web-9"}


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    path = tmp_path / "db"
    shutil.copytree(FIXTURE, path)
    return path


def _catalog_version(path: Path) -> int:
    return int(json.loads((path / "catalog.json").read_text())["schema_version"])


def test_an_old_database_reads_every_row_without_a_resource(old_db: Path) -> None:
    assert _catalog_version(old_db) == 1
    with Database.open(old_db, readonly=True) as db:
        scan = db.scan(["name", "duration", "resource", "kind"])
        assert len(scan) == 150
        assert {scan.resources[c] for c in scan.columns["resource"]} == {""}
        names = [scan.names[c] for c in scan.columns["name"]]
        assert names.count("v1.tail") == 30 and names.count("v1.a") == 60
        assert sorted(scan.columns["duration"].tolist()) == sorted(
            [(i + 1) * 10 for i in range(120)] + [(i + 1) * 100 for i in range(30)]
        )
        calls = q.slowest(db, k=3)
        # the tail rows (stored CLIENT) are the slowest; kinds leave in OTLP's numbering
        assert [c.duration for c in calls] == [3000, 2900, 2800]
        assert [c.resource for c in calls] == [{}, {}, {}]
        assert {c.kind for c in calls} == {3}
        grouped = q.stats(db, group_by="resource:service.version")
        assert grouped.rows == ()  # no row has a resource
    assert _catalog_version(old_db) == 1  # a read-only open changes nothing


def test_writing_upgrades_the_catalog_and_compaction_carries_both(old_db: Path) -> None:
    with Database.open(old_db, chunk_rows=16) as db:
        assert _catalog_version(old_db) == SCHEMA_VERSION
        n = 40
        db.append(["v2.new"] * n, 1_700_000_002_000_000_000 + np.arange(n) * 1000,
                  np.full(n, 7), resource=RELEASE)  # fmt: skip
        assert db.flush()
    with Database.open(old_db) as db:
        assert db.compact(small_rows=10_000) >= 1
    with Database.open(old_db, readonly=True) as db:
        scan = db.scan(["name", "resource"])
        assert len(scan) == 190
        by_name: dict[str, set[str]] = {}
        for name, res in zip(scan.columns["name"], scan.columns["resource"], strict=True):
            by_name.setdefault(scan.names[name], set()).add(scan.resources[res])
        release = json.dumps(RELEASE, sort_keys=True, separators=(",", ":"))
        assert by_name == {"v1.a": {""}, "v1.b": {""}, "v1.tail": {""}, "v2.new": {release}}
        table = q.stats(db, group_by="resource:service.version")
        assert [(r.key, r.count) for r in table.rows] == [("2.0", 40)]
        only = q.stats(db, q.Filter.make(resource={"host.name": "web-9"}))
        assert [(r.key, r.count) for r in only.rows] == [("v2.new", 40)]


def test_a_newer_schema_is_refused_naming_the_versions_read(old_db: Path) -> None:
    (old_db / "catalog.json").write_text(
        json.dumps({"format": "kronicler", "schema_version": SCHEMA_VERSION + 1, "created": 1})
    )
    with pytest.raises(SchemaVersionError, match=r"reads versions 1, 2"):
        Database.open(old_db, readonly=True)
