"""Scale benchmark (issue 11): a database of N timing rows, every query target, beside DuckDB.

Run by hand (it prints its figures):

    python bench/bench_scale.py --rows 100M              # quick mode, a few minutes
    python bench/bench_scale.py --rows 1B                # full (~5 GB + Parquet + DuckDB)
    python bench/bench_scale.py --reuse DIR              # skip the build, query DIR again
    python bench/bench_scale.py --rows 100M --compare /work/wt-old   # old code, same run
    python bench/bench_scale.py --reuse DIR --moving 7 --compare /work/main  # moving windows only
    python bench/bench_scale.py --reuse DIR --compact COPY   # time-disjoint compaction of a copy

The database is built the way deployments fill one: ``--writers`` (8) writer processes, each
appending its own share of the traffic over 30 days through ``Database.append_batch`` (numpy
columns; one ``SiteBatch`` per block of rows, so text costs nothing per row), ``--jobs`` of them
at a time, and one more writer that holds the newest day and stays open (the live case) until
the live figures are taken; then it closes and the same questions are asked again (the closed
case). Writers rotate segments as usual, so the database has several segments per writer.

Rows are timing columns only: ``name`` among 100 functions with a Zipf(1) skew, ``start``
increasing over 30 days, ``duration`` log-normal around a per-function median with a slow tail
(1% of calls about 20x slower), ``status`` ERROR for 1%. Every figure is taken in a child process
whose ``PYTHONPATH`` is the checkout under test, so ``--compare`` asks the same questions of the
same database with another checkout's code, side by side (``--compare-build`` builds a second
database with that checkout's writer first, for when the formats differ).

"Cold" means a new process (the interpreter's and numpy's imports excluded; Kronicler's imports,
compiled once as an installed package's are, and the open included); the operating system's
page cache is not dropped, as that would disturb everyone else on a shared machine. "Warm" is
the median of ``--repeat`` runs after a first one in the same process. DuckDB (native table
loaded from a Parquet file written once, ``--duckdb-memory`` limit, 2 threads) answers the same
questions exactly; its per-function counts are checked against Kronicler's.

``--compact COPY`` (with ``--reuse DIR``) hard-links DIR's database into COPY (compaction writes
new files and deletes old ones, never changing one in place, so DIR stays as it was), rewrites
the copy time-disjoint with ``kronicler compact --time-disjoint`` in a child process (its wall
and CPU time, rows/s and peak RSS printed), then asks the questions of both, side by side. A COPY
compacted by an earlier run is asked again without compacting.
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
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]

FUNCTIONS = [f"app.module{i // 10}.function_{i}" for i in range(100)]
SHARES = 1.0 / np.arange(1, 101)
SHARES /= SHARES.sum()
T0 = 1_780_000_000 * 10**9
DAY = 86_400 * 10**9
SPAN = 30 * DAY
BLOCK = 1 << 20
SEED = 20261129
#: Ranges asked for, as (label, fraction of the time span from, to).
RANGES = (("0.1%", 0.4000, 0.4010), ("25%", 0.1003, 0.3503), ("57%", 0.2311, 0.8011),
          ("100%", 0.0, 1.0))  # fmt: skip
ONE_PERCENT = FUNCTIONS[int(np.argmin(np.abs(SHARES - 0.01)))]


def parse_count(text: str) -> int:
    """``"100M" -> 100_000_000``; ``"1B"``, ``"10k"`` likewise."""
    units = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}
    t = text.strip().lower().replace("_", "")
    mult = units.get(t[-1:], 1)
    body = t[:-1] if t[-1:] in units else t
    try:
        value = int(float(body) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad row count {text!r}: use e.g. 10M, 100M, 1B"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"row count must be positive, got {text!r}")
    return value


# -- the rows -------------------------------------------------------------------------------------
def plan_streams(rows: int, writers: int) -> list[dict[str, int]]:
    """One stream per writer: rows over the whole span; the last (live) one holds the newest day."""
    live = max(1, rows // 20)
    closed = rows - live
    streams = []
    for w in range(writers):
        n = closed // writers + (1 if w < closed % writers else 0)
        streams.append({"stream": w, "rows": n, "t_lo": T0, "t_hi": T0 + SPAN})
    streams.append({"stream": writers, "rows": live, "t_lo": T0 + SPAN - DAY, "t_hi": T0 + SPAN})
    return streams


def _medians() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    return np.exp(rng.uniform(np.log(2e4), np.log(5e7), len(FUNCTIONS)))  # 20 us .. 50 ms


MEDIANS = _medians()


def blocks(stream: dict[str, int]) -> Iterator[dict[str, np.ndarray]]:
    """The stream's rows in blocks of ``BLOCK``, start times increasing; deterministic."""
    n, lo, hi = stream["rows"], stream["t_lo"], stream["t_hi"]
    nblocks = max(1, -(-n // BLOCK))
    for b in range(nblocks):
        first, last = b * n // nblocks, (b + 1) * n // nblocks
        k = last - first
        rng = np.random.default_rng([SEED, stream["stream"], b])
        codes = rng.choice(len(FUNCTIONS), k, p=SHARES)
        # evenly spaced over the block's slice of time, jittered within each row's step
        step = (hi - lo) / n
        start = lo + (np.arange(first, last, dtype=np.float64) * step).astype(np.int64)
        start += rng.integers(0, max(1, int(step)), k)
        logd = np.log(MEDIANS[codes]) + 0.6 * rng.standard_normal(k)
        slow = rng.random(k) < 0.01
        logd[slow] += np.log(20.0) + 0.5 * rng.standard_normal(int(slow.sum()))
        duration = np.maximum(np.exp(logd), 1.0).astype(np.int64)
        status = np.where(rng.random(k) < 0.01, 2, 0).astype(np.uint8)
        yield {"codes": codes.astype(np.int64), "start": start, "duration": duration,
               "status": status}  # fmt: skip


def _batch(block: dict[str, np.ndarray]) -> Any:
    """The fastest public append form this checkout has: a SiteBatch, else plain columns."""
    try:
        from kronicler.db.site_batch import SiteBatch
    except ImportError:
        return None
    k = len(block["start"])
    zeros = np.zeros(k, dtype=np.uint64)
    extra: dict[str, Any] = {}
    if "resource" in getattr(SiteBatch, "__dataclass_fields__", {}):  # schema 2 on
        extra["resource"] = ""
    return SiteBatch(
        site=block["codes"], names=FUNCTIONS, attributes=[""] * len(FUNCTIONS), service="bench",
        start=block["start"], duration=block["duration"], status=block["status"],
        kind=np.zeros(k, dtype=np.uint8), trace_hi=zeros, trace_lo=zeros, span_id=zeros,
        parent_span_id=zeros, **extra,
    )  # fmt: skip


# -- children (run with PYTHONPATH set to the checkout under test) -------------------------------
def child_write(path: str, stream: dict[str, int], live: bool) -> None:
    from kronicler.db import Database

    db = Database.open(path)
    names = np.array(FUNCTIONS, dtype=object)
    timed = 0.0
    for block in blocks(stream):
        batch = _batch(block)
        t = time.perf_counter()
        if batch is not None:
            db.append_batch(batch)
        else:
            db.append(names[block["codes"]], block["start"], block["duration"],
                      status=block["status"])  # fmt: skip
        db.flush()
        timed += time.perf_counter() - t
    if live:
        print(json.dumps({"rows": stream["rows"], "seconds": timed, "live": True}), flush=True)
        sys.stdin.readline()  # the parent says when to close
    t = time.perf_counter()
    db.close()
    timed += time.perf_counter() - t
    print(json.dumps({"rows": stream["rows"], "seconds": timed}), flush=True)


def _rss_mb() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def _open(path: str) -> Any:
    from kronicler.db import Database

    try:
        return Database.open(path, readonly=True)
    except TypeError:  # a checkout without read-only opening
        return Database.open(path)


def _ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1e3, out


def _counts(result: Any) -> dict[str, int]:
    return {name: s.count for name, s in result.items() if s.count}


def _stats_summary(s: Any) -> dict[str, Any]:
    return {"count": s.count, "max": s.max, "p50": s.p50, "p99": s.p99}


def child_query(path: str, mode: str, repeat: int) -> None:
    """One measurement session; prints a JSON object of figures (milliseconds)."""
    ranges = {label: (T0 + int(a * SPAN), T0 + int(b * SPAN) + (1 if b == 1.0 else 0))
              for label, a, b in RANGES}  # fmt: skip
    out: dict[str, Any] = {"mode": mode}
    cpu0 = time.process_time()
    t_open, db = _ms(lambda: _open(path))
    out["open_ms"] = t_open
    if mode == "cold-all":
        t, res = _ms(lambda: db.stats())
        out["first_ms"] = t
        out["functions"] = len(res)
    elif mode.startswith("cold-range:"):
        since, until = ranges[mode.split(":", 1)[1]]
        out["first_ms"], _ = _ms(lambda: db.stats(since=since, until=until))
    elif mode == "cold-exact":
        out["first_ms"], _ = _ms(lambda: db.stats(ONE_PERCENT, exact=True))
    elif mode == "cold-slowest":
        out["first_ms"], _ = _ms(lambda: db.slowest(ONE_PERCENT))
    elif mode.startswith("moving:"):
        # A window moving by a step at each ask (a dashboard's "last N days"): every ask is a
        # new window, so no kept merge of a window helps; one ask first loads the range's pages.
        asks, step = (int(v) for v in mode.split(":")[1:])
        db.stats()
        for label, (since, until) in ranges.items():
            if label == "100%":
                continue
            db.stats(since=since, until=until)
            wall, cpu = [], []
            for i in range(asks):
                shift = (i + 1) * step
                c = time.process_time()
                wall.append(_ms(partial(db.stats, since=since + shift, until=until + shift))[0])
                cpu.append((time.process_time() - c) * 1e3)
            out[f"moving:{label}"] = {"median_ms": statistics.median(wall), "max_ms": max(wall),
                                      "median_cpu_ms": statistics.median(cpu),
                                      "max_cpu_ms": max(cpu)}  # fmt: skip
    elif mode == "warm":

        def measure(key: str, fn: Callable[[], Any], times: int) -> Any:
            runs, cpu = [], []
            try:
                first, value = _ms(fn)
                for _ in range(times):
                    c = time.process_time()
                    runs.append(_ms(fn)[0])
                    cpu.append((time.process_time() - c) * 1e3)
            except Exception as exc:  # e.g. a query limit: report it, measure the rest
                out[key] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                return None
            # CPU time too: on a loaded machine the wall time is mostly waiting for a core
            out[key] = {"first_ms": first, "warm_ms": statistics.median(runs),
                        "warm_cpu_ms": statistics.median(cpu)}  # fmt: skip
            return value

        every = measure("stats_all", lambda: db.stats(), repeat)
        out["check"] = {} if every is None else {"100%": _counts(every)}
        for label, (since, until) in ranges.items():
            res = measure(f"range:{label}", lambda s=since, u=until: db.stats(since=s, until=u),
                          repeat)  # fmt: skip
            if res is not None:
                out["check"][label] = _counts(res)
        exact = measure("exact", lambda: db.stats(ONE_PERCENT, exact=True), max(1, repeat // 2))
        if exact is not None:
            out["exact_result"] = _stats_summary(exact)
        calls = measure("slowest", lambda: db.slowest(ONE_PERCENT), repeat)
        if calls is not None:
            out["slowest_result"] = [int(c.duration) for c in calls]
        measure("functions", lambda: db.functions(), repeat)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    out["cpu_ms"] = (time.process_time() - cpu0) * 1e3  # open and every question, imports not
    out["rss_mb"] = _rss_mb()
    db.close()
    print(json.dumps(out), flush=True)


def child_duckdb(workdir: str, memory: str, repeat: int, timeout: float) -> None:
    import duckdb

    ranges = {label: (T0 + int(a * SPAN), T0 + int(b * SPAN) + (1 if b == 1.0 else 0))
              for label, a, b in RANGES}  # fmt: skip
    t_open = time.perf_counter()
    con = duckdb.connect(str(Path(workdir) / "spans.duckdb"), read_only=True)
    con.execute(f"SET memory_limit='{memory}'")
    con.execute("SET threads=2")
    out: dict[str, Any] = {"version": duckdb.__version__,
                           "open_ms": (time.perf_counter() - t_open) * 1e3}  # fmt: skip
    aggs = ("count(*), avg(duration), stddev_samp(duration), min(duration), max(duration), "
            "quantile_cont(duration, [0.5, 0.9, 0.95, 0.99, 0.999])")  # fmt: skip

    def run(sql: str) -> list[Any]:
        timer = threading.Timer(timeout, con.interrupt)
        timer.start()
        try:
            return con.execute(sql).fetchall()
        finally:
            timer.cancel()

    def measure(key: str, sql: str, times: int) -> list[Any] | None:
        try:
            first, rows = _ms(lambda: run(sql))
            runs = [_ms(lambda: run(sql))[0] for _ in range(times)]
        except Exception as exc:  # out of memory, interrupted: report, go on
            out[key] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            return None
        out[key] = {"first_ms": first, "warm_ms": statistics.median(runs)}
        return rows

    rows = measure("stats_all", f"SELECT name, {aggs} FROM spans GROUP BY name", repeat)
    out["check"] = {}
    if rows is not None:
        out["check"]["100%"] = {r[0]: r[1] for r in rows}
    for label, (since, until) in ranges.items():
        where = f"WHERE start >= {since} AND start < {until}"
        rows = measure(f"range:{label}", f"SELECT name, {aggs} FROM spans {where} GROUP BY name",
                       repeat)  # fmt: skip
        if rows is not None:
            out["check"][label] = {r[0]: r[1] for r in rows}
    rows = measure("exact", f"SELECT {aggs} FROM spans WHERE name = '{ONE_PERCENT}'",
                   max(1, repeat // 2))  # fmt: skip
    if rows:
        count, _, _, _, mx, qs = rows[0]
        out["exact_result"] = {"count": count, "max": mx, "p50": qs[0], "p99": qs[3]}
    rows = measure("slowest", f"SELECT duration FROM spans WHERE name = '{ONE_PERCENT}' "
                              "ORDER BY duration DESC LIMIT 10", repeat)  # fmt: skip
    if rows is not None:
        out["slowest_result"] = [int(r[0]) for r in rows]
    out["rss_mb"] = _rss_mb()
    con.close()
    print(json.dumps(out), flush=True)


# -- the parent ----------------------------------------------------------------------------------
def _env(checkout: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(checkout)
    env.setdefault("PYTHONHASHSEED", "0")
    # Cold figures are those of an installed package, whose modules are compiled once (pip
    # writes their .pyc). With PYTHONDONTWRITEBYTECODE set and no __pycache__ in a checkout,
    # every cold child compiled every module again: ~150 ms more per cold figure on this
    # machine, more than the query. The compiled files go to a folder of their own, never
    # into the checkout; the first child (the warm session) writes them.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "kscale-pycache"))
    return env


def _child(checkout: Path, *args: str, timeout: float | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(HERE), *args], env=_env(checkout), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit {proc.returncode}"}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def compact_copy(checkout: Path, src: Path, dst: Path, rows: int) -> dict[str, Any]:
    """Hard-link ``src`` into ``dst`` and compact ``dst`` time-disjoint in a child process;
    the compaction's own cost. The maintenance lock file is copied, not linked (it is written)."""
    for f in src.rglob("*"):
        to = dst / f.relative_to(src)
        if f.is_dir():
            to.mkdir(parents=True, exist_ok=True)
        elif f.name != "maintenance.lock":
            to.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, to)
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kronicler", "compact", "--path", str(dst),
                             "--time-disjoint"], env=_env(checkout), stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    said = proc.stdout.read().strip() if proc.stdout is not None else ""
    if status != 0:
        raise RuntimeError(f"compaction failed ({status}): {said}")
    seconds = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": seconds, "rows_per_s": rows / wall,
            "rows_per_cpu_s": rows / seconds, "peak_rss_mb": usage.ru_maxrss / 1024,
            "said": said}  # fmt: skip


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def entropy_bytes_per_row(streams: list[dict[str, int]], samples: int = 200_000) -> float:
    """The generator's entropy per row (no encoding can average less), in bytes.

    name: the Zipf shares; status: 1% errors; start: each row's jitter is uniform over its step
    (log2(step) bits); duration given the function: the log-normal mixture's differential
    entropy (1 ns bins), by Monte Carlo over its known density.
    """
    p = SHARES
    name = -(p * np.log2(p)).sum()
    status = -(0.01 * np.log2(0.01) + 0.99 * np.log2(0.99))
    rows = sum(s["rows"] for s in streams)
    start = sum(s["rows"] * np.log2(max(1.0, (s["t_hi"] - s["t_lo"]) / s["rows"]))
                for s in streams) / rows  # fmt: skip
    rng = np.random.default_rng(SEED)
    codes = rng.choice(len(FUNCTIONS), samples, p=SHARES)
    mu = np.log(MEDIANS[codes])
    slow = rng.random(samples) < 0.01
    sd_slow = np.sqrt(0.6**2 + 0.5**2)
    y = np.where(slow, mu + np.log(20.0) + sd_slow * rng.standard_normal(samples),
                 mu + 0.6 * rng.standard_normal(samples))  # fmt: skip

    def normal(x: np.ndarray, m: np.ndarray, sd: float) -> np.ndarray:
        return np.exp(-0.5 * ((x - m) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))

    # density of duration d = e^y: f(d) = g(y) / d
    g = 0.99 * normal(y, mu, 0.6) + 0.01 * normal(y, mu + np.log(20.0), sd_slow)
    duration = float(np.mean(-np.log2(g) + y / np.log(2)))
    return float(name + status + start + duration) / 8


class Build:
    """The database of one checkout: closed writers built, the live writer kept open."""

    def __init__(self, checkout: Path, db: Path, rows: int, writers: int, jobs: int) -> None:
        self.checkout, self.db, self.rows = checkout, db, rows
        self.streams = plan_streams(rows, writers)
        self.writers, self.jobs = writers, jobs
        self.live: subprocess.Popen[str] | None = None
        self.figures: dict[str, Any] = {}

    def _spawn(self, stream: dict[str, int], live: bool) -> subprocess.Popen[str]:
        args = [sys.executable, str(HERE), "--child-write", str(self.db), json.dumps(stream)]
        return subprocess.Popen(
            args + (["--live"] if live else []), env=_env(self.checkout), text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip

    def build(self) -> None:
        """Write every closed stream (``jobs`` at a time), then start the live writer."""
        t0 = time.perf_counter()
        pending = list(self.streams[:-1])
        running: list[subprocess.Popen[str]] = []
        results = []
        while pending or running:
            while pending and len(running) < self.jobs:
                running.append(self._spawn(pending.pop(0), live=False))
            proc = running.pop(0)
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"a writer failed (exit {proc.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
        wall = time.perf_counter() - t0
        rows = sum(r["rows"] for r in results)
        busy = sum(r["seconds"] for r in results)
        self.figures["append"] = {
            "rows": rows, "writers": len(results), "jobs": self.jobs,
            "per_process_rows_per_s": rows / busy, "wall_rows_per_s": rows / wall,
        }  # fmt: skip
        self.start_live()
        (self.db / "bench-build.json").write_text(
            json.dumps({"rows": self.rows, "writers": self.writers})
        )

    def start_live(self) -> None:
        self.live = self._spawn(self.streams[-1], live=True)
        assert self.live.stdout is not None
        line = self.live.stdout.readline()
        if not line:
            raise SystemExit("the live writer failed")
        self.figures["live_writer"] = json.loads(line)

    def close_live(self) -> None:
        if self.live is None:
            return
        out, _ = self.live.communicate("close\n")
        self.live = None
        self.figures["live_writer_closed"] = json.loads(out.strip().splitlines()[-1])


def copy_without_live(src: Path, dst: Path) -> Path:
    """``src`` copied to ``dst`` without the live writer's segment: the newest (segment ids
    begin with their creation time in hex, and the live writer starts after the others)."""
    segments = src / "segments"
    newest = max(f.name[:-5] for f in segments.glob("*.kseg"))
    shutil.copytree(src, dst, ignore=lambda d, names: [x for x in names
                                                       if x.startswith(newest)])  # fmt: skip
    return dst


def query_session(checkout: Path, db: Path, repeat: int) -> dict[str, Any]:
    got: dict[str, Any] = {"warm": _child(checkout, "--child-query", str(db), "warm",
                                          "--repeat", str(repeat))}  # fmt: skip
    for mode in ("cold-all", *(f"cold-range:{label}" for label, _, _ in RANGES), "cold-exact",
                 "cold-slowest"):  # fmt: skip
        got[mode] = _child(checkout, "--child-query", str(db), mode)
    return got


def moving_session(checkout: Path, db: Path, asks: int, step_ns: int) -> dict[str, Any]:
    return _child(checkout, "--child-query", str(db), f"moving:{asks}:{step_ns}")


def print_moving(cols: dict[str, dict[str, Any]], asks: int, step_ns: int) -> None:
    print(f"\n== moving windows: {asks} asks, each window {step_ns / 1e9:g} s later than the "
          "one before (after one ask that loads the range's pages); wall / CPU ms ==")  # fmt: skip
    print(f"{'range':<8}" + "".join(f"{k:>44}" for k in cols))
    for label, _, _ in RANGES[:-1]:
        cells = []
        for got in cols.values():
            r = got.get(f"moving:{label}", {})
            cells.append(f"median {r.get('median_ms', float('nan')):6.1f} / "
                         f"{r.get('median_cpu_ms', float('nan')):5.1f}, max "
                         f"{r.get('max_ms', float('nan')):6.1f} / "
                         f"{r.get('max_cpu_ms', float('nan')):5.1f}")  # fmt: skip
        print(f"{label:<8}" + "".join(f"{c:>44}" for c in cells))


def export_parquet(streams: list[dict[str, int]], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = pa.array(FUNCTIONS)
    schema = pa.schema([("name", pa.dictionary(pa.int32(), pa.string())), ("start", pa.int64()),
                        ("duration", pa.int64()), ("status", pa.int8())])  # fmt: skip
    with pq.ParquetWriter(out, schema, compression="zstd") as w:
        for stream in streams:
            for block in blocks(stream):
                name = pa.DictionaryArray.from_arrays(pa.array(block["codes"], pa.int32()), names)
                w.write_table(
                    pa.table(
                        [name, block["start"], block["duration"], block["status"].astype(np.int8)],
                        schema=schema,
                    )
                )


def build_duckdb(streams: list[dict[str, int]], workdir: Path, memory: str) -> dict[str, Any]:
    import duckdb

    workdir.mkdir(parents=True, exist_ok=True)
    parquet = workdir / "spans.parquet"
    t = time.perf_counter()
    if not parquet.exists():
        export_parquet(streams, parquet)
    t_parquet = time.perf_counter() - t
    db = workdir / "spans.duckdb"
    t = time.perf_counter()
    if not db.exists():
        con = duckdb.connect(str(db))
        con.execute(f"SET memory_limit='{memory}'")
        con.execute("SET threads=2")
        con.execute(f"CREATE TABLE spans AS SELECT name::VARCHAR AS name, start, duration, "
                    f"status FROM read_parquet('{parquet}')")  # fmt: skip
        con.close()
    return {"parquet_bytes": parquet.stat().st_size, "duckdb_bytes": db.stat().st_size,
            "parquet_seconds": t_parquet, "load_seconds": time.perf_counter() - t}  # fmt: skip


# -- report --------------------------------------------------------------------------------------
def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1e3:.2f} s" if v >= 1000 else f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"


def _cold(got: dict[str, Any], mode: str, which: str = "") -> float | None:
    """A cold figure: open and first answer (``which`` "cpu_ms": their CPU time)."""
    r = got.get(mode, {})
    if "error" in r:
        return None
    return float(r[which]) if which else r["open_ms"] + r["first_ms"]


def _warm(got: dict[str, Any], key: str, which: str = "warm_ms") -> float | None:
    r = got.get("warm", {}).get(key)
    return None if not r or "error" in r else r[which]


def table(columns: dict[str, dict[str, Any]], duck: dict[str, Any] | None) -> str:
    rows: list[tuple[str, ...]] = []
    heads = [*columns, *(["duckdb"] if duck else [])]

    def line(label: str, values: list[float | None], duck_v: float | None = None) -> None:
        rows.append((label, *(_fmt_ms(v) for v in values),
                     *([_fmt_ms(duck_v)] if duck else [])))  # fmt: skip

    def dk(key: str, which: str = "warm_ms") -> float | None:
        r = (duck or {}).get(key)
        return None if not r or "error" in r else r[which]

    line(
        "cold open + stats() all",
        [_cold(g, "cold-all") for g in columns.values()],
        None if not duck else (duck.get("open_ms", 0) + (dk("stats_all", "first_ms") or 0)),
    )
    line("  ... CPU", [_cold(g, "cold-all", "cpu_ms") for g in columns.values()])
    line("warm stats() all", [_warm(g, "stats_all") for g in columns.values()], dk("stats_all"))
    # CPU beside wall time: on a shared machine the wall time is mostly waiting for a core
    line("  ... CPU", [_warm(g, "stats_all", "warm_cpu_ms") for g in columns.values()])
    for label, _, _ in RANGES:
        line(
            f"warm stats(since, until) {label}",
            [_warm(g, f"range:{label}") for g in columns.values()],
            dk(f"range:{label}"),
        )
        line("  ... CPU", [_warm(g, f"range:{label}", "warm_cpu_ms") for g in columns.values()])
        line(
            f"cold stats(since, until) {label}",
            [_cold(g, f"cold-range:{label}") for g in columns.values()],
            dk(f"range:{label}", "first_ms"),
        )
        line("  ... CPU", [_cold(g, f"cold-range:{label}", "cpu_ms") for g in columns.values()])
    line(
        f"stats({ONE_PERCENT}, exact) warm",
        [_warm(g, "exact") for g in columns.values()],
        dk("exact"),
    )
    line("  ... cold", [_cold(g, "cold-exact") for g in columns.values()], dk("exact", "first_ms"))
    line(
        f"slowest({ONE_PERCENT}) warm",
        [_warm(g, "slowest") for g in columns.values()],
        dk("slowest"),
    )
    line(
        "  ... cold",
        [_cold(g, "cold-slowest") for g in columns.values()],
        dk("slowest", "first_ms"),
    )
    line("warm functions()", [_warm(g, "functions") for g in columns.values()])
    rss = [g.get("warm", {}).get("rss_mb", {}).get("VmHWM") for g in columns.values()]
    rows.append(
        (
            "reader peak RSS (warm session)",
            *(f"{v:.0f} MB" if v else "-" for v in rss),
            *([f"{duck.get('rss_mb', {}).get('VmHWM', 0):.0f} MB"] if duck else []),
        )
    )
    widths = [max(len(r[i]) for r in [("", *heads), *rows]) for i in range(len(heads) + 1)]
    out = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in
                     enumerate(zip(("", *heads), widths, strict=True)))]  # fmt: skip
    for r in rows:
        out.append("  ".join(c.rjust(w) if i else c.ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))))  # fmt: skip
    return "\n".join(out)


def agreement(got: dict[str, Any], duck: dict[str, Any]) -> list[str]:
    """Differences between Kronicler's per-function counts and DuckDB's (none expected)."""
    problems = []
    warm = got.get("warm", {})
    for label, counts in duck.get("check", {}).items():
        mine = warm.get("check", {}).get(label)
        if mine is not None and mine != counts:
            bad = sorted(k for k in set(mine) | set(counts) if mine.get(k) != counts.get(k))
            problems.append(
                f"counts over {label} differ for {len(bad)} function(s), e.g. "
                f"{bad[0]}: {mine.get(bad[0])} vs duckdb {counts.get(bad[0])}"
            )
    ex, dex = warm.get("exact_result"), duck.get("exact_result")
    if ex and dex and (ex["count"] != dex["count"] or ex["max"] != dex["max"]):
        problems.append(f"exact stats differ: {ex} vs duckdb {dex}")
    sl, dsl = warm.get("slowest_result"), duck.get("slowest_result")
    if sl is not None and dsl is not None and sl != dsl:
        problems.append(f"slowest durations differ: {sl} vs duckdb {dsl}")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=parse_count, default=parse_count("100M"))
    ap.add_argument("--dir", type=Path, help="where to build (default: a new temporary folder)")
    ap.add_argument("--reuse", type=Path, metavar="DIR", help="query DIR, built earlier; no build")
    ap.add_argument("--keep", action="store_true", help="keep the folder (default with --dir)")
    ap.add_argument("--save", type=Path, metavar="FILE",
                    help="where the figures go (default: the built folder's bench-results.json; "
                    "with --reuse, a new file in the temporary folder: the reused one is only "
                    "read)")  # fmt: skip
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2, help="writers running at once")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--checkout",
        type=Path,
        default=REPO,
        help="the checkout whose code builds and answers (default: this one)",
    )
    ap.add_argument("--compare", type=Path, metavar="CHECKOUT",
                    help="also ask the questions with this checkout's code")  # fmt: skip
    ap.add_argument(
        "--compare-build",
        action="store_true",
        help="build a second database with the --compare checkout's writer",
    )
    ap.add_argument(
        "--live-copy",
        action="store_true",
        help="with --reuse: copy DIR's database without its live writer's segment (the newest) "
        "to a temporary folder and reopen that writer there, so the live case runs too",
    )
    ap.add_argument("--moving", type=int, metavar="N",
                    help="with --reuse: only ask N windows moving by --step each (0.1%%, 25%%, "
                    "57%%) and print their median and max")  # fmt: skip
    ap.add_argument("--step", type=float, default=7.919, help="seconds a moving window moves")
    ap.add_argument("--compact", type=Path, metavar="COPY",
                    help="with --reuse: compact a hard-linked copy of DIR time-disjoint in COPY, "
                    "then ask both (see above)")  # fmt: skip
    ap.add_argument("--no-duckdb", action="store_true")
    ap.add_argument("--duckdb-memory", default="6GB")
    ap.add_argument("--duckdb-timeout", type=float, default=300.0, help="seconds per query")
    args = ap.parse_args()

    reuse = args.reuse is not None
    if args.compact is not None and not reuse:
        ap.error("--compact COPY needs --reuse DIR")
    if args.moving is not None:
        if not reuse or args.moving < 1:
            ap.error("--moving N needs N >= 1 and --reuse DIR")
        step_ns = int(args.step * 1e9)
        checkouts = {"this": args.checkout}
        if args.compare is not None:
            checkouts[f"compare ({args.compare.name})"] = args.compare
        print(f"load average {os.getloadavg()[0]:.1f} (a shared machine: compare columns of "
              "one run)")  # fmt: skip
        moving = {k: moving_session(c, args.reuse / "db", args.moving, step_ns)
                  for k, c in checkouts.items()}  # fmt: skip
        print_moving(moving, args.moving, step_ns)
        if args.save is not None:
            args.save.write_text(json.dumps(moving, indent=1))
        return
    root = args.reuse or args.dir or Path(tempfile.mkdtemp(prefix="kscale-"))
    root.mkdir(parents=True, exist_ok=True)
    if reuse:
        info = json.loads((root / "db" / "bench-build.json").read_text())
        args.rows, args.writers = info["rows"], info["writers"]
    n = args.rows
    print(
        f"rows: {n:,} in {args.writers} closed writers + 1 live; folder {root}; "
        f"code of {args.checkout}"
    )
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} (a shared machine: compare columns of one run)"
    )
    print(
        f"function with ~1% of the calls: {ONE_PERCENT} "
        f"({SHARES[FUNCTIONS.index(ONE_PERCENT)] * 100:.2f}%)"
    )
    builds = {"this": Build(args.checkout, root / "db", n, args.writers, args.jobs)}
    if args.compare is not None and args.compare_build:
        builds["compare"] = Build(args.compare, root / "db-compare", n, args.writers, args.jobs)
    results: dict[str, Any] = {"rows": n, "writers": args.writers}
    copy = None
    if reuse and args.live_copy:
        copy = Path(tempfile.mkdtemp(prefix="kscale-live-"))
        builds["this"].db = copy_without_live(root / "db", copy / "db")
        print(f"live case on a copy in {copy}: the newest day written again by a live writer")
        builds["this"].start_live()
    if args.compact is not None:
        compacted = args.compact / "db"
        if compacted.exists():
            print(f"[compacted] {compacted} exists: asked as it is")
        else:
            got = compact_copy(args.checkout, root / "db", compacted, n)
            results["compaction"] = got
            print(f"[compacted] {got['said']}: {got['wall_s']:.0f} s wall, {got['cpu_s']:.0f} s "
                  f"CPU, {got['rows_per_s']:,.0f} rows/s ({got['rows_per_cpu_s']:,.0f} per CPU "
                  f"second), peak RSS {got['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
        builds["compacted"] = Build(args.checkout, compacted, n, args.writers, args.jobs)
    try:
        for key, b in builds.items():
            if reuse and (b.db / "bench-build.json").exists():
                continue  # its live writer closed with the run that built it
            t = time.perf_counter()
            b.build()
            size = dir_bytes(b.db)
            a = b.figures["append"]
            print(
                f"[{key}] built in {time.perf_counter() - t:.0f} s: append "
                f"{a['per_process_rows_per_s']:,.0f} rows/s per writer process, "
                f"{a['wall_rows_per_s']:,.0f} rows/s overall ({args.jobs} at a time); "
                f"{size / n:.2f} B/row on disk with the live writer open",
                flush=True,
            )
            results[f"build:{key}"] = b.figures | {"bytes_live": size}
        duck = None
        if not args.no_duckdb:
            t = time.perf_counter()
            try:
                info = build_duckdb(builds["this"].streams, root / "duckdb", args.duckdb_memory)
                print(
                    f"[duckdb] Parquet {info['parquet_bytes'] / n:.2f} B/row, native table "
                    f"{info['duckdb_bytes'] / n:.2f} B/row, ready in "
                    f"{time.perf_counter() - t:.0f} s",
                    flush=True,
                )
                results["duckdb_build"] = info
            except Exception as exc:
                print(f"[duckdb] cannot build: {type(exc).__name__}: {exc}")
                args.no_duckdb = True
        for case in ("live", "closed"):
            if case == "closed":
                for b in builds.values():
                    b.close_live()
                results["bytes_per_row_closed"] = {k: dir_bytes(b.db) / n
                                                   for k, b in builds.items()}  # fmt: skip
            elif all(b.live is None for b in builds.values()):
                print(
                    "live case skipped: the database was built earlier and its live writer "
                    "closed with it (--reuse)"
                )
                continue
            cols: dict[str, dict[str, Any]] = {}
            cols["this"] = query_session(args.checkout, builds["this"].db, args.repeat)
            if "compacted" in builds:
                cols["compacted"] = query_session(args.checkout, builds["compacted"].db,
                                                  args.repeat)  # fmt: skip
            if args.compare is not None:
                db = builds.get("compare", builds["this"]).db
                cols[f"compare ({args.compare.name})"] = query_session(
                    args.compare, db, args.repeat
                )
            results[case] = cols
            if case == "closed" and not args.no_duckdb:
                duck = _child(REPO, "--child-duckdb", str(root / "duckdb"), args.duckdb_memory,
                              "--repeat", str(args.repeat), "--timeout",
                              str(args.duckdb_timeout))  # fmt: skip
                results["duckdb"] = duck
            what = "one writer still open" if case == "live" else "every writer closed"
            print(f"\n== {case} case ({what}) ==")
            for key, got in cols.items():
                errors = {m: r["error"] for m, r in got.items() if "error" in r}
                errors |= {f"warm {m}": r["error"] for m, r in got.get("warm", {}).items()
                           if isinstance(r, dict) and "error" in r}  # fmt: skip
                for m, e in errors.items():
                    print(f"[{key}] {m} failed: {e}")
                if errors and key != "this" and not args.compare_build:
                    print(f"[{key}] if that checkout cannot read this database's format, "
                          "add --compare-build to build one with its own writer")  # fmt: skip
            print(table(cols, duck if case == "closed" else None))
            if case == "closed" and duck is not None:
                print("(duckdb: 'cold' is its first run after connecting, in one process)")
            if duck is not None and case == "closed":
                for key, got in cols.items():
                    problems = agreement(got, duck)
                    print(
                        f"[{key}] agrees with duckdb: "
                        f"{'yes' if not problems else '; '.join(problems)}"
                    )
        entropy = entropy_bytes_per_row(builds["this"].streams)
        results["entropy_bytes_per_row"] = entropy
        for key in builds:
            print(f"[{key}] {results['bytes_per_row_closed'][key]:.2f} B/row on disk, closed "
                  f"(the rows' entropy: {entropy:.2f} B/row)")  # fmt: skip
    finally:
        for b in builds.values():
            b.close_live()
        if copy is not None:
            shutil.rmtree(copy)
    # a reused folder (and the one a live copy was made from) is only read
    saved = args.save
    if saved is None:
        saved = (Path(tempfile.mkstemp(prefix="kscale-", suffix=".json")[1]) if reuse
                 else root / "bench-results.json")  # fmt: skip
    saved.write_text(json.dumps(results, indent=1))
    print(f"\nfigures saved in {saved}")
    if not (args.keep or args.dir or reuse):
        shutil.rmtree(root)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-write":
        child_write(sys.argv[2], json.loads(sys.argv[3]), "--live" in sys.argv[4:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-query":
        child_query(sys.argv[2], sys.argv[3], int(sys.argv[5]) if len(sys.argv) > 5 else 5)
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-duckdb":
        child_duckdb(sys.argv[2], sys.argv[3], int(sys.argv[5]), float(sys.argv[7]))
    else:
        main()
