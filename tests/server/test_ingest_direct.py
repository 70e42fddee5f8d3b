"""Ingest workers taking OTLP/gRPC on a port of their own (``ServerOptions.otlp_address``).

Both workers listen on one port (``SO_REUSEPORT``): the server process sees none of those
requests, yet OTLP on the server's own address still works. A worker killed with SIGKILL while
requests come loses no acknowledged span (its calls fail, the exporter sends them again, and the
kernel hands the new connection to the living worker or the replacement), health checks answer
SERVING throughout, and queries on the server's address see the rows.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

from kronicler.db import Database
from kronicler.server import Client, KroniclerServer, ServerOptions
from tests.server.test_ingest import export_until_taken, request, stored_span_ids


def _listening_pids(port: int) -> set[int]:
    """Processes holding a listening TCP socket on ``port`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # the process ended meanwhile
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:  # that descriptor was closed meanwhile: look at the others
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                pids.add(int(entry.name))
    return pids


def test_the_workers_share_one_otlp_port_and_the_server_address_still_takes_otlp(
    served_direct: tuple[Database, KroniclerServer],
) -> None:
    db, server = served_direct
    assert server.ingest is not None and server.otlp_address is not None
    port = int(server.otlp_address.rsplit(":", 1)[1])
    assert port != server.port
    assert _listening_pids(port) == set(server.ingest.pids)  # not the server process
    for address, first in ((server.otlp_address, 1), (server.address, 101)):
        with grpc.insecure_channel(address) as ch:
            otlp_grpc.TraceServiceStub(ch).Export(request(first, 100), timeout=30)
    with Client(server.address) as client:
        assert client.stats().rows[0].count == 200  # acknowledged: stored and visible
    server.stop()
    assert stored_span_ids(db.path).tolist() == list(range(1, 201))


def test_a_worker_killed_mid_stream_loses_no_acknowledged_span_and_health_stays_serving(
    served_direct: tuple[Database, KroniclerServer],
) -> None:
    db, server = served_direct
    pool = server.ingest
    assert pool is not None and server.otlp_address is not None
    acknowledged: list[int] = []
    with (
        grpc.insecure_channel(server.otlp_address) as ch,
        grpc.insecure_channel(server.address) as query_ch,
    ):
        stub = otlp_grpc.TraceServiceStub(ch)
        health = health_pb2_grpc.HealthStub(query_ch)
        first = 1
        for i in range(60):
            if i in (15, 35):
                os.kill(pool.pids[i // 30], signal.SIGKILL)
            export_until_taken(stub, request(first, 200))
            acknowledged.extend(range(first, first + 200))
            first += 200
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with Client(server.address) as client:  # the acknowledged rows are visible
                assert sum(r.count for r in client.stats().rows) >= len(acknowledged)
    # A replacement counts in ``restarts`` and ``alive()`` once its process is started, and
    # listens only once it has opened the database: wait until both replacements listen.
    port = int(server.otlp_address.rsplit(":", 1)[1])

    def replaced() -> bool:
        pids = set(pool.pids)
        return pool.restarts >= 2 and pool.alive() == 2 and _listening_pids(port) == pids

    deadline = time.monotonic() + 60
    while not replaced() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert replaced(), (
        f"the replacements do not all listen on the OTLP port: {pool.restarts} restarts, "
        f"workers {pool.pids}, listening {sorted(_listening_pids(port))}"
    )
    server.stop()
    stored = set(stored_span_ids(db.path).tolist())
    # at least once: a request whose worker died after storing it but before answering is sent
    # again and may be stored twice (as with any OTLP receiver); its span ids are the same
    assert stored == set(acknowledged)


def test_an_otlp_address_needs_ingest_workers_and_a_free_port(tmp_path: Path) -> None:
    for bad in (
        ServerOptions(otlp_address="127.0.0.1:0"),
        ServerOptions(otlp_address="127.0.0.1:0", ingest_workers=1, otlp=False),
    ):
        with pytest.raises(ValueError, match="127.0.0.1:0"):
            bad.check()
    with pytest.raises(ValueError, match="nowhere"):
        ServerOptions(otlp_address="nowhere", ingest_workers=1).check()
    with socket.socket() as taken, Database.open(tmp_path / "db") as db:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        options = ServerOptions("127.0.0.1:0", ingest_workers=1, otlp_address=f"127.0.0.1:{port}")
        server = KroniclerServer(db, options)
        with pytest.raises(RuntimeError, match="ingest worker did not start"):
            server.start()
        server.stop()
