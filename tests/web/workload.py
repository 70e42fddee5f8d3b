"""A small shop backend's calls, generated with fixed seeds so tests know every count.

Seven functions over the 50 minutes before ``now``: a parser (fast), a user lookup with a heavy
tail (4% cache misses), a catalogue search that regresses in the last tenth, a card payment that
fails 6% of the time, a page render with one 50 ms stall, the request handler, and a rare e-mail
sender below the anomaly finder's ``min_count``. Every call has a trace id, span id, a service
and attributes, like real captured spans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kronicler.db import Database

MINUTE = 60 * 10**9
SPAN = 50 * MINUTE


@dataclass(frozen=True, slots=True)
class Shop:
    """What was written: counts and errors per function, and the time range."""

    counts: dict[str, int]
    errors: dict[str, int]
    first: int
    last: int
    slowest: dict[str, tuple[int, str]]  # name -> (duration, trace id hex) of its slowest call
    starts: dict[str, np.ndarray]  # name -> start of every call

    def count_since(self, name: str, since: int) -> int:
        return int((self.starts[name] >= since).sum())


def fill(db: Database, now: int, *, requests: int = 3000, seed: int = 11) -> Shop:
    rng = np.random.default_rng(seed)
    start = np.sort(now - SPAN + rng.integers(0, SPAN - 10**9, requests))
    late = start >= now - SPAN // 10  # the last tenth: search regressed

    def lognormal(median_ns: float, sigma: float, n: int) -> np.ndarray:
        return rng.lognormal(np.log(median_ns), sigma, n).astype(np.int64)

    durations = {
        "shop.parse_request": lognormal(40_000, 0.25, requests),
        "shop.load_user": np.where(rng.random(requests) < 0.04, lognormal(9e6, 0.2, requests),
                                   lognormal(300_000, 0.2, requests)),
        "shop.search_catalog": np.where(late, lognormal(2.4e6, 0.15, requests),
                                        lognormal(400_000, 0.15, requests)),
        "shop.charge_card": lognormal(600_000, 0.2, requests),
        "shop.render_page": lognormal(120_000, 0.3, requests),
    }  # fmt: skip
    durations["shop.render_page"][requests // 2] = 50_000_000  # one stall
    total = sum(durations.values()) + lognormal(150_000, 0.2, requests)
    durations["shop.handle_request"] = total
    status = {name: np.zeros(requests, np.uint8) for name in durations}
    status["shop.charge_card"] = np.where(rng.random(requests) < 0.06, 2, 1).astype(np.uint8)
    trace_hi = rng.integers(1, 2**63, requests, dtype=np.uint64)
    trace_lo = rng.integers(1, 2**63, requests, dtype=np.uint64)
    traces = [(int(h) << 64) | int(lo) for h, lo in zip(trace_hi, trace_lo, strict=True)]
    root_span = rng.integers(1, 2**63, requests, dtype=np.uint64)
    counts, errors, slowest, starts = {}, {}, {}, {}
    for name, d in durations.items():
        is_root = name == "shop.handle_request"
        span = root_span if is_root else rng.integers(1, 2**63, requests, dtype=np.uint64)
        attrs = [{"http.route": "/checkout", "http.status_code": 200 if s != 2 else 500}
                 if is_root else {"shop.request": int(i % 97)}
                 for i, s in enumerate(status[name])]  # fmt: skip
        db.append(
            [name] * requests, start + (0 if is_root else 1000), d, status=status[name],
            kind=1 if is_root else 0, service="shop", trace_id=traces, span_id=span,
            parent_span_id=None if is_root else root_span, attributes=attrs,
        )  # fmt: skip
        counts[name] = requests
        starts[name] = start + (0 if is_root else 1000)
        errors[name] = int((status[name] == 2).sum())
        i = int(np.argmax(d))
        slowest[name] = (int(d[i]), f"{traces[i]:032x}")
    rare = 40
    rare_start = np.sort(now - SPAN + rng.integers(0, SPAN, rare))
    db.append(["shop.send_email"] * rare, rare_start, lognormal(20e6, 0.3, rare),
              service="mailer", trace_id=traces[:rare],
              span_id=rng.integers(1, 2**63, rare, dtype=np.uint64))  # fmt: skip
    counts["shop.send_email"], errors["shop.send_email"] = rare, 0
    starts["shop.send_email"] = rare_start
    db.flush()
    return Shop(counts, errors, int(min(start[0], rare_start[0])),
                int(max(start[-1] + 1000, rare_start[-1])), slowest, starts)  # fmt: skip
