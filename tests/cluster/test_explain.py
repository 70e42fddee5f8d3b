"""Explain through a cluster frontend equals explain of one node holding all the calls.

The planted-causes dataset (tests/query/explain_data.py: an attribute value, a child function,
a release and a clustering near-unique value, each the cause of one function's slow calls) is
replayed through the OpenTelemetry SDK with the dataset's own trace and span ids and exported
by the stock OTLP/gRPC exporter: to three real nodes, routed by trace id as the Collector's
loadbalancing exporter routes them, and whole to a fourth (the single node). Every explanation
asked of the frontend (directly, over its gRPC server, through the CLI and through the
dashboard's HTTP API of ``serve --peers --http``) must equal the single node's, field for field,
and its counts the brute force over the dataset. The causes must rank first at the frontend, so
the equality compares real findings; a near-unique key is judged on the union's counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator

from kronicler import query as q
from kronicler.db import Database
from kronicler.server import Client
from kronicler.server.frontend import Frontend
from tests.cluster.nodes import Fed, Providers, dashboard_frontend, fed_cluster, shard_of, stored
from tests.query.explain_data import (
    BASE_NS,
    CAUSE_FUNCTIONS,
    SPAN_NS,
    ExplainData,
    make_explain_data,
)
from tests.web.conftest import fetch

ROOT = Path(__file__).resolve().parents[2]

#: The questions asked of both: every cause function by default (p99), and with options.
QUESTIONS: list[tuple[str, dict[str, Any]]] = [
    *((fn, {}) for fn in CAUSE_FUNCTIONS),
    ("api.lookup", {"slow": "p95"}),
    ("api.render", {"slow": 5_000_000}),
    ("api.search", {"since": BASE_NS + SPAN_NS // 2, "until": BASE_NS + SPAN_NS}),
    ("log.write", {"slow": "p999"}),
]


class ScriptedIds(IdGenerator):
    """Hands out the ids set on it: spans keep the dataset's trace and span ids."""

    def __init__(self) -> None:
        self.trace_id = self.span_id = 0

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_id


def replay(data: ExplainData, provider: TracerProvider, ids: ScriptedIds) -> None:
    """Every trace of ``data`` as SDK spans: the parent, then its children in its context."""
    tracer = provider.get_tracer("explain")
    by_trace: dict[int, list[int]] = {}
    for i, t in enumerate(data.trace_id):
        by_trace.setdefault(t, []).append(i)
    for t, rows in by_trace.items():
        (root,) = [i for i in rows if data.parent_span_id[i] == 0]
        ids.trace_id, ids.span_id = t, data.span_id[root]
        parent = tracer.start_span(data.name[root], start_time=data.start[root],
                                   attributes=data.attributes[root])  # fmt: skip
        assert parent.get_span_context().span_id == data.span_id[root]
        ctx = trace.set_span_in_context(parent)
        for i in rows:
            if i == root:
                continue
            ids.span_id = data.span_id[i]
            kid = tracer.start_span(data.name[i], context=ctx, start_time=data.start[i],
                                    attributes=data.attributes[i])  # fmt: skip
            kid.end(end_time=data.start[i] + data.duration[i])
        parent.end(end_time=data.start[root] + data.duration[root])


@dataclass
class ExplainCluster(Fed):
    data: ExplainData


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExplainCluster]:
    def emit(provider: Providers) -> ExplainData:
        ids = ScriptedIds()
        data = make_explain_data()
        replay(data, provider(Resource.create({"service.name": "api"}), ids), ids)
        return data

    work = tmp_path_factory.mktemp("explain-cluster")
    with fed_cluster(work, emit, chunk_rows=512, batch=512, timeout=60) as (fed, data):
        yield ExplainCluster(**vars(fed), data=data)


def test_the_nodes_hold_the_calls_split_by_trace(cluster: ExplainCluster) -> None:
    shards = [stored(p) for p in cluster.node_paths]
    assert sum(len(s) for s in shards) == len(cluster.data.name)
    for n, rows in enumerate(shards):
        assert len(rows) > len(cluster.data.name) // 5  # every node holds a real share
        assert {shard_of(rows.trace_id(i), 3) for i in range(len(rows))} == {n}


def _brute(data: ExplainData, fn: str, options: dict[str, Any]) -> tuple[int, int, float]:
    """(calls, slow calls, threshold) of ``fn`` under ``options``, from the raw rows."""
    start, d, _ = data.rows(fn)
    keep = (start >= options.get("since", 0)) & (start < options.get("until", 2**63 - 1))
    d = np.sort(d[keep])
    slow = options.get("slow", "p99")
    if isinstance(slow, int):
        limit = float(slow)
    else:
        quantile = float(slow[1:3] + "." + slow[3:]) / 100
        limit = float(d[int(np.floor(quantile * (len(d) - 1)))])
    return len(d), int((d > limit).sum()), limit


@pytest.mark.parametrize(("function", "options"), QUESTIONS, ids=lambda v: str(v)[:40])
def test_explain_at_the_frontend_equals_one_node(
    cluster: ExplainCluster, function: str, options: dict[str, Any]
) -> None:
    with Client(cluster.single.address) as single, Client(cluster.frontend.address) as over:
        want = single.explain(function, **options)
        assert (want.count, want.slow_count, want.threshold) == _brute(
            cluster.data, function, options
        )
        for label, backend in (("frontend", cluster.front), ("frontend over grpc", over)):
            got = backend.explain(function, **options)
            assert got.to_dict() == want.to_dict(), label
            assert backend.missing_peers() == (), label


def test_each_planted_cause_ranks_first_at_the_frontend(cluster: ExplainCluster) -> None:
    front = cluster.front
    lookup = front.explain("api.lookup")
    assert (lookup.attributes[0].key, lookup.attributes[0].value) == ("db.shard", "7")
    start, d, attrs = cluster.data.rows("api.lookup")
    slow = d > lookup.threshold
    on_7 = np.array([a["db.shard"] == 7 for a in attrs])
    assert (lookup.attributes[0].slow, lookup.attributes[0].baseline) == (
        int((slow & on_7).sum()), int((~slow & on_7).sum()))  # fmt: skip
    assert all(x.attributes["db.shard"] == 7 for x in lookup.attributes[0].examples)
    assert lookup.attributes[0].examples  # the details round answered
    render = front.explain("api.render")
    assert render.children[0].function == "cache.fill" and render.children[0].examples
    search = front.explain("api.search")
    (up,) = [r for r in search.releases if r.lines_up]
    assert up.version == "1.5.0" and up.before_calls + up.after_calls == search.count
    fetch_ = front.explain("api.fetch")
    assert (fetch_.attributes[0].key, fetch_.attributes[0].value) == ("url", "/export/all")
    # ids are unique over the union: no request.id is a finding anywhere
    for e in (lookup, render, search, fetch_):
        assert all(a.key != "request.id" for a in e.attributes)
        assert e.self_time is not None and e.self_time.examples


def test_a_quantile_from_merged_summaries_says_so(cluster: ExplainCluster) -> None:
    """Beyond the rows the frontend gathers exactly, the threshold is the merged summaries'
    quantile (within 1%): the answer says so, and the rest equals one node's answer over that
    same threshold."""
    with Frontend(cluster.peers, timeout=60) as front, Client(cluster.single.address) as single:
        front.exact_threshold_rows = 100
        got = front.explain("api.lookup")
        exact = single.explain("api.lookup")
        assert got.threshold_exact is False and exact.threshold_exact is True
        assert got.threshold is not None and exact.threshold is not None
        assert got.threshold == pytest.approx(exact.threshold, rel=0.01)
        assert got.to_dict()["threshold_exact"] is False
        want = single.explain("api.lookup", slow=int(got.threshold))
        assert replace(got, quantile=None, threshold=float(int(got.threshold)),
                       threshold_exact=True) == want  # fmt: skip


def test_a_dead_peer_is_named_and_the_rest_explain(cluster: ExplainCluster, tmp_path: Path) -> None:
    """A peer that does not answer is named; the explanation is that of the others' calls."""
    merged = tmp_path / "both"
    with Database.open(merged, chunk_rows=512) as db:
        for src in cluster.node_paths[:2]:
            db.append(**stored(src).append_kwargs())
        assert db.flush(30)
    with Frontend([*cluster.peers[:2], "127.0.0.1:1"], timeout=20) as front:
        got = front.explain("api.render")
        (missing,) = front.missing_peers()
        assert missing.startswith("127.0.0.1:1: UNAVAILABLE")
    with Database.open(merged, readonly=True) as db:
        want = q.explain(db, "api.render")
    assert got.count < len(cluster.data.rows("api.render")[0])
    assert got.to_dict() == want.to_dict()


def _cli(*args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "kronicler", *args], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_the_cli_explains_through_the_frontend(cluster: ExplainCluster) -> None:
    for fn, slow in (("api.search", "p99"), ("api.lookup", "3ms")):
        want = _cli("explain", fn, "--slow", slow, "--json", "--address", cluster.single.address)
        got = _cli("explain", fn, "--slow", slow, "--json", "--address",
                   cluster.frontend.address)  # fmt: skip
        assert got == want and got["attributes"] + got["children"], fn


def test_the_cli_text_says_when_the_threshold_is_approximate(cluster: ExplainCluster) -> None:
    """``kronicler explain`` as text, through the frontend's gRPC server: the threshold taken
    from the merged summaries is marked as such; an exact one is not."""

    def text(address: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "kronicler", "explain", "api.lookup", "--address", address],
            capture_output=True, text=True, check=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        ).stdout.splitlines()[0]  # fmt: skip

    exact = text(cluster.frontend.address)
    assert exact == text(cluster.single.address)
    assert "(the p99)" in exact and "merged summaries" not in exact
    cluster.front.exact_threshold_rows = 100
    try:
        approximate = text(cluster.frontend.address)
    finally:
        del cluster.front.exact_threshold_rows  # back to the class's
    assert "(about the p99: the quantile of the nodes' merged summaries, within 1%)" in approximate
    total = exact.split(" calls slower")[0].split(" of ")[1]  # "api.lookup: S of N"
    assert approximate.split(" calls slower")[0].split(" of ")[1] == total


def test_the_why_slow_panel_over_serve_peers_http(cluster: ExplainCluster) -> None:
    """``kronicler serve --peers ... --http`` in a real process: the dashboard's explain route
    answers as the same route of a dashboard over the single node."""
    from kronicler.web import WebServer

    with (
        dashboard_frontend(cluster.peers) as url,
        Client(cluster.single.address) as single,
        WebServer(single, "127.0.0.1", 0) as web,
    ):
        for fn in ("api.lookup", "api.render", "api.search"):
            query = urlencode({"since": 0, "until": 2**62, "function": fn})
            status, _, body = fetch(f"{url}api/v1/explain?{query}")
            assert status == 200, body
            got = json.loads(body)
            want = json.loads(fetch(f"{web.url}api/v1/explain?{query}")[2])
            for answer in (got, want):  # the window names "now", which differs
                answer["window"].pop("now_unix_nano")
            assert got == want, fn
            assert got["attributes"] or got["children"] or got["releases"]
