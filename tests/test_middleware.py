"""The ASGI and WSGI middleware under real servers: one row per request, named by its route.

Each server test writes a small application, serves it with uvicorn or gunicorn on a free
loopback port, sends a fixed mix of real HTTP requests (matched routes, a route inside a mount,
unmatched paths, an exception, a 5xx, a streamed body, a caller's ``traceparent``), stops the
server with SIGTERM as an orchestrator would, and counts the stored rows exactly: per span
name, status code and status. The flush interval is very long, so rows reach the database only
through the shutdown paths. The remaining tests drive the ASGI protocol directly (lifespan,
the SDK road, bad input, a full site table).
"""

from __future__ import annotations

import asyncio
import http.client
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import kronicler
from kronicler.otel import server_span
from kronicler.otel.server_span import SERVER_KIND
from tests.lifecycle import servers
from tests.lifecycle.test_servers import started
from tests.otel.helpers import Store, read_rows

pytest_plugins = ["tests.otel.fixtures"]
__all__ = ["started"]  # the fixture: servers started by a test are killed after it

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
STREAM_PAUSE = 0.2  # seconds the streamed body waits between its two chunks

ASGI_APP = """
import asyncio

import kronicler
from kronicler.asgi import KroniclerMiddleware
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route


@kronicler.capture(name="work")
def work():
    return 1


async def item(request):
    work()
    return PlainTextResponse("item")


async def boom(request):
    raise RuntimeError("boom")


async def unavailable(request):
    return PlainTextResponse("later", status_code=503)


async def stream(request):
    async def body():
        yield b"first "
        await asyncio.sleep(PAUSE)
        yield b"second"

    return StreamingResponse(body())


async def ping(request):
    return PlainTextResponse("pong")


api = Starlette(routes=[Route("/v/{version}", item)])
app = Starlette(routes=[
    Route("/items/{item_id}", item, methods=["GET", "POST"]),
    Route("/boom", boom),
    Route("/unavailable", unavailable),
    Route("/stream", stream),
    Route("/ping", ping),
    Mount("/api", app=api),
])
app.add_middleware(KroniclerMiddleware)
""".replace("PAUSE", str(STREAM_PAUSE))

WSGI_APP = """
import time

import flask

import kronicler
from kronicler.wsgi import KroniclerMiddleware

app = flask.Flask("mwapp")


@kronicler.capture(name="work")
def work():
    return 1


@app.route("/items/<int:item_id>", methods=["GET", "POST"])
def item(item_id):
    work()
    return "item"


@app.route("/boom")
def boom():
    raise RuntimeError("boom")


@app.route("/unavailable")
def unavailable():
    return "later", 503


@app.route("/stream")
def stream():
    def body():
        yield "first "
        time.sleep(PAUSE)
        work()  # inside the body: still a child of the request's span
        yield "second"

    return app.response_class(body())


@app.route("/ping")
def ping():
    return "pong"


app.wsgi_app = KroniclerMiddleware(app.wsgi_app)
""".replace("PAUSE", str(STREAM_PAUSE))

DJANGO_APP = """
import time

import django
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path

import kronicler
from kronicler.wsgi import KroniclerMiddleware

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="test",
    MIDDLEWARE=["kronicler.wsgi.DjangoRoute"],
    LOGGING_CONFIG=None,
)
django.setup()


@kronicler.capture(name="work")
def work():
    return 1


def item(request, item_id):
    work()
    return HttpResponse("item")


def boom(request):
    raise RuntimeError("boom")


def unavailable(request):
    return HttpResponse("later", status=503)


def stream(request):
    def body():
        yield b"first "
        time.sleep(PAUSE)
        work()
        yield b"second"

    return StreamingHttpResponse(body())


def ping(request):
    return HttpResponse("pong")


urlpatterns = [
    path("items/<int:item_id>", item),
    path("boom", boom),
    path("unavailable", unavailable),
    path("stream", stream),
    path("ping", ping),
]

from django.core.wsgi import get_wsgi_application

app = KroniclerMiddleware(get_wsgi_application())
""".replace("PAUSE", str(STREAM_PAUSE))

UVICORN = ["uvicorn", "mwapp:app", "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"]
GUNICORN_UVICORN = ["gunicorn", "mwapp:app", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
                    "-b", "127.0.0.1:{port}"]  # fmt: skip
GUNICORN_SYNC = ["gunicorn", "mwapp:app", "-w", "2", "-b", "127.0.0.1:{port}"]

# (method, path, expected status code), and how many times each is sent.
REQUESTS: list[tuple[str, str, int, int]] = [
    ("GET", "/items/1", 200, 5),
    ("GET", "/items/22", 200, 4),
    ("POST", "/items/3", 200, 3),
    ("GET", "/boom", 500, 3),
    ("GET", "/unavailable", 503, 2),
    ("GET", "/stream", 200, 2),
    ("GET", "/no/such/page", 404, 3),
    ("GET", "/other-missing", 404, 1),
]


def serve(tmp_path: Path, started: list[servers.Server], source: str, argv: list[str],
          env: dict[str, str] | None = None) -> servers.Server:  # fmt: skip
    servers.write_app(tmp_path, source, "mwapp")
    port = servers.free_port()
    server = servers.start(tmp_path, [a.format(port=port) for a in argv], port, env=env)
    started.append(server)
    return server


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
            ) -> tuple[int, bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def send_mix(port: int, extra: list[tuple[str, str, int, int]]) -> None:
    for method, path, code, times in [*REQUESTS, *extra]:
        for _ in range(times):
            status, _ = request(port, method, path)
            assert status == code, (method, path, status)
    status, _ = request(port, "GET", "/items/7", {"traceparent": TRACEPARENT})
    assert status == 200


def request_rows(path: Path) -> list[dict[str, Any]]:
    return [r for r in read_rows(path) if r["kind"] == SERVER_KIND and r["name"] != "GET /ping"]


def summary(rows: list[dict[str, Any]]) -> Counter[tuple[str, Any, int]]:
    return Counter(
        (r["name"], r["attributes"].get("http.response.status_code"), r["status"]) for r in rows
    )


def check_common(rows: list[dict[str, Any]], all_rows: list[dict[str, Any]], port: int) -> None:
    """What both servers must agree on: attributes, errors, children, the caller's trace."""
    for r in rows:
        a = r["attributes"]
        assert a["url.scheme"] == "http" and a["server.port"] == port
        assert a["http.request.method"] in ("GET", "POST")
        assert "/" not in r["name"] or a["http.route"] in r["name"]  # never a raw path
    for r in rows:
        if r["attributes"].get("http.response.status_code") == 500:
            assert r["attributes"]["error.type"] == "RuntimeError"
            assert r["attributes"]["exception.message"] == "boom"
        elif r["attributes"].get("http.response.status_code") == 503:
            assert r["attributes"]["error.type"] == "503"
        else:
            assert "error.type" not in r["attributes"]
    # Every captured call inside a request is the child of that request's span.
    spans = {r["span_id"]: r for r in rows}
    children = [r for r in all_rows if r["name"] == "work"]
    assert children and all(c["parent_span_id"] in spans for c in children)
    for c in children:
        assert spans[c["parent_span_id"]]["trace_id"] == c["trace_id"]
    # The request sent with a traceparent continues the caller's trace.
    [continued] = [r for r in rows if r["trace_id"] == TRACE_ID]
    assert continued["parent_span_id"] == PARENT_ID and continued["name"].endswith("{item_id}") or \
        continued["name"].endswith("<int:item_id>")  # fmt: skip
    # A streamed body is timed to its end, past the pause between its chunks.
    streamed = [r for r in rows if r["name"] == "GET /stream"]
    assert len(streamed) == 2 and all(r["duration"] >= STREAM_PAUSE * 1e9 for r in streamed)


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param(UVICORN, -signal.SIGTERM, id="uvicorn"),
        pytest.param(GUNICORN_UVICORN, 0, id="gunicorn-uvicorn-workers"),
    ],
)
def test_asgi_under_uvicorn(tmp_path: Path, started: list[servers.Server], argv: list[str],
                            code: int) -> None:  # fmt: skip
    server = serve(tmp_path, started, ASGI_APP, argv)
    send_mix(server.port, [("GET", "/api/v/2", 200, 2)])
    assert servers.stop(server, signal.SIGTERM) == code, server.output()
    all_rows = read_rows(tmp_path / "db")
    rows = request_rows(tmp_path / "db")
    assert summary(rows) == {
        ("GET /items/{item_id}", 200, 0): 5 + 4 + 1,
        ("POST /items/{item_id}", 200, 0): 3,
        ("GET /boom", 500, 2): 3,
        ("GET /unavailable", 503, 2): 2,
        ("GET /stream", 200, 0): 2,
        ("GET", 404, 0): 4,
        ("GET /api/v/{version}", 200, 0): 2,
    }, server.output()
    assert sum(1 for r in all_rows if r["name"] == "work") == 5 + 4 + 3 + 1 + 2
    check_common(rows, all_rows, server.port)
    assert {r["attributes"]["network.protocol.version"] for r in rows} == {"1.1"}


def test_wsgi_flask_under_gunicorn(tmp_path: Path, started: list[servers.Server]) -> None:
    server = serve(tmp_path, started, WSGI_APP, GUNICORN_SYNC)
    send_mix(server.port, [])
    assert servers.stop(server, signal.SIGTERM) == 0, server.output()
    all_rows = read_rows(tmp_path / "db")
    rows = request_rows(tmp_path / "db")
    assert summary(rows) == {
        ("GET /items/<int:item_id>", 200, 0): 5 + 4 + 1,
        ("POST /items/<int:item_id>", 200, 0): 3,
        ("GET /boom", 500, 2): 3,
        ("GET /unavailable", 503, 2): 2,
        ("GET /stream", 200, 0): 2,
        ("GET", 404, 0): 4,
    }, server.output()
    assert sum(1 for r in all_rows if r["name"] == "work") == 5 + 4 + 3 + 1 + 2
    check_common(rows, all_rows, server.port)


def test_wsgi_django_under_gunicorn(tmp_path: Path, started: list[servers.Server]) -> None:
    pytest.importorskip("django")
    server = serve(tmp_path, started, DJANGO_APP, GUNICORN_SYNC)
    send_mix(server.port, [])
    assert servers.stop(server, signal.SIGTERM) == 0, server.output()
    all_rows = read_rows(tmp_path / "db")
    rows = request_rows(tmp_path / "db")
    assert summary(rows) == {
        ("GET /items/<int:item_id>", 200, 0): 5 + 4 + 1,
        ("POST /items/<int:item_id>", 200, 0): 3,
        ("GET /boom", 500, 2): 3,
        ("GET /unavailable", 503, 2): 2,
        ("GET /stream", 200, 0): 2,
        ("GET", 404, 0): 4,
    }, server.output()
    assert sum(1 for r in all_rows if r["name"] == "work") == 5 + 4 + 3 + 1 + 2
    check_common(rows, all_rows, server.port)


def test_otel_sdk_disabled_stores_nothing(tmp_path: Path, started: list[servers.Server]) -> None:
    server = serve(tmp_path, started, ASGI_APP, UVICORN, env={"OTEL_SDK_DISABLED": "true"})
    send_mix(server.port, [])
    servers.stop(server, signal.SIGTERM)
    assert not (tmp_path / "db").exists(), server.output()


# -- the ASGI protocol driven directly -----------------------------------------------------------


async def _plain_app(scope: Any, receive: Any, send: Any) -> None:
    """A framework-free ASGI app: the route is whatever the test put in ``scope["route"]``."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope.get("path") == "/raise":
        raise ValueError("no")
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _http_scope(path: str, route: Any = None, **extra: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": path, "scheme": "http",
                             "headers": [], "http_version": "1.1", **extra}  # fmt: skip
    if route is not None:
        scope["route"] = route
    return scope


async def _call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def test_lifespan_shutdown_stores_before_it_completes(tmp_path: Path) -> None:
    from kronicler.asgi import KroniclerMiddleware

    kronicler.configure(path=tmp_path / "db", flush_interval=600)
    try:
        app = KroniclerMiddleware(_plain_app)
        seen_at_complete: list[int] = []

        async def run() -> None:
            for i in range(3):
                await _call(app, _http_scope(f"/r/{i}", "/r/{n}"))
            inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

            async def receive() -> dict[str, Any]:
                return inbox.pop(0)

            async def send(message: Any) -> None:
                if message["type"] == "lifespan.shutdown.complete":
                    path = tmp_path / "db"
                    seen_at_complete.append(len(read_rows(path)) if path.exists() else 0)

            await app({"type": "lifespan"}, receive, send)

        asyncio.run(run())
        assert seen_at_complete == [3]
    finally:
        kronicler.configure(path="./.kronicler", flush_interval=0.1)


def test_failures_of_the_app_pass_through_and_bad_scopes_run_plainly(store: Store) -> None:
    from kronicler.asgi import KroniclerMiddleware

    app = KroniclerMiddleware(_plain_app)
    with pytest.raises(ValueError, match="no"):
        asyncio.run(_call(app, _http_scope("/raise")))
    odd = _http_scope("/odd", method=None, server="nonsense", headers=[(b"traceparent", b"zz")])
    sent = asyncio.run(_call(app, odd))
    assert sent[0]["status"] == 201
    rows = store.rows()
    assert [(r["name"], r["status"], r["attributes"].get("http.response.status_code"))
            for r in rows] == [("GET", 2, 500), ("HTTP", 0, 201)]  # fmt: skip
    assert rows[1]["attributes"]["http.request.method"] == "_OTHER"


def test_a_full_site_table_still_stores_each_request_by_its_own_name(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kronicler.asgi import KroniclerMiddleware

    monkeypatch.setattr(server_span, "MAX_SITES", len(server_span.SITES) + 2)
    app = KroniclerMiddleware(_plain_app)

    async def run() -> None:
        for i in range(6):
            await _call(app, _http_scope(f"/many/{i}", f"/many/{i}"))

    asyncio.run(run())
    rows = store.rows()
    assert sorted(r["name"] for r in rows) == [f"GET /many/{i}" for i in range(6)]
    assert all(r["attributes"]["http.route"] == r["name"][4:] for r in rows)


def test_with_a_global_sdk_provider_requests_are_sdk_spans(
    store: Store, sdk: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    from kronicler.asgi import KroniclerMiddleware

    app = KroniclerMiddleware(_plain_app)
    asyncio.run(_call(app, _http_scope("/x/1", "/x/{n}")))
    with pytest.raises(ValueError):
        asyncio.run(_call(app, _http_scope("/raise", "/raise")))
    spans = sdk[1].get_finished_spans()
    assert [(s.name, s.kind, s.status.status_code.name) for s in spans] == [
        ("GET /x/{n}", trace.SpanKind.SERVER, "UNSET"),
        ("GET /raise", trace.SpanKind.SERVER, "ERROR"),
    ]
    assert spans[0].attributes is not None
    assert spans[0].attributes["http.response.status_code"] == 201
    assert spans[1].attributes is not None
    assert spans[1].attributes["http.response.status_code"] == 500
    assert store.rows() == []  # nothing went around the user's provider
