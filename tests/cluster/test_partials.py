"""The frontend's batched merges equal the one-summary-at-a-time definitions they batch."""

from __future__ import annotations

import numpy as np
import pytest

from kronicler.db.stats import Stats
from kronicler.db.summary import Summary
from kronicler.query import partials
from kronicler.query.partials import Cells, batch_quantiles, cell_stats, merge_cells

QS = (0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0)


def _values(rng: np.random.Generator, n: int) -> np.ndarray:
    v = (rng.lognormal(12, 1.5, n)).astype(np.int64)
    v[rng.random(n) < 0.1] = 0  # zeros have no bucket
    v[rng.random(n) < 0.05] = 7  # ties
    return v


@pytest.mark.parametrize("table", [0, 10**6], ids=["sorted", "dense"])
@pytest.mark.parametrize("seed", range(5))
def test_merged_cells_equal_merging_each_cell(
    seed: int, table: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both ways of adding bucket counts: sorting the (cell, key) pairs, and a dense table.
    monkeypatch.setattr(partials, "_DENSE_PER_ENTRY", table)
    rng = np.random.default_rng(seed)
    parts: list[Cells] = []
    raw: dict[tuple[str, int], tuple[np.ndarray, int]] = {}
    for _ in range(3):
        keys = tuple(
            sorted(rng.choice(["a", "b", "c", "d"], int(rng.integers(1, 5)), replace=False))
        )
        per_key = 3
        entries = []
        for c in sorted(rng.choice(len(keys) * per_key, int(rng.integers(1, len(keys) * per_key + 1)),
                                   replace=False).tolist()):  # fmt: skip
            v = _values(rng, int(rng.integers(1, 300)))
            if rng.random() < 0.1:
                v[:] = 0  # a cell of only zeros: no buckets at all
            errors = int(rng.integers(0, 5))
            entries.append((c, Summary.from_values(v), errors))
            gid = (keys[c // per_key], c % per_key)
            old = raw.get(gid, (np.empty(0, np.int64), 0))
            raw[gid] = (np.concatenate([old[0], v]), old[1] + errors)
        parts.append(Cells(keys, per_key, tuple(entries)))
    merged = merge_cells(parts)
    assert len(merged.summaries) == len(raw)
    for c, s, errors in merged.summaries:
        values, want_errors = raw[(merged.keys[c // 3], c % 3)]
        want = Summary.from_values(values)
        assert errors == want_errors
        assert (s.count, s.min, s.max, s.zero_count) == (want.count, want.min, want.max,
                                                         want.zero_count)  # fmt: skip
        assert s.keys.tolist() == want.keys.tolist() and s.counts.tolist() == want.counts.tolist()
        assert s.sum == pytest.approx(want.sum, rel=1e-12)
        assert s.m2 == pytest.approx(want.m2, rel=1e-9)
    # Stats rows: the batched quantiles are exactly each summary's own.
    rows = cell_stats(merged, QS, every_cell=True)
    by_id: dict[int, tuple[Summary | None, int]] = {c: (s, e) for c, s, e in merged.summaries}
    for c, row in enumerate(rows):
        summary, e = by_id.get(c, (None, 0))
        assert row == Stats.from_summary(summary, e, key=merged.keys[c // 3], quantiles=QS)


def test_batch_quantiles_of_only_zeros_and_single_values() -> None:
    sums = [Summary.from_values([0, 0, 0]), Summary.from_values([5]), Summary.from_values([0, 9])]
    got = batch_quantiles(sums, QS)
    assert got.tolist() == [s.quantiles(QS) for s in sums]
