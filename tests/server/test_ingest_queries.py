"""Queries while an ingest worker writes: every answer is brute force over what is stored then.

One client sends OTLP requests one after another (each acknowledged, so stored, before the next)
into real worker processes; meanwhile GetStats is asked over gRPC and of the local query layer,
again and again. A reader sees a prefix of the requests (each refresh follows the workers' tail
logs as they grow), so every answer must equal brute force over the first ``count`` spans sent,
where ``count`` is the total the answer reports; and that total lies between what was
acknowledged before the question and what was sent after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
import numpy as np
import pytest

from kronicler import query
from kronicler.db import Database
from kronicler.query.results import StatsTable
from kronicler.server import Client, KroniclerServer
from kronicler.server.ingest import EXPORT_METHOD
from tests.oracle.truth import exact_quantile
from tests.server.test_ingest import request as otlp_request

NAMES = [f"live.f{i}" for i in range(7)]


@contextmanager
def raw_export(address: str) -> Iterator[Callable[..., bytes]]:
    """OTLP ``Export`` taking and returning serialized bytes."""
    with grpc.insecure_channel(address) as channel:
        yield channel.unary_unary(EXPORT_METHOD, request_serializer=None,
                                  response_deserializer=None)  # fmt: skip


def _check(table: StatsTable, names: list[str], durations: list[int], where: str) -> int:
    """Compare ``table`` with brute force over the first spans sent; returns their number."""
    total = sum(r.count for r in table.rows)
    by_name: dict[str, list[int]] = {}
    for name, d in zip(names[:total], durations[:total], strict=True):
        by_name.setdefault(name, []).append(d)
    got = {r.key: r for r in table.rows}
    assert sorted(got) == sorted(by_name), where
    for name, ds in by_name.items():
        row, values = got[name], np.sort(np.array(ds, dtype=np.int64))
        assert (row.count, row.min, row.max) == (values.size, values[0], values[-1]), where
        assert row.mean == pytest.approx(values.mean(), rel=1e-12), where
        for q, v in row.quantiles:
            assert v == pytest.approx(exact_quantile(values, q), rel=0.01), (where, name, q)
    return total


@pytest.mark.parametrize("fixture", ["served", "served_direct"])
def test_stats_under_a_live_worker_equal_brute_force_over_the_spans_stored_then(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    """Through the server's address (relayed to the workers) and the workers' own port."""
    served: tuple[Database, KroniclerServer] = request.getfixturevalue(fixture)
    db, server = served
    otlp_at = server.otlp_address or server.address
    assert (server.otlp_address is not None) == (fixture == "served_direct")
    rng = np.random.default_rng(3)
    names: list[str] = []  # of every span sent, in order; a span's duration is its id
    durations: list[int] = []
    acked = [0]
    sent = [0]
    done = threading.Event()
    failure: list[BaseException] = []

    def send() -> None:
        try:
            with raw_export(otlp_at) as export:
                first = 1
                for i in range(40):
                    n = int(rng.integers(1, 300))
                    name = NAMES[int(rng.integers(0, len(NAMES) - (i < 20) * 4))]  # new later
                    names.extend([name] * n)
                    durations.extend(range(first, first + n))
                    sent[0] += n
                    export(otlp_request(first, n, name=name).SerializeToString(), timeout=30)
                    acked[0] += n
                    first += n
        except BaseException as exc:  # reported by the test thread
            failure.append(exc)
        finally:
            done.set()

    client = Client(server.address)
    sender = threading.Thread(target=send)
    sender.start()
    seen: list[int] = []
    try:
        while not done.is_set() or len(seen) < 8:
            for ask, where in ((client.stats, "gRPC"), (lambda: query.stats(db), "local")):
                low = acked[0]
                table = ask()
                high = sent[0]
                total = _check(table, names, durations, where)
                assert low <= total <= high, (where, low, total, high)
                seen.append(total)
    finally:
        sender.join()
        client.close()
    assert not failure, failure
    for i in (0, 1):  # what each interface answers only grows
        assert seen[i::2] == sorted(seen[i::2])
    assert len(set(seen)) > 3  # the answers followed the ingest
    assert _check(query.stats(db), names, durations, "end") == sent[0]
