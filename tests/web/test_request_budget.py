"""Every dashboard request has a time budget, and a remote backend is asked with what is left.

A request's questions run under :func:`kronicler.budget.deadline` (``create_app(...,
request_timeout=)``): a spent budget stops the query and answers 504 with the reason, and the
server goes on answering. Over a gRPC backend the budget also caps the call's own gRPC
deadline, so a server that never answers cannot hold a dashboard thread for the client's 30 s.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from kronicler import budget
from kronicler.db import Database
from kronicler.server import Client
from kronicler.web import WebServer, create_app
from tests.web.conftest import get_json
from tests.web.workload import Shop


def api(web: WebServer, route: str, **params: Any) -> tuple[int, Any]:
    return get_json(f"{web.url}api/v1/{route}?{urllib.parse.urlencode(params, doseq=True)}")


@pytest.mark.parametrize("route", ["functions", "detail", "slowest", "series", "explain"])
def test_a_spent_budget_answers_504_and_the_next_request_is_answered(
    shop_db: tuple[Database, Shop], route: str
) -> None:
    db = shop_db[0]
    params: dict[str, Any] = {"preset": "all"}
    if route != "functions":
        status, table = api_default(db, "functions", preset="all")
        assert status == 200, table
        params["function"] = table["rows"][0]["function"]
    with WebServer(db, "127.0.0.1", 0, request_timeout=1e-9) as web:
        status, body = api(web, route, **params)
        assert status == 504, body
        assert "deadline exceeded" in body["message"]
    status, body = api_default(db, route, **params)
    assert status == 200, body


def api_default(db: Database, route: str, **params: Any) -> tuple[int, Any]:
    with WebServer(db, "127.0.0.1", 0) as web:
        return api(web, route, **params)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), "5", True])
def test_a_bad_request_timeout_is_refused_naming_it(
    shop_db: tuple[Database, Shop], bad: Any
) -> None:
    with pytest.raises(ValueError, match="request_timeout"):
        create_app(shop_db[0], request_timeout=bad)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, threading.Event]]:
    """A real gRPC server whose methods hold every call 5 s (or until released), then fail it."""
    release = threading.Event()

    def hold(request: bytes, context: grpc.ServicerContext) -> bytes:
        release.wait(5)
        context.abort(grpc.StatusCode.UNAVAILABLE, "released")
        return b""

    class Handlers(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            return grpc.unary_unary_rpc_method_handler(hold)

    server = grpc.server(futures.ThreadPoolExecutor(4), handlers=[Handlers()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", release
    finally:
        release.set()
        server.stop(0)


def test_a_remote_question_is_sent_with_the_budget_left_not_the_clients_timeout(
    silent_server: tuple[str, threading.Event],
) -> None:
    address, _ = silent_server
    # Without the cap the call would wait the 5 s the server holds it and end UNAVAILABLE; with
    # it, it ends at the budget's deadline.
    with (
        Client(address, timeout=30.0) as client,
        pytest.raises(grpc.RpcError) as raised,
        budget.deadline(0.3),
    ):
        client.stats()
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_the_dashboard_over_a_silent_server_answers_504(
    silent_server: tuple[str, threading.Event],
) -> None:
    address, _ = silent_server
    with (
        Client(address, timeout=30.0) as client,
        WebServer(client, "127.0.0.1", 0, request_timeout=0.3) as web,
    ):
        status, body = api(web, "slowest", preset="all")
    assert status == 504, body
