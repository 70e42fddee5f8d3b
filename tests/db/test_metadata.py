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


FAILING_SAVE = """
import json, os, resource, signal, sys
from pathlib import Path
from kronicler.db.metadata import save_json
# Files of this process may not grow past 1 KB: the save fails like one on a full disk.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
path = Path(sys.argv[1]) / "seg.meta"
save_json(path, {"chunks": [1]})
for _ in range(20):
    try:
        save_json(path, {"chunks": list(range(1000))})
    except OSError as exc:
        error = exc.errno
print(json.dumps({"error": error, "files": sorted(os.listdir(sys.argv[1]))}))
"""


def test_a_failed_save_leaves_the_old_document_and_no_temporary_file(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", FAILING_SAVE, str(tmp_path)], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(root)}, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["error"] is not None  # every save failed...
    assert report["files"] == ["seg.meta"]  # ...and left nothing behind
    assert load_json(tmp_path / "seg.meta") == {"chunks": [1]}


def test_opening_for_writing_removes_temporaries_of_dead_processes_only(tmp_path):
    import subprocess
    import sys
    import time

    from kronicler.db import Database

    Database.open(tmp_path).close()
    segments = tmp_path / "segments"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = os.getpid()
    stale = [
        tmp_path / f".catalog.json.{dead.pid}.0badc0de.tmp",
        segments / f".18ec9dc6d5c5c202-{dead.pid}-650af7.meta.{dead.pid}.12345678.tmp",
        segments / f"18ec9dc6d5c5c202-{dead.pid}-650af7.wal.tmp",
        segments / f".18ec9dc6d5c5c202-{me}-650af7.meta.{me}.87654321.tmp",  # old: pid reused
    ]
    live = [
        segments / f".18ec9dc6d5c5c202-{me}-650af7.meta.{me}.abcdef01.tmp",  # a save under way
        segments / f"18ec9dc6d5c5c202-{me}-650af7.wal.tmp",
        segments / "notes.tmp",  # not a name Kronicler writes
    ]
    for f in stale + live:
        f.write_bytes(b"")
    hour_ago = time.time() - 3600
    os.utime(stale[-1], (hour_ago, hour_ago))
    with Database.open(tmp_path, readonly=True):
        assert all(f.exists() for f in stale)  # a read-only open touches nothing
    Database.open(tmp_path).close()
    assert [f.name for f in stale if f.exists()] == []
    assert [f.name for f in live if f.exists()] == [f.name for f in live]
