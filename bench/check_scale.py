"""Brute force over the rows ``bench_scale.py`` writes, against the database it built.

The scale benchmark's rows are deterministic (``bench_scale.blocks``), so they can be made again
here, block by block, without reading the database: per function, the calls in each of the
benchmark's time ranges, and every duration of the function with ~1% of the calls. The script
then asks the database (read-only, through the Python API) the same questions and compares: the
per-range counts exactly, the exact statistics' count, errors, min and max exactly, each exact
quantile against the sorted durations (a value of the data at the quantile's rank), and the
durations of ``slowest``. It prints one line a check and exits 1 on any difference.

    python bench/check_scale.py DIR/db [--rows 1B] [--writers 8]

Any layout of the same rows must agree: as the writers left it, compacted, maintained, live. At
1B rows it takes ~70 s to make the rows again and ~1 GB of memory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_scale as scale  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db", help="the database folder (DIR/db of bench_scale.py)")
    ap.add_argument("--rows", type=scale.parse_count, default=scale.parse_count("1B"))
    ap.add_argument("--writers", type=int, default=8)
    args = ap.parse_args()

    from kronicler.db import Database

    ranges = [(label, scale.T0 + int(a * scale.SPAN),
               scale.T0 + int(b * scale.SPAN) + (1 if b == 1.0 else 0))
              for label, a, b in scale.RANGES]  # fmt: skip
    n_functions = len(scale.FUNCTIONS)
    counts = {label: np.zeros(n_functions, np.int64) for label, _, _ in ranges}
    one = scale.FUNCTIONS.index(scale.ONE_PERCENT)
    durations, starts, errors = [], [], 0
    t = time.perf_counter()
    for stream in scale.plan_streams(args.rows, args.writers):
        for block in scale.blocks(stream):
            start, codes = block["start"], block["codes"]
            for label, lo, hi in ranges:
                inside = (start >= lo) & (start < hi)
                counts[label] += np.bincount(codes[inside], minlength=n_functions)
            mine = codes == one
            durations.append(block["duration"][mine])
            starts.append(start[mine])
            errors += int((block["status"][mine] == 2).sum())
    duration, start = np.concatenate(durations), np.concatenate(starts)
    ordered = np.sort(duration)
    print(f"{args.rows:,} rows made again in {time.perf_counter() - t:.0f} s", flush=True)

    failed: list[str] = []

    def check(what: str, ok: bool, detail: str = "") -> None:
        print(f"{what}: {'agrees' if ok else 'DIFFERS'}{' ' + detail if detail else ''}")
        if not ok:
            failed.append(what)

    db = Database.open(args.db, readonly=True)
    try:
        for label, lo, hi in ranges:
            got = {k: v.count for k, v in db.stats(since=lo, until=hi).items()}
            want = {scale.FUNCTIONS[i]: int(c) for i, c in enumerate(counts[label]) if c}
            check(f"calls per function over {label}", got == want)
        ex = db.stats(scale.ONE_PERCENT, exact=True)
        got_t = (ex.count, ex.errors, ex.min, ex.max)
        want_t = (duration.size, errors, int(ordered[0]), int(ordered[-1]))
        check("exact count, errors, min, max", got_t == want_t, f"{got_t} / {want_t}")
        for q, value in ex.quantiles:
            lo_rank = int(np.searchsorted(ordered, value, "left"))
            hi_rank = int(np.searchsorted(ordered, value, "right"))
            rank = q * (duration.size - 1)
            ok = hi_rank > lo_rank and lo_rank - 1 <= rank <= hi_rank
            check(f"exact p{q * 100:g}", ok, f"{value:.0f} holds sorted ranks "
                  f"{lo_rank}-{hi_rank - 1}, the quantile's rank is {rank:.1f}")  # fmt: skip
        slowest = [c.duration for c in db.slowest(scale.ONE_PERCENT)]
        want_slow = ordered[::-1][: len(slowest)].tolist()
        check(f"slowest {len(slowest)} durations", slowest == want_slow and bool(slowest))
    finally:
        db.close()
    print("every check agrees" if not failed else f"{len(failed)} check(s) differ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
