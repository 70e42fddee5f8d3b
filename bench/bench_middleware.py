"""Per-request cost of the ASGI and WSGI middleware, against the bare application.

Requests are made in-process (no sockets: a server's own cost would hide the middleware's), to a
trivial application that answers at once, so the difference is the middleware alone. Three
roads for each protocol: the bare application, ``KroniclerMiddleware`` on the fast pipeline,
and the same middleware with a global OpenTelemetry SDK ``TracerProvider`` (BatchSpanProcessor
and KroniclerSpanExporter), which is what an SDK-based middleware costs. Run by hand::

    python bench/bench_middleware.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from typing import Any

import kronicler
from kronicler.asgi import KroniclerMiddleware as AsgiMiddleware
from kronicler.wsgi import KroniclerMiddleware as WsgiMiddleware


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    scope["route"] = "/items/{item_id}"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["kronicler.route"] = "/items/<int:item_id>"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


SCOPE = {"type": "http", "method": "GET", "path": "/items/1", "scheme": "http",
         "headers": [], "http_version": "1.1", "server": ("127.0.0.1", 8000)}  # fmt: skip
ENVIRON = {"REQUEST_METHOD": "GET", "PATH_INFO": "/items/1", "wsgi.url_scheme": "http",
           "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1"}  # fmt: skip


def time_asgi(app: Any, n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    async def loop() -> float:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            await app(dict(SCOPE), receive, send)
        return (time.perf_counter_ns() - t0) / n

    return asyncio.run(loop())


def time_wsgi(app: Callable[..., Any], n: int) -> float:
    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        return None

    t0 = time.perf_counter_ns()
    for _ in range(n):
        body = app(dict(ENVIRON), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.perf_counter_ns() - t0) / n


def time_capture(n: int) -> float:
    """One ``@kronicler.capture`` call of a function doing nothing, for scale."""

    @kronicler.capture(name="bench.noop")
    def noop() -> None:
        return None

    t0 = time.perf_counter_ns()
    for _ in range(n):
        noop()
    return (time.perf_counter_ns() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    n = parser.parse_args().requests
    with tempfile.TemporaryDirectory() as tmp:
        kronicler.configure(path=f"{tmp}/db")
        rows: list[tuple[str, float, float]] = []
        rows.append(("bare application", time_asgi(asgi_app, n), time_wsgi(wsgi_app, n)))
        rows.append(("KroniclerMiddleware (fast pipeline)",
                     time_asgi(AsgiMiddleware(asgi_app), n),
                     time_wsgi(WsgiMiddleware(wsgi_app), n)))  # fmt: skip
        capture_ns = time_capture(n)
        kronicler.flush()

        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from kronicler.otel import KroniclerSpanExporter

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(KroniclerSpanExporter(f"{tmp}/sdk")))
        trace.set_tracer_provider(provider)
        rows.append(("KroniclerMiddleware (OTel SDK provider)",
                     time_asgi(AsgiMiddleware(asgi_app), n),
                     time_wsgi(WsgiMiddleware(wsgi_app), n)))  # fmt: skip
        provider.shutdown()
        kronicler.shutdown()
    bare_a, bare_w = rows[0][1], rows[0][2]
    print(f"{n} requests each, in-process; us per request (added over the bare application)")
    for label, a, w in rows:
        print(f"  {label:42s} ASGI {a / 1e3:7.2f} (+{(a - bare_a) / 1e3:6.2f})"
              f"   WSGI {w / 1e3:7.2f} (+{(w - bare_w) / 1e3:6.2f})")  # fmt: skip
    print(f"  for scale, one @kronicler.capture call of a no-op: {capture_ns / 1e3:.2f} us")


if __name__ == "__main__":
    main()
