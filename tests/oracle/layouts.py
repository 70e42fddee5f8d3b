"""Databases in the shapes deployments make, each with the exact rows written beside it.

``deployment``: one directory written the way a real service fills it —

====  =====================================================  ===================================
lane  writer                                                 shape
====  =====================================================  ===================================
0     a process that forks 2 workers (multiprocessing fork)  6+ segments, rotated at 150 rows
1     2 spawned workers (multiprocessing spawn)              2 segments, 100-row chunks
2, 3  a script run twice (a restart): ``x.slow`` + ``y.fast``  the function set changes between
      then only ``y.fast``                                   segments (issue 8, defect 1)
4     a process SIGKILLed right after a flush                an unsealed tail read from the WAL
5     a process still running, writer open                   an unsealed, live segment
6     a short-lived job 40 days ago                          3 old segments (for retention)
====  =====================================================  ===================================

Chunks are small (50-100 rows) so that every time range cuts chunks. ``compacted`` is a copy
merged by ``Database.compact()`` (same truth); ``disjoint`` a copy whose finished segments
``Database.compact(time_disjoint=True)`` rewrote as time-disjoint segments of 400 rows (same
truth); ``retained`` is a copy after
``Database.retain(max_age_ns=30 days)``: its truth is the deployment's minus lane 6, the only
segments older than the cut-off.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kronicler.db import Database
from tests.oracle.truth import Rows, generate

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400 * 1_000_000_000
HOUR = 3600 * 1_000_000_000
#: The recent data: one hour, starting two days ago (whole seconds, so the CLI can say it).
NOW = time.time_ns()
BASE = (NOW - 2 * DAY) // 1_000_000_000 * 1_000_000_000
OLD_BASE = BASE - 38 * DAY


@dataclass
class Layout:
    """A database directory and the exact rows it must answer about."""

    name: str
    path: Path
    truth: Rows
    holders: list[subprocess.Popen[str]] = field(default_factory=list)
    #: Segment ids each writer left (by writer label), to know what retention must delete.
    segments: dict[str, set[str]] = field(default_factory=dict)

    def stop(self) -> None:
        """Kill writers still holding the database open (they never close it)."""
        for proc in self.holders:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
            if proc.stdin is not None:
                proc.stdin.close()
            if proc.stdout is not None:
                proc.stdout.close()


def writer_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONICLER_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def write(path: Path, rows: Rows, work: Path, label: str, *, hold: bool = False,
          **options: object) -> subprocess.Popen[str] | None:  # fmt: skip
    """Run one writer process over ``rows`` (see ``tests/oracle/writer.py`` for ``options``)."""
    rows_file = work / f"{label}.npz"
    rows.save(rows_file)
    cmd = [sys.executable, "-m", "tests.oracle.writer", "--path", str(path), "--rows",
           str(rows_file)]  # fmt: skip
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    if hold:
        cmd += ["--then", "hold"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=writer_env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"writer {label} did not get ready: {line!r}"
        return proc
    done = subprocess.run(cmd, cwd=ROOT, env=writer_env(), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    killed = options.get("then") == "kill"
    want = -9 if killed else 0
    assert done.returncode == want, f"writer {label}: exit {done.returncode}\n{done.stderr}"
    return None


def segment_ids(path: Path) -> set[str]:
    return {p.stem for p in (path / "segments").glob("*.kseg")}


def build_deployment(work: Path) -> Layout:
    rng = np.random.default_rng(8)
    path = work / "deployment"
    parts = {
        "fork": generate(rng, 1200, ["app.a", "app.shared", "app.tail"], base=BASE, span=HOUR,
                         services=["api", "api-canary"], tail=["app.tail"], lane=0),
        "spawn": generate(rng, 600, ["job.b", "app.shared"], base=BASE, span=HOUR,
                          services=["worker"], lane=1),
        "run1": generate(rng, 400, ["x.slow", "y.fast"], base=BASE, span=HOUR // 2,
                         services=["cron"], lane=2),
        "run2": generate(rng, 300, ["y.fast"], base=BASE + HOUR // 2, span=HOUR // 2,
                         services=["cron"], lane=3),
        "killed": generate(rng, 500, ["kill.d", "app.shared"], base=BASE, span=HOUR,
                           services=["api"], lane=4),
        "held": generate(rng, 300, ["open.e", "app.a"], base=BASE, span=HOUR,
                         services=["worker", ""], lane=5),
        "old": generate(rng, 300, ["old.f"], base=OLD_BASE, span=HOUR, services=["cron"],
                        lane=6),
    }  # fmt: skip
    # x.slow is much slower than y.fast, so a slowest list that mixes them up is plain to see.
    run1 = parts["run1"]
    run1.duration[run1.name == "x.slow"] += 50_000_000
    plan: list[tuple[str, dict[str, object]]] = [
        ("fork", {"mode": "fork", "workers": 2, "chunk_rows": 64, "segment_rows": 150}),
        ("spawn", {"mode": "spawn", "workers": 2, "chunk_rows": 100}),
        ("run1", {"chunk_rows": 50}),
        ("run2", {"chunk_rows": 50}),
        ("killed", {"chunk_rows": 64, "batches": 5, "then": "kill"}),
        ("old", {"chunk_rows": 64, "segment_rows": 100, "batches": 6}),
        ("held", {"chunk_rows": 64, "batches": 3, "hold": True}),
    ]
    layout = Layout("deployment", path, Rows.concat(list(parts.values())))
    for label, options in plan:
        before = segment_ids(path) if path.exists() else set()
        proc = write(path, parts[label], work, label, **options)  # type: ignore[arg-type]
        if proc is not None:
            layout.holders.append(proc)
        layout.segments[label] = segment_ids(path) - before
    assert len(layout.segments["old"]) >= 2, layout.segments
    assert len(layout.segments["fork"]) >= 6, layout.segments
    return layout


def build_compacted(deployment: Layout, work: Path) -> Layout:
    path = work / "compacted"
    shutil.copytree(deployment.path, path)
    with Database.open(path) as db:
        merged = db.compact()
    assert merged >= 2, f"compaction merged {merged} segments"
    return Layout("compacted", path, deployment.truth)


def build_disjoint(deployment: Layout, work: Path) -> Layout:
    """A copy after the time-disjoint compaction, in outputs of 400 rows: many of them, so
    every time range starts and ends inside one."""
    path = work / "disjoint"
    shutil.copytree(deployment.path, path)
    with Database.open(path) as db:
        merged = db.compact(time_disjoint=True, output_rows=400)
    assert merged >= 2, f"compaction merged {merged} segments"
    return Layout("disjoint", path, deployment.truth)


def build_retained(deployment: Layout, work: Path) -> Layout:
    path = work / "retained"
    shutil.copytree(deployment.path, path)
    with Database.open(path) as db:
        removed = db.retain(max_age_ns=30 * DAY)
    old = deployment.segments["old"]
    assert removed == len(old), f"retention removed {removed} segments, want the old job's {old}"
    assert not old & segment_ids(path)
    truth = deployment.truth
    return Layout("retained", path, truth.take(np.flatnonzero(truth.start >= BASE)))
