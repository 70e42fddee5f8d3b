"""``KroniclerMiddleware`` for ASGI applications: FastAPI, Starlette, and any other ASGI app.

::

    from kronicler.asgi import KroniclerMiddleware

    app = FastAPI()
    app.add_middleware(KroniclerMiddleware)      # or: app = KroniclerMiddleware(app)

Every HTTP request becomes one server span named by its route template (``GET /items/{id}``),
stored through the decorator's fast pipeline (see :mod:`kronicler.otel.server_span` for names,
attributes and status rules). Calls captured while the request runs are its children.

Pure ASGI, no framework import: the route is read after the application ran, from
``scope["route"]``, which Starlette's (and so FastAPI's) router sets in the request's scope when
it matches. A route inside a ``Mount`` gets the mount's path in front (found once per route by
walking the application's routes, then remembered). Other frameworks can set
``scope["route"]`` to an object with a ``path`` (or to the template text) themselves.

Timing: from the request's arrival at the middleware to the last body message sent (so a
streaming response counts until its end, and background tasks run after the response do not).
The status code comes from ``http.response.start``; an exception escaping before a response
started is recorded as the 500 the server then sends, with status ERROR.

Shutdown: on the lifespan's ``shutdown`` the middleware stores what was captured (in a worker
thread, so the event loop is not blocked), before the server reports the shutdown complete.
Stop signals and normal exits are covered by the capture pipeline itself.

Trade-off: wrapping ``send`` adds one coroutine frame per message (a few hundred ns per body
chunk); the alternative, timing only until the application returns, would miss a streamed body
still being sent by the server, or count background tasks as request time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import kronicler
from kronicler.otel import tracer
from kronicler.otel.server_span import MAX_TRACE_HEADER, Exchange, RequestSpan, text_or_empty
from kronicler.otel.tracer import internal_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FLUSH_TIMEOUT = 5.0  # seconds the lifespan shutdown waits for captured calls to be stored


class KroniclerMiddleware:
    """One span per HTTP request of the wrapped ASGI application (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._templates: dict[int, tuple[object, str]] = {}  # id(route) -> (route, template)
        tracer.PIPELINE.arm_stop_signals()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self.app(scope, receive, _LifespanSend(send))
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        span = RequestSpan.start(text_or_empty(scope.get("method")), _trace_headers(scope))
        if span is None:
            await self.app(scope, receive, send)
            return
        root = scope.get("app")
        status: list[int] = []

        async def send_wrapper(message: Message) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                status.append(message.get("status", 0))
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False):
                span.body_done()

        token = span.enter()
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            span.exit(token)
            code = status[0] if status else (500 if isinstance(exc, Exception) else None)
            span.finish(self._exchange(scope, root, code), exc)
            raise
        span.exit(token)
        span.finish(self._exchange(scope, root, status[0] if status else None), None)

    def _exchange(self, scope: Scope, root: Any, status: int | None) -> Exchange:
        server = scope.get("server")
        address, port = (
            (server[0], server[1]) if isinstance(server, (tuple, list)) else (None, None)
        )
        return Exchange(
            method=text_or_empty(scope.get("method")),
            route=self._route(scope, root),
            status=status if isinstance(status, int) else None,
            scheme=text_or_empty(scope.get("scheme")) or "http",
            address=address if isinstance(address, str) else None,
            port=port if isinstance(port, int) else None,
            protocol=text_or_empty(scope.get("http_version")) or None,
        )

    def _route(self, scope: Scope, root: Any) -> str | None:
        """The matched route's template, mount prefixes included (None when none matched)."""
        route = scope.get("route")
        if isinstance(route, str):
            return route
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return None
        known = self._templates.get(id(route))
        if known is not None and known[0] is route:
            return known[1]
        try:
            prefix = _mount_prefix(root if root is not None else self.app, route)
        except Exception as exc:  # noqa: BLE001 - an odd routing tree costs the prefix only
            internal_error("route prefix", exc)
            prefix = ""
        template = prefix + path
        if len(self._templates) < 10_000:  # one per route of the application
            self._templates[id(route)] = (route, template)
        return template


def _mount_prefix(root: Any, target: object) -> str:
    """The paths of the ``Mount``s leading from ``root``'s routes to ``target`` ('' if none)."""
    return _find(_routes_of(root), target, 0) or ""


def _find(routes: Any, target: object, depth: int) -> str | None:
    """Depth-first search of nested route lists; the mount paths on the way, or None."""
    for route in routes:
        if route is target:
            return ""
    if depth > 8:
        return None
    for route in routes:
        inner = getattr(route, "routes", None)
        if inner:
            found = _find(inner, target, depth + 1)
            if found is not None:
                return getattr(route, "path", "") + found
    return None


def _routes_of(app: Any) -> list[Any]:
    """The route list of an application, looking through middleware (``.app``) to its router."""
    for _ in range(16):
        routes = getattr(app, "routes", None)
        if isinstance(routes, list):
            return routes
        app = getattr(app, "app", None)
        if app is None:
            break
    return []


def _trace_headers(scope: Scope) -> dict[str, str] | None:
    """``traceparent`` and ``tracestate`` from the request headers (None when absent)."""
    found: dict[str, str] | None = None
    for key, value in scope.get("headers") or ():
        if key in (b"traceparent", b"tracestate") and len(value) <= MAX_TRACE_HEADER:
            if found is None:
                found = {}
            found[key.decode("latin-1")] = value.decode("latin-1")
    return found


class _LifespanSend:
    """Passes lifespan messages on; stores what was captured before shutdown completes."""

    def __init__(self, send: Send) -> None:
        self._send = send

    async def __call__(self, message: Message) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            try:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, kronicler.flush, FLUSH_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - shutdown goes on regardless
                internal_error("lifespan flush", exc)
        await self._send(message)
