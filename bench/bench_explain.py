"""Explain benchmark: ``kronicler.query.explain`` over 1M calls of one function, beside DuckDB.

Run by hand:  python bench/bench_explain.py [--calls 1000000] [--unique-ids] [--repeat 3]

Workload: ``api.handle`` called ``--calls`` times over one hour, each call with one child
(``db.query``) and 2% with a second (``cache.fill``), so the child scan reads about twice the
rows. Attributes per call: ``db.shard`` (16 values; shard 7 is 8x slower), ``http.route`` (8),
``host.name`` (4), ``service.version`` (2, the second from 80% of the hour on): 1,024 distinct
sets. ``--unique-ids`` adds a ``request.id`` unique per call, so every call has its own set.

Figures: the bytes written (segments and the per-key attribute columns written at seal, see
``kronicler/db/attr_keys.py``), the whole explain (threshold, attributes, child calls, time
series, releases, examples, both scans from the database) and, side by side, DuckDB computing only the attribute counts (slow
vs baseline per key and value, for the same threshold) over the same rows already in memory as an
Arrow table (duration + attribute JSON text): a lower bound for the attribute part of the
question in a general-purpose engine. Both answers' counts are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kronicler import query as q  # noqa: E402
from kronicler.db import Database  # noqa: E402
from kronicler.db.attr_keys import SUFFIX  # noqa: E402
from kronicler.db.schema import canonical_attributes  # noqa: E402

BASE = 1_760_000_000_000_000_000
HOUR = 3_600_000_000_000
BATCH = 200_000


def build(path: Path | None, n: int, unique_ids: bool, seed: int = 5) -> list[str]:
    """Write the workload (``path=None``: only make it); returns each call's attribute text."""
    rng = np.random.default_rng(seed)
    start = BASE + np.sort(rng.integers(0, HOUR, n))
    shard = rng.integers(16, size=n)
    route = rng.integers(8, size=n)
    host = rng.integers(4, size=n)
    release = (start >= BASE + int(HOUR * 0.8)).astype(np.int64)
    own = (rng.lognormal(np.log(1e6), 0.4, n) * np.where(shard == 7, 8, 1)).astype(np.int64)
    child = rng.lognormal(np.log(2e5), 0.3, n).astype(np.int64)
    fill = rng.random(n) < 0.02
    fill_d = np.where(fill, rng.lognormal(np.log(5e6), 0.2, n), 0).astype(np.int64)
    duration = own + child + fill_d
    trace_hi = rng.integers(1, 2**63, n, dtype=np.uint64)
    trace_lo = rng.integers(1, 2**63, n, dtype=np.uint64)
    span = rng.integers(1, 2**63, n, dtype=np.uint64)
    combos = {}
    texts = []
    for i, key in enumerate(zip(shard.tolist(), route.tolist(), host.tolist(),
                                release.tolist(), strict=True)):  # fmt: skip
        attrs = {"db.shard": key[0], "http.route": f"/api/r{key[1]}", "host.name": f"h{key[2]}",
                 "service.version": ["2.3.0", "2.4.0"][key[3]]}  # fmt: skip
        if unique_ids:
            attrs["request.id"] = f"req-{i:08d}"
            texts.append(canonical_attributes(attrs))
        else:
            text = combos.get(key)
            if text is None:
                text = combos[key] = canonical_attributes(attrs)
            texts.append(text)
    if path is None:
        return texts
    db = Database.open(path)
    try:
        for lo in range(0, n, BATCH):
            sl = slice(lo, min(n, lo + BATCH))
            m = sl.stop - sl.start
            tid = [(int(h) << 64) | int(low) for h, low in zip(trace_hi[sl], trace_lo[sl],
                                                                strict=True)]  # fmt: skip
            db.append(["api.handle"] * m, start[sl], duration[sl], service="api", trace_id=tid,
                      span_id=span[sl], attributes=texts[sl])  # fmt: skip
            db.append(["db.query"] * m, start[sl] + 1000, child[sl], service="api", trace_id=tid,
                      span_id=span[sl] ^ 1, parent_span_id=span[sl])  # fmt: skip
            k = np.flatnonzero(fill[sl])
            db.append(["cache.fill"] * len(k), start[sl][k] + 2000, fill_d[sl][k],
                      service="api", trace_id=[tid[i] for i in k.tolist()],
                      span_id=span[sl][k] ^ 2, parent_span_id=span[sl][k])  # fmt: skip
        assert db.flush(timeout=600)
    finally:
        db.close()
    return texts


def duckdb_counts(durations: np.ndarray, texts: list[str], threshold: float) -> tuple[
        tuple[float, float], dict[tuple[str, str], tuple[int, int]]]:  # fmt: skip
    import duckdb
    import pyarrow as pa

    table = pa.table({"duration": durations, "attributes": texts})
    con = duckdb.connect()
    con.register("calls", table)
    sql = """
        WITH kv AS (
            SELECT duration > ? AS slow, attributes, unnest(json_keys(attributes)) AS k
            FROM calls
        )
        SELECT k, json_extract_string(attributes, '$."' || k || '"') AS v,
               count(*) FILTER (WHERE slow) AS s, count(*) FILTER (WHERE NOT slow) AS b
        FROM kv GROUP BY 1, 2
    """
    t0, c0 = time.perf_counter(), time.process_time()
    rows = con.execute(sql, [threshold]).fetchall()
    took = (time.perf_counter() - t0, time.process_time() - c0)
    return took, {(k, v): (int(s), int(b)) for k, v, s, b in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--unique-ids", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="build the database here once and reuse it")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="kronicler-bench-explain-"))
    try:
        t0 = time.perf_counter()
        reuse = args.keep is not None and (tmp / "db").exists()
        texts = build(None if reuse else tmp / "db", args.calls, args.unique_ids)
        done = "reused" if reuse else "wrote"
        print(f"{done} {args.calls:,} calls (+ children) in {time.perf_counter() - t0:.1f} s")
        files = list((tmp / "db").rglob("*.k*"))
        size = {s: sum(f.stat().st_size for f in files if f.suffix == s) for s in (".kseg", SUFFIX)}
        print(f"  on disk: segments {size['.kseg'] / 1e6:.1f} MB, per-key attribute columns "
              f"{size[SUFFIX] / 1e6:.1f} MB")  # fmt: skip
        with Database.open(tmp / "db", readonly=True) as db:
            times, cpu = [], []
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                e = q.explain(db, "api.handle")
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            scan = db.scan(("duration",), names=["api.handle"])
            durations = scan.columns["duration"]
        print(f"explain over {e.count:,} calls ({e.slow_count:,} slow, threshold "
              f"{e.threshold / 1e6:.2f} ms): median {statistics.median(times):.3f} s, "
              f"best {min(times):.3f} s of {args.repeat}; CPU median "
              f"{statistics.median(cpu):.3f} s (one thread)")  # fmt: skip
        top = e.attributes[0]
        print(f"  top attribute: {top.key}={top.value} slow {top.slow} baseline {top.baseline}; "
              f"top child: {e.children[0].function}; releases lining up: "
              f"{[r.version for r in e.releases if r.lines_up]}")  # fmt: skip
        # The same rows in the same order as Kronicler stored them (one append order).
        assert e.threshold is not None
        d_times, d_cpu = [], []
        for _ in range(args.repeat):
            (took, took_cpu), counts = duckdb_counts(durations, texts, e.threshold)
            d_times.append(took)
            d_cpu.append(took_cpu)
        ours = {(a.key, a.value): (a.slow, a.baseline) for a in e.attributes}
        agree = all(counts.get(kv) == sb for kv, sb in ours.items())
        print(f"duckdb attribute counts only (in-memory Arrow): median "
              f"{statistics.median(d_times):.3f} s, best {min(d_times):.3f} s; CPU median "
              f"{statistics.median(d_cpu):.3f} s (all its threads); counts of every finding "
              f"equal: {agree}")  # fmt: skip
        print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(json.dumps({"explain_s": statistics.median(times),
                          "explain_cpu_s": statistics.median(cpu),
                          "duckdb_attribute_counts_s": statistics.median(d_times),
                          "duckdb_attribute_counts_cpu_s": statistics.median(d_cpu)}))  # fmt: skip
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
