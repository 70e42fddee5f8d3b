"""A reader that stays open (a server, a dashboard) while other processes change the directory.

One ``Database`` is opened first and asked questions after every step, as a long-running
``kronicler serve`` would be: writers add segments (a restart with other functions), a
``kronicler retain`` in another process deletes old ones, a ``kronicler compact`` replaces the
rest, and a late writer adds a segment again. After each step its answers must equal the brute force over the rows that should then be
stored; its caches (segment readers, decoded pages, dictionaries) must not leak stale answers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from kronicler.db import Database
from tests.oracle.interfaces import PythonApi
from tests.oracle.layouts import BASE, DAY, HOUR, OLD_BASE, ROOT, write, writer_env
from tests.oracle.queries import Failures, standard_queries
from tests.oracle.truth import (
    Rows,
    check_table,
    expected_functions,
    expected_stats,
    generate,
)


def _cli(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "kronicler", *args], capture_output=True,
                          text=True, env=writer_env(), cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def _agrees(db: Database, truth: Rows, step: str) -> None:
    api, failures = PythonApi(db), Failures()
    for q in standard_queries(truth)[::2]:
        failures.check(f"{step}: stats {q.label()}", lambda q=q: check_table(
            api.stats(q), "function", expected_stats(truth, q), (0.5, 0.99), False, step))  # fmt: skip
        failures.check(f"{step}: functions {q.label()}", lambda q=q: _equal(
            api.functions(q), expected_functions(truth, q)))  # fmt: skip
    failures.check(f"{step}: scan", lambda: _equal(len(db.scan(["start"])), len(truth)))
    failures.assert_none()


def _equal(got: object, want: object) -> None:
    assert got == want, f"\n got {got}\nwant {want}"


def test_a_long_lived_reader_follows_writers_retention_and_compaction(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    path = tmp_path / "db"
    old = generate(rng, 200, ["old.job"], base=OLD_BASE, span=HOUR, lane=0)
    first = generate(rng, 400, ["app.a", "app.b"], base=BASE, span=HOUR, services=["api"],
                     lane=1)  # fmt: skip
    second = generate(rng, 300, ["app.b", "app.c"], base=BASE, span=HOUR, services=["worker"],
                      lane=2)  # fmt: skip
    write(path, old, tmp_path, "old", chunk_rows=50)
    with Database.open(path) as reader:
        _agrees(reader, old, "old job only")
        write(path, first, tmp_path, "first", chunk_rows=50, segment_rows=120)
        truth = Rows.concat([old, first])
        _agrees(reader, truth, "after the first writer")
        write(path, second, tmp_path, "second", chunk_rows=64)
        truth = Rows.concat([old, first, second])
        _agrees(reader, truth, "after a restart with other functions")
        _cli("retain", "--path", str(path), "--max-age", f"{30 * DAY // 10**9}s")
        truth = Rows.concat([first, second])  # the old job's segment, and only it, is gone
        _agrees(reader, truth, "after another process applied retention")
        _cli("compact", "--path", str(path))
        _agrees(reader, truth, "after another process compacted")
        write(path, old, tmp_path, "late", chunk_rows=50)  # a late job: its rows come back
        _agrees(reader, Rows.concat([first, second, old]), "after a late writer")
