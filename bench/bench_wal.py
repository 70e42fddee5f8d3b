"""Tail-log benchmark: CPU per row of a commit, and per row of a replay, side by side.

Run by hand:  python bench/bench_wal.py --compare CHECKOUT [--rounds 5] [--rows 524288] [--calls N]

A commit logs the rows added since the previous one (``SegmentWriter.commit``: one record made
from the tail's pieces, appended, ``fdatasync``); a reader replays the log (``wal.read_log``).
Each round runs a fresh process per checkout, alternating their order, so that a machine shared
with other jobs loads them alike. The figure is thread CPU time (the commit runs on the writer's
thread) per row, median over rounds; wall time would mostly measure the device's ``fdatasync``.

Rows are the ``full`` shape: a few functions and attribute sets, random trace and span ids
(incompressible, as in production), for commits of 1,024, 8,192 and 65,536 rows (a capture
pipeline commits every second what arrived; an ingest worker what a few requests carried).
No chunk is sealed (``chunk_rows`` is larger than the rows written), so only the log is measured.

Then the whole capture road, per checkout in a fresh process: ``--calls`` loop iterations of a
captured function calling another (two rows each), flushed ten times; CPU of the database's writer
thread (from ``/proc``, where the tail log is written and chunks sealed) and of the whole process,
per iteration.
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


def _thread_cpu(prefix: str) -> float:
    """CPU seconds of this process's threads named ``prefix...`` (Linux ``/proc``)."""
    import threading

    ticks = 0
    for t in threading.enumerate():
        if t.name.startswith(prefix) and t.native_id is not None:
            stat = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1]
            fields = stat.split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def capture_child(path: str, calls: int) -> None:
    """Captured calls through the default pipeline; print writer and process CPU as JSON."""
    import kronicler

    kronicler.configure(path=path)

    @kronicler.capture
    def inner(i: int) -> int:
        return i

    @kronicler.capture
    def outer(i: int) -> int:
        return inner(i)

    outer(0)
    kronicler.flush()
    writer, cpu = _thread_cpu("kronicler-writer"), time.process_time()
    for _ in range(10):
        for i in range(calls // 10):
            outer(i)
        kronicler.flush()
    writer, cpu = _thread_cpu("kronicler-writer") - writer, time.process_time() - cpu
    print(json.dumps({"writer_ns": writer / calls * 1e9, "process_ns": cpu / calls * 1e9}))
    kronicler.shutdown()


def run(checkout: Path, mode: str, count: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory(prefix="kwal-") as tmp:
        args = [sys.executable, str(HERE), mode, tmp, str(count)]
        out = subprocess.run(args, env=env, check=True, capture_output=True, text=True, cwd=tmp)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkout", type=Path, default=HERE.parents[1])
    ap.add_argument("--compare", type=Path, action="append", default=[], metavar="CHECKOUT")
    ap.add_argument("--rows", type=int, default=1 << 19, help="rows committed per commit size")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=400_000, help="capture loop iterations")
    args = ap.parse_args()
    checkouts = [args.checkout, *args.compare]
    print(f"load average {os.getloadavg()[0]:.1f}; checkouts: {', '.join(map(str, checkouts))}")
    got: dict[Path, list[dict[str, Any]]] = {}
    captured: dict[Path, list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for c in checkouts if r % 2 == 0 else checkouts[::-1]:
            got.setdefault(c, []).append(run(c, "--child", args.rows))
            captured.setdefault(c, []).append(run(c, "--capture", args.calls))
    print(f"median of {args.rounds} rounds; thread CPU ns per row")
    print(f"{'rows/commit':>12} {'checkout':<40} {'commit':>8} {'replay':>8} {'log B/row':>10}")
    for size in map(str, SIZES):
        for c in checkouts:
            runs = [x[size] for x in got[c]]
            commit = statistics.median(x["commit_ns"] for x in runs)
            replay = statistics.median(x["replay_ns"] for x in runs)
            print(f"{size:>12} {str(c):<40} {commit:8.1f} {replay:8.1f} {runs[0]['bytes']:10.1f}")
    print(f"\ncapture, {args.calls:,} iterations of two captured calls; CPU ns per iteration")
    print(f"{'checkout':<40} {'writer thread':>14} {'process':>8}")
    for c in checkouts:
        writer = statistics.median(x["writer_ns"] for x in captured[c])
        process = statistics.median(x["process_ns"] for x in captured[c])
        print(f"{str(c):<40} {writer:14.0f} {process:8.0f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--capture":
        capture_child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
