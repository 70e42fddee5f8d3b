"""One server span per HTTP request, for the ASGI and WSGI middleware, on the decorator's roads.

A request's span is started before the application runs (so calls captured inside it become its
children) but its name is known only afterwards: the route template (``GET /items/{id}``) is
found by the framework's routing, and the status code by the response. The fast pipeline allows
that cheaply because a compact record names its call site only when it is written: the span
starts as a frame like a decorated call's (:mod:`kronicler.otel.current`), and at the end the
middleware picks the call site for ``(method, route, status, scheme, server)`` from a small
table, registering it with the pipeline the first time. An ordinary request therefore costs what
a decorated call costs plus one dictionary look-up, and its attributes are stored as a
dictionary code per row, never as text per row.

Names and attributes follow the OpenTelemetry HTTP server conventions, kept bounded so the call
site table (and the database's dictionary) cannot grow with traffic:

* name ``{method} {route}``, or ``{method}`` alone when no route matched (a 404, a sub-app
  without routing), as the conventions say; an unknown method is ``_OTHER`` and names the span
  ``HTTP``. The raw path is never used: it is unbounded.
* attributes ``http.request.method``, ``http.route``, ``http.response.status_code``,
  ``url.scheme``, ``server.address`` and ``server.port`` (of the listening socket, not the
  client-chosen ``Host`` header), ``network.protocol.version``, and ``error.type`` (the
  exception's type, or the status code of a 5xx). ``url.path`` and ``url.query`` are not
  stored (unbounded).
* status ERROR on an escaping exception or a 5xx; a 4xx is the client's error and leaves the
  status unset, as the conventions say for servers.

Past :data:`MAX_SITES` distinct sites (a misconfigured app whose "routes" are raw paths) further
requests are stored through the general path, as a renamed span with its own attributes.

With a global OpenTelemetry SDK ``TracerProvider`` the span is an SDK span instead (as for the
decorator), so the user's processors see it; with Kronicler disabled (``KRONICLER_ENABLED=0``,
``OTEL_SDK_DISABLED=true``, ``configure(enabled=False)``) the middleware only passes requests
on. A W3C ``traceparent`` header (through the global propagator) makes the request continue the
caller's trace. Nothing here raises into the application: a failure of ours is logged once and
the request runs uncaptured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from kronicler.db.schema import canonical_attributes
from kronicler.otel import current, tracer
from kronicler.otel.contract import exception_type_name
from kronicler.otel.current import Frame
from kronicler.otel.tracer import CallSite, internal_error

KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY"}
)
OTHER_METHOD = "_OTHER"
MAX_SITES = 4096  # distinct (name, attributes) sites a process registers for requests
SERVER_KIND = int(SpanKind.SERVER.value)
MAX_TRACE_HEADER = 1024  # longer traceparent/tracestate values are ignored, not parsed

METHOD = "http.request.method"
ROUTE = "http.route"
STATUS_CODE = "http.response.status_code"
SCHEME = "url.scheme"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
PROTOCOL_VERSION = "network.protocol.version"
ERROR_TYPE = "error.type"


@dataclass(frozen=True, slots=True)
class Exchange:
    """What the middleware learnt about one request and its response.

    Fields:
        method: the request method as sent (normalised here).
        route: the matched route template, or None when nothing matched.
        status: the response's status code, or None when no response was started.
        scheme: ``http`` or ``https``.
        address: host of the listening socket (None when the server does not say).
        port: port of the listening socket (None likewise).
        protocol: HTTP version, e.g. ``1.1`` (None when unknown).
    """

    method: str
    route: str | None
    status: int | None
    scheme: str
    address: str | None
    port: int | None
    protocol: str | None


def text_or_empty(value: Any) -> str:
    """``value`` if it is text, else ``""`` (servers hand over what clients sent)."""
    return value if isinstance(value, str) else ""


def normal_method(method: str) -> str:
    """The method as the conventions store it: upper case if known, else ``_OTHER``."""
    upper = method.upper() if isinstance(method, str) else ""
    return upper if upper in KNOWN_METHODS else OTHER_METHOD


def span_name(method: str, route: str | None) -> str:
    """``GET /items/{id}``; ``GET`` without a route; ``HTTP`` for an unknown method."""
    base = "HTTP" if method == OTHER_METHOD else method
    return f"{base} {route}" if route else base


def exchange_attributes(ex: Exchange, error_type: str | None) -> dict[str, Any]:
    """The span's attributes for ``ex`` (keys without a value are left out)."""
    attrs: dict[str, Any] = {METHOD: normal_method(ex.method), SCHEME: ex.scheme}
    if ex.route:
        attrs[ROUTE] = ex.route
    if ex.status is not None:
        attrs[STATUS_CODE] = ex.status
    if ex.address:
        attrs[SERVER_ADDRESS] = ex.address
    if ex.port is not None:
        attrs[SERVER_PORT] = ex.port
    if ex.protocol:
        attrs[PROTOCOL_VERSION] = ex.protocol
    if error_type:
        attrs[ERROR_TYPE] = error_type
    return attrs


class _SiteTable:
    """Call sites of finished requests, one per distinct exchange; bounded.

    Looked up by a tuple of the exchange's fields (a hash, no text made per request); the
    attribute set and its canonical text are made once, when a site is first seen.
    """

    def __init__(self) -> None:
        self._sites: dict[tuple[Any, ...], CallSite] = {}
        self._lock = threading.Lock()  # protects growth of _sites

    def get(self, ex: Exchange, error_type: str | None) -> CallSite | None:
        key = (normal_method(ex.method), ex.route, ex.status, ex.scheme, ex.address, ex.port,
               ex.protocol, error_type)  # fmt: skip
        found = self._sites.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._sites.get(key)
            if found is None and len(self._sites) < MAX_SITES:
                attrs = exchange_attributes(ex, error_type)
                found = self._sites[key] = tracer.new_site(
                    span_name(attrs[METHOD], ex.route), SERVER_KIND, attrs,
                    canonical_attributes(attrs),
                )  # fmt: skip
            return found

    def __len__(self) -> int:
        return len(self._sites)


SITES = _SiteTable()
_GENERIC: dict[str, CallSite] = {}  # per method: where a request starts, and the overflow site


def _generic_site(method: str) -> CallSite:
    site = _GENERIC.get(method)
    if site is None:
        attrs = {METHOD: method}
        site = _GENERIC[method] = tracer.new_site(
            span_name(method, None), SERVER_KIND, attrs, canonical_attributes(attrs)
        )
    return site


def _error_type(ex: Exchange, exc: BaseException | None) -> str | None:
    if isinstance(exc, Exception):
        return exception_type_name(exc)
    if ex.status is not None and ex.status >= 500:
        return str(ex.status)
    return None


def _parent_context(headers: Mapping[str, str] | None) -> Context | None:
    """The caller's context from a ``traceparent`` header (None without one)."""
    if not headers or "traceparent" not in headers:
        return None
    return propagate.extract(headers)


class RequestSpan:
    """The span of one request on one of the decorator's roads (see the module docstring).

    Use: ``span = RequestSpan.start(method, headers)``; None means "run the request plainly".
    Then ``token = span.enter()`` ... ``span.exit(token)`` around the application's code,
    ``span.body_done()`` when the last byte of the body is sent, and ``span.finish(exchange,
    exc)`` once.
    """

    __slots__ = ("_frame", "_sdk", "_pseq", "_t0", "_t1", "_base", "_method")

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._sdk: Any = None
        self._pseq = 0
        self._t0 = 0
        self._t1: int | None = None
        self._base: Context | None = None
        self._method = OTHER_METHOD

    @classmethod
    def start(cls, method: str, headers: Mapping[str, str] | None) -> RequestSpan | None:
        """A started span, or None when Kronicler is disabled or cannot capture. Never raises."""
        route = tracer.route()
        if route is tracer.PLAIN:
            return None
        try:
            self = cls()
            self._method = normal_method(method)
            parent_ctx = _parent_context(headers)
            if route is not None:  # a global SDK provider: a real SDK span
                site = _generic_site(self._method).site
                self._sdk = route.start_span(
                    site.name, context=parent_ctx, kind=SpanKind.SERVER,
                    attributes=site.attributes,
                )  # fmt: skip
                self._base = parent_ctx
            else:
                # A frame, as a decorated call's (see kronicler.otel.current): under the
                # caller's remote context if the request carried one, else under what is current.
                under = parent_ctx if parent_ctx is not None else current.value_get()
                self._frame, self._pseq = current.start(under, tracer.next_seq())
            self._t0 = perf_counter_ns()
            return self
        except Exception as exc:  # noqa: BLE001 - the request runs uncaptured
            internal_error("request start", exc)
            return None

    def enter(self) -> Any:
        """Make the span current (with the caller's baggage, if any); a token for ``exit``."""
        try:
            if self._frame is not None:
                return current.value_set(self._frame)
            base = self._base if self._base is not None else otel_context.get_current()
            return otel_context.attach(trace.set_span_in_context(self._sdk, base))
        except Exception as exc:  # noqa: BLE001
            internal_error("request enter", exc)
            return None

    def exit(self, token: Any) -> None:
        if token is None:
            return
        try:
            if self._frame is None:
                otel_context.detach(token)
            else:
                current.value_reset(token)
        except Exception as exc:  # noqa: BLE001
            internal_error("request exit", exc)

    def body_done(self) -> None:
        """The response's last byte was handed to the server: the request's time ends here."""
        if self._t1 is None:
            self._t1 = perf_counter_ns()

    def finish(self, ex: Exchange, exc: BaseException | None) -> None:
        """Name, attribute and end the span. Never raises."""
        try:
            t1 = self._t1 if self._t1 is not None else perf_counter_ns()
            error_type = _error_type(ex, exc)
            server_error = ex.status is not None and ex.status >= 500
            frame = self._frame
            if frame is None:
                self._finish_sdk(ex, error_type, exc, server_error, t1)
                return
            if server_error:  # kept OK if the app said OK
                current.span_of(frame).set_status(Status(StatusCode.ERROR))
            cs = SITES.get(ex, error_type)
            if cs is None:  # the table is full: this request carries its own name and attributes
                attrs = exchange_attributes(ex, error_type)
                cs = _generic_site(attrs[METHOD])
                span = current.span_of(frame)
                span.set_attributes(attrs)
                span.update_name(span_name(attrs[METHOD], ex.route))
            tracer.finish(frame, cs.index, cs.site, self._t0, t1, self._pseq, exc)
        except Exception as err:  # noqa: BLE001
            internal_error("request finish", err)

    def _finish_sdk(
        self, ex: Exchange, error_type: str | None, exc: BaseException | None,
        server_error: bool, t1: int,
    ) -> None:  # fmt: skip
        attrs = exchange_attributes(ex, error_type)
        span = self._sdk
        span.update_name(span_name(attrs[METHOD], ex.route))
        span.set_attributes(attrs)
        if isinstance(exc, Exception):
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        elif server_error:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=time.time_ns() - (perf_counter_ns() - t1))
