"""Minimal reproductions of wrong answers the oracle found beyond issue 8's list.

Each is the smallest database that shows one defect; the sweeps in ``test_answers.py`` and the
properties in ``test_properties.py`` found them on larger data.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kronicler import query as kq
from kronicler.db import Database
from kronicler.server import Client, KroniclerServer, ServerOptions
from tests.oracle.interfaces import CliApi
from tests.oracle.layouts import ROOT, writer_env


def test_exact_series_with_an_empty_last_bucket(tmp_path: Path) -> None:
    """``series(exact=True)`` raised IndexError when the last group's last bucket was empty:
    an empty cell's offset is one past the sorted durations, and its quantile was read there."""
    with Database.open(tmp_path / "db") as db:
        db.append(["f", "f", "g"], [0, 10, 5], [100, 200, 300])
        assert db.flush(10)
        got = kq.series(db, kq.Filter(since=0, until=20), step=10, exact=True)
    assert [(s.key, [p.count for p in s.points]) for s in got.series] == [
        ("f", [1, 1]), ("g", [1, 0])]  # fmt: skip
    g_last = got.series[1].points[1]
    assert g_last.max is None and g_last.quantiles[0][1] is None


def test_slowest_ties_go_to_the_earliest_calls_on_the_scan_road(tmp_path: Path) -> None:
    """Ties: earlier start first (the documented order). With a service or attribute filter
    the top k was picked by ``argpartition``, which keeps arbitrary tied rows."""
    with Database.open(tmp_path / "db") as db:
        starts = list(range(1040, 1000, -1))  # appended latest first
        db.append(["f"] * 40, starts, [7] * 40, service="api")
        assert db.flush(10)
        got = kq.slowest(db, kq.Filter.make(service="api"), k=3)
    assert [c.start for c in got] == [1001, 1002, 1003]


def test_slowest_ties_go_to_the_earliest_calls_on_the_index_road(tmp_path: Path) -> None:
    """The same through the index (``Database.slowest``): the tied calls of a later-searched
    chunk are skipped (``bound <= best[-1][0]``), and ``_top_rows`` keeps arbitrary ties."""
    with Database.open(tmp_path / "db", chunk_rows=20) as db:
        db.append(["f"] * 20, list(range(2000, 2020)), [7] * 20)
        assert db.flush(10)
        db.append(["f"] * 20, list(range(1000, 1020)), [7] * 20)
        assert db.flush(10)
        by_query = [c.start for c in kq.slowest(db, kq.Filter.make("f"), k=3)]
        by_db = sorted(c.start for c in db.slowest("f", k=3))
    assert by_query == [1000, 1001, 1002]
    assert by_db == [1000, 1001, 1002]


def test_cli_time_bounds_are_exact_to_the_nanosecond(tmp_path: Path) -> None:
    """``--since @SECONDS.NANOS`` (a call's start copied from ``slowest --json``) and ISO times
    with microseconds must select exactly: they went through a float and moved by ~100 ns."""
    s = 1_795_812_263_631_638_353
    iso_ns = 1_795_780_800_000_001_000  # 2026-11-27T12:00:00.000001Z
    with Database.open(tmp_path / "db") as db:
        db.append(["f"] * 4, [s - 50, s, iso_ns - 1, iso_ns], [1, 2, 3, 4])
        assert db.flush(10)
    since = CliApi(path=tmp_path / "db").run(
        "functions", "--since", f"@{s // 10**9}.{s % 10**9:09d}"
    )
    assert [(f["count"], f["first_start_unix_nano"]) for f in since] == [(1, s)]
    iso = CliApi(path=tmp_path / "db").run(
        "functions", "--since", "2026-11-27T12:00:00.000001+00:00", "--until", f"@{s // 10**9}"
    )
    assert [(f["count"], f["first_start_unix_nano"]) for f in iso] == [(1, iso_ns)]


def _outcome(ask: Callable[[], Any]) -> Any:
    try:
        return [r.key for r in ask().rows]
    except ValueError as exc:
        return ("ValueError", "limit" in str(exc))


def test_stats_limit_zero_means_the_same_locally_and_through_grpc(tmp_path: Path) -> None:
    """``limit=0`` kept no rows in the Python API (and ``kronicler stats --limit 0 --path``),
    but the gRPC request cannot tell 0 from "unset" (0 = all), so the server returned every row
    (``--address``). Either answer may be right; the two roads must give the same one."""
    with Database.open(tmp_path / "db") as db:
        db.append(["f", "g"], [1, 2], [10, 20])
        assert db.flush(10)
        local = _outcome(lambda: kq.stats(db, limit=0))
        with KroniclerServer(db, ServerOptions(address="127.0.0.1:0", otlp=False)) as server, \
                Client(server.address, timeout=30) as client:  # fmt: skip
            remote = _outcome(lambda: client.stats(limit=0))
    assert remote == local


def test_cli_anomalies_limit_zero_is_the_same_on_path_and_address(tmp_path: Path) -> None:
    """``kronicler anomalies --limit 0``: no findings on ``--path`` (the query layer keeps 0),
    the default 20 on ``--address`` (the gRPC request reads 0 as "the server's default")."""
    with Database.open(tmp_path / "db") as db:
        n = 200
        durations = [1000] * (n - 2) + [10**9, 10**9]  # a spike: max/p50 = 10^6
        db.append(["spiky"] * n, list(range(n)), durations)
        assert db.flush(10)
        local = _cli_outcome(CliApi(path=tmp_path / "db"), "anomalies", "--limit", "0")
        with KroniclerServer(db, ServerOptions(address="127.0.0.1:0", otlp=False)) as server:
            remote = _cli_outcome(CliApi(address=server.address), "anomalies", "--limit", "0")
    assert remote == local


def _cli_outcome(cli: CliApi, *args: str) -> Any:
    try:
        return [a["function"] for a in cli.run(*args)]
    except AssertionError as exc:  # a non-zero exit: compare that it failed, and why
        return ("failed", "limit" in str(exc))


_TWO_DATABASES = """
import sys, tempfile, threading
import numpy as np
from kronicler.db import Database

def fill(path, seed, out):
    rng = np.random.default_rng(seed)
    db = Database.open(path, chunk_rows=256, flush_interval=0.01)
    for _ in range(40):
        names = [f"f{i}" for i in rng.integers(0, 5, 500).tolist()]
        assert db.append(names, rng.integers(0, 10**12, 500), rng.integers(0, 10**6, 500)) == 500
        db.flush()
    db.close()
    out[path] = 40 * 500

for attempt in range(3):
    base, out = tempfile.mkdtemp(), {}
    paths = [f"{base}/db{i}" for i in range(6)]
    threads = [threading.Thread(target=fill, args=(p, i, out)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in paths:
        with Database.open(p) as db:
            assert len(db.scan(["duration"])) == out[p], p
print("ok")
"""


def test_databases_written_from_several_threads_of_one_process(tmp_path: Path) -> None:
    """Six databases in one process, each written by its own thread (an app with the
    zero-config pipeline and an SDK exporter, a server hosting OTLP and an exporter, or a
    compaction running beside the writer thread): the process crashed (SIGSEGV, SIGABRT
    "corrupted size vs. prev_size") or wrote pages that fail with ZstdError. ``codec.py``,
    ``wal.py`` and ``chunk.py`` share one module-level ``ZstdCompressor``/``ZstdDecompressor``
    between threads, which python-zstandard does not allow. Run in a subprocess: it crashes."""
    proc = subprocess.run([sys.executable, "-c", _TWO_DATABASES], capture_output=True, text=True,
                          env=writer_env(), cwd=ROOT, timeout=300)  # fmt: skip
    assert (proc.returncode, proc.stdout.strip()) == (0, "ok"), proc.stderr[-2000:]
