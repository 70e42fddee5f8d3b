"""Range statistics, cold and warm, side by side with another checkout of Kronicler.

Run by hand:  python bench/bench_ranges.py [--rows 10000000] [--baseline /work/main] [--path DIR]

Each checkout (this one and ``--baseline``) writes ``--rows`` rows of bench_db's workload (100
functions, Zipf frequencies, lognormal durations, increasing starts; name, start, duration and
status columns) to its own database under ``--path`` (reused when a run left it there), so each
reads the format it writes (a checkout without roll-ups or the segment index cannot read chunks
cut into blocks). Then, for each checkout, in a new process per range:

- cold: ``Database.open`` + ``time_range()`` (the open, reported apart), then the first
  ``stats(since=, until=)`` of every function over the range;
- warm: the median of the same call repeated in that process.

Ranges cover 0.1%, 25%, 57% and 100% of the time span (centred). Every answer is checked against
the other checkout's (counts equal, p50/p99 within 1%) and counts against numpy over the rows.
"Cold" is a new process; the files stay in the OS page cache (they were just written or read).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_db import FUNCTIONS, dir_bytes, workload  # noqa: E402

SIDE = (".roll", ".kidx")  # the side files of roll-ups and the segment index

HERE = str(Path(__file__).resolve().parents[1])
SHARES = (0.001, 0.25, 0.57, 1.0)

WRITER = """
import json, sys
from pathlib import Path
from kronicler.db import Database  # first: bench_db puts its own checkout on sys.path
sys.path.insert(0, sys.argv[3])
from bench_db import workload, write
rate, size = write(Path(sys.argv[2]), workload(int(sys.argv[1])), full=False)
print(json.dumps({"rate": rate, "size": size}))
"""

CHILD = """
import json, statistics, sys, time
t0 = time.perf_counter()
from kronicler.db import Database
path, since, until, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t1 = time.perf_counter()
db = Database.open(path, readonly=True)
db.time_range()
t2 = time.perf_counter()
first = db.stats(since=since, until=until)
t3 = time.perf_counter()
warm = []
for _ in range(repeat):
    t = time.perf_counter()
    db.stats(since=since, until=until)
    warm.append(time.perf_counter() - t)
out = {n: [s.count, s.p50, s.p99] for n, s in first.items()}
print(json.dumps({"open_ms": (t2 - t1) * 1e3, "cold_ms": (t3 - t2) * 1e3,
                  "warm_ms": statistics.median(warm) * 1e3, "stats": out}))
"""


def run(tree: str, path: Path, since: int, until: int, repeat: int) -> dict:
    env = dict(os.environ, PYTHONPATH=tree)
    got = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(since), str(until), str(repeat)],
        env=env, capture_output=True, text=True, check=True, cwd=tree,
    )  # fmt: skip
    return json.loads(got.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--baseline", default="/work/main")
    ap.add_argument("--path", type=Path, default=None, help="where bench_ranges wrote before")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    data = workload(args.rows)
    if args.path is None:
        args.path = Path(tempfile.mkdtemp(prefix="kbench-ranges-"))
    trees = {"this": HERE, "baseline": args.baseline}
    paths = {label: args.path / label for label in trees}
    for label, tree in trees.items():
        if not paths[label].exists():
            got = subprocess.run(
                [sys.executable, "-c", WRITER, str(args.rows), str(paths[label]),
                 str(Path(HERE) / "bench")],
                env=dict(os.environ, PYTHONPATH=tree), capture_output=True, text=True,
                check=True, cwd=tree,
            )  # fmt: skip
            rate = json.loads(got.stdout.strip().splitlines()[-1])["rate"]
            print(f"{label}: wrote {args.rows:,} rows at {rate:,.0f} rows/s ({paths[label]})")
        side = sum(f.stat().st_size for f in paths[label].rglob("*") if f.suffix in SIDE)
        print(f"{label}: on disk {dir_bytes(paths[label]) / args.rows:.3f} B/row, of which "
              f"index and roll-ups {side / args.rows:.4f} B/row")  # fmt: skip
    start, codes = data["start"], data["codes"]
    del data  # the rest of the workload is not needed past the write (GBs at 100M rows)
    lo, hi = int(start.min()), int(start.max()) + 1
    print(f"{'range':>7} {'tree':>9} {'open ms':>8} {'cold ms':>8} {'warm ms':>8}")
    for share in SHARES:
        width = int((hi - lo) * share)
        since = lo + (hi - lo - width) // 2
        until = since + width
        sel = (start >= since) & (start < until)
        want = np.bincount(codes[sel], minlength=len(FUNCTIONS))
        answers = {}
        for label, tree in trees.items():
            r = run(tree, paths[label], since, until, args.repeat)
            answers[label] = r["stats"]
            counts = {n: c for n, (c, _, _) in r["stats"].items()}
            assert counts == {FUNCTIONS[i]: int(c) for i, c in enumerate(want) if c}, label
            print(f"{share:>7.1%} {label:>9} {r['open_ms']:>8.1f} {r['cold_ms']:>8.1f} "
                  f"{r['warm_ms']:>8.2f}")  # fmt: skip
        a, b = answers["this"], answers["baseline"]
        for name, (_, p50, p99) in a.items():
            for x, y in ((p50, b[name][1]), (p99, b[name][2])):
                assert abs(x - y) <= 0.0201 * abs(y), (name, x, y)


if __name__ == "__main__":
    main()
