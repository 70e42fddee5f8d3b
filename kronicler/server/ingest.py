"""OTLP ingest in worker processes, so decoding spans never holds the query process's GIL.

Decoding an OTLP request, converting its spans to rows and encoding them is CPU work in Python:
run in the server process it competes with queries for one interpreter lock, and a query's p99
rises tenfold under ingest. Here the server process only moves bytes: the OTLP ``Export`` handler
receives the request undecoded and hands it through a pipe to one of ``N`` worker processes
(spawned, not forked, as gRPC's threads do not survive ``fork``). Each worker opens the same
database directory and writes its own segment, as any writing process does, so readers see its
rows after its next commit (every second) with no coordination. The worker answers with the
request's outcome (stored, rejected with reasons, or "retry later"), which the handler turns into
the OTLP response or status. With ``ServerOptions(otlp_address=...)`` the workers also take
OTLP/gRPC on a port of their own, and the server process sees those requests not at all
(:mod:`kronicler.server.ingest_worker`: the worker side, both ways).

Failure behaviour: a request is answered only once its rows are in the worker's segment files
(a worker's flushing thread flushes once for every request stored since its last flush, while
the worker goes on converting the next ones: a group commit), so a worker killed at any
moment loses no acknowledged span. A request whose worker dies first gets ``UNAVAILABLE`` and
the exporter retries it (it may then be stored twice, the at-least-once delivery every OTLP
receiver has), and a supervisor thread starts a replacement. Requests beyond ``4 x workers`` in
flight get ``UNAVAILABLE`` at once, so ingest never holds more than that many of the server's
threads and queries keep theirs. Stopping sends each worker an end marker: it finishes what it
holds, closes its database (flushing every row) and exits.

Priority: workers run at ``nice 19``. A query is short and rare next to ingest, which is steady
work; at ``nice 5`` a worker still held a core for ~25% of the time a query wanted it (on 2 cores
under 100k spans/s, a GetStats waited ~5 ms p50 and ~20 ms p99 for a core, measured with
``/proc/thread-self/schedstat``); at 19 those waits fell to ~0.2 ms p50, and the paced
100k spans/s were still acknowledged, the cores having room for both. (Linux's idle
scheduling class, ``SCHED_IDLE``, on top of nice 19 was tried: in three pairs of runs beside
nice 19 alone, under 100k spans/s with other work on the machine, it lowered neither a
GetStats's run-queue wait nor its p99, and flat-out OTLP acknowledged 18-26% less.) The price
is paid when other processes fill the cores: ingest then takes what they and the queries leave, and
exporters get backpressure ("retry later") sooner (at a load average of 8-13 from other work,
15-79k spans/s were acknowledged instead of 47-92k at ``nice 5``). A host whose cores other
work fills can give ingest a higher priority (``ServerOptions(ingest_nice=5)``).
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from kronicler.errors import shorten
from kronicler.server.ingest_worker import (
    EXPORT_METHOD,
    HEADER,
    IN_FLIGHT_PER_WORKER,
    READY,
    STOP,
    STORED,
    Listen,
    Outcome,
    answer_export,
    export_handler,
    store_one,
    worker_main,
)

if TYPE_CHECKING:
    from kronicler.db.sink import SpanSink

__all__ = ["EXPORT_METHOD", "IngestPool", "IngestServicer", "Listen", "LocalIngest", "Outcome"]

log = logging.getLogger(__name__)

_START_TIMEOUT = 60.0
_RESTART_DELAY = 0.5  # seconds between a worker's death and its replacement
#: How much lower than the server's the workers' CPU priority is (``nice`` increment; see the
#: module docstring); ``IngestPool(nice=...)`` / ``ServerOptions(ingest_nice=...)`` change it.
DEFAULT_NICE = 19


def check_nice(nice: int) -> None:
    """``nice`` is a ``nice`` increment from 0 (the server's priority) to 19 (the lowest)."""
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
        raise ValueError(f"ingest nice must be an integer from 0 to 19, got {nice!r}")


def check_free(address: str) -> None:
    """Raise ``OSError`` (EADDRINUSE) when something already listens on ``address``'s port.

    The workers bind their OTLP port with ``SO_REUSEPORT``, so a second server given the same
    port (``serve``'s default one, say) would not fail: its workers would join the first's
    port, and the kernel would hand them half of its exporters' connections, storing their
    spans in the other database. A plain bind (``SO_REUSEADDR`` only, so that connections
    left in TIME_WAIT do not count) fails while any socket listens there. Port 0 is always
    free; a host that does not resolve is left to the workers' own bind to report.
    """
    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return
    try:
        found = socket.getaddrinfo(host.strip("[]") or None, int(port),
                                   type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)  # fmt: skip
    except OSError:
        return
    for family, kind, proto, _, sockaddr in found:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(
                        errno.EADDRINUSE,
                        f"cannot take OTLP on {shorten(address)}: the port is in use",
                    ) from None


class _Worker:
    """One worker process, its pipe, and the requests it has not answered yet."""

    def __init__(
        self,
        ctx: Any,
        path: str,
        nice: int,
        on_stored: Callable[[], None] | None = None,
        listen: Listen | None = None,
    ) -> None:
        self.on_stored = on_stored
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=worker_main, args=(path, child, nice, listen), name="kronicler-ingest",
            daemon=True,
        )  # fmt: skip
        self.process.start()
        child.close()
        self.pending: dict[int, Future[Outcome]] = {}
        self.ready = threading.Event()  # set once the worker opened its database
        self.port = 0  # the port it takes OTLP on itself, once ready (0: none)
        self.send_lock = threading.Lock()  # one message on the pipe at a time
        self.reader = threading.Thread(target=self._read, name="kronicler-ingest-read", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                request_id, outcome = self.conn.recv()
            except (EOFError, OSError):
                break
            if request_id == READY:
                self.port = outcome
                self.ready.set()
                continue
            if request_id == STORED:  # rows of requests it took directly
                if self.on_stored is not None:
                    self.on_stored()
                continue
            future = self.pending.pop(request_id, None)
            if future is not None:
                future.set_result(outcome)
            if outcome.code == "ok" and self.on_stored is not None:
                self.on_stored()
        self.fail_pending()

    def fail_pending(self) -> None:
        for request_id in list(self.pending):
            future = self.pending.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(Outcome("retry", message="ingest worker stopped"))

    def submit(self, request_id: int, payload: bytes) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        self.pending[request_id] = future
        try:
            with self.send_lock:
                self.conn.send_bytes(HEADER.pack(request_id) + payload)
        except (OSError, ValueError):
            self.pending.pop(request_id, None)
            future.set_result(Outcome("retry", message="ingest worker unavailable"))
        return future

    def stop(self, timeout: float) -> None:
        try:
            with self.send_lock:
                self.conn.send_bytes(STOP)
        except (OSError, ValueError):
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)
        self.conn.close()
        self.reader.join(timeout)
        self.fail_pending()


class IngestPool:
    """``workers`` ingest processes over the database at ``path``, kept alive by a supervisor.

    ``nice``: how much lower the workers' CPU priority is than this process's (0 to 19).
    ``on_stored``: called (from a reader thread) each time a worker has stored a request's rows.
    ``listen``: the workers also take OTLP/gRPC themselves there (all on one port, see
    :mod:`kronicler.server.ingest_worker`); port 0 picks one, then in :attr:`otlp_port`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        workers: int,
        *,
        nice: int = DEFAULT_NICE,
        on_stored: Callable[[], None] | None = None,
        listen: Listen | None = None,
    ) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"ingest workers must be a positive integer, got {workers!r}")
        self.path = os.fspath(Path(path))
        self.size = workers
        check_nice(nice)
        self.max_in_flight = IN_FLIGHT_PER_WORKER * workers
        self._nice = nice
        self._on_stored = on_stored
        self._listen = listen
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()  # protects _workers, _next_id, _in_flight, _closed
        self._workers: list[_Worker] = []
        self._next_id = 0
        self._in_flight = 0
        self._closed = False
        self.restarts = 0
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        #: The port the workers take OTLP/gRPC on themselves (with ``listen``), once started.
        self.otlp_port = 0

    def start(self, timeout: float = _START_TIMEOUT) -> IngestPool:
        """Start the workers and wait (up to ``timeout``) until each has opened the database."""
        deadline = time.monotonic() + timeout
        if self._listen is not None:
            check_free(self._listen.address)
            # The first worker picks the OTLP port (when asked for port 0); the rest join it.
            first = self._new_worker()
            with self._lock:
                self._workers = [first]
            self._wait_ready(first, deadline)
            host, _ = self._listen.address.rsplit(":", 1)
            self._listen = replace(self._listen, address=f"{host}:{first.port}")
            self.otlp_port = first.port
        with self._lock:
            self._workers += [self._new_worker() for _ in range(self.size - len(self._workers))]
        for w in self._workers:
            self._wait_ready(w, deadline)
        self._supervisor = threading.Thread(
            target=self._supervise, name="kronicler-ingest-supervisor", daemon=True
        )
        self._supervisor.start()
        return self

    def _new_worker(self) -> _Worker:
        return _Worker(self._ctx, self.path, self._nice, self._on_stored, self._listen)

    def _wait_ready(self, w: _Worker, deadline: float) -> None:
        while not w.ready.wait(0.05):
            if not w.process.is_alive() or time.monotonic() > deadline:
                self.close(timeout=5.0)
                raise RuntimeError(
                    f"ingest worker did not start (exit code {w.process.exitcode}); "
                    "see the log above"
                )

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid or 0 for w in self._workers]

    def alive(self) -> int:
        with self._lock:
            return sum(w.process.is_alive() for w in self._workers)

    def _supervise(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                dead = [i for i, w in enumerate(self._workers) if not w.process.is_alive()]
            for i in dead:
                old = self._workers[i]
                log.warning(
                    "ingest worker %s exited with %s; starting another",
                    old.process.pid, old.process.exitcode,
                )  # fmt: skip
                old.conn.close()
                old.fail_pending()
                if self._stop.wait(_RESTART_DELAY):
                    return
                with self._lock:
                    if self._closed:
                        return
                    self._workers[i] = self._new_worker()
                    self.restarts += 1

    def submit(self, payload: bytes, timeout: float | None) -> Outcome:
        """Hand one request to the least busy worker and wait for its outcome."""
        with self._lock:
            if self._closed:
                return Outcome("retry", message="the server is shutting down")
            if self._in_flight >= self.max_in_flight:
                return Outcome("retry", message="ingest busy")
            live = [w for w in self._workers if w.process.is_alive()]
            if not live:
                return Outcome("retry", message="no ingest worker running")
            worker = min(live, key=lambda w: len(w.pending))
            self._next_id += 1
            request_id = self._next_id
            self._in_flight += 1
        try:
            future = worker.submit(request_id, payload)
            try:
                return future.result(timeout)
            except FutureTimeout:
                # The worker may still store it; the client has given up and will retry, and
                # OTLP receivers may store a retried request twice (at-least-once delivery).
                worker.pending.pop(request_id, None)
                return Outcome("retry", message="deadline passed before the spans were stored")
        finally:
            with self._lock:
                self._in_flight -= 1

    def close(self, timeout: float = 30.0) -> None:
        """Let every worker finish and flush; then stop them."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout)
        deadline = time.monotonic() + timeout
        for w in workers:
            w.stop(max(deadline - time.monotonic(), 1.0))


class LocalIngest:
    """The same ``submit`` as :class:`IngestPool`, storing in this process (no workers)."""

    def __init__(self, db: SpanSink) -> None:
        self.db = db

    def submit(self, payload: bytes, timeout: float | None) -> Outcome:
        return store_one(self.db, payload)


class IngestServicer:
    """The OTLP ``TraceService/Export`` handler over an :class:`IngestPool` (bytes in, bytes out)."""

    def __init__(self, pool: IngestPool) -> None:
        self.pool = pool

    def export(self, payload: bytes, context: grpc.ServicerContext) -> bytes:
        return answer_export(self.pool.submit(payload, context.time_remaining()), context)

    def handler(self) -> grpc.GenericRpcHandler:
        """A generic handler for ``Export`` that leaves the request undecoded."""
        return export_handler(self.export)
