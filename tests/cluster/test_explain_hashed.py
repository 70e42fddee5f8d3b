"""Explain over a cluster where one node stores a near-unique key hashed and another as texts.

Node A holds enough calls with a distinct ``url`` each that its seal stores the key as 64-bit
hashes (``kronicler.db.attr_keys``); node B holds few, stored as texts; both hold ``/hot``, the
value of the slow calls. The frontend merges A's hashes with B's hashed texts, names ``/hot``
in the extra round and must answer exactly as one database holding every call, with the counts
brute force gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from kronicler import query as q
from kronicler.db import Database
from kronicler.db.view import answer
from kronicler.query.explain import Calls
from kronicler.server import Client
from kronicler.server.app import KroniclerServer, ServerOptions
from kronicler.server.frontend import Frontend

BASE_NS = 1_700_000_000_000_000_000
FN = "api.get"


def _rows(
    n: int, hot_every: int, prefix: str, seed: int
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``n`` calls: every ``hot_every``-th on ``/hot`` and slow, the rest on a url of its own
    (a few of them slow too)."""
    rng = np.random.default_rng(seed)
    duration = rng.integers(1_000_000, 2_000_000, n)
    attrs: list[dict[str, Any]] = []
    for i in range(n):
        hot = i % hot_every == 0
        attrs.append({"url": "/hot" if hot else f"/{prefix}/{i}", "shard": int(i % 3)})
        if hot:
            duration[i] = 9_000_000 + i
    duration[rng.choice(n, 3, replace=False)] += 20_000_000
    return duration, attrs


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Database], Database]]:
    work = tmp_path_factory.mktemp("hashed")
    a = _rows(600, 40, "a", 1)
    b = _rows(30, 6, "b", 2)
    start_a = BASE_NS + np.arange(600, dtype=np.int64) * 1000
    start_b = BASE_NS + 500 + np.arange(30, dtype=np.int64) * 1000
    for path, parts in (("a", [(start_a, a)]), ("b", [(start_b, b)]),
                        ("single", [(start_a, a), (start_b, b)])):  # fmt: skip
        with Database.open(work / path, chunk_rows=128) as db:
            for start, (duration, attrs) in parts:
                db.append([FN] * len(start), start, duration, attributes=attrs)
            assert db.flush(30)
    dbs = [Database.open(work / p, readonly=True) for p in ("a", "b")]
    single = Database.open(work / "single", readonly=True)
    try:
        yield dbs, single
    finally:
        for db in (*dbs, single):
            db.close()


def _url_hashed(db: Database) -> bool:
    def hashed(view: Any) -> bool:
        calls = Calls.read(view, FN, None, None).split(5_000_000)
        (vc,) = [v for v in calls.part(BASE_NS, 10**9, 1).values if v.key == "url"]
        return vc.hashes is not None

    return answer(db, hashed)


def test_a_key_hashed_on_one_node_and_not_another_explains_as_one_node(
    nodes: tuple[list[Database], Database],
) -> None:
    dbs, single = nodes
    assert [_url_hashed(db) for db in dbs] == [True, False]  # the case under test
    servers = [KroniclerServer(db, ServerOptions(address="127.0.0.1:0")).start() for db in dbs]
    try:
        with Frontend([s.address for s in servers], timeout=30) as front, \
                KroniclerServer(front, ServerOptions(address="127.0.0.1:0")) as fs, \
                Client(fs.address, timeout=30) as over:  # fmt: skip
            for threshold in ("p95", 5_000_000):
                want = q.explain(single, FN, slow=threshold)
                for got in (front.explain(FN, slow=threshold), over.explain(FN, slow=threshold)):
                    assert got.to_dict() == want.to_dict()
                    assert front.missing_peers() == ()
            e = front.explain(FN, slow=5_000_000)
    finally:
        for s in servers:
            s.stop()
    (hot,) = [f for f in e.attributes if f.key == "url"]
    assert hot.value == "/hot"
    # brute force over the raw rows of both nodes
    da, aa = _rows(600, 40, "a", 1)
    db_, ab = _rows(30, 6, "b", 2)
    d = np.concatenate([da, db_])
    on_hot = np.array([x["url"] == "/hot" for x in aa + ab])
    slow = d > 5_000_000
    assert (hot.slow, hot.baseline) == (int((slow & on_hot).sum()), int((~slow & on_hot).sum()))
    assert hot.examples and all(x.attributes["url"] == "/hot" for x in hot.examples)
