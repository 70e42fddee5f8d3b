"""Cluster benchmark: GetStats through a frontend over three nodes vs one node holding it all.

Run by hand (a few minutes at the default size, mostly writing the databases):

    PYTHONPATH=. python bench/bench_cluster.py                  # 10M spans in total
    PYTHONPATH=. python bench/bench_cluster.py --spans 3000000  # quicker

The same rows (the server benchmark's workload: 50 functions, Zipf-distributed, lognormal
durations, 4 services) are written once whole to a single node's database and once split three
ways, each row to the node its (random, trace-like) shard picks. Each node and the frontend run
as separate ``kronicler serve`` processes on loopback, as they would on separate hosts (here
they share the machine's cores). Then, side by side in one run, the median and p99 round trip of
GetStats through a real gRPC channel:

- single: one node with every row (the baseline);
- frontend: ``serve --peers`` over the three nodes (a Partial fan-out, the merge, the reply);

for grouping by function (merged index summaries) and by service (a scan on every node).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench.bench_server import BASE_NS, FUNCTIONS, SERVICES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NODES = 3


def populate(single: Path, nodes: list[Path], n: int) -> float:
    """Write ``n`` rows to ``single`` and the same rows split over ``nodes``; seconds taken."""
    from kronicler.db import Database, SpanBatch

    rng = np.random.default_rng(0)
    names, services = np.array(FUNCTIONS), np.array(SERVICES)
    step = 200_000
    t0 = time.perf_counter()
    dbs = [Database.open(p) for p in (single, *nodes)]
    try:
        for i in range(0, n, step):
            m = min(step, n - i)
            code = rng.zipf(1.3, m) % len(FUNCTIONS)
            cols = dict(
                names=names[code], start=BASE_NS + np.arange(i, i + m, dtype=np.int64) * 10_000,
                duration=(rng.lognormal(11.5, 0.8, m) * (1 + code % 7)).astype(np.int64),
                status=np.where(rng.random(m) < 0.01, 2, 1).astype(np.uint8),
                service=services[rng.integers(0, len(SERVICES), m)],
            )  # fmt: skip
            shard = rng.integers(0, NODES, m)
            parts = [np.arange(m)] + [np.flatnonzero(shard == s) for s in range(NODES)]
            for db, idx in zip(dbs, parts, strict=True):
                db.append_batch(SpanBatch.build(
                    cols["names"][idx], cols["start"][idx], cols["duration"][idx],
                    status=cols["status"][idx], service=list(cols["service"][idx])))  # fmt: skip
        for db in dbs:
            assert db.flush(600)
    finally:
        for db in dbs:
            db.close()
    return time.perf_counter() - t0


def serve(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kronicler", "serve", "--address", "127.0.0.1:0", "--no-otlp",
         *args],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r" on (127\.0\.0\.1:\d+) ", line)
    if not found:
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, found.group(1)


def round_trips(address: str, group_by: str, repeat: int) -> tuple[float, float, int]:
    """Median and p99 (ms) of GetStats round trips, and the rows counted."""
    from kronicler.server import Client

    with Client(address, timeout=120) as client:
        total = sum(r.count for r in client.stats(group_by=group_by).rows)  # warm up
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            client.stats(group_by=group_by)
            times.append((time.perf_counter() - t) * 1000)
        assert client.missing_peers() == ()
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))], total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--spans", type=int, default=10_000_000, help="rows in total (default 10M)")
    ap.add_argument("--repeat", type=int, default=30, help="round trips per figure")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kronicler-cluster-") as tmp:
        single = Path(tmp) / "single"
        nodes = [Path(tmp) / f"node{i}" for i in range(NODES)]
        took = populate(single, nodes, opts.spans)
        print(f"wrote {opts.spans:,} rows whole and split over {NODES} nodes in {took:.1f} s")
        procs = []
        try:
            p, single_addr = serve(["--path", str(single)])
            procs.append(p)
            peers = []
            for path in nodes:
                p, addr = serve(["--path", str(path)])
                procs.append(p)
                peers.append(addr)
            p, front_addr = serve(["--peers", ",".join(peers)])
            procs.append(p)
            print(f"{'GetStats':<22}{'single p50':>12}{'p99':>9}{'frontend p50':>15}{'p99':>9}"
                  f"{'ratio p50':>11}")  # fmt: skip
            for group_by in ("function", "service"):
                s50, s99, s_rows = round_trips(single_addr, group_by, opts.repeat)
                f50, f99, f_rows = round_trips(front_addr, group_by, opts.repeat)
                assert s_rows == f_rows == opts.spans, (s_rows, f_rows)
                print(f"{'by ' + group_by:<22}{s50:>10.1f}ms{s99:>7.1f}ms{f50:>13.1f}ms"
                      f"{f99:>7.1f}ms{f50 / s50:>10.2f}x")  # fmt: skip
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)


if __name__ == "__main__":
    main()
