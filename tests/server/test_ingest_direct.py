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
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

from kronicler.cli import default_otlp_grpc
from kronicler.db import Database
from kronicler.server import Client, KroniclerServer, ServerOptions
from tests.server.test_ingest import export_until_taken, request, stored_span_ids

ROOT = Path(__file__).resolve().parents[2]


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
        with pytest.raises(OSError, match=f"127.0.0.1:{port}'?: the port is in use"):
            server.start()
        assert server.warmer is not None and server.warmer._thread is None
        server.stop()


def test_a_second_server_cannot_join_the_workers_port_of_another(
    served_direct: tuple[Database, KroniclerServer], tmp_path: Path
) -> None:
    """The workers bind their port with SO_REUSEPORT, which would let a second server's
    workers (given the same port, as ``serve``'s default one) share it silently and take part
    of the first's exporters' connections into another database: it is refused instead."""
    db, server = served_direct
    assert server.otlp_address is not None and server.ingest is not None
    with Database.open(tmp_path / "other") as other:
        options = ServerOptions("127.0.0.1:0", ingest_workers=1, otlp_address=server.otlp_address)
        second = KroniclerServer(other, options)
        with pytest.raises(OSError, match="the port is in use"):
            second.start()
        second.stop()
        assert second.ingest is not None and second.ingest.pids == []  # no worker started
    assert _listening_pids(int(server.otlp_address.rsplit(":", 1)[1])) == set(server.ingest.pids)


def test_serve_opens_the_workers_port_beside_its_address_by_default() -> None:
    assert default_otlp_grpc("127.0.0.1:4317") == "127.0.0.1:4319"
    assert default_otlp_grpc("[::1]:5000") == "[::1]:4319"
    assert default_otlp_grpc("0.0.0.0:0") == "0.0.0.0:0"  # a free port, as the server's


def test_serve_says_in_one_line_that_the_otlp_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "kronicler", "serve", "--path", str(tmp_path / "db"),
             "--address", "127.0.0.1:0", "--ingest-workers", "1", "--otlp-address",
             f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr and "the port is in use" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
