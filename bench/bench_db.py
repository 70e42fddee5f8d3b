"""Storage benchmark: append rate, bytes per row, stats latency (vs DuckDB), accuracy, peak RSS.

Run by hand:  python bench/bench_db.py [--rows 10000000]

Workload: 100 function names with Zipf-like frequencies, lognormal durations (median 1 ms,
sigma 1), increasing start times with jitter, traces of 1-10 spans sharing a random 16-byte trace id,
random 8-byte span ids, roots with no parent and children pointing at their parent's span id.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kronicler.db import Database  # noqa: E402

BATCH = 10_000
FUNCTIONS = [f"service.module.function_{i}" for i in range(100)]


def workload(n: int, seed: int = 42) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, 101)
    p /= p.sum()
    codes = rng.choice(100, n, p=p).astype(np.int64)
    start = 1_760_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    start += rng.integers(0, 1000, n)
    duration = rng.lognormal(np.log(1e6), 1.0, n).astype(np.int64)
    status = np.where(rng.random(n) < 0.01, 2, 0).astype(np.uint8)
    sizes = rng.integers(1, 11, n // 2 + 10)
    trace_of = np.repeat(np.arange(sizes.size), sizes)[:n]
    hi = rng.integers(0, 2**63, sizes.size, dtype=np.uint64)[trace_of]
    lo = rng.integers(0, 2**63, sizes.size, dtype=np.uint64)[trace_of]
    span = rng.integers(1, 2**63, n, dtype=np.uint64)
    first = np.r_[True, trace_of[1:] != trace_of[:-1]]
    root_row = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    # children point at the trace's root, or at the previous span of the trace
    parent_row = np.where(rng.random(n) < 0.5, root_row, np.arange(n) - 1)
    parent = np.where(first, 0, span[np.maximum(parent_row, 0)]).astype(np.uint64)
    trace = np.stack([hi, lo], axis=1).astype(">u8").view(np.uint8).reshape(n, 16)
    return {"codes": codes, "start": start, "duration": duration, "status": status,
            "trace": trace, "span": span, "parent": parent}  # fmt: skip


def write(path: Path, data: dict[str, np.ndarray], full: bool) -> tuple[float, int]:
    n = len(data["start"])
    names_all = [FUNCTIONS[c] for c in data["codes"].tolist()]
    db = Database.open(path)
    gc.collect()
    t0 = time.perf_counter()
    for i in range(0, n, BATCH):
        j = min(i + BATCH, n)
        extra = {}
        if full:
            extra = {"trace_id": data["trace"][i:j], "span_id": data["span"][i:j],
                     "parent_span_id": data["parent"][i:j], "service": "checkout",
                     "kind": 1}  # fmt: skip
        while not db.append(names_all[i:j], data["start"][i:j], data["duration"][i:j],
                            status=data["status"][i:j], **extra):  # fmt: skip
            db.flush()  # queue full: the writer is behind; a loader waits rather than drop
    db.close()
    elapsed = time.perf_counter() - t0
    return n / elapsed, dir_bytes(path)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def timed(fn, repeat: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    n = args.rows
    root = Path(tempfile.mkdtemp(prefix="kbench-"))
    print(f"rows: {n:,}  (python {sys.version.split()[0]}, numpy {np.__version__})")
    data = workload(n)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    rate_min, size_min = write(root / "minimal", data, full=False)
    print(f"append (name+start+duration+status): {rate_min:,.0f} rows/s; "
          f"{size_min / n:.2f} bytes/row on disk")  # fmt: skip
    rate_full, size_full = write(root / "full", data, full=True)
    print(f"append (every column incl. ids):     {rate_full:,.0f} rows/s; "
          f"{size_full / n:.2f} bytes/row on disk")  # fmt: skip
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS growth while writing: {(rss - rss0) / 1024:.0f} MB "
          f"(beyond interpreter, numpy and the generated workload)")  # fmt: skip

    db = Database.open(root / "minimal")
    top = FUNCTIONS[0]
    one = timed(lambda: db.stats(top))
    every = timed(lambda: db.stats())
    mid = int(data["start"][n // 3]), int(data["start"][2 * n // 3])
    ranged = timed(lambda: db.stats(since=mid[0], until=mid[1]), repeat=5)
    print(f"stats one function: {one:.2f} ms;  all 100 functions: {every:.2f} ms;  "
          f"all functions over the middle third: {ranged:.1f} ms")  # fmt: skip

    # accuracy against exact quantiles
    stats = db.stats()
    worst = 0.0
    order = np.argsort(data["codes"], kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(data["codes"][order])) + 1)
    for g in groups:
        name = FUNCTIONS[int(data["codes"][g[0]])]
        values = np.sort(data["duration"][g])
        for field, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
            exact = values[int(np.floor(q * (len(values) - 1)))]
            worst = max(worst, abs(getattr(stats[name], field) - exact) / exact)
    print(f"worst relative quantile error over 100 functions x 4 quantiles: {worst * 100:.3f}%")

    import duckdb

    con = duckdb.connect()
    spans_np = {"name": data["codes"].astype(np.int32), "duration": data["duration"]}  # noqa: F841
    con.execute("CREATE TABLE spans AS SELECT * FROM spans_np")
    qs = "[0.5, 0.9, 0.95, 0.99, 0.999]"
    sql_all = (f"SELECT name, count(*), avg(duration), stddev_samp(duration), min(duration), "
               f"max(duration), quantile_disc(duration, {qs}) FROM spans GROUP BY name")  # fmt: skip
    sql_one = sql_all.replace("GROUP BY name", "WHERE name = 0 GROUP BY name")
    duck_all = timed(lambda: con.execute(sql_all).fetchall(), repeat=3)
    duck_one = timed(lambda: con.execute(sql_one).fetchall(), repeat=3)
    print(f"duckdb {duckdb.__version__} exact GROUP BY quantiles: one function {duck_one:.1f} ms; "
          f"all functions {duck_all:.1f} ms")  # fmt: skip
    print(f"speed-up vs duckdb: one function {duck_one / one:.0f}x; all functions "
          f"{duck_all / every:.0f}x")  # fmt: skip
    db.close()
    if not args.keep:
        shutil.rmtree(root)
    else:
        print("kept", root)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
