"""Three nodes behind a frontend answer exactly as one node holding all the data.

Spans are built with the OpenTelemetry SDK (explicit times, statuses, kinds, attributes, two
services) and exported with the stock OTLP/gRPC exporter to three real Kronicler servers, routed
by trace id as the Collector's loadbalancing exporter routes them, and, whole, to a fourth
server (the single node). Every question is asked of the frontend (directly, through its gRPC
server and through the CLI) and must equal the brute force over the spans (tests/oracle/truth.py)
and the single node's answer. Then peers fail: a SIGKILLed node and a SIGSTOPped one are named in
the answer, which holds exactly the other nodes' data and comes back within its deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from kronicler import query as q
from kronicler.db import Database
from kronicler.db.schema import canonical_attributes
from kronicler.errors import NotFoundError, UnavailableError
from kronicler.otel.contract import resource_text
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.proto.v1 import query_pb2_grpc as pb_grpc
from kronicler.query.backend import QueryBackend
from kronicler.query.local import Local
from kronicler.server import Client, KroniclerServer, ServerOptions
from kronicler.server.frontend import Frontend
from tests.cluster.nodes import Fed, Providers, fed_cluster, shard_of, spawn_node, stored
from tests.contracts.test_query_backend import plain, same
from tests.oracle.truth import (
    Query,
    Rows,
    check_exact_histogram,
    check_table,
    expected_functions,
    expected_series_counts,
    expected_slowest,
    expected_stats,
    mask,
)

BASE = 1_795_000_000_000_000_000
NAMES = ("api.get", "api.put", "db.query", "cache.get", "render.page")
SERVICES = ("web", "worker")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cluster(Fed):
    truth: Rows


def _emit(providers: dict[str, TracerProvider], rng: np.random.Generator, n: int) -> Rows:
    """``n`` spans with explicit times in traces of 1-4 spans; returns their rows."""
    kinds = list(SpanKind)
    cols: dict[str, list[Any]] = {f: [] for f in Rows.FIELDS}
    start = BASE
    i = 0
    while i < n:
        service = SERVICES[int(rng.integers(0, 2))]
        tracer = providers[service].get_tracer("cluster")
        parent_ctx, parent_id = None, 0
        for depth in range(int(rng.integers(1, 5))):
            name = NAMES[int(rng.integers(0, len(NAMES)))]
            start += int(rng.integers(1, 4_000_000))
            duration = int(rng.lognormal(13, 0.7))
            if name == "db.query" and rng.random() < 0.05:
                duration *= 40  # a heavy tail for anomalies to find
            kind = kinds[int(rng.integers(0, len(kinds)))]
            attrs: dict[str, Any] = {"route": ["/a", "/b", "/c"][i % 3]}
            if i % 4 == 0:
                attrs["code"] = 500 if i % 8 else 200
            status = int(rng.choice([0, 1, 2], p=[0.6, 0.3, 0.1]))
            span = tracer.start_span(name, context=parent_ctx, kind=kind, attributes=attrs,
                                     start_time=start)  # fmt: skip
            if status:
                span.set_status(Status(StatusCode.ERROR if status == 2 else StatusCode.OK))
            span.end(end_time=start + duration)
            sc = span.get_span_context()
            cols["name"].append(name)
            cols["start"].append(start)
            cols["duration"].append(duration)
            cols["status"].append(status)
            cols["kind"].append(kind.value)
            cols["service"].append(service)
            cols["trace_hi"].append(sc.trace_id >> 64)
            cols["trace_lo"].append(sc.trace_id & ((1 << 64) - 1))
            cols["span_id"].append(sc.span_id)
            cols["parent_span_id"].append(parent_id if depth else 0)
            cols["attributes"].append(canonical_attributes(attrs))
            cols["resource"].append(resource_text(providers[service].resource.attributes))
            parent_ctx, parent_id = trace.set_span_in_context(span), sc.span_id
            i += 1
    dtypes = {"start": np.int64, "duration": np.int64, "status": np.uint8, "kind": np.uint8,
              "trace_hi": np.uint64, "trace_lo": np.uint64, "span_id": np.uint64,
              "parent_span_id": np.uint64}  # fmt: skip
    return Rows(**{f: np.array(v, dtype=dtypes.get(f, object)) for f, v in cols.items()})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    def emit(provider: Providers) -> Rows:
        providers = {service: provider(Resource.create({"service.name": service}), None)
                     for service in SERVICES}  # fmt: skip
        return _emit(providers, np.random.default_rng(14), 3000)

    with fed_cluster(tmp_path_factory.mktemp("cluster"), emit, chunk_rows=64) as (fed, truth):
        yield Cluster(**vars(fed), truth=truth)


def test_the_nodes_hold_the_spans_split_by_trace(cluster: Cluster) -> None:
    shards = [stored(p) for p in cluster.node_paths]
    assert all(len(s) > 500 for s in shards)  # every node holds a real share
    assert sum(len(s) for s in shards) == len(cluster.truth) >= 3000
    for n, rows in enumerate(shards):  # each trace wholly on the node its id routes to
        assert {shard_of(rows.trace_id(i), 3) for i in range(len(rows))} == {n}
    assert len(stored(cluster.single_path)) == len(cluster.truth)


QUERIES = [
    Query(),
    Query(functions=("api.*",)),
    Query(functions=("db.query", "cache.get")),
    Query(service="worker"),
    Query(attributes=(("route", "/b"),)),
    Query(since=BASE + 1_000_000_000, until=BASE + 3_000_000_000),
]


def _filter(query: Query) -> q.Filter:
    return q.Filter(query.functions, query.service, query.since, query.until, query.attributes)


def _frontends(cluster: Cluster) -> list[tuple[str, QueryBackend]]:
    return [("frontend", cluster.front), ("frontend over grpc", Client(cluster.frontend.address))]


@pytest.mark.parametrize("query", QUERIES, ids=[x.label() for x in QUERIES])
def test_every_question_equals_the_brute_force_and_one_node(cluster: Cluster, query: Query) -> None:
    truth, flt = cluster.truth, _filter(query)
    single = Client(cluster.single.address)
    qs = (0.5, 0.9, 0.99)
    for label, backend in _frontends(cluster):
        where = f"{label} {query.label()}"
        for group_by in ("function", "service", "attribute:route"):
            want = expected_stats(truth, query, group_by)
            key = group_by.split(":")[-1]
            for exact in (False, True):
                got = backend.stats(flt, group_by=group_by, quantiles=qs, exact=exact)
                check_table(got.to_dict()["rows"], key, want, qs, exact, f"{where} {group_by}")
                assert same(plain(got), plain(single.stats(flt, group_by=group_by, quantiles=qs,
                                                          exact=exact)), 1e-9), where  # fmt: skip
        got_fs = [f.to_dict() for f in backend.list_functions(flt)]
        assert got_fs == expected_functions(truth, query), where
        for k in (1, 7, 100):
            got_slow = [c.to_dict() for c in backend.slowest(flt, k=k)]
            assert got_slow == expected_slowest(truth, query, k), f"{where} k={k}"
        series = backend.series(flt, quantiles=qs)
        want_series = expected_series_counts(truth, query, series.since, series.until, series.step)
        assert {s.key: [(p.count, p.errors) for p in s.points] for s in series.series} \
            == want_series, where  # fmt: skip
        assert same(plain(series), plain(single.series(flt, quantiles=qs)), 1e-9), where
        exact_series = backend.series(flt, quantiles=qs, exact=True, step=10**9)
        assert same(plain(exact_series), plain(single.series(flt, quantiles=qs, exact=True,
                                                             step=10**9)), 1e-9), where  # fmt: skip
        hist_flt = q.Filter((), query.service, query.since, query.until, query.attributes)
        durations = truth.duration[mask(truth, Query(("db.query",), query.service, query.since,
                                                     query.until, query.attributes))]  # fmt: skip
        check_exact_histogram(backend.histogram("db.query", hist_flt, exact=True).to_dict(),
                              durations, where)  # fmt: skip
        assert backend.histogram("db.query", hist_flt) == single.histogram("db.query", hist_flt)
        found = backend.anomalies(flt, min_count=20)
        assert same(plain(found), plain(single.anomalies(flt, min_count=20)), 1e-9), where
        assert backend.time_range() == single.time_range()
        assert backend.missing_peers() == ()


def test_the_answers_are_not_trivial(cluster: Cluster) -> None:
    found = cluster.front.anomalies(min_count=20)
    assert [a.function for a in found][:1] == ["db.query"]  # its heavy tail is found
    assert len(found[0].exemplars) == 3
    assert found[0].exemplars[0].to_dict() == expected_slowest(cluster.truth, Query(("db.query",)),
                                                               1)[0]  # fmt: skip
    assert len(cluster.front.series(step=10**9).series) == len(NAMES)


def test_an_unknown_name_is_not_found_only_when_no_node_knows_it(cluster: Cluster) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        cluster.front.stats(q.Filter(("api.get", "nope")))
    with pytest.raises(NotFoundError, match="nope"):
        Client(cluster.frontend.address).histogram("nope")
    # A name only some nodes hold: write one call of it to one node alone.
    with Database.open(cluster.node_paths[0]) as db:
        db.append(["only.here"], [BASE], [1234])
        assert db.flush(30)
    got = cluster.front.stats(q.Filter(("only.here",)))
    assert [(r.key, r.count, r.max) for r in got.rows] == [("only.here", 1, 1234.0)]
    assert [c.duration for c in cluster.front.slowest(q.Filter(("only.here",)))] == [1234]


def test_explain_at_the_frontend_equals_one_node(cluster: Cluster) -> None:
    # The planted causes are in tests/cluster/test_explain.py; here, this data's own tail.
    with Client(cluster.single.address) as single, Client(cluster.frontend.address) as over:
        for fn, slow in (("db.query", "p95"), ("api.get", None), ("render.page", 600_000)):
            want = single.explain(fn, slow=slow)
            assert want.count == int((cluster.truth.name == fn).sum())
            assert want.slow_count > 0 and want.children
            assert cluster.front.explain(fn, slow=slow).to_dict() == want.to_dict(), fn
            assert over.explain(fn, slow=slow).to_dict() == want.to_dict(), fn


def test_a_node_refuses_another_partial_version(cluster: Cluster) -> None:
    with Client(cluster.peers[0]) as client, pytest.raises(grpc.RpcError) as err:
        client.partial(pb.PartialRequest(version=99, time_range=pb.TimeRangeQuestion()))
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "version 99" in str(err.value.details())
    with Client(cluster.frontend.address) as client, pytest.raises(grpc.RpcError) as err:
        client.partial(pb.PartialRequest(version=1, time_range=pb.TimeRangeQuestion()))
    assert "frontend" in str(err.value.details())


# ---- failing peers ---------------------------------------------------------------------------


@pytest.fixture
def third_in_a_process(
    cluster: Cluster, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], str, Rows]]:
    """Node 2's data served by a separate process the test may kill or stop."""
    import shutil

    path = tmp_path / "node2"
    shutil.copytree(cluster.node_paths[2], path)
    proc, address = spawn_node(path)
    try:
        yield proc, address, stored(path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(10)


def _two_nodes_truth(cluster: Cluster) -> Rows:
    return Rows.concat([stored(p) for p in cluster.node_paths[:2]])


def test_a_killed_peer_is_named_and_the_rest_answer(
    cluster: Cluster, third_in_a_process: tuple[subprocess.Popen[str], str, Rows]
) -> None:
    proc, address, _ = third_in_a_process
    with Frontend([*cluster.peers[:2], address], timeout=10) as front:
        whole = front.stats()
        assert sum(r.count for r in whole.rows) == len(stored(cluster.node_paths[0])) + len(
            stored(cluster.node_paths[1])) + len(stored(cluster.node_paths[2]))  # fmt: skip
        assert front.missing_peers() == ()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        got = front.stats(exact=True, quantiles=(0.5, 0.99))
        (missing,) = front.missing_peers()
        assert missing.startswith(f"{address}: UNAVAILABLE")
        truth = _two_nodes_truth(cluster)
        check_table(got.to_dict()["rows"], "function", expected_stats(truth, Query()),
                    (0.5, 0.99), True, "two of three")  # fmt: skip
        assert [c.to_dict() for c in front.slowest(k=5)] == expected_slowest(truth, Query(), 5)
        assert front.missing_peers() == (missing,)
        # Through a frontend server: trailing metadata, the client and the CLI name it too.
        with KroniclerServer(front, ServerOptions(address="127.0.0.1:0")) as server:
            client = Client(server.address)
            client.list_functions()
            assert client.missing_peers() == (missing,)
            out = subprocess.run(
                [sys.executable, "-m", "kronicler", "stats", "--address", server.address, "--json"],
                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                timeout=60,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            assert "partial answer" in out.stderr and address in out.stderr
            rows = json.loads(out.stdout)
            assert sum(r["count"] for r in rows) == len(truth)


@pytest.mark.parametrize("place", ["first", "last"])
def test_a_stalled_peer_costs_at_most_the_deadline(
    cluster: Cluster, third_in_a_process: tuple[subprocess.Popen[str], str, Rows], place: str
) -> None:
    # The last peer is asked by the calling thread, the others by the frontend's threads: a
    # stalled peer in either place costs at most the deadline, for each of several questions
    # asked at once.
    from concurrent.futures import ThreadPoolExecutor

    proc, address, _ = third_in_a_process
    peers = [address, *cluster.peers[:2]] if place == "first" else [*cluster.peers[:2], address]
    with Frontend(peers, timeout=30) as front:
        assert front.time_range() is not None  # connected while it ran
        proc.send_signal(signal.SIGSTOP)  # alive, connected, silent
        with KroniclerServer(front, ServerOptions(address="127.0.0.1:0")) as server:

            def ask(_: int) -> tuple[float, int, tuple[str, ...]]:
                client = Client(server.address, timeout=2.0)  # the caller's deadline
                began = time.monotonic()
                got = client.stats()
                took = time.monotonic() - began
                return took, sum(r.count for r in got.rows), client.missing_peers()

            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(ask, range(4)))
        for took, count, (missing,) in answers:
            # From the other two within the caller's deadline (plus scheduling).
            assert took < 2.0 + 3.0
            assert count == len(_two_nodes_truth(cluster))
            assert missing.startswith(f"{address}: DEADLINE_EXCEEDED")


def test_no_peer_answering_is_an_error_naming_them(tmp_path: Path) -> None:
    with Frontend(["127.0.0.1:1", "127.0.0.1:2"], timeout=5) as front:
        with pytest.raises(UnavailableError, match=r"127\.0\.0\.1:1: UNAVAILABLE.*127\.0\.0\.1:2"):
            front.stats()
        with (
            KroniclerServer(front, ServerOptions(address="127.0.0.1:0")) as server,
            pytest.raises(grpc.RpcError) as err,
        ):
            Client(server.address).stats()
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


class _Garbled(pb_grpc.QueryServiceServicer):
    """A peer of the right version whose summaries do not decode (an impossible count width)."""

    def Partial(self, request: pb.PartialRequest, context: grpc.ServicerContext) -> Any:
        cells = pb.PartialCells(keys=["api.get"], per_key=1,
                                packed=pb.PackedSummaries(count_width=3))  # fmt: skip
        return pb.PartialResponse(version=request.version, cells=cells)


@pytest.mark.parametrize("place", ["first", "last"])
def test_a_peer_whose_summaries_do_not_decode_is_named_and_the_rest_answer(
    cluster: Cluster, place: str
) -> None:
    """Each reply is decoded by the thread that received it (an asker for the first peers, the
    question's own thread for the last): either way the peer is named and left out."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_QueryServiceServicer_to_server(_Garbled(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    bad = f"127.0.0.1:{port}"
    peers = [bad, *cluster.peers[:2]] if place == "first" else [*cluster.peers[:2], bad]
    try:
        with Frontend(peers, timeout=10) as front:
            got = front.stats(quantiles=(0.5, 0.99))
            (missing,) = front.missing_peers()
            assert missing.startswith(f"{bad}: CorruptPageError") and "count width 3" in missing
            check_table(got.to_dict()["rows"], "function",
                        expected_stats(_two_nodes_truth(cluster), Query()), (0.5, 0.99), False,
                        "two of three")  # fmt: skip
    finally:
        server.stop(None)


def test_bad_peers_are_refused() -> None:
    for peers in ([], ["nope"], ["127.0.0.1:1", "127.0.0.1:1"], "127.0.0.1:1"):
        with pytest.raises(ValueError):
            Frontend(peers)


def test_local_and_single_server_answers_are_whole(cluster: Cluster) -> None:
    local = Local(cluster.node_paths[0])
    try:
        local.stats()
        assert local.missing_peers() == ()
    finally:
        local.close()
    with Client(cluster.single.address) as client:
        client.stats()
        assert client.missing_peers() == ()


def test_the_token_reaches_the_peers(cluster: Cluster) -> None:
    db = Database.open(cluster.node_paths[1], readonly=True)
    try:
        options = ServerOptions(address="127.0.0.1:0", token="s3cret")
        with KroniclerServer(db, options) as guarded:
            with Frontend([guarded.address], token="s3cret") as front:
                assert front.stats().rows and front.missing_peers() == ()
            with Frontend([guarded.address, cluster.peers[0]]) as front:  # no token
                front.stats()
                (missing,) = front.missing_peers()
                assert missing.startswith(f"{guarded.address}: UNAUTHENTICATED")
    finally:
        db.close()
