"""Queries over several segments whose local codes disagree, against brute force over the rows.

Every process (and every restart) writes its own segment and numbers its function names,
services and attribute sets in the order it first met them, so the same code means different
texts in different segments. These tests build such databases (restarts capturing different
function sets, a still-open segment with an unsealed tail, small chunks so time windows cut
them) and check each query against numpy over the very rows that were appended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kronicler.db import Database
from kronicler.query import Filter
from kronicler.query import slowest as q_slowest

BASE = 1_700_000_000_000_000_000
ROOT = Path(__file__).resolve().parents[2]


class Rows:
    """Every row appended, kept by the test to answer queries by brute force."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.start: list[int] = []
        self.duration: list[int] = []
        self.service: list[str] = []
        self.attrs: list[str] = []

    def append(self, db: Database, names: list[str], start, duration, service: str, attrs):
        db.append(names, start, duration, service=service, attributes=attrs)
        self.names += names
        self.start += [int(s) for s in start]
        self.duration += [int(d) for d in duration]
        self.service += [service] * len(names)
        self.attrs += [json.dumps(a, sort_keys=True) for a in attrs]

    def arrays(self):
        return (np.array(self.names), np.array(self.start), np.array(self.duration),
                np.array(self.service), np.array(self.attrs))  # fmt: skip

    def slowest(self, name=None, k=10, since=None, until=None) -> list[int]:
        names, start, duration, _, _ = self.arrays()
        mask = np.ones(len(names), bool)
        if name is not None:
            mask &= names == name
        if since is not None:
            mask &= start >= since
        if until is not None:
            mask &= start < until
        return sorted(duration[mask].tolist(), reverse=True)[:k]


def _batch(rng, names: list[str], n: int, t0: int, durations_seen: set[int]):
    picked = [names[i] for i in rng.integers(0, len(names), n)]
    start = t0 + np.arange(n, dtype=np.int64) * 1000
    # distinct durations, so "the k slowest" names exactly one set of rows
    duration: list[int] = []
    while len(duration) < n:
        d = int(rng.integers(1_000, 10_000_000))
        if d not in durations_seen:
            durations_seen.add(d)
            duration.append(d)
    return picked, start, np.array(duration, dtype=np.int64)


@pytest.fixture
def restarted(tmp_path):
    """Three segments: two closed runs with different function sets, one still open."""
    rng = np.random.default_rng(5)
    rows = Rows()
    seen: set[int] = set()
    runs = [
        (["x.slow", "y.fast"], "svc-a", 1300),
        (["y.fast", "z.mid"], "svc-b", 900),  # x.slow absent; y.fast gets another code
    ]
    t0 = BASE
    for names, service, n in runs:
        with Database.open(tmp_path, chunk_rows=256) as db:
            picked, start, duration = _batch(rng, names, n, t0, seen)
            attrs = [{"run": service, "i": int(i % 7)} for i in range(n)]
            rows.append(db, picked, start, duration, service, attrs)
        t0 += n * 1000 + 10_000
    db = Database.open(tmp_path, chunk_rows=256)
    picked, start, duration = _batch(rng, ["z.mid", "w.new", "y.fast"], 700, t0, seen)
    attrs = [{"run": "open", "j": int(i % 3)} for i in range(700)]
    rows.append(db, picked, start, duration, "svc-c", attrs)
    assert db.flush()  # two sealed chunks and an unsealed tail in the open segment
    yield db, rows
    db.close()


@pytest.mark.parametrize("name", ["x.slow", "y.fast", "z.mid", "w.new", None])
def test_slowest_uses_each_segments_own_codes(restarted, name):
    db, rows = restarted
    calls = db.slowest(name, k=7)
    assert [c.duration for c in calls] == rows.slowest(name, k=7)
    names, start, duration, service, attrs = rows.arrays()
    for call in calls:
        i = int(np.flatnonzero(duration == call.duration)[0])
        assert (call.function, call.start, call.service) == (names[i], start[i], service[i])
        assert json.dumps(call.attributes, sort_keys=True) == attrs[i]
        if name is not None:
            assert call.function == name


@pytest.mark.parametrize("name", ["x.slow", "y.fast", "z.mid", None])
def test_slowest_in_windows_that_cut_chunks(restarted, name):
    db, rows = restarted
    _, start, _, _, _ = rows.arrays()
    for lo, hi in [(0.1, 0.9), (0.0, 0.3), (0.45, 0.55), (0.7, 1.0)]:
        since = int(start.min() + lo * (start.max() - start.min()))
        until = int(start.min() + hi * (start.max() - start.min())) + 1
        got = [c.duration for c in db.slowest(name, k=5, since=since, until=until)]
        assert got == rows.slowest(name, k=5, since=since, until=until), (lo, hi)


def test_query_layer_slowest_and_stats_agree_with_brute_force(restarted):
    db, rows = restarted
    names, start, duration, service, _ = rows.arrays()
    slow = q_slowest(db, Filter.make("x.slow"), k=4)
    assert [c.duration for c in slow] == rows.slowest("x.slow", k=4)
    assert {c.function for c in slow} == {"x.slow"}
    stats = db.stats()
    assert sorted(stats) == sorted(set(names.tolist()))
    for fn, st in stats.items():
        d = duration[names == fn]
        assert (st.count, st.min, st.max) == (d.size, d.min(), d.max()), fn
        exact = db.stats(fn, exact=True)
        assert exact.count == d.size and exact.p50 == np.quantile(d, 0.5, method="lower"), fn
    for svc in ("svc-a", "svc-b", "svc-c"):
        got = q_slowest(db, Filter.make(service=svc), k=3)
        want = sorted(duration[service == svc].tolist(), reverse=True)[:3]
        assert [c.duration for c in got] == want, svc


def test_scan_and_summaries_map_every_segments_codes(restarted):
    db, rows = restarted
    names, start, duration, service, attrs = rows.arrays()
    mid = int(np.median(start))
    scan = db.scan(["name", "duration", "service", "attributes"], names=["y.fast"], since=mid)
    got_names = np.array(scan.names)[scan.columns["name"]]
    assert set(got_names.tolist()) == {"y.fast"}
    want = (names == "y.fast") & (start >= mid)
    assert sorted(scan.columns["duration"].tolist()) == sorted(duration[want].tolist())
    by_duration = dict(zip(duration.tolist(), zip(service.tolist(), attrs.tolist(), strict=True),
                           strict=True))  # fmt: skip
    for d, s, a in zip(scan.columns["duration"].tolist(), scan.columns["service"].tolist(),
                       scan.columns["attributes"].tolist(), strict=True):  # fmt: skip
        want_service, want_attrs = by_duration[d]
        assert scan.services[s] == want_service
        assert json.loads(scan.attributes[a]) == json.loads(want_attrs)
    sums = db.summaries(since=mid)
    for fn in set(names.tolist()):
        n = int(((names == fn) & (start >= mid)).sum())
        assert (sums[fn].summary.count if fn in sums else 0) == n, fn


SCRIPT = """
import sys, time
import kronicler

@kronicler.capture(name="x.slow")
def slow():
    time.sleep(0.004)

@kronicler.capture(name="y.fast")
def fast():
    pass

for _ in range(int(sys.argv[1])):
    slow()
for _ in range(50):
    fast()
"""


def test_the_issue_repro_two_captured_runs_then_the_cli(tmp_path):
    """Run a captured script twice (the second run without x.slow), then ask the CLI."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KRONICLER_PATH": str(tmp_path / "db")}
    for slow_calls in ("20", "0"):
        subprocess.run([sys.executable, "-c", SCRIPT, slow_calls], env=env, check=True,
                       timeout=120)  # fmt: skip

    def cli(*args: str) -> list[dict]:
        out = subprocess.run(
            [sys.executable, "-m", "kronicler", *args, "--path", str(tmp_path / "db"), "--json"],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return json.loads(out.stdout)

    fast = cli("slowest", "-f", "y.fast", "-k", "5")
    assert len(fast) == 5 and {c["function"] for c in fast} == {"y.fast"}
    slow = cli("slowest", "-f", "x.slow", "-k", "5")
    assert len(slow) == 5 and {c["function"] for c in slow} == {"x.slow"}
    assert min(c["duration_ns"] for c in slow) >= 4_000_000
