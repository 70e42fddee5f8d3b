"""The dashboard's ASGI application: the JSON API (:mod:`kronicler.web.api`) and the page.

FastAPI gives parameter checking and an OpenAPI description (``/api/openapi.json``) for free.
Errors always come back as JSON ``{"status", "error", "message"}``: bad parameters -> 400 (also
for FastAPI's own type checks, which would otherwise say 422), unknown function -> 404, missing
or wrong token -> 401, a question the backend does not answer (an older server without that RPC)
-> 501, a remote query server's failure -> 502/503/504 with its message. With a token set every ``/api/v1`` route except ``health`` needs
``Authorization: Bearer <token>``; the page and its assets hold no data and stay open, so the page
can load and then send the token it was given (``?token=``, kept in ``sessionStorage``). The
interactive ``/docs`` page is left out because FastAPI's loads from a CDN and the dashboard must
work offline; the description itself is served.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from kronicler import __version__
from kronicler.db import Database
from kronicler.errors import (
    ClosedError,
    DeadlineExceededError,
    KroniclerError,
    LimitExceededError,
    NotFoundError,
    UnavailableError,
    shorten,
)
from kronicler.query.local import Local
from kronicler.server.auth import is_loopback
from kronicler.web import api
from kronicler.web.peers import Catalogue, notice, request_missing

if TYPE_CHECKING:
    from kronicler.query.backend import QueryBackend

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Seconds one HTTP request's questions may take in all before it is answered 504.
DEFAULT_REQUEST_TIMEOUT = 30.0
_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # the page URL may carry ?token=
    "cache-control": "no-cache",
}
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 421: "Misdirected Request", 500: "Internal Server Error",
            501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}  # fmt: skip
#: The HTTP status for a remote backend's gRPC failure (the query server's own, not a bad
#: parameter: the client raises those as ValueError and NotFoundError).
_RPC_STATUS = {"UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "FAILED_PRECONDITION": 501,
               "UNIMPLEMENTED": 501}  # fmt: skip


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON body of every error answer."""
    body = {"status": status, "error": _REASONS.get(status, "Error"), "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> str:
    """FastAPI's type errors as one sentence: ``since: Input should be ... (got 'abc')``."""
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path", "header"))
        got = f" (got {e['input']!r})" if e.get("input") is not None else ""
        parts.append(f"{where or 'request'}: {e.get('msg', 'invalid')}{got}")
    return "; ".join(parts) or "bad request"


class AnswerHeaders:
    """Adds :data:`_HEADERS` to every response, and the peers missing from its answer
    (:mod:`kronicler.web.peers`); plain ASGI: no per-request task or copy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        missing = request_missing(scope)  # the route's backend adds to it

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in _HEADERS.items()
                            if k.encode() not in have]  # fmt: skip
                headers += notice(missing)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostGuard:
    """Refuses requests whose ``Host`` (or ``Origin``) names a host outside the allow-list.

    A dashboard bound to loopback is reachable from the user's browser, and so from any web page
    the browser opens: DNS rebinding points a hostile name at 127.0.0.1, and the browser then
    sends that name as ``Host``. Answering only loopback names (and the names the operator
    allows) closes that door; ``Origin`` is checked too when a browser sends one, so another
    site's script cannot read the API even with the right ``Host``.
    """

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app = app
        self.allowed = {a.lower().strip("[]") for a in allowed}

    def ok(self, host: str) -> bool:
        return is_loopback(host) or host.lower().strip("[]") in self.allowed

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = _hostname(headers.get(b"host", ""))
        origin = headers.get(b"origin")
        if not self.ok(host):
            reply = error(421, f"host {shorten(host, 60)} is not served here; start the "
                               "dashboard with --allow-host NAME to allow it")  # fmt: skip
        elif origin not in (None, "null") and not self.ok(_hostname(origin.split("://")[-1])):
            reply = error(403, f"cross-origin request from {shorten(origin, 60)} refused")
        else:
            await self.app(scope, receive, send)
            return
        await reply(scope, receive, send)


def _hostname(netloc: str) -> str:
    """``"example.com:8080" -> "example.com"``, ``"[::1]:80" -> "::1"``."""
    netloc = netloc.strip().split("/")[0]
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    return netloc.rpartition(":")[0] if netloc.count(":") == 1 else netloc


def create_app(
    source: Database | QueryBackend,
    *,
    token: str | None = None,
    clock: Callable[[], int] = time.time_ns,
    allowed_hosts: Sequence[str] | None = None,
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
) -> FastAPI:
    """The dashboard over an open database or any :class:`QueryBackend` (a gRPC client, a
    cluster frontend); ``token`` (if set) guards the data routes.

    ``clock`` gives "now" in Unix epoch ns for the presets (a parameter so tests can pin it).
    ``allowed_hosts``: when set, only requests whose ``Host`` is a loopback name or one of these
    are answered (:class:`HostGuard`); ``None`` answers any host. ``request_timeout``: seconds a
    request's questions may take in all (None: no limit); past it the query stops and the answer
    is 504. The caller keeps ownership of ``source`` and closes it after the server stops.

    A question the backend cannot answer (an older server without that RPC, a remote server's
    refusal) is answered 501, 502, 503 or 504 with the backend's message, never a bare 500.
    """
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError(f"token must be None or non-empty text, got {token!r}")
    if request_timeout is not None and (
        isinstance(request_timeout, bool)
        or not isinstance(request_timeout, (int, float))
        or not 0 < request_timeout < float("inf")
    ):
        raise ValueError(f"request_timeout must be None or seconds > 0, got {request_timeout!r}")
    app = FastAPI(
        title="Kronicler dashboard API",
        version=__version__,
        description="Latency statistics of captured functions: the JSON API behind the "
        "Kronicler dashboard. Durations are `*_ns` (nanoseconds), times `*_unix_nano`.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    if isinstance(source, Database):
        app.state.kronicler = api.Context(
            Local(source), Catalogue(source), clock, token, request_timeout
        )
    else:
        app.state.kronicler = api.Context(source, Catalogue(None), clock, token, request_timeout)
    app.include_router(api.router)
    app.include_router(api.data)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, validation_message(exc))

    @app.exception_handler(ValueError)
    async def _value_error(_: Request, exc: ValueError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(KroniclerError)
    async def _kronicler_error(_: Request, exc: KroniclerError) -> JSONResponse:
        if isinstance(exc, NotFoundError):
            return error(404, str(exc.args[0]) if exc.args else "not found")
        if isinstance(exc, LimitExceededError):
            return error(400, str(exc))
        if isinstance(exc, DeadlineExceededError):
            return error(504, str(exc))
        if isinstance(exc, (ClosedError, UnavailableError)):
            return error(503, str(exc))
        if type(exc) is KroniclerError:  # the backend does not answer this question
            return error(501, str(exc))
        return error(500, f"{type(exc).__name__}: {exc}")

    @app.exception_handler(grpc.RpcError)
    async def _rpc_error(_: Request, exc: grpc.RpcError) -> JSONResponse:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        name = code.name if code is not None else "UNKNOWN"
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        return error(_RPC_STATUS.get(name, 502), f"the query server answered {name}: {details}")

    index = (STATIC_DIR / "index.html").read_text("utf-8").replace("__VERSION__", __version__)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(index)

    app.mount("/assets", StaticFiles(directory=STATIC_DIR), name="assets")
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(AnswerHeaders)
    if allowed_hosts is not None:
        app.add_middleware(HostGuard, allowed=list(allowed_hosts))
    return app
