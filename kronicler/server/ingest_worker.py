"""One ingest worker process: decode, convert and store OTLP requests; answer once flushed.

A worker (started by :class:`kronicler.server.ingest.IngestPool`) opens the database and writes
its own segment. Requests reach it two ways:

- *through the server process*: the server's OTLP ``Export`` handler (on the query address)
  sends the request's bytes undecoded through a pipe, and relays the worker's :class:`Outcome`;
- *directly* (``ServerOptions(otlp_address=...)``): the worker runs a gRPC server of its own
  hosting only ``TraceService/Export`` on the OTLP address, which every worker binds with
  ``SO_REUSEPORT`` (the kernel spreads the exporters' connections over them). The server
  process's interpreter then sees no OTLP request at all: receiving a request and handing it on
  cost it ~1.5 ms of CPU per 1,000 spans, under the lock its queries need.

Either way a request is answered only after a flush that began once its rows were appended has
ended (:class:`GroupCommit`): one flush covers every request stored while the previous flush
ran (and waits a few milliseconds for one being stored when it is due), so the disk waits and
the flushes' CPU are shared and a worker killed at any moment loses no acknowledged span.
A request on a worker that dies first fails (``UNAVAILABLE`` or a broken connection) and the
exporter sends it again. After each flush that stored direct requests the worker tells the
server process (one small message: its warmer then summarises the new rows).
"""

from __future__ import annotations

import logging
import os
import queue
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from kronicler.db.sink import SpanSink

log = logging.getLogger(__name__)

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
HEADER = struct.Struct("<Q")  # request id before the request bytes
STOP = b""  # an empty message tells a worker to finish
#: Request ids of the messages a worker sends besides answers: its database is open (with the
#: port it listens on for OTLP, 0 for none), and rows of direct requests were stored.
READY = 0
STORED = -1
FLUSH_TIMEOUT = 30.0
#: Seconds a flush waits for the requests being stored when it is due (see GroupCommit).
GATHER_SECONDS = 0.005
#: Requests a worker may hold at once: one being converted, the rest waiting for the flush that
#: covers them. With 2 (one converted, one flushing) nearly every request paid a flush of its
#: own; with 4 a flush covers ~3 under load (measured: see bench_server.py; the same bound holds for
#: a worker's direct OTLP calls).
IN_FLIGHT_PER_WORKER = 4
#: Seconds a stopping worker lets its direct OTLP calls finish.
_STOP_GRACE = 5.0


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


@dataclass(frozen=True, slots=True)
class Listen:
    """How a worker takes OTLP/gRPC directly (the server's options it needs; picklable).

    Fields: ``address`` (``host:port``; every worker binds the same port), ``token`` (bearer
    token or None), TLS files as in :class:`~kronicler.server.app.ServerOptions`,
    ``max_receive_bytes``, and ``max_in_flight`` (calls a worker holds at once; more get
    ``UNAVAILABLE``).
    """

    address: str
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    max_receive_bytes: int = 16 << 20
    max_in_flight: int = IN_FLIGHT_PER_WORKER


class _Round:
    """The requests one flush covers; ``ok`` is known once ``done`` is set; ``direct``: some
    came to the worker's own OTLP port."""

    __slots__ = ("direct", "done", "members", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.members = 0
        self.ok = False
        self.direct = False


class GroupCommit:
    """Flushes ``db`` in rounds: :meth:`begin` before storing a request, :meth:`join` after
    (with whether it appended), then wait on the round returned.

    A round's flush begins after every member appended (members join the round not yet
    started), so a round that ends ``ok`` has their rows on disk. One thread flushes, so
    ``db.flush``'s report of a failed write belongs to the round that saw it. Before a flush
    starts, the requests being stored at that moment may join it for up to ``gather``
    seconds: a flush costs CPU of its own (a log record encoded, written and synced), and
    under load the next request is usually a conversion away, so waiting for it halves the
    flushes per request at the price of a few milliseconds before the answer.
    ``after``: called with each finished round (from the flushing thread).
    """

    def __init__(
        self,
        db: SpanSink,
        after: Callable[[_Round], None] | None = None,
        *,
        gather: float = GATHER_SECONDS,
    ) -> None:
        self._db = db
        self._after = after
        self._gather = gather
        self._cond = threading.Condition()  # guards _open, _storing and _closing
        self._open = _Round()
        self._storing = 0  # requests between begin and join
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="kronicler-commit", daemon=True)
        self._thread.start()

    def begin(self) -> None:
        """A request starts being stored (its round is not chosen yet)."""
        with self._cond:
            self._storing += 1

    def join(self, appended: bool = True, *, direct: bool = False) -> _Round | None:
        """The request that began is stored; the round to wait on, or None if it appended
        nothing (nothing to wait for)."""
        with self._cond:
            self._storing -= 1
            self._cond.notify()
            if not appended:
                return None
            self._open.members += 1
            self._open.direct = self._open.direct or direct
            return self._open

    def close(self) -> None:
        """Flush what joined, then stop the flushing thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._open.members > 0 or self._closing)
                if not self._open.members:
                    return  # closing, nothing left to flush
                deadline = time.monotonic() + self._gather
                while self._storing > 0 and not self._closing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._cond.wait(remaining):
                        break
                this, self._open = self._open, _Round()
            try:
                this.ok = self._db.flush(timeout=FLUSH_TIMEOUT)
            except Exception:
                log.exception("flush failed in ingest worker %d", os.getpid())
            this.done.set()
            if self._after is not None:
                self._after(this)


def store_one(db: SpanSink, payload: bytes | memoryview) -> Outcome:
    """Decode, convert and append one request's serialized bytes (not yet flushed)."""
    from google.protobuf.message import DecodeError

    from kronicler.otel.otlp_rows import convert_request
    from kronicler.otel.receiver import store_converted

    try:
        converted = convert_request(payload)
    except (DecodeError, RecursionError, UnicodeDecodeError) as exc:
        return Outcome("invalid", message=f"{type(exc).__name__}: {str(exc)[:200]}")
    except Exception:
        log.exception("OTLP conversion failed in ingest worker %d", os.getpid())
        return Outcome("error")
    try:
        return Outcome(*store_converted(db, converted))
    except Exception:
        log.exception("OTLP export failed in ingest worker %d", os.getpid())
        return Outcome("error")


def committed(outcome: Outcome, round_: _Round | None, timeout: float | None) -> Outcome:
    """``outcome`` once its round's flush ended: "retry" when that flush failed or is late."""
    if outcome.code != "ok" or round_ is None:
        return outcome
    if round_.done.wait(timeout) and round_.ok:
        return outcome
    return Outcome("retry", message="the spans could not be written yet")


def answer_export(outcome: Outcome, context: grpc.ServicerContext) -> bytes:
    """The OTLP ``Export`` response (serialized) or status for ``outcome``."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp

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


def export_handler(
    export: Callable[[bytes, grpc.ServicerContext], bytes],
) -> grpc.GenericRpcHandler:
    """A generic handler for OTLP ``Export`` that leaves the request undecoded (bytes in/out)."""
    _, service, method = EXPORT_METHOD.split("/")
    return grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_unary_rpc_method_handler(export)}
    )


class _Direct:
    """The worker's own OTLP ``Export`` handler: store, join a flush round, answer.

    One request is converted at a time (the others hold their slot waiting for it or for their
    flush). Converting is interpreter work: several at once only take turns at the lock, each
    hand-over (at every system call or numpy loop) a thread switch, and all of them finish late
    together instead of one early, ready to join a flush. Measured flat out (2 workers, 4 calls
    each, five pairs of runs under other load): 194-251k against 161-201k spans/s acknowledged.
    """

    def __init__(self, db: SpanSink, commit: GroupCommit, max_in_flight: int) -> None:
        self._db = db
        self._commit = commit
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._converting = threading.Lock()  # one store_one at a time

    def export(self, payload: bytes, context: grpc.ServicerContext) -> bytes:
        if not self._slots.acquire(blocking=False):
            return answer_export(Outcome("retry", message="ingest busy"), context)
        try:
            self._commit.begin()
            with self._converting:
                outcome = store_one(self._db, payload)
            round_ = self._commit.join(outcome.code == "ok", direct=True)
            return answer_export(committed(outcome, round_, context.time_remaining()), context)
        finally:
            self._slots.release()


def _listen(listen: Listen, direct: _Direct) -> tuple[grpc.Server, int]:
    from kronicler.server.auth import TokenInterceptor, add_port

    interceptors = [TokenInterceptor(listen.token)] if listen.token else []
    server = grpc.server(
        ThreadPoolExecutor(max_workers=listen.max_in_flight, thread_name_prefix="kronicler-otlp"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", listen.max_receive_bytes),
            ("grpc.so_reuseport", 1),  # every worker listens on the one OTLP port
        ],
        maximum_concurrent_rpcs=4 * listen.max_in_flight,
    )
    server.add_generic_rpc_handlers((export_handler(direct.export),))
    port = add_port(server, listen.address, listen.tls_cert, listen.tls_key, listen.tls_client_ca)
    if not port:
        raise OSError(f"cannot listen for OTLP on {listen.address}")
    server.start()
    return server, port


def worker_main(path: str, conn: Connection, nice: int, listen: Listen | None = None) -> None:
    """A worker process: store requests from the pipe (and, with ``listen``, from its own OTLP
    port) until the end marker; then finish the calls in progress and close the database."""
    from kronicler.db import Database

    try:  # the kernel then favours the query process when both want a core
        os.nice(nice)
    except OSError:
        pass
    db = Database.open(path)
    send_lock = threading.Lock()  # one message on the pipe at a time

    def send(message: tuple[int, object]) -> None:
        try:
            with send_lock:
                conn.send(message)
        except (OSError, ValueError):  # the server went away
            pass

    def after(round_: _Round) -> None:
        if round_.direct and round_.ok:
            send((STORED, None))

    commit = GroupCommit(db, after)
    server = None
    port = 0
    if listen is not None:
        server, port = _listen(listen, _Direct(db, commit, listen.max_in_flight))
    send((READY, port))
    answers: queue.SimpleQueue[tuple[int, Outcome, _Round | None] | None] = queue.SimpleQueue()
    answerer = threading.Thread(target=_answer, args=(answers, send), name="kronicler-ack")
    answerer.start()
    try:
        while True:
            try:
                message = conn.recv_bytes()
            except EOFError:  # the server went away
                break
            if message == STOP:
                break
            (request_id,) = HEADER.unpack_from(message)
            commit.begin()
            outcome = store_one(db, memoryview(message)[HEADER.size :])
            answers.put((request_id, outcome, commit.join(outcome.code == "ok")))
    finally:
        if server is not None:
            server.stop(_STOP_GRACE).wait()
        answers.put(None)
        answerer.join()
        commit.close()
        db.close()
        conn.close()


def _answer(
    answers: queue.SimpleQueue[tuple[int, Outcome, _Round | None] | None],
    send: Callable[[tuple[int, object]], None],
) -> None:
    """Send each piped request's outcome, in order, once its flush round has ended."""
    while (item := answers.get()) is not None:
        request_id, outcome, round_ = item
        send((request_id, committed(outcome, round_, FLUSH_TIMEOUT)))
