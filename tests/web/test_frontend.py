"""The dashboard on a cluster frontend answers as the dashboard on one node holding all the data.

The shop's calls (tests/web/workload.py) are split over three real gRPC nodes by trace id, as
the Collector's loadbalancing exporter routes them, and a :class:`Frontend` merges them. Every
JSON route of the dashboard over the frontend must equal the same route over the whole database
(floats within the last digits, as moments merge in another order), and the counts must equal
the workload's own. Then a node is SIGKILLed: the answers name it in the
``X-Kronicler-Missing-Peers`` header and hold the other nodes' data exactly, and in a real
Chromium the page still draws with a notice naming the missing node. A question a frontend does
not answer (explain) gives a clear message, never a 500.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from kronicler.db import Database
from kronicler.server import Client, KroniclerServer, ServerOptions
from kronicler.server.frontend import Frontend
from kronicler.web import WebServer
from kronicler.web.peers import MISSING_PEERS_HEADER
from tests.cluster.nodes import dashboard_frontend, stored
from tests.contracts.test_query_backend import same
from tests.web.conftest import Nodes, fetch
from tests.web.workload import Shop

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def front_web(nodes: Nodes, now: int) -> Iterator[WebServer]:
    with (
        Frontend(nodes.peers, timeout=30) as front,
        WebServer(front, "127.0.0.1", 0, clock=lambda: now) as web,
    ):
        yield web


def _get(web: WebServer, route: str, **params: Any) -> tuple[int, dict[str, str], Any]:
    status, headers, body = fetch(f"{web.url}api/v1/{route}?{urlencode(params, doseq=True)}")
    return status, headers, json.loads(body)


QUESTIONS: list[tuple[str, dict[str, Any]]] = [
    ("meta", {}),
    ("functions", {"range": "all"}),
    ("functions", {"range": "1h"}),
    ("functions", {"range": "24h", "service": "shop"}),
    ("functions", {"range": "all", "function": "shop.*", "attr": "http.route=/checkout"}),
    ("detail", {"range": "all", "function": "shop.search_catalog"}),
    ("detail", {"range": "1h", "function": "shop.render_page", "k": 3}),
    ("detail", {"range": "all", "function": "shop.send_email", "service": "mailer"}),
    ("series", {"range": "all"}),
    ("series", {"range": "24h", "function": "shop.load_user", "step": 600_000_000_000}),
    ("histogram", {"range": "all", "function": "shop.charge_card", "per_decade": 20}),
    ("slowest", {"range": "all", "k": 25}),
    ("slowest", {"range": "all", "function": "shop.charge_card", "service": "shop"}),
    ("anomalies", {"range": "all", "exemplars": 3}),
    ("compare", {"range": "all", "function": "shop.handle_request", "by": "attribute:http.route"}),
    ("compare", {"range": "24h", "function": "shop.charge_card", "by": "service"}),
    ("compare", {"range": "all", "function": "shop.load_user", "by": "resource:host.name"}),
    ("anomalies", {"range": "24h", "min_count": 10, "tail_threshold": 2.0}),
    ("functions", {"range": "all", "function": "no.such.function"}),  # 404 from both
    ("detail", {"range": "lots", "function": "shop.load_user"}),  # 400 from both
]


@pytest.mark.parametrize(("route", "params"), QUESTIONS, ids=lambda v: str(v)[:40])
def test_every_route_equals_the_single_node(
    server: WebServer, front_web: WebServer, route: str, params: dict[str, Any]
) -> None:
    want_status, _, want = _get(server, route, **params)
    got_status, headers, got = _get(front_web, route, **params)
    assert got_status == want_status, got
    assert same(got, want, 1e-9), (got, want)
    assert MISSING_PEERS_HEADER not in headers  # every node answered


def test_the_counts_are_the_workloads_own(front_web: WebServer, shop: Shop) -> None:
    _, _, table = _get(front_web, "functions", range="all")
    assert {r["function"]: r["count"] for r in table["rows"]} == shop.counts
    assert {r["function"]: r["errors"] for r in table["rows"]} == shop.errors
    _, _, meta = _get(front_web, "meta")
    assert meta["services"] == ["mailer", "shop"]
    assert meta["functions"] == len(shop.counts)


def test_explain_on_a_frontend_is_a_clear_refusal_not_a_500(
    server: WebServer, front_web: WebServer
) -> None:
    params = {"range": "all", "function": "shop.search_catalog"}
    want_status, _, want = _get(server, "explain", **params)
    assert want_status == 200
    status, _, got = _get(front_web, "explain", **params)
    if status == 200:  # a frontend that merges explanations answers as the single node
        assert same(got, want, 1e-9)
    else:
        assert status == 501, got
        assert got["error"] == "Not Implemented"
        assert "cluster frontend" in got["message"] and "KroniclerError" not in got["message"]


def test_the_dashboard_over_a_remote_node_equals_the_local_one(
    shop_db: tuple[Database, Shop], server: WebServer, now: int
) -> None:
    node = KroniclerServer(shop_db[0], ServerOptions(address="127.0.0.1:0")).start()
    try:
        with Client(node.address) as client, WebServer(client, "127.0.0.1", 0,
                                                       clock=lambda: now) as web:  # fmt: skip
            for route, params in [*QUESTIONS[:3], QUESTIONS[5], *QUESTIONS[-2:]]:
                want_status, _, want = _get(server, route, **params)
                got_status, _, got = _get(web, route, **params)
                assert (got_status, got) == (want_status, want)
            why = {"range": "all", "function": "shop.search_catalog"}
            assert _get(web, "explain", **why)[2] == _get(server, "explain", **why)[2]
            node.stop()
            # The server is gone: a clear answer naming the failure, not a 500.
            status, _, body = _get(web, "functions", range="all")
            assert status == 503, body
            assert body["message"].startswith("the query server answered UNAVAILABLE")
    finally:
        node.stop()


def test_a_killed_node_is_named_and_the_rest_answer(
    nodes: Nodes, third_node: tuple[subprocess.Popen[str], str, Path], now: int
) -> None:
    proc, address, path = third_node
    with (
        Frontend([*nodes.peers[:2], address], timeout=10) as front,
        WebServer(front, "127.0.0.1", 0, clock=lambda: now) as web,
    ):
        _, headers, whole = _get(web, "functions", range="all")
        assert MISSING_PEERS_HEADER not in headers
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        status, headers, table = _get(web, "functions", range="all")
        assert status == 200
        (missing,) = json.loads(headers[MISSING_PEERS_HEADER])
        assert missing.startswith(f"{address}: UNAVAILABLE")
        lost = stored(path)
        for before, after in zip(whole["rows"], table["rows"], strict=True):
            gone = int((lost.name == before["function"]).sum())
            assert after["count"] == before["count"] - gone
        # Every route says so, list answers included.
        for route, params in QUESTIONS[:14]:
            status, headers, _ = _get(web, route, **params)
            assert status == 200 and address in headers[MISSING_PEERS_HEADER], route


def test_serve_peers_http_runs_the_dashboard_on_the_frontend(
    nodes: Nodes, server: WebServer
) -> None:
    """``kronicler serve --peers ... --http``: the CLI wiring, in a real process."""
    with dashboard_frontend(nodes.peers) as url:
        # The frontend's clock is the real one: ask for a fixed window, the same at both.
        params = {"since": 0, "until": 2**62}
        for route in ("functions", "slowest", "anomalies"):
            got = json.loads(fetch(f"{url}api/v1/{route}?{urlencode(params)}")[2])
            want = _get(server, route, **params)[2]
            if route == "functions":  # the window names "now", which differs
                got, want = got["rows"], want["rows"]
            assert same(got, want, 1e-9), route
