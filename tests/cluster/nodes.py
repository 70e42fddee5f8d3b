"""Cluster test parts: spans sharded by trace id as the Collector's ``loadbalancing`` exporter
routes them, and databases split the same way.

The Collector hashes the trace id onto a ring of backends, so every span of one trace reaches
the same node; any stable hash of the trace id has that property, which is all the frontend
relies on (it merges whatever split the nodes hold).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator

from kronicler.db import Database
from kronicler.server import KroniclerServer, ServerOptions
from kronicler.server.frontend import Frontend
from tests.oracle.truth import Rows

_ROOT = Path(__file__).resolve().parents[2]
ALL = ("name", "start", "duration", "status", "kind", "service", "trace_hi", "trace_lo",
       "span_id", "parent_span_id", "attributes", "resource")  # fmt: skip


def shard_of(trace_id: int, n: int) -> int:
    """The node a trace goes to: a stable hash of its 16 id bytes, as the Collector's ring."""
    return zlib.crc32(trace_id.to_bytes(16, "big")) % n


class TraceIdSharder(SpanExporter):
    """Routes each span to ``exporters[shard_of(trace id)]``: the loadbalancing exporter's
    ``routing_key: traceID`` in one process."""

    def __init__(self, exporters: Sequence[SpanExporter]) -> None:
        self._exporters = list(exporters)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        parts: dict[int, list[ReadableSpan]] = {}
        for span in spans:
            ctx = span.get_span_context()
            assert ctx is not None
            parts.setdefault(shard_of(ctx.trace_id, len(self._exporters)), []).append(span)
        results = [self._exporters[i].export(batch) for i, batch in sorted(parts.items())]
        ok = all(r is SpanExportResult.SUCCESS for r in results)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        for e in self._exporters:
            e.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def stored(path: Path) -> Rows:
    """Every row of the database at ``path`` (an exact scan)."""
    with Database.open(path, readonly=True) as db:
        s = db.scan(list(ALL))
    c = s.columns

    def text(codes: Any, table: Sequence[str]) -> np.ndarray:
        return np.array([table[i] for i in codes.tolist()], dtype=object)

    return Rows(
        text(c["name"], s.names), c["start"], c["duration"], c["status"], c["kind"],
        text(c["service"], s.services), c["trace_hi"], c["trace_lo"], c["span_id"],
        c["parent_span_id"], text(c["attributes"], s.attributes), text(c["resource"], s.resources),
    )  # fmt: skip


def split_database(rows: Rows, dirs: Sequence[Path], chunk_rows: int = 64) -> None:
    """Write ``rows`` into one database per dir, each trace wholly in one of them."""
    shards = np.array([shard_of(rows.trace_id(i), len(dirs)) for i in range(len(rows))])
    for n, path in enumerate(dirs):
        part = rows.take(np.flatnonzero(shards == n))
        with Database.open(path, chunk_rows=chunk_rows) as db:
            if len(part):
                db.append(**part.append_kwargs())
            assert db.flush(30)


def spawn_node(path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """A real ``kronicler serve`` process over ``path`` on a free port; its address."""
    return spawn_serve("--path", str(path), "--no-otlp", *extra)


def spawn_serve(*args: str) -> tuple[subprocess.Popen[str], str]:
    """A real ``kronicler serve ARGS`` process on a free loopback port; its address."""
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kronicler", "serve", "--address", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r" on (127\.0\.0\.1:\d+) ", line)
    assert found, line
    return proc, found.group(1)


@contextmanager
def dashboard_frontend(peers: Sequence[str]) -> Iterator[str]:
    """A real ``kronicler serve --peers PEERS --http`` process; its dashboard's URL. It must
    stop cleanly on SIGTERM when the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kronicler", "serve", "--address", "127.0.0.1:0",
         "--peers", ",".join(peers), "--http", "127.0.0.1:0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(_ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "frontend for" in proc.stdout.readline()
        line = proc.stdout.readline()
        found = re.search(r"dashboard on (http://\S+)", line)
        assert found, line
        yield found.group(1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass
class Fed:
    """Three real nodes fed through the stock OTLP exporter, sharded by trace id, a fourth node
    fed every span (the single node), and a frontend over the three (in process and served)."""

    nodes: list[KroniclerServer]
    node_paths: list[Path]
    single: KroniclerServer
    single_path: Path
    front: Frontend
    frontend: KroniclerServer

    @property
    def peers(self) -> list[str]:
        return [n.address for n in self.nodes]


#: ``provider(resource, id_generator)``: a tracer provider exporting to the nodes and the single
#: node; what :func:`fed_cluster` hands its ``emit``.
Providers = Callable[[Resource, "IdGenerator | None"], TracerProvider]


@contextmanager
def fed_cluster(
    work: Path, emit: Callable[[Providers], Any], *, chunk_rows: int, batch: int = 200,
    timeout: float = 30,
) -> Iterator[tuple[Fed, Any]]:  # fmt: skip
    """The cluster with what ``emit`` sent through the providers it made (flushed and stored),
    and what ``emit`` returned."""
    with ExitStack() as stack:
        paths = [work / f"node{i}" for i in range(3)]
        dbs = [stack.enter_context(Database.open(p, chunk_rows=chunk_rows)) for p in paths]
        single_db = stack.enter_context(Database.open(work / "single", chunk_rows=chunk_rows))
        servers = [KroniclerServer(db, ServerOptions(address="127.0.0.1:0")).start() for db in dbs]
        single = KroniclerServer(single_db, ServerOptions(address="127.0.0.1:0")).start()
        for server in (*servers, single):
            stack.callback(server.stop)
        made: list[TracerProvider] = []

        def provider(resource: Resource, ids: IdGenerator | None) -> TracerProvider:
            made.append(TracerProvider(resource=resource, id_generator=ids))
            sharder = TraceIdSharder([OTLPSpanExporter(endpoint=s.address, insecure=True)
                                      for s in servers])  # fmt: skip
            whole = OTLPSpanExporter(endpoint=single.address, insecure=True)
            for exporter in (sharder, whole):  # a queue for every span: none is dropped
                made[-1].add_span_processor(BatchSpanProcessor(
                    exporter, max_queue_size=1 << 16, max_export_batch_size=batch))  # fmt: skip
            return made[-1]

        emitted = emit(provider)
        for p in made:
            assert p.force_flush(int(timeout * 1000))
            p.shutdown()
        for db in (*dbs, single_db):
            assert db.flush(timeout)
        front = stack.enter_context(Frontend([s.address for s in servers], timeout=timeout))
        frontend = KroniclerServer(front, ServerOptions(address="127.0.0.1:0")).start()
        stack.callback(frontend.stop)
        yield Fed(servers, paths, single, work / "single", front, frontend), emitted
