"""Write-side benchmark: append CPU and wall rate, and bytes per row by column, side by side.

Run by hand:  python bench/bench_seal.py --compare CHECKOUT [--compare CHECKOUT2] [--rounds 3]

Each round writes three workloads in a fresh process per checkout, alternating the checkouts, so
that a machine shared with other jobs loads them alike; CPU time (every thread of the writing
process) is the steadier figure there, wall time is printed beside it.

* ``scale``: one closed writer of ``bench_scale.py --rows 10M`` (1,187,500 timing rows over
  30 days, 100 Zipf functions, appended as SiteBatches of ~1M rows);
* ``minimal`` and ``full``: ``bench_db.py``'s rows (``--rows``, default 2M): name, start,
  duration, status; and every column with random trace and span ids and parent links.

Bytes per row are of the whole directory, and per column from the page headers.
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
WORKLOADS = ("scale", "minimal", "full")


def child(workload: str, path: str, rows: int) -> None:
    """Write one workload with the checkout on PYTHONPATH; print its figures as JSON."""
    import numpy as np

    import kronicler.db  # noqa: F401  (first: the bench modules below put this repo on sys.path)
    from kronicler.db import Database
    from kronicler.db.page import HEADER_SIZE, parse_header
    from kronicler.db.schema import COLUMNS

    sys.path.insert(0, str(HERE.parent))
    import bench_db
    import bench_scale

    if workload == "scale":
        stream = bench_scale.plan_streams(10_000_000, 8)[0]
        blocks = list(bench_scale.blocks(stream))
        batches = [bench_scale._batch(b) for b in blocks]
        names = np.array(bench_scale.FUNCTIONS, dtype=object)
        n = stream["rows"]
        cpu, wall = time.process_time(), time.perf_counter()
        db = Database.open(path)
        for block, batch in zip(blocks, batches, strict=True):
            if batch is not None:
                db.append_batch(batch)
            else:  # a checkout before SiteBatch: bench_db.py's way (its queue refuses when full)
                for i in range(0, len(block["start"]), bench_db.BATCH):
                    part = {k: v[i : i + bench_db.BATCH] for k, v in block.items()}
                    while not db.append(names[part["codes"]], part["start"], part["duration"],
                                        status=part["status"]):  # fmt: skip
                        db.flush()
            db.flush()
        db.close()
    else:
        data = bench_db.workload(rows)
        n = rows
        cpu, wall = time.process_time(), time.perf_counter()
        bench_db.write(Path(path), data, full=workload == "full")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    names = {i: c for i, c in enumerate(COLUMNS)} | {100: "dictionary", 101: "summary"}
    columns: dict[str, int] = {}
    files: dict[str, int] = {}
    for f in Path(path).rglob("*"):
        if not f.is_file():
            continue
        files[f.suffix] = files.get(f.suffix, 0) + f.stat().st_size
        if f.suffix == ".kseg":
            data_, pos = f.read_bytes(), 0
            while pos < len(data_):
                h = parse_header(data_[pos : pos + HEADER_SIZE])
                if h is None:
                    break
                columns[names[h.column]] = columns.get(names[h.column], 0) + h.size
                pos += h.size
    out = {"rows": n, "cpu": cpu, "wall": wall, "bytes": sum(files.values())}
    print(json.dumps(out | {"columns": columns, "files": files}))


def run(checkout: Path, workload: str, rows: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory(prefix="kseal-") as tmp:
        args = [sys.executable, str(HERE), "--child", workload, tmp, str(rows)]
        out = subprocess.run(args, env=env, check=True, capture_output=True, text=True, cwd=tmp)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkout", type=Path, default=HERE.parents[1])
    ap.add_argument("--compare", type=Path, action="append", default=[], metavar="CHECKOUT")
    ap.add_argument("--rows", type=int, default=2_000_000, help="rows of the bench_db workloads")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    args = ap.parse_args()
    checkouts = [args.checkout, *args.compare]
    workloads = [w for w in args.workloads.split(",") if w]
    print(f"load average {os.getloadavg()[0]:.1f}; checkouts: {', '.join(map(str, checkouts))}")
    got: dict[tuple[str, Path], list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for workload in workloads:
            order = checkouts if r % 2 == 0 else checkouts[::-1]
            for c in order:
                got.setdefault((workload, c), []).append(run(c, workload, args.rows))
    for workload in workloads:
        print(f"\n{workload}:")
        for c in checkouts:
            runs = got[(workload, c)]
            n = runs[0]["rows"]
            cpu = statistics.median(n / x["cpu"] for x in runs)
            wall = statistics.median(n / x["wall"] for x in runs)
            print(f"  {c}: {cpu / 1e6:.2f} M rows/s of CPU, {wall / 1e6:.2f} M rows/s wall "
                  f"(median of {len(runs)}); {runs[0]['bytes'] / n:.3f} B/row")  # fmt: skip
            cols = sorted(runs[0]["columns"].items(), key=lambda kv: -kv[1])
            files = {k: v for k, v in runs[0]["files"].items() if k != ".kseg"}
            parts = [f"{k} {v / n:.3f}" for k, v in cols if v / n >= 0.005]
            parts += [f"{k} {v / n:.3f}" for k, v in files.items() if v / n >= 0.005]
            print("     " + ", ".join(parts))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
