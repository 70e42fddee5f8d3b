"""Assembling the one server process: queries, OTLP, health and reflection on one address.

``KroniclerServer(db, ServerOptions(...))`` builds a ``grpc.server`` hosting

- ``kronicler.v1.QueryService`` (:mod:`kronicler.server.query_service`),
- ``opentelemetry.proto.collector.trace.v1.TraceService`` (:mod:`kronicler.otel.receiver`),
- ``grpc.health.v1.Health`` (SERVING while up, NOT_SERVING while shutting down),
- server reflection, so grpcurl / grpc_cli / Postman discover the API,

bound to loopback unless the address says otherwise, with optional TLS and bearer token, and
limits that keep one client from exhausting the process: message sizes, concurrent RPCs (excess
calls get ``RESOURCE_EXHAUSTED``) and worker threads. Query cost is capped in the query layer.
With ingest workers, a thread summarises their new rows between queries
(:mod:`kronicler.server.warm`), so a query under ingest does not; with ``otlp_address`` the
workers also take OTLP/gRPC on a port of their own (:mod:`kronicler.server.ingest_worker`), so
this process's interpreter carries only the queries.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kronicler._config import DEFAULT_ADDRESS, DEFAULT_MAX_RECEIVE_BYTES, DEFAULT_MAX_SEND_BYTES
from kronicler.errors import shorten
from kronicler.otel.receiver import TRACE_SERVICE_NAME, add_to_server
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.proto.v1 import query_pb2_grpc as pb_grpc
from kronicler.server.auth import TokenInterceptor, add_port
from kronicler.server.decoding import DecodeGuardInterceptor
from kronicler.server.ingest import (
    DEFAULT_NICE,
    IngestPool,
    IngestServicer,
    Listen,
    LocalIngest,
    check_nice,
)
from kronicler.server.maintenance import CompactionScheduler, check_every
from kronicler.server.otlp_http import DEFAULT_MAX_BODY_BYTES, OTLPHTTPServer
from kronicler.server.query_service import QueryServicer
from kronicler.server.warm import Warmer

if TYPE_CHECKING:
    from kronicler.db import Database
    from kronicler.query.backend import QueryBackend

log = logging.getLogger(__name__)

DEFAULT_MAX_WORKERS = 8
DEFAULT_MAX_CONCURRENT_RPCS = 64
QUERY_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["QueryService"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """How the server listens and what it allows.

    Fields:
        address: ``host:port`` (``[v6]:port`` for IPv6); port 0 picks a free port.
        tls_cert, tls_key: PEM files; both or neither. Without them the port is plaintext.
        tls_client_ca: with TLS, a CA (PEM) every client must present a certificate of (mutual
            TLS, e.g. a cluster's nodes admitting only their frontend); None asks for none.
        token: when set, every RPC except health needs ``authorization: Bearer <token>``.
        max_receive_bytes, max_send_bytes: per-message limits.
        max_workers: threads running RPCs; max_concurrent_rpcs: calls admitted at once.
        otlp: also host the OTLP TraceService.
        ingest_workers: decode and store OTLP in this many worker processes (each writes its
            own segment), off the query process's GIL; 0 does it in the server process.
        ingest_nice: how much lower the ingest workers' CPU priority is (0-19; the default, 19,
            gives queries the cores first: see :mod:`kronicler.server.ingest`).
        otlp_address: with ingest workers, a second ``host:port`` for OTLP/gRPC that the
            workers listen on themselves (one port shared with ``SO_REUSEPORT``), so the
            server process's interpreter carries queries only; OTLP on ``address`` still works
            (relayed through this process). Port 0 picks a free port. None: no such port.
        otlp_http: ``host:port`` for OTLP/HTTP (``POST /v1/traces``), or None for none.
        cors_origins: browser origins allowed to send OTLP/HTTP (``*`` for any).
        compact_every: merge small finished segments in a background process every this many
            seconds (:mod:`kronicler.server.maintenance`); 0 never does.
    """

    address: str = DEFAULT_ADDRESS
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    token: str | None = None
    max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES
    max_send_bytes: int = DEFAULT_MAX_SEND_BYTES
    max_workers: int = DEFAULT_MAX_WORKERS
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS
    otlp: bool = True
    ingest_workers: int = 0
    ingest_nice: int = DEFAULT_NICE
    otlp_address: str | None = None
    otlp_http: str | None = None
    cors_origins: tuple[str, ...] = ()
    compact_every: float = 0.0

    def check(self) -> None:
        split_address(self.address)
        if self.otlp_http is not None:
            split_address(self.otlp_http)
        if self.otlp_address is not None:
            split_address(self.otlp_address)
            if not (self.otlp and self.ingest_workers):
                raise ValueError(
                    f"an OTLP address ({shorten(self.otlp_address)}) is taken by ingest workers: "
                    "give ingest_workers >= 1 (and keep OTLP on)"
                )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError(
                f"a client CA ({shorten(str(self.tls_client_ca))}) needs TLS: give --tls-cert "
                "and --tls-key too"
            )
        for label, value in (("max_receive_bytes", self.max_receive_bytes),
                             ("max_send_bytes", self.max_send_bytes),
                             ("max_workers", self.max_workers),
                             ("max_concurrent_rpcs", self.max_concurrent_rpcs)):  # fmt: skip
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        if not isinstance(self.ingest_workers, int) or self.ingest_workers < 0:
            raise ValueError(f"ingest_workers must be >= 0, got {self.ingest_workers!r}")
        check_nice(self.ingest_nice)
        check_every(self.compact_every)


def split_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:4317" -> ("127.0.0.1", 4317)``; ``ValueError`` naming a bad address."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"address must be HOST:PORT, got {address!r}")
    return host, int(port)


class KroniclerServer:
    """A running (after :meth:`start`) gRPC server over one open database, or over a query
    backend that stores nothing (a cluster frontend, :mod:`kronicler.server.frontend`).

    The database or backend stays the caller's: the server reads and appends, and never closes
    it. A backend gets the QueryService alone: no OTLP (spans go to the nodes, not through it).
    """

    def __init__(self, db: Database | QueryBackend, options: ServerOptions | None = None) -> None:
        from kronicler.db import Database

        self.options = options or ServerOptions()
        if not isinstance(db, Database):  # a frontend stores nothing: no ingest, no compaction
            self.options = replace(
                self.options, otlp=False, ingest_workers=0, otlp_address=None, otlp_http=None,
                compact_every=0,
            )  # fmt: skip
        self.options.check()
        opts = self.options
        if opts.compact_every and isinstance(db, Database) and db.readonly:
            raise ValueError("compact_every needs a database opened for writing, not readonly")
        interceptors: list[grpc.ServerInterceptor] = [DecodeGuardInterceptor()]
        if opts.token:  # checked first: an unauthenticated call is refused before decoding
            interceptors.insert(0, TokenInterceptor(opts.token))
        self.ingest: IngestPool | None = None
        # With ingest workers, their new rows are summarised between queries (server/warm.py).
        self.warmer: Warmer | None = None
        if opts.otlp and opts.ingest_workers and isinstance(db, Database):
            self.warmer = Warmer(db)
            interceptors.append(self.warmer.interceptor(QUERY_SERVICE_NAME))
            listen = None
            if opts.otlp_address is not None:
                listen = Listen(
                    opts.otlp_address, token=opts.token, tls_cert=opts.tls_cert,
                    tls_key=opts.tls_key, tls_client_ca=opts.tls_client_ca,
                    max_receive_bytes=opts.max_receive_bytes,
                )  # fmt: skip
            self.ingest = IngestPool(db.path, opts.ingest_workers, nice=opts.ingest_nice,
                                     on_stored=self.warmer.stored, listen=listen)  # fmt: skip
        self.otlp_http: OTLPHTTPServer | None = None
        if opts.otlp and opts.otlp_http is not None and isinstance(db, Database):
            http_host, http_port = split_address(opts.otlp_http)
            http_host = http_host.strip("[]")
            self.otlp_http = OTLPHTTPServer(
                self.ingest if self.ingest is not None else LocalIngest(db), http_host, http_port,
                token=opts.token, cors_origins=opts.cors_origins,
                max_body_bytes=max(opts.max_receive_bytes, DEFAULT_MAX_BODY_BYTES),
            )  # fmt: skip
        # Ingest calls wait on a worker process; they get threads of their own so that
        # queries always find one.
        extra = self.ingest.max_in_flight if self.ingest is not None else 0
        self._server = grpc.server(
            ThreadPoolExecutor(
                max_workers=opts.max_workers + extra, thread_name_prefix="kronicler-rpc"
            ),
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", opts.max_receive_bytes),
                ("grpc.max_send_message_length", opts.max_send_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=opts.max_concurrent_rpcs + extra,
        )
        pb_grpc.add_QueryServiceServicer_to_server(QueryServicer(db), self._server)
        names = [QUERY_SERVICE_NAME]
        if self.ingest is not None:
            self._server.add_generic_rpc_handlers((IngestServicer(self.ingest).handler(),))
            names.append(TRACE_SERVICE_NAME)
        elif opts.otlp and isinstance(db, Database):
            add_to_server(db, self._server)
            names.append(TRACE_SERVICE_NAME)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            [*names, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        self._services = names
        self.compaction: CompactionScheduler | None = None
        if opts.compact_every and isinstance(db, Database):
            self.compaction = CompactionScheduler(db.path, opts.compact_every)
        self.port = add_port(
            self._server, opts.address, opts.tls_cert, opts.tls_key, opts.tls_client_ca
        )
        if not self.port:
            if self.otlp_http is not None:
                self.otlp_http.stop()
            raise OSError(f"cannot listen on {opts.address}")
        host, _ = split_address(opts.address)
        self.address = f"{host}:{self.port}"

    @property
    def otlp_address(self) -> str | None:
        """Where the ingest workers take OTLP/gRPC themselves (once started), or None."""
        if self.ingest is None or not self.ingest.otlp_port or self.options.otlp_address is None:
            return None
        host, _ = split_address(self.options.otlp_address)
        return f"{host}:{self.ingest.otlp_port}"

    @property
    def tls(self) -> bool:
        return self.options.tls_cert is not None

    def start(self) -> KroniclerServer:
        if self.warmer is not None:
            self.warmer.start()
        if self.ingest is not None:
            try:
                self.ingest.start()
            except BaseException:  # the OTLP port taken, a worker that cannot open the database
                if self.warmer is not None:
                    self.warmer.stop()
                if self.otlp_http is not None:
                    self.otlp_http.stop()
                self._server.stop(None)  # lets the bound port go
                raise
        self._server.start()
        if self.otlp_http is not None:
            self.otlp_http.start()
        for name in ("", *self._services):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.compaction is not None:
            self.compaction.start()
        log.info("kronicler server listening on %s (tls=%s)", self.address, self.tls)
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Report NOT_SERVING, finish in-flight calls for ``grace`` seconds, then stop."""
        self._health.enter_graceful_shutdown()
        if self.compaction is not None:
            self.compaction.stop()  # a run in progress deletes its unpublished output
        if self.otlp_http is not None:
            self.otlp_http.stop()
        self._server.stop(grace).wait()
        if self.ingest is not None:
            self.ingest.close()  # workers flush every row they accepted
        if self.warmer is not None:
            self.warmer.stop()

    def wait(self, timeout: float | None = None) -> bool:
        return bool(self._server.wait_for_termination(timeout))

    def __enter__(self) -> KroniclerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
