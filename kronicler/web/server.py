"""Running the dashboard: blocking (``serve``) or in a background thread (``WebServer``).

uvicorn runs the app. The listening socket is bound here, before uvicorn starts, so that port 0
works (the OS picks a free port and :attr:`WebServer.port` reports it) and a busy port fails in
the caller with ``OSError`` instead of inside a thread. ``serve`` blocks until SIGINT/SIGTERM and
then returns (it runs a ``WebServer`` and waits on its own signal handlers, so uvicorn does not
re-raise the signal after shutting down); ``WebServer`` is for embedding next to the gRPC
server in one process (``kronicler serve --http``) and for tests. Access logs are off: the page
URL may carry ``?token=``.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kronicler.db import Database
    from kronicler.query.backend import QueryBackend

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
MISSING_EXTRA = (
    "the dashboard needs FastAPI and uvicorn: pip install '.[web]' in a Kronicler checkout, or "
    "pip install 'fastapi>=0.110' 'uvicorn>=0.29'"
)


def parse_address(text: str, *, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``"[::1]:8080"``, ``":8080"``, ``"localhost"`` -> ``(host, port)``."""
    text = text.strip()
    if not text:
        raise ValueError("address must not be empty")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}: use [IPv6]:PORT")
        port_text = rest[1:]
    elif text.count(":") > 1:
        raise ValueError(f"bad address {text!r}: write IPv6 addresses as [addr]:PORT")
    else:
        host, _, port_text = text.partition(":")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ValueError(f"bad port in address {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    return host or DEFAULT_HOST, port


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def _server(
    source: Database | QueryBackend,
    sock: socket.socket,
    token: str | None,
    log_level: str,
    **app_options: Any,
) -> Any:
    try:
        import uvicorn

        from kronicler.web.app import create_app
    except ImportError as exc:  # depends on the environment
        raise ImportError(MISSING_EXTRA) from exc

    config = uvicorn.Config(
        create_app(source, token=token, **app_options), log_level=log_level, access_log=False, lifespan="off",
        server_header=False, timeout_graceful_shutdown=2,
    )  # fmt: skip
    return uvicorn.Server(config)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(
    source: Database | QueryBackend,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    token: str | None = None,
    log_level: str = "warning",
    ready: Callable[[str], object] | None = None,
    allowed_hosts: Sequence[str] = (),
) -> None:
    """Serve the dashboard on ``host:port`` until SIGINT or SIGTERM, then return normally.

    ``ready``, if given, is called with the page URL once the server accepts requests (to print
    it). Signals are caught only when called from the main thread (elsewhere, use
    :class:`WebServer`); the previous handlers are put back on return. The caller owns ``source``
    (a database or a query backend) and closes it afterwards. Raises ``OSError`` when the address cannot be bound.
    """
    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for wanted in (signal.SIGINT, signal.SIGTERM):
            previous[wanted] = signal.signal(wanted, lambda *_: stop.set())
    try:
        with WebServer(
            source, host, port, token=token, log_level=log_level, allowed_hosts=allowed_hosts
        ) as web:
            if ready is not None:
                ready(web.url)
            while not stop.wait(0.5) and web.running:
                pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class WebServer:
    """The dashboard in a background thread: ``start()``, ``url``, ``stop()``."""

    def __init__(
        self,
        source: Database | QueryBackend,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        token: str | None = None,
        log_level: str = "warning",
        allowed_hosts: Sequence[str] = (),
        **app_options: Any,
    ) -> None:
        """``app_options`` go to :func:`kronicler.web.app.create_app` (e.g. ``clock``).

        Bound to loopback, the server answers only requests addressed to a loopback name or to
        one of ``allowed_hosts`` (DNS-rebinding protection); bound elsewhere, it checks ``Host``
        only when ``allowed_hosts`` is given.
        """
        from kronicler.server.auth import is_loopback

        if allowed_hosts or is_loopback(host):
            app_options.setdefault("allowed_hosts", list(allowed_hosts))
        self._source, self._host, self._port = source, host, port
        self._token, self._log_level = token, log_level
        self._app_options = app_options
        self._sock: socket.socket | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> WebServer:
        """Bind, start serving in a daemon thread, and wait until it accepts requests."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._sock = bind(self._host, self._port)
        try:
            self._server = _server(
                self._source, self._sock, self._token, self._log_level, **self._app_options
            )
        except BaseException:
            self._sock.close()
            self._sock = None
            raise
        self._server.install_signal_handlers = lambda: None  # older uvicorn; newer skips threads
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]},
            name="kronicler-web", daemon=True,
        )  # fmt: skip
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not self._server.started:
            self.stop()
            raise RuntimeError("the dashboard server did not start")
        return self

    @property
    def running(self) -> bool:
        """True while the server thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("server not started")
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        if self._sock is None:
            raise RuntimeError("server not started")
        return url_of(self._sock)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, finish open requests (up to ``timeout``), close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
