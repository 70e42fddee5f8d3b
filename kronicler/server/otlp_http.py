"""OTLP/HTTP: ``POST /v1/traces`` with binary protobuf or JSON, as browsers, the JavaScript SDK's
default exporter and the Collector's ``otlphttp`` exporter send it (default port 4318).

What the OTLP specification asks of a receiver, and how it is met here:

- ``Content-Type: application/x-protobuf`` or ``application/json`` (anything else: 415); the
  answer uses the request's type. JSON follows the OTLP mapping: ids are hex, not base64, and
  unknown fields are ignored.
- ``Content-Encoding: gzip`` is decompressed with the same size limit as the body (64 MiB by
  default; past it: 413), so a small gzip bomb cannot expand in memory.
- 200 with an ``ExportTraceServiceResponse`` (``partial_success`` when spans were rejected),
  400 with a ``google.rpc.Status`` for undecodable data (not retried), 503 with ``Retry-After``
  when the spans cannot be taken now (retried), 401 without the server's token.
- CORS for browser SDKs: origins in ``cors_origins`` (or ``*``) get the preflight answer and the
  ``Access-Control-Allow-Origin`` header.

Spans go to the same ``submit`` as OTLP/gRPC (:mod:`kronicler.server.ingest`): protobuf bodies go
to the ingest workers undecoded; JSON bodies are translated to protobuf here first. The server
is the standard library's threaded HTTP server (no extra dependency): at most ``max_in_flight``
requests are processed at once (more get 503) and idle connections time out, so slow or many
clients cannot pile up threads.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import zlib
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp

from kronicler.errors import shorten
from kronicler.server.auth import bearer_matches
from kronicler.server.ingest import Outcome

log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
DEFAULT_PORT = 4318
DEFAULT_MAX_BODY_BYTES = 64 << 20
DEFAULT_MAX_IN_FLIGHT = 16
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
_IDLE_SECONDS = 30.0


class Ingest(Protocol):
    """Where OTLP request bytes go: an :class:`~kronicler.server.ingest.IngestPool` or local."""

    def submit(self, payload: bytes, timeout: float | None) -> Outcome: ...


class BadRequest(ValueError):
    """The body cannot be decoded (answered 400, never retried)."""


def json_to_protobuf(body: bytes) -> bytes:
    """An OTLP/JSON ``ExportTraceServiceRequest`` as binary protobuf (``BadRequest`` if invalid)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadRequest(f"body is not JSON: {shorten(str(exc), 200)}") from None
    if not isinstance(doc, dict):
        raise BadRequest("body must be a JSON object with resourceSpans")
    for rs in _objects(doc.get("resourceSpans")):
        for ss in _objects(rs.get("scopeSpans")):
            for span in _objects(ss.get("spans")):
                _hex_ids_to_base64(span)
                for link in _objects(span.get("links")):
                    _hex_ids_to_base64(link)
    try:
        message = json_format.ParseDict(doc, otlp.ExportTraceServiceRequest(),
                                        ignore_unknown_fields=True)  # fmt: skip
    except (json_format.ParseError, RecursionError, TypeError, ValueError) as exc:
        raise BadRequest(f"not an OTLP trace request: {shorten(str(exc), 200)}") from None
    return bytes(message.SerializeToString())


def _objects(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _hex_ids_to_base64(obj: dict[str, Any]) -> None:
    for key in _ID_FIELDS:
        value = obj.get(key)
        if isinstance(value, str) and value:
            try:
                raw = binascii.unhexlify(value)
            except (binascii.Error, ValueError):
                raise BadRequest(f"{key} must be hex, got {shorten(value, 60)}") from None
            obj[key] = base64.b64encode(raw).decode("ascii")


def _status_body(message: str, content_type: str, code: int) -> bytes:
    """A ``google.rpc.Status`` (code, message), encoded by hand: two fields, no dependency."""
    if content_type == JSON:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _gunzip(body: bytes, limit: int) -> bytes:
    inflate = zlib.decompressobj(wbits=31)
    try:
        out = inflate.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise _TooLarge
    return out


class _TooLarge(Exception):
    pass


class OTLPHTTPServer:
    """``POST /v1/traces`` on ``host:port`` in a background thread; ``port`` 0 picks one."""

    def __init__(
        self,
        ingest: Ingest,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        token: str | None = None,
        cors_origins: Sequence[str] = (),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if max_body_bytes < 1 or max_in_flight < 1:
            raise ValueError(
                f"max_body_bytes and max_in_flight must be >= 1, got {max_body_bytes} "
                f"and {max_in_flight}"
            )
        handler = type("Handler", (_Handler,), {
            "ingest": ingest, "token": token, "cors": frozenset(cors_origins),
            "max_body": max_body_bytes, "slots": threading.BoundedSemaphore(max_in_flight),
        })  # fmt: skip
        try:
            self._httpd = _server_class(host)((host, port), handler)
        except OSError as exc:
            raise OSError(
                f"cannot listen for OTLP/HTTP on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def address(self) -> str:
        host = str(self._httpd.server_address[0])
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}{TRACES_PATH}"

    def start(self) -> OTLPHTTPServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
            name="kronicler-otlp-http", daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> OTLPHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _server_class(host: str) -> type[ThreadingHTTPServer]:
    import socket
    import socketserver

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def server_bind(self) -> None:
            # HTTPServer's own looks the host up in DNS (getfqdn); a name is not needed here
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = str(host), int(self.server_address[1])

    return Server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as OTLP clients expect
    timeout = _IDLE_SECONDS  # a connection idle (or trickling) this long is closed
    server_version = "kronicler"
    sys_version = ""
    ingest: Ingest
    token: str | None
    cors: frozenset[str]
    max_body: int
    slots: threading.BoundedSemaphore

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("%s " + format, self.address_string(), *args)

    # -- CORS ------------------------------------------------------------------------------
    def _allowed_origin(self) -> str | None:
        origin = self.headers.get("Origin")
        if origin is None or not self.cors:
            return None
        return origin if origin in self.cors or "*" in self.cors else None

    def do_OPTIONS(self) -> None:  # noqa: N802 - the http.server name
        origin = self._allowed_origin()
        if origin is None:
            self._reply(403, b"", "text/plain")
            return
        self._reply(204, b"", None, {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, Authorization",
            "Access-Control-Max-Age": "600",
        })  # fmt: skip

    def do_GET(self) -> None:  # noqa: N802
        self._drain()
        self._reply(405, b"use POST\n", "text/plain", {"Allow": "POST"})

    # -- export ----------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        kind = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        answer_as = JSON if kind == JSON else PROTOBUF
        if path != TRACES_PATH:
            self._drain()
            self._fail(
                404, f"no such path {shorten(path, 60)}; spans go to {TRACES_PATH}", answer_as
            )
            return
        if self.token and not bearer_matches(self.headers.get("Authorization"), self.token):
            self._drain()
            self._fail(401, "missing or wrong bearer token", answer_as)
            return
        if kind not in (PROTOBUF, JSON):
            self._drain()
            self._fail(415, f"Content-Type must be {PROTOBUF} or {JSON}", answer_as)
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._fail(411, "Content-Length is required", answer_as, close=True)
            return
        if int(length) > self.max_body:
            self._fail(413, f"body over {self.max_body} bytes", answer_as, close=True)
            return
        if not self.slots.acquire(blocking=False):
            self._drain(int(length))
            self._fail(503, "busy; retry later", answer_as, {"Retry-After": "1"})
            return
        try:
            self._export(int(length), kind, answer_as)
        finally:
            self.slots.release()

    def _export(self, length: int, kind: str, answer_as: str) -> None:
        body = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        try:
            if encoding == "gzip":
                body = _gunzip(body, self.max_body)
            elif encoding not in ("identity", "none", ""):
                self._fail(415, f"Content-Encoding {shorten(encoding, 40)} is not supported; "
                                "use gzip or none", answer_as)  # fmt: skip
                return
            payload = json_to_protobuf(body) if kind == JSON else body
        except _TooLarge:
            self._fail(413, f"body over {self.max_body} bytes once decompressed", answer_as)
            return
        except BadRequest as exc:
            self._fail(400, str(exc), answer_as)
            return
        outcome = self.ingest.submit(payload, 30.0)
        if outcome.code == "invalid":
            self._fail(400, f"malformed request message ({outcome.message})", answer_as)
        elif outcome.code == "retry":
            self._fail(503, f"{outcome.message}; retry with backoff", answer_as,
                       {"Retry-After": "1"})  # fmt: skip
        elif outcome.code != "ok":
            self._fail(500, "internal error storing spans", answer_as)
        else:
            response = otlp.ExportTraceServiceResponse()
            if outcome.rejected:
                response.partial_success.rejected_spans = outcome.rejected
                response.partial_success.error_message = outcome.message
            if answer_as == JSON:
                data = json_format.MessageToJson(response, indent=None).encode()
            else:
                data = response.SerializeToString()
            self._reply(200, data, answer_as)

    # -- plumbing --------------------------------------------------------------------------
    def _drain(self, length: int | None = None) -> None:
        """Read a body we will not use (bounded), so the connection can be reused."""
        if length is None:
            text = self.headers.get("Content-Length") or "0"
            length = int(text) if text.isdigit() else 0
        if 0 < length <= self.max_body:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _fail(
        self, status: int, message: str, content_type: str,
        headers: dict[str, str] | None = None, *, close: bool = False,
    ) -> None:  # fmt: skip
        code = {400: 3, 401: 16, 404: 5, 411: 3, 413: 8, 415: 3, 503: 14}.get(status, 13)
        if close:
            self.close_connection = True
        self._reply(status, _status_body(message, content_type, code), content_type, headers)

    def _reply(
        self, status: int, body: bytes, content_type: str | None,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        origin = self._allowed_origin()
        if origin is not None:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
