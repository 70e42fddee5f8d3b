"""OTLP ingest in worker processes, so decoding spans never holds the query process's GIL.

Decoding an OTLP request, converting its spans to rows and encoding them is CPU work in Python:
run in the server process it competes with queries for one interpreter lock, and a query's p99
rises tenfold under ingest. Here the server process only moves bytes: the OTLP ``Export`` handler
receives the request undecoded and hands it through a pipe to one of ``N`` worker processes
(spawned, not forked, as gRPC's threads do not survive ``fork``). Each worker opens the same
database directory and writes its own segment, as any writing process does, so readers see its
rows after its next commit (every second) with no coordination. The worker answers with the
request's outcome (stored, rejected with reasons, or "retry later"), which the handler turns into
the OTLP response or status.

Failure behaviour: a request is answered only once its rows are in the worker's segment files
(a worker's acknowledging thread flushes once for every request stored since its last flush,
while the worker goes on converting the next ones: a group commit), so a worker killed at any
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
100k spans/s were still acknowledged, the cores having room for both. The price is paid when
other processes fill the cores: ingest then takes what they and the queries leave, and
exporters get backpressure ("retry later") sooner (at a load average of 8-13 from other work,
15-79k spans/s were acknowledged instead of 47-92k at ``nice 5``). A host whose cores other
work fills can give ingest a higher priority (``ServerOptions(ingest_nice=5)``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from kronicler.db.sink import SpanSink

log = logging.getLogger(__name__)

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_HEADER = struct.Struct("<Q")  # request id before the request bytes
_STOP = b""  # an empty message tells a worker to finish
_READY = 0  # the request id of the message a worker sends once its database is open
_START_TIMEOUT = 60.0
_RESTART_DELAY = 0.5  # seconds between a worker's death and its replacement
_FLUSH_TIMEOUT = 30.0
#: How much lower than the server's the workers' CPU priority is (``nice`` increment; see the
#: module docstring); ``IngestPool(nice=...)`` / ``ServerOptions(ingest_nice=...)`` change it.
DEFAULT_NICE = 19
#: Requests a worker may hold at once: one being converted, the rest waiting for the flush that
#: covers them. With 2 (one converted, one flushing) nearly every request paid a flush of its
#: own; with 4 a flush covers ~3 under load (measured: see bench_server.py).
_IN_FLIGHT_PER_WORKER = 4


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a worker did with one request.

    Fields:
        code: ``"ok"``, ``"invalid"`` (undecodable bytes), ``"retry"`` (nothing stored: full
            or shutting down; the exporter should retry) or ``"error"`` (a bug, logged).
        rejected: malformed spans left out; message: why (for ``partial_success``).
    """

    code: str
    rejected: int = 0
    message: str = ""


def _worker_main(path: str, conn: Connection, nice: int = DEFAULT_NICE) -> None:
    """A worker process: decode, convert and store requests until the end marker.

    This thread converts and appends; an acknowledging thread flushes and answers. While one
    flush waits for the disk, the next requests are converted, and the flush after it covers
    all of them (a group commit that needs no waiting for company).
    """
    from kronicler.db import Database

    try:  # the kernel then favours the query process when both want a core
        os.nice(nice)
    except OSError:
        pass
    db = Database.open(path)
    conn.send((_READY, Outcome("ok")))
    stored: queue.SimpleQueue[tuple[int, Outcome] | None] = queue.SimpleQueue()
    acker = threading.Thread(target=_acknowledge, args=(db, conn, stored), name="kronicler-ack")
    acker.start()
    try:
        while True:
            try:
                message = conn.recv_bytes()
            except EOFError:  # the server went away
                break
            if message == _STOP:
                break
            stored.put(_store_one(db, message))
    finally:
        stored.put(None)
        acker.join()
        db.close()
        conn.close()


def _acknowledge(
    db: SpanSink, conn: Connection, stored: queue.SimpleQueue[tuple[int, Outcome] | None]
) -> None:
    """Answer requests once a flush that began after they were appended has ended."""
    done = False
    while not done:
        answers = [stored.get()]
        while not stored.empty():
            answers.append(stored.get())
        done = None in answers
        outcomes = [a for a in answers if a is not None]
        if any(o.code == "ok" for _, o in outcomes) and not db.flush(timeout=_FLUSH_TIMEOUT):
            # not known to be on disk: the exporter must send it again
            outcomes = [(i, Outcome("retry", message="the spans could not be written yet")
                         if o.code == "ok" else o) for i, o in outcomes]  # fmt: skip
        try:
            for answer in outcomes:
                conn.send(answer)
        except (OSError, ValueError):  # the server went away
            return


def _store_one(db: SpanSink, message: bytes) -> tuple[int, Outcome]:
    """Decode, convert and store one request (its id, then its serialized bytes)."""
    from google.protobuf.message import DecodeError

    from kronicler.otel.otlp_rows import convert_request
    from kronicler.otel.receiver import store_converted

    (request_id,) = _HEADER.unpack_from(message)
    try:
        converted = convert_request(memoryview(message)[_HEADER.size :])
    except (DecodeError, RecursionError, UnicodeDecodeError) as exc:
        return request_id, Outcome("invalid", message=f"{type(exc).__name__}: {str(exc)[:200]}")
    except Exception:
        log.exception("OTLP conversion failed in ingest worker %d", os.getpid())
        return request_id, Outcome("error")
    try:
        return request_id, Outcome(*store_converted(db, converted))
    except Exception:
        log.exception("OTLP export failed in ingest worker %d", os.getpid())
        return request_id, Outcome("error")


def check_nice(nice: int) -> None:
    """``nice`` is a ``nice`` increment from 0 (the server's priority) to 19 (the lowest)."""
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
        raise ValueError(f"ingest nice must be an integer from 0 to 19, got {nice!r}")


class _Worker:
    """One worker process, its pipe, and the requests it has not answered yet."""

    def __init__(
        self, ctx: Any, path: str, nice: int, on_stored: Callable[[], None] | None = None
    ) -> None:
        self.on_stored = on_stored
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(path, child, nice), name="kronicler-ingest", daemon=True
        )
        self.process.start()
        child.close()
        self.pending: dict[int, Future[Outcome]] = {}
        self.ready = threading.Event()  # set once the worker opened its database
        self.send_lock = threading.Lock()  # one message on the pipe at a time
        self.reader = threading.Thread(target=self._read, name="kronicler-ingest-read", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                request_id, outcome = self.conn.recv()
            except (EOFError, OSError):
                break
            if request_id == _READY:
                self.ready.set()
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
                self.conn.send_bytes(_HEADER.pack(request_id) + payload)
        except (OSError, ValueError):
            self.pending.pop(request_id, None)
            future.set_result(Outcome("retry", message="ingest worker unavailable"))
        return future

    def stop(self, timeout: float) -> None:
        try:
            with self.send_lock:
                self.conn.send_bytes(_STOP)
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
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        workers: int,
        *,
        nice: int = DEFAULT_NICE,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"ingest workers must be a positive integer, got {workers!r}")
        self.path = os.fspath(Path(path))
        self.size = workers
        check_nice(nice)
        self.max_in_flight = _IN_FLIGHT_PER_WORKER * workers
        self._nice = nice
        self._on_stored = on_stored
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()  # protects _workers, _next_id, _in_flight, _closed
        self._workers: list[_Worker] = []
        self._next_id = 0
        self._in_flight = 0
        self._closed = False
        self.restarts = 0
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None

    def start(self, timeout: float = _START_TIMEOUT) -> IngestPool:
        """Start the workers and wait (up to ``timeout``) until each has opened the database."""
        with self._lock:
            self._workers = [
                _Worker(self._ctx, self.path, self._nice, self._on_stored) for _ in range(self.size)
            ]
        deadline = time.monotonic() + timeout
        for w in self._workers:
            while not w.ready.wait(0.05):
                if not w.process.is_alive() or time.monotonic() > deadline:
                    self.close(timeout=5.0)
                    raise RuntimeError(
                        f"ingest worker did not start (exit code {w.process.exitcode}); "
                        "see the log above"
                    )
        self._supervisor = threading.Thread(
            target=self._supervise, name="kronicler-ingest-supervisor", daemon=True
        )
        self._supervisor.start()
        return self

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
                    self._workers[i] = _Worker(self._ctx, self.path, self._nice, self._on_stored)
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
        return _store_one(self.db, _HEADER.pack(0) + payload)[1]


class IngestServicer:
    """The OTLP ``TraceService/Export`` handler over an :class:`IngestPool` (bytes in, bytes out)."""

    def __init__(self, pool: IngestPool) -> None:
        self.pool = pool

    def export(self, payload: bytes, context: grpc.ServicerContext) -> bytes:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp

        outcome = self.pool.submit(payload, context.time_remaining())
        if outcome.code == "invalid":
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"malformed request message ({outcome.message})"
            )
        if outcome.code == "retry":
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{outcome.message}; retry with backoff")
        if outcome.code != "ok":
            context.abort(grpc.StatusCode.INTERNAL, "internal error storing spans")
        response = otlp.ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_spans = outcome.rejected
            response.partial_success.error_message = outcome.message
        return response.SerializeToString()

    def handler(self) -> grpc.GenericRpcHandler:
        """A generic handler for ``Export`` that leaves the request undecoded."""
        method = grpc.unary_unary_rpc_method_handler(self.export)  # bytes in, bytes out
        return grpc.method_handlers_generic_handler(
            EXPORT_METHOD.split("/")[1], {EXPORT_METHOD.split("/")[2]: method}
        )
