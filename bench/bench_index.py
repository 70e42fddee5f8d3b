"""Open and one-function benchmark: this checkout beside a baseline checkout, in the same run.

Run by hand:  python bench/bench_index.py [--rows 10000000] [--baseline /work/main]

For each checkout a subprocess (with that checkout first on ``PYTHONPATH``) writes the same rows
(bench_db.py's workload, timing columns) to its own database, so each reads the format it writes,
and runs one maintenance step on it (what ``serve`` runs in the background); bytes per row are
printed as written and after it.
Then, per checkout and per repetition, a fresh process times: open + the first ``stats()`` of
every function (cold process; the files are in the page cache), ``stats(name, exact=True)`` and
``slowest(name)`` for a function with ~1% of the calls, first call and again (warm), and three
time ranges (0.1%, 25%, 57% of the rows; first ask, then the median of five). The two
checkouts alternate, so a busy machine skews both alike; compare within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Files whose bytes per row are printed apart: segment pages, sorted durations, roll-ups, index.
PARTS = (".kseg", ".kdur", ".roll", ".kidx")
NAME = "service.module.function_18"  # Zipf rank 19 of 100: ~1.0% of the calls

WRITE = """
import sys, time, json
from kronicler.db import Database  # first: bench_db puts its own checkout on sys.path
sys.path.insert(0, sys.argv[3])
import numpy as np
from bench_db import workload, FUNCTIONS
n, path = int(sys.argv[1]), sys.argv[2]
db = Database.open(path)
spent, piece, step = 0.0, 10_000_000, 10_000
for p in range(0, n, piece):  # pieces of 10M rows bound the generator's memory
    data = workload(min(piece, n - p), seed=42 + p)
    data["start"] += p * 1000
    names = np.array(FUNCTIONS, dtype=object)[data["codes"]].tolist()
    t0 = time.perf_counter()
    for i in range(0, len(names), step):
        j = min(i + step, len(names))
        while not db.append(names[i:j], data["start"][i:j], data["duration"][i:j],
                            status=data["status"][i:j]):
            db.flush()
    spent += time.perf_counter() - t0
t0 = time.perf_counter()
db.close()
spent += time.perf_counter() - t0
print(json.dumps({"append_rows_per_s": n / spent}))
"""

#: The maintenance step ``serve`` runs in the background and ``kronicler upgrade`` runs by hand:
#: it merges closed segments' sorted-duration records (and writes the roll-up across segments).
MAINTAIN = """
import sys, time, json
from pathlib import Path
from kronicler.db import compaction
t0 = time.perf_counter()
compaction.write_tree(Path(sys.argv[1]) / "segments")
print(json.dumps({"maintain_s": time.perf_counter() - t0}))
"""

READ = """
import sys, time, json
import kronicler
from kronicler.db import Database
path, name = sys.argv[1], sys.argv[2]
out = {"code": kronicler.__file__}
t0 = time.perf_counter()
db = Database.open(path, readonly=True)
st = db.stats()
out["open_first_stats_s"] = time.perf_counter() - t0
out["functions"] = len(st)
for what, run in (("exact", lambda: db.stats(name, exact=True)),
                  ("slowest", lambda: db.slowest(name, k=10))):
    for when in ("first", "warm"):
        t0 = time.perf_counter()
        got = run()
        out[f"{what}_{when}_s"] = time.perf_counter() - t0
# time ranges (bench_scale.py's): rows start ~1 us apart from T0, so a fraction of the rows
# is a fraction of the span; the first ask of a window, then the median of five more
T0, span = 1_760_000_000_000_000_000, int(sys.argv[3]) * 1000
for label, a, b in (("0.1%", 0.4000, 0.4010), ("25%", 0.1003, 0.3503), ("57%", 0.2311, 0.8011)):
    since, until = T0 + int(a * span), T0 + int(b * span)
    t0 = time.perf_counter()
    got = db.stats(since=since, until=until)
    out[f"range_{label}_first_s"] = time.perf_counter() - t0
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        db.stats(since=since, until=until)
        warm.append(time.perf_counter() - t0)
    out[f"range_{label}_warm_s"] = sorted(warm)[2]
    out[f"range_{label}_counts"] = sorted((k, v.count) for k, v in got.items())
out["exact_count"] = db.stats(name, exact=True).count
out["slowest"] = [c.duration for c in db.slowest(name, k=10)]
t0 = time.perf_counter()
db.stats()
out["stats_warm_s"] = time.perf_counter() - t0
db.close()
print(json.dumps(out))
"""


def _run(root: Path, code: str, *args: str) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(root))
    # cwd too: ``python -c`` puts the working directory first on sys.path
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=root,
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode:
        raise SystemExit(f"{root}: {out.stderr}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _sizes(path: Path) -> dict[str, int]:
    """Bytes on disk per kind of file (suffix): segment pages, sorted durations, roll-ups..."""
    out: dict[str, int] = {}
    for p in path.rglob("*"):
        if p.is_file():
            out[p.suffix] = out.get(p.suffix, 0) + p.stat().st_size
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--baseline", type=Path, default=Path("/work/main"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    roots = {"this": HERE.parent, "baseline": args.baseline.resolve()}
    tmp = Path(tempfile.mkdtemp(prefix="kronicler-bench-index-"))
    try:
        written = {}
        for label, root in roots.items():
            w = _run(root, WRITE, str(args.rows), str(tmp / label), str(HERE))
            w["bytes_per_row_as_written"] = sum(_sizes(tmp / label).values()) / args.rows
            w.update(_run(root, MAINTAIN, str(tmp / label)))
            sizes = _sizes(tmp / label)
            w["bytes_per_row"] = sum(sizes.values()) / args.rows
            for suffix in PARTS:
                w[f"  {suffix}"] = sizes.get(suffix, 0) / args.rows
            written[label] = w
        reads: dict[str, list[dict[str, object]]] = {label: [] for label in roots}
        for _ in range(args.repeat):
            for label, root in roots.items():
                reads[label].append(_run(root, READ, str(tmp / label), NAME, str(args.rows)))
        a, b = (reads[k][0] for k in roots)
        answers = [k for k in a if k.endswith("_counts") or k in ("exact_count", "slowest")]
        if [a[k] for k in answers] != [b[k] for k in answers]:
            raise SystemExit(f"answers differ: {a} / {b}")
        print(f"rows: {args.rows:,}; function {NAME}: {a['exact_count']:,} calls")
        print("code read:", ", ".join(f"{k} {reads[k][0]['code']}" for k in roots))
        print(f"{'':28}{'this':>14}{'baseline':>14}")
        for key in ("append_rows_per_s", "bytes_per_row_as_written", "maintain_s",
                    "bytes_per_row", *(f"  {s}" for s in PARTS)):  # fmt: skip
            print(f"{key:28}" + "".join(f"{written[k][key]:>14,.2f}" for k in roots))
        ranges = [
            f"range_{w}_{when}_s" for w in ("0.1%", "25%", "57%") for when in ("first", "warm")
        ]
        for key in ("open_first_stats_s", "stats_warm_s", "exact_first_s", "exact_warm_s",
                    "slowest_first_s", "slowest_warm_s", *ranges):  # fmt: skip
            cells = []
            for k in roots:
                vals = [float(r[key]) for r in reads[k]]  # type: ignore[arg-type]
                cells.append(f"{statistics.median(vals) * 1000:>11.1f} ms")
            print(f"{key + ' (median)':28}" + "".join(cells))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
