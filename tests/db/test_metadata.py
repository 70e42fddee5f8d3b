"""Catalog documents: atomic replacement, version checks, leftovers of interrupted writes."""

from __future__ import annotations

import json
import os

import pytest

from kronicler.db.dictionary import Dictionary
from kronicler.db.metadata import atomic_write, ensure_catalog, load_json, save_json
from kronicler.db.schema import SCHEMA_VERSION
from kronicler.errors import DatabaseError, SchemaVersionError


def test_catalog_is_created_once_and_checked_after(tmp_path):
    doc = ensure_catalog(tmp_path)
    assert doc["schema_version"] == SCHEMA_VERSION
    assert ensure_catalog(tmp_path) == doc
    (tmp_path / "catalog.json").write_text(json.dumps({**doc, "schema_version": 0}))
    with pytest.raises(SchemaVersionError, match="version 0"):
        ensure_catalog(tmp_path)
    (tmp_path / "catalog.json").write_text('{"format": "parquet"}')
    with pytest.raises(DatabaseError, match="parquet"):
        ensure_catalog(tmp_path)
    (tmp_path / "catalog.json").write_text("{not json")
    with pytest.raises(DatabaseError, match="not a Kronicler catalog"):
        ensure_catalog(tmp_path)


def test_atomic_write_replaces_whole_documents_and_ignores_stale_temp_files(tmp_path):
    path = tmp_path / "seg.meta"
    save_json(path, {"chunks": [1, 2]})
    # an interrupted earlier write leaves only its temporary file behind
    (tmp_path / ".seg.meta.999.tmp").write_text('{"chunks": [1, 2, 3')
    assert load_json(path) == {"chunks": [1, 2]}
    atomic_write(path, b'{"chunks": [1, 2, 3]}')
    assert load_json(path) == {"chunks": [1, 2, 3]}
    assert not list(tmp_path.glob(f".seg.meta.{os.getpid()}.*.tmp"))
    assert load_json(tmp_path / "missing.meta") is None


def test_dictionary_codes_are_stable_and_readable_back():
    d = Dictionary()
    assert d.encode(["a", "b", "a"]).tolist() == [0, 1, 0]
    assert d.encode(["c"] * 4).tolist() == [2, 2, 2, 2]  # one-value batches take a fast path
    assert d.values == ["a", "b", "c"]
    back = Dictionary()
    for code, text in enumerate(d.values):
        back.define(code, text)
    assert back.encode(["c", "a"]).tolist() == [2, 0]


OPEN_AT = """
import sys, time
from kronicler.db import Database
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all start together
with Database.open(sys.argv[1]) as db:
    db.append([sys.argv[3]], [1], [1])
"""


def test_many_processes_may_create_the_same_new_database_at_once(tmp_path):
    import subprocess
    import sys
    import time
    from pathlib import Path

    from kronicler.db import Database

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    for attempt in range(3):
        path = tmp_path / f"db{attempt}"
        at = str(time.time() + 1.0)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_AT, str(path), at, f"p{i}"],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for i in range(8)
        ]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 8, errors
        with Database.open(path) as db:
            assert db.functions() == [f"p{i}" for i in range(8)]
