"""``KroniclerMiddleware`` for WSGI applications: Flask, Django, and any other WSGI app.

::

    from kronicler.wsgi import KroniclerMiddleware

    app.wsgi_app = KroniclerMiddleware(app.wsgi_app)             # Flask
    application = KroniclerMiddleware(get_wsgi_application())    # Django (wsgi.py)

Every HTTP request becomes one server span named by its route template, stored through the
decorator's fast pipeline (see :mod:`kronicler.otel.server_span` for names, attributes and
status rules). Calls captured while the request runs, and while its body is produced, are its
children.

The route is read after the application ran, from the WSGI environment:

* ``environ["kronicler.route"]``, if anything set it (any framework can);
* Flask: ``request.url_rule.rule`` (``/items/<int:item_id>``), copied there by a handler of
  Flask's ``request_tearing_down`` signal, connected when the middleware is made (with Flask
  imported);
* Django: ``request.resolver_match.route`` is not reachable from the environment, so add
  ``"kronicler.wsgi.DjangoRoute"`` to ``MIDDLEWARE``: it copies the route into the environment
  (``request.META`` is the WSGI environ).

Flask and Django turn a view's exception into a 500 response themselves, so it never reaches a
WSGI middleware; Flask's ``got_request_exception`` signal and ``DjangoRoute.process_exception``
leave it in ``environ["kronicler.exception"]``, so the row records the exception as well as the
500.

Without a route the span is named by the method alone (``GET``), never by the raw path.

Timing: from the call of the application to the server's ``close()`` of the response iterable,
which PEP 3333 servers call after the last byte is written, so a streamed body counts until its
end. The status code comes from ``start_response``; an exception escaping before a response
started is recorded as a 500 with status ERROR.

Shutdown: WSGI has no shutdown event. The capture pipeline stores what is pending at a normal
exit (``atexit``) and on SIGTERM, SIGINT and SIGQUIT (:mod:`kronicler.otel.shutdown`); the
middleware arms those handlers when it is made, as decorating a function does (gunicorn's sync
workers exit normally after a SIGTERM, and so run ``atexit``).

Trade-off: the response iterable is wrapped, so a server's ``wsgi.file_wrapper`` fast path is
not taken for it: that is the price of timing to the end of the body.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kronicler.otel import tracer
from kronicler.otel.server_span import MAX_TRACE_HEADER, Exchange, RequestSpan, text_or_empty
from kronicler.otel.tracer import internal_error

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

ROUTE_KEY = "kronicler.route"
EXCEPTION_KEY = "kronicler.exception"  # an exception the framework turned into a response


class KroniclerMiddleware:
    """One span per request of the wrapped WSGI application (see the module docstring)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        tracer.PIPELINE.arm_stop_signals()
        _connect_flask()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        span = RequestSpan.start(
            text_or_empty(environ.get("REQUEST_METHOD")), _trace_headers(environ)
        )
        if span is None:
            return self.app(environ, start_response)
        status: list[int] = []

        def start_wrapper(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            code = _status_code(status_line)
            if status:
                status[0] = code  # a second call (with exc_info) replaces the status
            else:
                status.append(code)
            if exc_info is None:
                return start_response(status_line, headers)
            return start_response(status_line, headers, exc_info)

        token = span.enter()
        try:
            body = self.app(environ, start_wrapper)
        except BaseException as exc:
            span.exit(token)
            code = status[0] if status else (500 if isinstance(exc, Exception) else None)
            span.finish(_exchange(environ, code), exc)
            raise
        span.exit(token)
        return _Body(body, span, environ, status)


class _Body:
    """The response iterable, timed until the server closes it; the span is current inside."""

    def __init__(self, body: Iterable[bytes], span: RequestSpan, environ: dict[str, Any],
                 status: list[int]) -> None:  # fmt: skip
        self._body = body
        self._iter: Iterator[bytes] | None = None
        self._span = span
        self._environ = environ
        self._status = status
        self._error: BaseException | None = None
        self._done = False
        self._plain = isinstance(body, (list, tuple))

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._plain:  # a list or tuple: no application code runs while it is read
            if self._iter is None:
                self._iter = iter(self._body)
            return next(self._iter)
        token = self._span.enter()
        try:
            if self._iter is None:
                self._iter = iter(self._body)
            return next(self._iter)
        except StopIteration:
            raise
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            self._span.exit(token)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                token = self._span.enter()
                try:
                    close()
                finally:
                    self._span.exit(token)
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self._span.body_done()
        status = self._status[0] if self._status else None
        error = self._error
        if error is None:
            handled = self._environ.get(EXCEPTION_KEY)
            error = handled if isinstance(handled, BaseException) else None
        self._span.finish(_exchange(self._environ, status), error)


class DjangoRoute:
    """Django middleware: puts ``request.resolver_match.route`` where the WSGI middleware looks.

    Add ``"kronicler.wsgi.DjangoRoute"`` to ``settings.MIDDLEWARE`` (anywhere); the span is
    made by :class:`KroniclerMiddleware` around the WSGI application.
    """

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        response = self.get_response(request)
        try:
            match = getattr(request, "resolver_match", None)
            route = getattr(match, "route", None)
            if isinstance(route, str):
                request.META[ROUTE_KEY] = "/" + route.lstrip("/")
        except Exception:  # noqa: BLE001, S110 - the span is only named less precisely
            pass
        return response

    def process_exception(self, request: Any, exception: BaseException) -> None:
        """Remembers a view's exception, which Django turns into a 500 response."""
        try:
            request.META[EXCEPTION_KEY] = exception
        except Exception:  # noqa: BLE001, S110 - the row then shows only the 500
            pass


def _connect_flask() -> None:
    """Flask's signals tell the route and the exception, which Flask handles itself.

    Flask clears ``environ["werkzeug.request"]`` when its request context ends, so the route
    is copied while the context is torn down; a view's exception becomes a 500 inside Flask and
    only ``got_request_exception`` names it.
    """
    global _flask_connected
    flask = sys.modules.get("flask")
    if flask is None or _flask_connected:
        return
    try:
        flask.request_tearing_down.connect(_flask_route, weak=False)
        flask.got_request_exception.connect(_flask_exception, weak=False)
        _flask_connected = True
    except Exception as exc:  # noqa: BLE001 - the row then lacks the route or exception
        internal_error("flask signals", exc)


_flask_connected = False


def _flask_route(sender: Any, **_: Any) -> None:
    try:
        request = sys.modules["flask"].request
        rule = getattr(request.url_rule, "rule", None)
        if isinstance(rule, str):
            request.environ.setdefault(ROUTE_KEY, rule)
    except Exception:  # noqa: BLE001, S110 - outside a request, or Flask changed
        pass


def _flask_exception(sender: Any, exception: BaseException | None = None, **_: Any) -> None:
    try:
        sys.modules["flask"].request.environ[EXCEPTION_KEY] = exception
    except Exception:  # noqa: BLE001, S110 - outside a request, or Flask changed
        pass


def _exchange(environ: dict[str, Any], status: int | None) -> Exchange:
    port = environ.get("SERVER_PORT")
    return Exchange(
        method=text_or_empty(environ.get("REQUEST_METHOD")),
        route=_route(environ),
        status=status,
        scheme=text_or_empty(environ.get("wsgi.url_scheme")) or "http",
        address=text_or_empty(environ.get("SERVER_NAME")) or None,
        port=int(port) if isinstance(port, str) and port.isdigit() else None,
        protocol=text_or_empty(environ.get("SERVER_PROTOCOL")).partition("/")[2] or None,
    )


def _route(environ: dict[str, Any]) -> str | None:
    route = environ.get(ROUTE_KEY)
    return route if isinstance(route, str) and route else None


def _status_code(status_line: Any) -> int:
    text = status_line if isinstance(status_line, str) else ""
    head = text[:3]
    return int(head) if head.isdigit() else 0


def _trace_headers(environ: dict[str, Any]) -> dict[str, str] | None:
    parent = environ.get("HTTP_TRACEPARENT")
    if not isinstance(parent, str) or len(parent) > MAX_TRACE_HEADER:
        return None
    found = {"traceparent": parent}
    state = environ.get("HTTP_TRACESTATE")
    if isinstance(state, str) and len(state) <= MAX_TRACE_HEADER:
        found["tracestate"] = state
    return found
