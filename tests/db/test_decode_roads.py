"""Answers that decode cut chunks equal brute force on both decoding roads (C loop and Python).

Stories: several writers whose time ranges overlap, small chunks whose column pages are cut into
blocks of a few rows (``chunk.BLOCK_ROWS`` made small), and a live writer's tail; time ranges
that cut chunks (a range asked once and then moved, so the chunks' slices are read too), exact
statistics and the slowest calls of one function: counts, errors, min and max exact, quantiles
within the summaries' 1% (exact ones exact), and the two roads' answers identical.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kronicler.db import Database, chunk, codec
from kronicler.db.stats import DEFAULT_QUANTILES, Stats

BASE_NS = 1_700_000_000_000_000_000
FUNCTIONS = [f"f{i}" for i in range(6)]


def _rows(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(FUNCTIONS) + 1)
    names = np.array(FUNCTIONS)[rng.choice(len(FUNCTIONS), n, p=p / p.sum())]
    duration = rng.lognormal(np.log(1e6), 1.5, n).astype(np.int64)
    duration[rng.random(n) < 0.05] = rng.choice([0, 1 << 40, (1 << 62) - 1])
    # overlapping writers: each spans the same hours, with its own jitter
    start = BASE_NS + np.sort(rng.integers(0, 3600 * 10**9, n)) + seed
    status = np.where(rng.random(n) < 0.1, 2, 0).astype(np.uint8)
    return {"names": names, "start": start, "duration": duration, "status": status}


@pytest.fixture(params=["c", "python"])
def road(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "c" and not codec.ACCELERATED:
        pytest.skip("the C decoding loop is not built")
    if request.param == "python":
        monkeypatch.setattr(codec, "_fast", None)
    monkeypatch.setattr(chunk, "BLOCK_ROWS", 16)  # pages of ~10 blocks
    yield request.param


def _build(path: Path) -> tuple[Database, dict[str, np.ndarray]]:
    """Three closed segments and a live one (sealed chunks and a tail); the rows written."""
    written = []
    for seed, n in enumerate((700, 450, 900)):
        db = Database(path, chunk_rows=150)
        rows = _rows(n, seed)
        db.append(list(rows["names"]), rows["start"], rows["duration"], status=rows["status"])
        db.close()
        written.append(rows)
    live = Database(path, chunk_rows=150)
    rows = _rows(520, 7)  # 3 sealed chunks and a tail of 70 rows
    live.append(list(rows["names"]), rows["start"], rows["duration"], status=rows["status"])
    live.flush()
    written.append(rows)
    return live, {c: np.concatenate([w[c] for w in written]) for c in written[0]}


def _check(got: Stats, durations: np.ndarray, errors: int, *, exact: bool) -> None:
    want = np.sort(durations)
    n = len(want)
    assert (got.count, got.errors) == (n, errors)
    if not n:
        return
    assert (got.min, got.max) == (float(want[0]), float(want[-1]))
    for q in DEFAULT_QUANTILES:
        truth = float(want[int(math.floor(q * (n - 1)))])
        if exact:
            assert got.quantile(q) == truth, q
        else:
            assert got.quantile(q) == pytest.approx(truth, rel=0.01), q


def _answers(db: Database, rows: dict[str, np.ndarray]) -> list[object]:
    """Every answer asked, checked against brute force; returned for the roads' comparison."""
    out: list[object] = []
    span = int(rows["start"].max() - rows["start"].min())
    t0 = int(rows["start"].min())
    for a, b in ((0.1, 0.35), (0.4, 0.41), (0.0, 1.0), (0.23, 0.8)):
        since, until = t0 + int(a * span), t0 + int(b * span) + 1
        for shift in (0, 10**9 + 7, 2 * 10**9 + 13):  # asked, then moved (the slices' road)
            lo, hi = since + shift, until + shift
            got = db.stats(since=lo, until=hi)
            inside = (rows["start"] >= lo) & (rows["start"] < hi)
            for name in FUNCTIONS:
                m = inside & (rows["names"] == name)
                errors = int(np.count_nonzero(rows["status"][m] == 2))
                _check(got.get(name, Stats.empty(name)), rows["duration"][m], errors, exact=False)
            out.append({k: v.to_dict() for k, v in sorted(got.items())})
    for name in ("f0", "f3"):
        m = rows["names"] == name
        errors = int(np.count_nonzero(rows["status"][m] == 2))
        one = db.stats(name, exact=True)
        _check(one, rows["duration"][m], errors, exact=True)
        out.append(one.to_dict())
        slow = db.slowest(name, k=7)
        idx = np.flatnonzero(m)
        want = idx[np.lexsort((rows["start"][idx], -rows["duration"][idx]))][:7]
        assert [(c.start, c.duration) for c in slow] == [
            (int(rows["start"][i]), int(rows["duration"][i])) for i in want
        ]
        out.append([(c.start, c.duration, c.status) for c in slow])
    return out


def _same(a: object, b: object) -> bool:
    """Equal answers: counts and values exactly, means and deviations to float rounding (rows
    of a live writer's chunk and tail may be merged in another order from one read to the
    next)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9)
    return a == b


_seen: dict[str, list[object]] = {}


def test_cut_chunks_exact_and_slowest_equal_brute_force(tmp_path: Path, road: str) -> None:
    live, rows = _build(tmp_path)
    try:
        _seen[road] = _answers(live, rows)
        with Database(tmp_path, readonly=True) as reader:  # a reader of its own: cold
            assert _same(_answers(reader, rows), _seen[road])
    finally:
        live.close()
    if len(_seen) == 2:  # both roads ran: the same answers
        assert _same(_seen["c"], _seen["python"])
