"""Tail-log benchmark: CPU per row of a commit, and per row of a replay, side by side.

Run by hand:  python bench/bench_wal.py --compare CHECKOUT [--rounds 5] [--rows 524288]

A commit logs the rows added since the previous one (``SegmentWriter.commit``: one record made
from the tail's pieces, appended, ``fdatasync``); a reader replays the log (``wal.read_log``).
Each round runs a fresh process per checkout, alternating their order, so that a machine shared
with other jobs loads them alike. The figure is thread CPU time (the commit runs on the writer's
thread) per row, median over rounds; wall time would mostly measure the device's ``fdatasync``.

Rows are the ``full`` shape: a few functions and attribute sets, random trace and span ids
(incompressible, as in production), for commits of 1,024, 8,192 and 65,536 rows (a capture
pipeline commits every second what arrived; an ingest worker what a few requests carried).
No chunk is sealed (``chunk_rows`` is larger than the rows written), so only the log is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
SIZES = (1024, 8192, 65536)


def _batch(n: int, seed: int) -> Any:
    import numpy as np

    from kronicler.db.schema import SpanBatch

    rng = np.random.default_rng(seed)
    start = 1_700_000_000_000_000_000 + np.cumsum(rng.integers(1_000, 100_000, n))
    return SpanBatch.build(
        [f"app.f{i}" for i in rng.integers(0, 20, n).tolist()], start,
        rng.lognormal(10, 1, n).astype(np.int64), status=rng.integers(0, 3, n).astype(np.uint8),
        kind=1, service="bench",
        trace_id=rng.integers(0, 256, (n, 16), dtype=np.uint8),
        span_id=rng.integers(1, 2**63, n, dtype=np.uint64),
        parent_span_id=rng.integers(0, 2**63, n, dtype=np.uint64),
        attributes=[{"route": f"/r{i}"} for i in rng.integers(0, 5, n).tolist()],
        resource={"service.version": "1.0"},
    )  # fmt: skip


def child(path: str, rows: int) -> None:
    """Commit ``rows`` rows per size with the checkout on PYTHONPATH; print figures as JSON."""
    from kronicler.db import wal
    from kronicler.db.writer import SegmentWriter

    out: dict[str, dict[str, float]] = {}
    for size in SIZES:
        batch = _batch(size, size)
        directory = Path(path) / str(size)
        writer = SegmentWriter(directory, chunk_rows=rows + 1)
        writer.add(batch)
        writer.commit()  # warm: the first record defines every text
        commits, cpu = rows // size, 0.0
        for _ in range(commits):
            writer.add(batch)
            t = time.thread_time()
            writer.commit()
            cpu += time.thread_time() - t
        log = directory / f"{writer.id}.wal"
        size_bytes = log.stat().st_size
        t = time.thread_time()
        found = wal.read_log(log)
        replay = time.thread_time() - t
        logged = sum(len(r) for r in found.records)
        assert logged == (commits + 1) * size, (logged, commits, size)
        writer.abandon()
        out[str(size)] = {"commit_ns": cpu / (commits * size) * 1e9,
                          "replay_ns": replay / logged * 1e9,
                          "bytes": size_bytes / logged}  # fmt: skip
    print(json.dumps(out))


def run(checkout: Path, rows: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory(prefix="kwal-") as tmp:
        args = [sys.executable, str(HERE), "--child", tmp, str(rows)]
        out = subprocess.run(args, env=env, check=True, capture_output=True, text=True, cwd=tmp)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkout", type=Path, default=HERE.parents[1])
    ap.add_argument("--compare", type=Path, action="append", default=[], metavar="CHECKOUT")
    ap.add_argument("--rows", type=int, default=1 << 19, help="rows committed per commit size")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    checkouts = [args.checkout, *args.compare]
    print(f"load average {os.getloadavg()[0]:.1f}; checkouts: {', '.join(map(str, checkouts))}")
    got: dict[Path, list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for c in checkouts if r % 2 == 0 else checkouts[::-1]:
            got.setdefault(c, []).append(run(c, args.rows))
    print(f"median of {args.rounds} rounds; thread CPU ns per row")
    print(f"{'rows/commit':>12} {'checkout':<40} {'commit':>8} {'replay':>8} {'log B/row':>10}")
    for size in map(str, SIZES):
        for c in checkouts:
            runs = [x[size] for x in got[c]]
            commit = statistics.median(x["commit_ns"] for x in runs)
            replay = statistics.median(x["replay_ns"] for x in runs)
            print(f"{size:>12} {str(c):<40} {commit:8.1f} {replay:8.1f} {runs[0]['bytes']:10.1f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
