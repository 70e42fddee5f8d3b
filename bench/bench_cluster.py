"""Cluster benchmark: GetStats (and Explain) through a frontend over three nodes vs one node
holding it all, and OTLP ingest into one node vs several.

Run by hand (a few minutes at the default size, mostly writing the databases):

    PYTHONPATH=. python bench/bench_cluster.py                  # 10M spans in total
    PYTHONPATH=. python bench/bench_cluster.py --spans 3000000  # quicker
    PYTHONPATH=. python bench/bench_cluster.py --baseline /work/main  # + that checkout's frontend
    PYTHONPATH=. python bench/bench_cluster.py --data /tmp/k --by function --ingest-seconds 0
        # keep the databases for the next run (a run interrupted while writing them leaves no
        # "complete" marker: the next run writes them again); time only GetStats by function
    PYTHONPATH=. python bench/bench_cluster.py --repeat 0 --ingest-nodes 1,2 --ingest-seconds 20
        # only the ingest: 1 node vs 2, one ingest worker each

The same rows (the server benchmark's workload: 50 functions, Zipf-distributed, lognormal
durations, 4 services) are written once whole to a single node's database and once split three
ways, each row to the node its (random, trace-like) shard picks. Each node and the frontend run
as separate ``kronicler serve`` processes on loopback, as they would on separate hosts (here
they share the machine's cores). Then, side by side in one run, the median and p99 round trip of
GetStats through a real gRPC channel:

- single: one node with every row (the baseline);
- frontend: ``serve --peers`` over the three nodes (a Partial fan-out, the merge, the reply);
- with ``--baseline DIR``: also a frontend run from another checkout (an older release) over
  the same nodes, to compare frontend code side by side;

for grouping by function (merged index summaries) and by service (a scan on every node). The
round trips are interleaved (one to each server in turn), so a machine whose load drifts during
the run weighs on every figure alike.

``--explain [FUNCTION]`` also times Explain the same way (a frontend asks up to five rounds of
Partial; each node answers them from one held view and keeps the counting round's calls for the
details round).

Ingest (``--ingest-seconds``, default 20): pre-encoded OTLP requests (the server benchmark's
spans), split per node by a hash of each span's trace id as the Collector's ``loadbalancing``
exporter (``routing_key: traceID``) re-batches them, sent flat out by a client process
(``--senders`` threads per node, default 2, backing off when a node answers "retry later") to
each count of ``kronicler serve`` nodes in ``--ingest-nodes`` (default 1,2), each with
``--ingest-workers`` (default 1). It prints spans acknowledged per second and the spans stored
afterwards; per node, the CPU (server process and its ingest workers) per 1,000 spans of its
share and the cores it used; the client's cores; and the whole machine's busy cores over the run
(every process, other users' included).

What it shows and does not: the client only sends bytes it encoded before the clock starts, but
its gRPC calls still take a share of the same cores (printed). With one ingest worker per node,
one node can use about one core; a second node brings a second worker, so on an idle 2-core
machine the acknowledged rate can grow until the cores are busy, and the per-node CPU per 1,000
spans staying flat says the work per span does not grow with nodes. When the machine is already
busy (the "whole machine" figure near the core count), no count of nodes can add throughput,
and the ratio shows the machine, not the design. It says nothing of network limits or of
separate hosts, where each node brings its own cores.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench.bench_server import (  # noqa: E402
    BASE_NS,
    FUNCTIONS,
    SERVICES,
    SPANS_PER_REQUEST,
    cpu_seconds,
    encoded_requests,
    raw_export_stub,
)

ROOT = Path(__file__).resolve().parents[1]
NODES = 3


def populate(single: Path, nodes: list[Path], n: int) -> float:
    """Write ``n`` rows to ``single`` and the same rows split over ``nodes``; seconds taken."""
    from kronicler.db import Database, SpanBatch

    rng = np.random.default_rng(0)
    names, services = np.array(FUNCTIONS), np.array(SERVICES)
    step = 200_000
    t0 = time.perf_counter()
    dbs = [Database.open(p) for p in (single, *nodes)]
    try:
        for i in range(0, n, step):
            m = min(step, n - i)
            code = rng.zipf(1.3, m) % len(FUNCTIONS)
            cols = dict(
                names=names[code], start=BASE_NS + np.arange(i, i + m, dtype=np.int64) * 10_000,
                duration=(rng.lognormal(11.5, 0.8, m) * (1 + code % 7)).astype(np.int64),
                status=np.where(rng.random(m) < 0.01, 2, 1).astype(np.uint8),
                service=services[rng.integers(0, len(SERVICES), m)],
            )  # fmt: skip
            shard = rng.integers(0, NODES, m)
            parts = [np.arange(m)] + [np.flatnonzero(shard == s) for s in range(NODES)]
            for db, idx in zip(dbs, parts, strict=True):
                db.append_batch(SpanBatch.build(
                    cols["names"][idx], cols["start"][idx], cols["duration"][idx],
                    status=cols["status"][idx], service=list(cols["service"][idx])))  # fmt: skip
        for db in dbs:
            assert db.flush(600)
    finally:
        for db in dbs:
            db.close()
    return time.perf_counter() - t0


def serve(
    args: list[str], checkout: Path = ROOT, *, no_otlp: bool = True
) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kronicler", "serve", "--address", "127.0.0.1:0",
         *(["--no-otlp"] if no_otlp else []), *args],
        stdout=subprocess.PIPE, text=True, cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r" on (127\.0\.0\.1:\d+) ", line)
    if not found:
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, found.group(1)


def round_trips(addresses: list[str], group_by: str, repeat: int) -> list[tuple[float, float, int]]:
    """Per address: median and p99 (ms) of GetStats round trips, and the rows counted; the
    servers are asked in turn, ``repeat`` times each."""
    return timed(addresses, lambda c: sum(r.count for r in c.stats(group_by=group_by).rows),
                 repeat)  # fmt: skip


def timed(addresses: list[str], ask: Any, repeat: int) -> list[tuple[float, float, int]]:
    """Per address: median and p99 (ms) of ``ask(client)``'s round trips, and what the first
    (warming) one returned; the servers are asked in turn, ``repeat`` times each."""
    from kronicler.server import Client

    clients = [Client(a, timeout=120) for a in addresses]
    try:
        totals = [ask(c) for c in clients]  # warm
        times: list[list[float]] = [[] for _ in clients]
        for _ in range(repeat):
            for client, took in zip(clients, times, strict=True):
                t = time.perf_counter()
                ask(client)
                took.append((time.perf_counter() - t) * 1000)
        assert all(c.missing_peers() == () for c in clients)
    finally:
        for c in clients:
            c.close()
    out = []
    for took, total in zip(times, totals, strict=True):
        took.sort()
        out.append((statistics.median(took), took[min(len(took) - 1, int(0.99 * len(took)))],
                    total))  # fmt: skip
    return out


def sharded_requests(nodes: int, requests: int) -> list[list[bytes]]:
    """Per node, ``requests`` OTLP requests of about SPANS_PER_REQUEST spans, each holding spans
    whose trace id hashes to that node: the Collector's ``loadbalancing`` exporter (``routing_key:
    traceID``) routes so, and a batch processor per backend fills requests again, so a node of
    several gets requests of the size one node alone gets (the work per span is then the same)."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp

    out: list[list[bytes]] = [[] for _ in range(nodes)]
    parts = [otlp.ExportTraceServiceRequest() for _ in range(nodes)]
    filled = [0] * nodes
    for data in encoded_requests(requests * nodes + 1, seed=1):
        req = otlp.ExportTraceServiceRequest.FromString(data)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    node = zlib.crc32(span.trace_id) % nodes
                    dest = parts[node].resource_spans
                    if not dest:
                        dest.add().resource.CopyFrom(rs.resource)
                        dest[0].scope_spans.add()
                    dest[0].scope_spans[0].spans.append(span)
                    filled[node] += 1
                    if filled[node] == SPANS_PER_REQUEST:
                        if len(out[node]) < requests:
                            out[node].append(parts[node].SerializeToString())
                        parts[node], filled[node] = otlp.ExportTraceServiceRequest(), 0
    assert all(len(o) == requests for o in out), [len(o) for o in out]
    return out


def ingest_client(addresses: list[str], seconds: float, threads: int) -> None:
    """Child process: send pre-encoded, trace-id-sharded requests flat out to every node
    (``threads`` senders per node) for ``seconds``; prints spans acknowledged and seconds."""
    import threading

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp

    per_node = sharded_requests(len(addresses), 16)
    sizes = [[sum(len(ss.spans) for rs in otlp.ExportTraceServiceRequest.FromString(r)
                  .resource_spans for ss in rs.scope_spans) for r in reqs]
             for reqs in per_node]  # fmt: skip
    print("sending", flush=True)  # encoding done: the ingest starts now
    sent = [0] * (len(addresses) * threads)
    stop = time.monotonic() + seconds

    def loop(slot: int) -> None:
        node = slot // threads
        reqs = per_node[node]
        with grpc.insecure_channel(addresses[node]) as ch:
            export = raw_export_stub(ch)
            i = slot
            while time.monotonic() < stop:
                try:
                    export(reqs[i % len(reqs)], timeout=30)
                except grpc.RpcError as exc:  # write queue full: back off like an exporter
                    if exc.code() not in (grpc.StatusCode.UNAVAILABLE,
                                          grpc.StatusCode.RESOURCE_EXHAUSTED):  # fmt: skip
                        raise
                    time.sleep(0.005)
                    continue
                sent[slot] += sizes[node][i % len(reqs)]
                i += 1

    begin = time.monotonic()
    ts = [threading.Thread(target=loop, args=(t,)) for t in range(len(sent))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(sum(sent), time.monotonic() - begin, flush=True)


def bench_ingest(tmp: Path, seconds: float, counts: list[int], workers: int, senders: int) -> None:
    """OTLP spans/s into each count of nodes, sharded by trace id; CPU per node alongside."""
    cores = os.cpu_count() or 1
    print(
        f"\nOTLP ingest, pre-encoded requests sharded by trace id, {seconds:g} s flat out "
        f"on {cores} cores, {workers} ingest worker{'s' if workers != 1 else ''} per node:"
    )
    rates = {}
    for n in counts:
        procs, addrs = [], []
        try:
            for i in range(n):
                p, a = serve(["--path", str(tmp / f"ingest{n}-{i}"), "--ingest-workers",
                              str(workers)], no_otlp=False)  # fmt: skip
                procs.append(p)
                addrs.append(a)
            cpu0 = [tree_cpu(p.pid) for p in procs]
            client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            busy0, t0 = machine_busy(), time.perf_counter()
            client = subprocess.run(
                [sys.executable, __file__, "--ingest-client", ",".join(addrs), "--seconds",
                 str(seconds), "--senders", str(senders)],
                capture_output=True, text=True, timeout=seconds + 300, check=True,
            )  # fmt: skip
            busy1, t1 = machine_busy(), time.perf_counter()
            client1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            acked, took = client.stdout.split()[-2:]
            # per node: the server process and its ingest workers
            cpu = [tree_cpu(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
            rates[n] = int(acked) / float(took)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(60)
        stored = 0
        for i in range(n):
            with _open(tmp / f"ingest{n}-{i}") as db:
                stored += sum(fs.summary.count for fs in db.summaries().values() if fs.summary)
        wall = float(took)
        client_cpu = (client1.ru_utime + client1.ru_stime) - (client0.ru_utime + client0.ru_stime)
        per_1k = " + ".join(f"{c / max(int(acked) / n, 1) * 1e6:.2f}" for c in cpu)
        print(f"   {n} node{'s' if n > 1 else ' '}: {rates[n]:>10,.0f} spans/s acknowledged "
              f"({int(acked):,} acknowledged, {stored:,} stored)\n"
              f"      CPU per 1,000 spans of its share, per node: {per_1k} ms; "
              f"cores used: nodes {sum(cpu) / wall:.2f} ({' + '.join(f'{c / wall:.2f}' for c in cpu)})"
              f", client {client_cpu / wall:.2f}, whole machine {(busy1 - busy0) / (t1 - t0):.2f} of {cores} "
              f"(others' processes included)")  # fmt: skip
    for n in counts[1:]:
        print(
            f"   {n} nodes / {counts[0]} node{'s' if counts[0] > 1 else ''}: "
            f"{rates[n] / rates[counts[0]]:.2f}x"
        )


def machine_busy() -> float:
    """Core-seconds the whole machine has spent busy since boot (Linux ``/proc/stat``)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its live descendants (Linux ``/proc``)."""
    total = cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(tree_cpu(int(c)) for c in children)


def _open(path: Path):  # type: ignore[no-untyped-def]
    from kronicler.db import Database

    return Database.open(path, readonly=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--spans", type=int, default=10_000_000, help="rows in total (default 10M)")
    ap.add_argument("--repeat", type=int, default=30,
                    help="round trips per figure (by service: a tenth; 0: skip)")  # fmt: skip
    ap.add_argument("--baseline", type=Path, metavar="DIR",
                    help="also run the frontend of the Kronicler checkout in DIR")  # fmt: skip
    ap.add_argument("--ingest-seconds", type=float, default=20.0, metavar="S",
                    help="seconds of flat-out OTLP ingest per count of nodes (0: skip)")  # fmt: skip
    ap.add_argument("--ingest-nodes", default="1,2", metavar="COUNTS",
                    help="counts of nodes to ingest into (default 1,2: as many nodes as a "
                         "2-core machine has cores for)")  # fmt: skip
    ap.add_argument("--ingest-workers", type=int, default=1, metavar="N",
                    help="ingest workers per node (default 1)")  # fmt: skip
    ap.add_argument("--by", default="function,service", metavar="KEYS",
                    help="GetStats groupings to time (default: function,service)")  # fmt: skip
    ap.add_argument("--explain", metavar="FUNCTION", nargs="?", const=FUNCTIONS[1],
                    help="also time Explain of FUNCTION (default: the most called one)")  # fmt: skip
    ap.add_argument("--explain-calls", type=int, metavar="N",
                    help="time only Explain, over N calls of bench_explain.py's workload "
                         "(attributes, children, releases) instead of GetStats")  # fmt: skip
    ap.add_argument("--senders", type=int, default=2, metavar="N",
                    help="client threads sending to each node (default 2)")  # fmt: skip
    ap.add_argument("--ingest-client", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, metavar="DIR",
                    help="keep the databases in DIR and reuse them on the next run")  # fmt: skip
    opts = ap.parse_args()
    if opts.ingest_client:
        ingest_client(opts.ingest_client.split(","), opts.seconds, threads=opts.senders)
        return
    with tempfile.TemporaryDirectory(prefix="kronicler-cluster-") as tmp:
        if opts.repeat and opts.explain_calls:
            bench_explain_data(opts, Path(tmp))
        elif opts.repeat:
            bench_round_trips(opts, Path(tmp))
        if opts.ingest_seconds:
            counts = [int(c) for c in opts.ingest_nodes.split(",")]
            bench_ingest(Path(tmp), opts.ingest_seconds, counts, opts.ingest_workers, opts.senders)


def prepared(where: Path, what: str, write: Any) -> tuple[Path, list[Path]]:
    """The single node's and the nodes' databases in ``where``, written by ``write(single,
    nodes)`` unless a complete earlier run left them."""
    single = where / "single"
    nodes = [where / f"node{i}" for i in range(NODES)]
    if (where / "complete").exists():
        print(f"reusing {what} in {where}")
    else:
        if where.exists():  # an interrupted run's rows: populating again would add to them
            shutil.rmtree(where)
        t = time.perf_counter()
        write(single, nodes)
        (where / "complete").touch()
        print(f"wrote {what} whole and split over {NODES} nodes in {time.perf_counter() - t:.1f} s")
    return single, nodes


def served(
    single: Path, nodes: list[Path], baseline: Path | None, procs: list[subprocess.Popen[str]]
) -> tuple[list[str], list[str]]:
    """The single node, the nodes and the frontend(s) served (appended to ``procs``); their
    addresses to time, and the columns' names."""
    p, single_addr = serve(["--path", str(single)])
    procs.append(p)
    peers = []
    for path in nodes:
        p, addr = serve(["--path", str(path)])
        procs.append(p)
        peers.append(addr)
    p, front_addr = serve(["--peers", ",".join(peers)])
    procs.append(p)
    addresses = [single_addr, front_addr]
    columns = ["single", "frontend"]
    if baseline is not None:
        p, base_addr = serve(["--peers", ",".join(peers)], baseline.resolve())
        procs.append(p)
        addresses.append(base_addr)
        columns.append("baseline frontend")
    return addresses, columns


def report(label: str, figures: list[tuple[float, float, int]], note: str = "") -> None:
    s50 = figures[0][0]
    print(f"{label:<20}"
          + "".join(f"{p50:>20.1f}ms{p99:>7.1f}ms" for p50, p99, _ in figures)
          + "".join(f"{p50 / s50:>23.2f}x" for p50, _, _ in figures[1:]) + note)  # fmt: skip


def bench_round_trips(opts: argparse.Namespace, tmp: Path) -> None:
    where = Path(tmp) if opts.data is None else opts.data / f"{opts.spans}"
    single, nodes = prepared(where, f"{opts.spans:,} rows",
                             lambda one, parts: populate(one, parts, opts.spans))  # fmt: skip
    procs: list[subprocess.Popen[str]] = []
    try:
        addresses, columns = served(single, nodes, opts.baseline, procs)
        print(f"{'GetStats':<20}" + "".join(f"{c + ' p50':>22}{'p99':>9}" for c in columns)
              + "".join(f"{'ratio ' + c:>24}" for c in columns[1:]))  # fmt: skip
        for group_by in opts.by.split(","):
            # a scan by service takes seconds: fewer round trips
            repeat = opts.repeat if group_by == "function" else max(3, opts.repeat // 10)
            figures = round_trips(addresses, group_by, repeat)
            assert all(rows == opts.spans for _, _, rows in figures), figures
            report(f"by {group_by}", figures)
        if opts.explain:
            time_explain(addresses, opts.explain, max(5, opts.repeat // 4))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


def time_explain(addresses: list[str], fn: str, repeat: int) -> None:
    figures = timed(addresses, lambda c: c.explain(fn).count, repeat)
    assert len({calls for _, _, calls in figures}) == 1, figures  # the same calls everywhere
    report(f"Explain {fn}", figures, f"   ({figures[0][2]:,} calls)")


def bench_explain_data(opts: argparse.Namespace, tmp: Path) -> None:
    """Explain of bench/bench_explain.py's function (attributes, children, releases) over
    ``--explain-calls`` calls: a third on each node (its own seed), all on the single node."""
    from bench.bench_explain import build

    n = opts.explain_calls
    where = Path(tmp) if opts.data is None else opts.data / f"explain-{n}"

    def write(one: Path, parts: list[Path]) -> None:
        for i, path in enumerate(parts):
            build(path, n // NODES, False, seed=5 + i)
            build(one, n // NODES, False, seed=5 + i)

    single, nodes = prepared(where, f"{n // NODES * NODES:,} calls of bench_explain", write)
    procs: list[subprocess.Popen[str]] = []
    try:
        addresses, columns = served(single, nodes, opts.baseline, procs)
        print(f"{'Explain':<20}" + "".join(f"{c + ' p50':>22}{'p99':>9}" for c in columns)
              + "".join(f"{'ratio ' + c:>24}" for c in columns[1:]))  # fmt: skip
        time_explain(addresses, "api.handle", max(5, opts.repeat // 4))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


if __name__ == "__main__":
    main()
