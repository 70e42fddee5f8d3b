"""A small known dataset for query, server and CLI tests: four functions with known behaviour.

- ``shop.fast``: steady ~100 us, service ``api``, route ``/a``;
- ``shop.tail``: ~1 ms but 5% of calls 25x slower (a heavy tail), service ``api``, route ``/b``;
- ``shop.pay``: ~2 ms, 10% errors, service ``worker``, route ``/b`` with status code 500;
- ``shop.search``: ~500 us, 5x slower in the last tenth of the range (a regression), no route.
Everything is deterministic (seeded) and the raw columns are kept for exact comparisons.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from kronicler.db import Database

BASE_NS = 1_700_000_000_000_000_000
SPAN_NS = 100 * 1_000_000_000  # the data covers 100 s


@dataclass
class ShopData:
    names: np.ndarray
    start: np.ndarray
    duration: np.ndarray
    status: np.ndarray
    service: np.ndarray
    route: np.ndarray  # "" = no route attribute
    span_id: np.ndarray

    def mask(self, **eq: object) -> np.ndarray:
        m = np.ones(len(self.names), dtype=bool)
        for k, v in eq.items():
            m &= getattr(self, k) == v
        return m


def make_shop(seed: int = 1) -> ShopData:
    rng = np.random.default_rng(seed)
    parts = []
    for name, n, base, service, route in (
        ("shop.fast", 1500, 100_000, "api", "/a"),
        ("shop.tail", 1500, 1_000_000, "api", "/b"),
        ("shop.pay", 600, 2_000_000, "worker", "/b"),
        ("shop.search", 1000, 500_000, "worker", ""),
    ):
        start = BASE_NS + np.sort(rng.integers(0, SPAN_NS, n))
        dur = (base * rng.lognormal(0.0, 0.1, n)).astype(np.int64)
        if name == "shop.tail":
            dur[rng.random(n) < 0.05] *= 25
        if name == "shop.search":
            dur[start >= BASE_NS + int(SPAN_NS * 0.9)] *= 5
        status = np.where((name == "shop.pay") & (rng.random(n) < 0.1), 2, 1).astype(np.uint8)
        parts.append(
            (
                np.full(n, name, dtype=object),
                start,
                dur,
                status,
                np.full(n, service, dtype=object),
                np.full(n, route, dtype=object),
            )
        )
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    order = np.argsort(cols[1], kind="stable")
    names, starts, durations, statuses, services, routes = (c[order] for c in cols)
    span_id = np.arange(1, len(order) + 1, dtype=np.uint64)
    return ShopData(names, starts, durations, statuses, services, routes, span_id=span_id)


def write_shop(path: Path, data: ShopData, *, chunk_rows: int = 512) -> None:
    """Store ``data`` into a new database at ``path`` (several chunks plus a tail)."""
    from kronicler.db import Database

    attrs: list[dict[str, Any] | None] = []
    for name, route in zip(data.names, data.route, strict=True):
        if not route:
            attrs.append(None)
        elif name == "shop.pay":
            attrs.append({"http.route": route, "http.status_code": 500})
        else:
            attrs.append({"http.route": route})
    db = Database.open(path, chunk_rows=chunk_rows)
    try:
        step = 700
        for i in range(0, len(data.names), step):
            sl = slice(i, i + step)
            db.append(
                data.names[sl].tolist(), data.start[sl], data.duration[sl],
                status=data.status[sl], service=data.service[sl].tolist(),
                trace_id=[(7 << 64) | int(s) for s in data.span_id[sl]],
                span_id=data.span_id[sl], attributes=attrs[sl],
            )  # fmt: skip
        assert db.flush(timeout=30)
    finally:
        db.close()


def lower_quantile(values: np.ndarray, q: float) -> float:
    """The exact quantile Kronicler reports: the value at rank floor(q * (n - 1))."""
    s = np.sort(values)
    return float(s[int(np.floor(q * (len(s) - 1)))])


@pytest.fixture(scope="session")
def shop() -> ShopData:
    return make_shop()


@pytest.fixture(scope="session")
def shop_path(tmp_path_factory: pytest.TempPathFactory, shop: ShopData) -> Path:
    """A database holding the shop dataset, written once per test session (read-only use)."""
    path = tmp_path_factory.mktemp("shop") / "db"
    write_shop(path, shop)
    return path


@pytest.fixture
def shop_db(shop_path: Path) -> Iterator[Database]:
    from kronicler.db import Database

    db = Database.open(shop_path)
    yield db
    db.close()
