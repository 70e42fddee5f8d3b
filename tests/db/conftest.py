from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from kronicler.errors import CorruptPageError

BASE_NS = 1_700_000_000_000_000_000


def make_rows(n: int, *, seed: int = 0, functions: int = 5, base: int = BASE_NS) -> dict:
    """A realistic batch: Zipf-like names, lognormal durations, increasing starts, real ids."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, functions + 1)
    p /= p.sum()
    names = [f"app.f{i}" for i in rng.choice(functions, n, p=p)]
    start = base + np.arange(n, dtype=np.int64) * 1000 + rng.integers(0, 1000, n)
    duration = rng.lognormal(np.log(1e6), 1.0, n).astype(np.int64)
    status = np.where(rng.random(n) < 0.05, 2, 0).astype(np.uint8)
    trace = rng.integers(1, 2**63, n, dtype=np.uint64)
    span = rng.integers(1, 2**63, n, dtype=np.uint64)
    parent = np.where(rng.random(n) < 0.5, np.roll(span, 1), 0).astype(np.uint64)
    return {
        "names": names,
        "start_unix_nano": start,
        "duration_ns": duration,
        "status": status,
        "trace_id": [int(t) << 64 | int(t) for t in trace],
        "span_id": span,
        "parent_span_id": parent,
        "service": "checkout",
        "attributes": [{"route": f"/r{i % 3}"} for i in range(n)],
    }


@pytest.fixture
def rows():
    return make_rows


def damage_outcomes(
    data: bytes, decode: Callable[[bytes], object], seed: int, tries: int = 300
) -> dict[str, int]:
    """Decode ``tries`` copies of ``data``, each with 1-3 random bytes replaced, and count
    which decoded and which raised CorruptPageError; any other exception escapes."""
    rng = np.random.default_rng(seed)
    outcomes = {"decoded": 0, "corrupt": 0}
    for _ in range(tries):
        bad = bytearray(data)
        for at in rng.integers(0, len(bad), int(rng.integers(1, 4))):
            bad[int(at)] = int(rng.integers(0, 256))
        try:
            decode(bytes(bad))
            outcomes["decoded"] += 1
        except CorruptPageError:
            outcomes["corrupt"] += 1
    return outcomes
