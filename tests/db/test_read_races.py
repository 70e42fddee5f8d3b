"""Readers racing live writers: every query sees one consistent snapshot of each segment.

Writer processes append continuously with small chunks (a chunk seals, and the tail log is
rewritten, every few batches) and a short flush interval, using new function names and new
attribute sets all the time, so chunks, logs and dictionaries change between any two looks at a
segment. A reader loops queries meanwhile (bounded in time): counts must never go down (nothing
is deleted), every text code must resolve, and within one snapshot every query must agree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from kronicler.db import Database
from kronicler.db.reads import SegmentSet
from kronicler.query import Filter
from kronicler.query import stats as q_stats

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 3.0

WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from kronicler.db import Database
    db = Database.open(sys.argv[1], chunk_rows=150, flush_interval=0.005)
    rng = np.random.default_rng(os.getpid())
    i = 0
    print("started", flush=True)
    while True:
        n = int(rng.integers(20, 120))
        names = [f"fn{(i + k) // 100 % 400}" for k in range(n)]
        attrs = [{"u": f"{os.getpid()}-{(i + k) // 3}", "half": (i + k) % 2} for k in range(n)]
        db.append(names, 1_700_000_000_000_000_000 + np.arange(i, i + n) * 1000,
                  rng.integers(1, 10**6, n), attributes=attrs)
        i += n
        time.sleep(0.02)
    """
)


@contextmanager
def writers(path: Path, count: int) -> Iterator[None]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
        )  # fmt: skip
        for _ in range(count)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "started"
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait()


def test_counts_never_decrease_and_attribute_filters_resolve(tmp_path):
    Database.open(tmp_path).close()
    last = 0
    rounds = 0
    with writers(tmp_path, 3), Database.open(tmp_path) as db:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline or rounds < 5:
            total = sum(st.count for st in db.stats().values())
            assert total >= last, f"the count went down: {last} -> {total}"
            last = total
            # An attribute filter reads the attribute dictionaries of every segment.
            table = q_stats(db, Filter.make(attributes={"half": 1}))
            assert sum(r.count for r in table.rows) <= db.scan(["start"]).columns["start"].size
            scan = db.scan(["attributes", "name"])
            assert all(scan.attributes[c] for c in np.unique(scan.columns["attributes"]))
            rounds += 1
    with Database.open(tmp_path) as db:  # the writers are dead: their logs hold the tails
        assert sum(st.count for st in db.stats().values()) >= last > 0


def test_every_query_of_one_snapshot_agrees(tmp_path):
    Database.open(tmp_path).close()
    reads = SegmentSet(tmp_path / "segments", 8 << 20)
    last = 0
    rounds = 0
    with writers(tmp_path, 2):
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline or rounds < 5:
            snap = reads.snapshot()
            assert snap.rows >= last
            last = snap.rows
            time.sleep(0.01)  # let writers seal chunks and rewrite logs under the snapshot
            sums = reads.summaries(snapshot=snap)
            scan = reads.scan(["name", "attributes", "duration"], snapshot=snap)
            assert sum(fs.summary.count for fs in sums.values()) == len(scan) == snap.rows
            names = np.array(scan.names)[scan.columns["name"]]
            for fn, fs in sums.items():
                durations = scan.columns["duration"][names == fn]
                assert fs.summary.count == durations.size and fs.summary.max == durations.max()
            texts = [scan.attributes[c] for c in np.unique(scan.columns["attributes"])]
            assert all(texts)
            slow = reads.slowest(k=3, snapshot=snap)
            assert [c.duration for c in slow] == sorted(scan.columns["duration"])[::-1][:3]
            assert reads.functions(snapshot=snap) == sorted(sums)
            rounds += 1
    reads.close()
