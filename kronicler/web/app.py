"""The dashboard's ASGI application: the JSON API (:mod:`kronicler.web.api`) and the page.

FastAPI gives parameter checking and an OpenAPI description (``/api/openapi.json``) for free.
Errors always come back as JSON ``{"status", "error", "message"}``: bad parameters -> 400 (also
for FastAPI's own type checks, which would otherwise say 422), unknown function -> 404, missing
or wrong token -> 401. With a token set every ``/api/v1`` route except ``health`` needs
``Authorization: Bearer <token>``; the page and its assets hold no data and stay open, so the page
can load and then send the token it was given (``?token=``, kept in ``sessionStorage``). The
interactive ``/docs`` page is left out because FastAPI's loads from a CDN and the dashboard must
work offline; the description itself is served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from kronicler import __version__
from kronicler.errors import ClosedError, KroniclerError, NotFoundError
from kronicler.web import api

if TYPE_CHECKING:
    from kronicler.db import Database

STATIC_DIR = Path(__file__).resolve().parent / "static"
_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # the page URL may carry ?token=
    "cache-control": "no-cache",
}
_REASONS = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


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


class SecurityHeaders:
    """Adds :data:`_HEADERS` to every response (plain ASGI: no per-request task or copy)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in _HEADERS.items()
                            if k.encode() not in have]  # fmt: skip
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    db: Database, *, token: str | None = None, clock: Callable[[], int] = time.time_ns
) -> FastAPI:
    """The dashboard over an open database; ``token`` (if set) guards the data routes.

    ``clock`` gives "now" in Unix epoch ns for the presets (a parameter so tests can pin it).
    The caller keeps ownership of ``db`` and closes it after the server stops.
    """
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError(f"token must be None or non-empty text, got {token!r}")
    app = FastAPI(
        title="Kronicler dashboard API",
        version=__version__,
        description="Latency statistics of captured functions: the JSON API behind the "
        "Kronicler dashboard. Durations are `*_ns` (nanoseconds), times `*_unix_nano`.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.kronicler = api.Context(db, clock, token)
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
        return error(503 if isinstance(exc, ClosedError) else 500, f"{type(exc).__name__}: {exc}")

    index = (STATIC_DIR / "index.html").read_text("utf-8").replace("__VERSION__", __version__)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(index)

    app.mount("/assets", StaticFiles(directory=STATIC_DIR), name="assets")
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(SecurityHeaders)
    return app
