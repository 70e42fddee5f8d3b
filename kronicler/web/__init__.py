"""The web dashboard: a JSON API over :mod:`kronicler.query` and one static page that draws it.

Needs the ``web`` extra (FastAPI and uvicorn: ``pip install '.[web]'`` in a checkout); importing this
package does not, so the CLI can offer the commands and explain what is missing. Entry points:

- ``create_app(source, *, token=None)``: the ASGI application (mount it in your own server);
- ``serve(source, host, port, *, token=None)``: serve it, blocking until SIGINT/SIGTERM;
- ``WebServer(source, host, port, *, token=None).start()`` / ``.stop()``: in a background thread;

``source`` is an open ``Database`` or any ``QueryBackend``: a gRPC ``Client`` of a node, or a
cluster ``Frontend`` (``kronicler serve --peers ... --http``), whose missing peers the page shows.
- ``parse_address("127.0.0.1:8080") -> (host, port)`` for ``--http ADDR`` options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kronicler.web.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MISSING_EXTRA,
    WebServer,
    parse_address,
    serve,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kronicler.db import Database
    from kronicler.query.backend import QueryBackend

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MISSING_EXTRA",
    "WebServer",
    "create_app",
    "parse_address",
    "serve",
]


def create_app(
    source: Database | QueryBackend, *, token: str | None = None, **options: Any
) -> FastAPI:
    """The dashboard's ASGI app over ``source`` (see :func:`kronicler.web.app.create_app`)."""
    try:
        from kronicler.web.app import create_app as _create
    except ImportError as exc:
        raise ImportError(MISSING_EXTRA) from exc
    return _create(source, token=token, **options)
