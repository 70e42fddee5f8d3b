"""Server benchmarks: GetStats round trips, OTLP ingest rate, query latency under ingest.

Run by hand (takes a minute or two; needs ~2 GB of RAM for the DuckDB baseline):

    PYTHONPATH=. python bench/bench_server.py                 # 10M spans
    PYTHONPATH=. python bench/bench_server.py --spans 1000000 # quicker

Figures, each next to its named baseline measured in the same run:

1. GetStats for all functions over N stored spans, median round trip through a real gRPC
   channel. Baselines: the same query in-process (no transport), and DuckDB computing the same
   GROUP BY (count, mean, stddev, approx quantiles) over the same rows held in memory.
2. OTLP receiver throughput. Server side: decode + convert + append of pre-encoded
   ``ExportTraceServiceRequest`` bytes, in-process, until the database has flushed them.
   Over the wire: pre-encoded requests from a client process, and the stock
   ``OTLPSpanExporter``. Baseline: the stock exporter's own encode rate (it bounds what a
   Python SDK client can send).
3. GetStats latency (p50/p99) while a client process ingests over OTLP (at full speed, and
   paced at ``--ingest-rate`` spans/s), against the same figures with no ingest; once with OTLP
   decoded in the server process (``ingest_workers=0``, the baseline) and once in
   ``--ingest-workers`` worker processes (what ``kronicler serve`` does). The queries come from
   a process of their own, which shares no interpreter lock with the server, one every 10 ms
   on both sides; ``--ingest-rounds`` fresh servers each time both, and the ratio of the pooled
   p99s is printed last beside each round's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from subprocess import Popen

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

BASE_NS = 1_700_000_000_000_000_000
FUNCTIONS = [f"app.module{i // 10}.handler_{i}" for i in range(50)]
SERVICES = ["api", "worker", "billing", "search"]
SPANS_PER_REQUEST = 1000


def populate(path: Path, n: int) -> float:
    from kronicler.db import Database, SpanBatch

    rng = np.random.default_rng(0)
    names = np.array(FUNCTIONS)
    services = np.array(SERVICES)
    step = 100_000
    t0 = time.perf_counter()
    with Database.open(path) as db:
        for i in range(0, n, step):
            m = min(step, n - i)
            code = rng.zipf(1.3, m) % len(FUNCTIONS)
            batch = SpanBatch.build(
                names[code], BASE_NS + np.arange(i, i + m, dtype=np.int64) * 10_000,
                (rng.lognormal(11.5, 0.8, m) * (1 + code % 7)).astype(np.int64),
                status=np.where(rng.random(m) < 0.01, 2, 1).astype(np.uint8),
                service=services[code % 4].tolist(),
            )  # fmt: skip
            db.append_batch(batch)  # waits while the bounded write queue is full
        db.flush()
    return n / (time.perf_counter() - t0)


def timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def ms(xs: list[float], q: float = 0.5) -> str:
    return f"{np.quantile(np.array(xs), q) * 1e3:8.2f} ms"


def encoded_requests(count: int, seed: int = 0) -> list[bytes]:
    """Pre-encoded OTLP requests of SPANS_PER_REQUEST realistic spans each."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
    from opentelemetry.proto.common.v1 import common_pb2 as c
    from opentelemetry.proto.resource.v1 import resource_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    def kv(k: str, v: object) -> c.KeyValue:
        value = c.AnyValue(string_value=v) if isinstance(v, str) else c.AnyValue(int_value=v)
        return c.KeyValue(key=k, value=value)

    rng = np.random.default_rng(seed)
    out = []
    now = time.time_ns()
    for r in range(count):
        spans = []
        for i in range(SPANS_PER_REQUEST):
            f = FUNCTIONS[int(rng.integers(0, len(FUNCTIONS)))]
            start = now + (r * SPANS_PER_REQUEST + i) * 1000
            spans.append(trace_pb2.Span(
                trace_id=rng.bytes(16), span_id=rng.bytes(8), parent_span_id=rng.bytes(8),
                name=f, kind=trace_pb2.Span.SPAN_KIND_SERVER, start_time_unix_nano=start,
                end_time_unix_nano=start + int(rng.lognormal(11.5, 0.8)),
                attributes=[kv("code.function", f.rsplit(".", 1)[1]),
                            kv("http.route", f"/r{i % 8}"), kv("http.status_code", 200)],
                status=trace_pb2.Status(code=1),
            ))  # fmt: skip
        req = otlp.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
            resource=resource_pb2.Resource(attributes=[kv("service.name", "bench")]),
            scope_spans=[trace_pb2.ScopeSpans(spans=spans)])])  # fmt: skip
        out.append(req.SerializeToString())
    return out


def raw_export_stub(channel):  # type: ignore[no-untyped-def]
    return channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=None, response_deserializer=None,
    )  # fmt: skip


def ingest_client(address: str, seconds: float, threads: int, rate: float) -> None:
    """Child process: send pre-encoded requests, paced at ``rate`` spans/s (0: flat out)."""
    import grpc

    reqs = encoded_requests(20, seed=os.getpid())
    print("sending", flush=True)  # encoding done: the ingest starts now
    sent = [0] * threads
    begin = time.monotonic()
    stop = begin + seconds
    per_thread = rate / threads if rate else 0.0

    def loop(t: int) -> None:
        # a connection per thread, as separate exporters have (gRPC would share one between
        # channels to the same address): the kernel spreads connections, not calls, over the
        # processes listening on one port (the ingest workers with their own port)
        with grpc.insecure_channel(address, [("grpc.use_local_subchannel_pool", 1)]) as ch:
            export = raw_export_stub(ch)
            i = 0
            while time.monotonic() < stop:
                if per_thread:
                    ahead = sent[t] / per_thread - (time.monotonic() - begin)
                    if ahead > 0:
                        time.sleep(ahead)
                try:
                    export(reqs[i % len(reqs)], timeout=30)
                except grpc.RpcError as exc:  # write queue full: back off like an exporter
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    time.sleep(0.005)
                    continue
                sent[t] += SPANS_PER_REQUEST
                i += 1

    ts = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(sum(sent), time.monotonic() - begin, flush=True)  # spans acknowledged, seconds sending


def bench_get_stats(path: Path, n: int, repeat: int) -> None:
    from kronicler import query
    from kronicler.db import Database
    from kronicler.server import Client, KroniclerServer, ServerOptions

    with Database.open(path) as db, KroniclerServer(db, ServerOptions("127.0.0.1:0")) as srv:
        client = Client(srv.address)
        client.stats()  # warm: page summaries into the bufferpool
        rpc = timed(client.stats, repeat)
        local = timed(lambda: query.stats(db), repeat)
        exact = timed(lambda: client.stats(exact=True), 3)
        svc = timed(lambda: client.stats(group_by="service"), 3)
        print(f"\n1. GetStats, all {len(client.stats().rows)} functions over {n:,} spans "
              f"({repeat} runs)")  # fmt: skip
        print(
            f"   gRPC round trip        median {ms(rpc)}   p90 {ms(rpc, 0.9)}   (target <= 50 ms)"
        )
        print(f"   baseline in-process    median {ms(local)}")
        print(f"   exact=True (decode)    median {ms(exact)}")
        print(f"   group_by=service (scan) median {ms(svc)}")
        try:
            import duckdb
        except ImportError:
            print("   baseline DuckDB: not installed (pip install duckdb)")
        else:
            scan = db.scan(["name", "duration"])
            con = duckdb.connect()
            # dictionary codes, as Kronicler groups them (strings would only slow DuckDB down)
            con.register("spans", {"name": scan.columns["name"].astype(np.int32),
                                   "duration": scan.columns["duration"]})  # fmt: skip
            sql = ("SELECT name, count(*), avg(duration), stddev_samp(duration), min(duration), "
                   "max(duration), approx_quantile(duration, [0.5, 0.9, 0.95, 0.99, 0.999]) "
                   "FROM spans GROUP BY name")  # fmt: skip
            con.execute(sql).fetchall()
            duck = timed(lambda: con.execute(sql).fetchall(), max(3, repeat // 5))
            print(f"   baseline DuckDB (in-memory GROUP BY, same rows) median {ms(duck)}")
        client.close()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process ``pid`` (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_options(n_workers: int, direct: bool):  # type: ignore[no-untyped-def]
    """The bench's server options: with ``direct`` (and workers), the workers take OTLP on a
    port of their own (``ServerOptions.otlp_address``)."""
    from kronicler.server import ServerOptions

    direct = direct and n_workers > 0
    return ServerOptions("127.0.0.1:0", ingest_workers=n_workers,
                         otlp_address="127.0.0.1:0" if direct else None)  # fmt: skip


def otlp_target(srv) -> str:  # type: ignore[no-untyped-def]
    """Where OTLP goes: the workers' own port when they have one, else the server's."""
    return srv.otlp_address or srv.address


def bench_otlp(tmp: Path, requests: int, workers: int, direct: bool = False) -> None:
    from kronicler.db import Database
    from kronicler.otel.otlp_rows import convert_request
    from kronicler.server import KroniclerServer

    reqs = encoded_requests(requests)
    spans = requests * SPANS_PER_REQUEST
    print(f"\n2. OTLP receiver ({spans:,} spans, {SPANS_PER_REQUEST} per request, "
          f"{len(reqs[0]):,} bytes each)")  # fmt: skip
    with Database.open(tmp / "otlp-a") as db:
        t = time.perf_counter()
        cpu = time.process_time()  # this process's threads: conversion and the writer
        retries = 0
        for data in reqs:
            batch = convert_request(data).batch  # what an ingest worker does
            while not db.append_batch(batch, block=False):  # full: retry as an exporter would
                retries += 1
                time.sleep(0.001)
        db.flush()
        dt = time.perf_counter() - t
        cpu = time.process_time() - cpu
        print(f"   server side (decode+convert+store, flushed) {spans / dt:>10,.0f} spans/s "
              f"(target >= 100,000; {retries} queue-full retries)")  # fmt: skip
        print(f"      per CPU-second (less skewed by other load) {spans / cpu:>8,.0f} spans")
    for n_workers in (0, workers):
        with Database.open(tmp / f"otlp-b{n_workers}") as db:
            srv = KroniclerServer(db, serve_options(n_workers, direct))
            srv.start()
            pids = srv.ingest.pids if srv.ingest is not None else []
            cpu = time.process_time(), sum(map(cpu_seconds, pids))
            # as many requests at once as the server admits (as a Collector's sending queue does)
            threads = srv.ingest.max_in_flight if srv.ingest is not None else 2
            proc = subprocess.Popen(
                [sys.executable, __file__, "--ingest-client", otlp_target(srv), "--seconds", "6",
                 "--threads", str(threads)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            out, _ = proc.communicate(timeout=120)
            # CPU of the server process (gRPC, hand-off or conversion) and of the workers
            used = time.process_time() - cpu[0], sum(map(cpu_seconds, pids)) - cpu[1]
            srv.stop()  # workers flush what they acknowledged
            db.flush()
            stored = sum(fs.summary.count for fs in Database.open(db.path).summaries().values())
        # the rate over the client's sending time (not its start-up: it encodes its requests
        # first); an acknowledged span is already stored, and "stored" is counted after stop
        acked, dt = int(out.split()[-2]), float(out.split()[-1])
        where = f"{n_workers} ingest workers" if n_workers else "in the server process"
        where += " (own port)" if direct and n_workers else ""
        print(f"   over gRPC, pre-encoded, {where:<22} {acked / dt:>10,.0f} spans/s "
              f"({acked:,} acknowledged, {stored:,} stored)")  # fmt: skip
        print(f"      CPU per 1,000 spans: {used[0] / acked * 1e6:6.2f} ms server process, "
              f"{used[1] / acked * 1e6:6.2f} ms workers")  # fmt: skip
        # what two cores could take if they did nothing else (target: >= 250,000 spans/s)
        print(f"      per server CPU-second {acked / sum(used):>10,.0f} spans; 2 cores: "
              f"{2 * acked / sum(used):,.0f} spans/s")  # fmt: skip
    bench_stock_exporter(tmp)


def bench_stock_exporter(tmp: Path) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from kronicler.db import Database
    from kronicler.server import KroniclerServer, ServerOptions

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for i in range(5000):
        with tracer.start_as_current_span(FUNCTIONS[i % 50], attributes={"http.route": "/x"}):
            pass
    spans = list(memory.get_finished_spans())
    batches = [spans[i : i + 512] for i in range(0, len(spans), 512)]
    t = time.perf_counter()
    for _ in range(4):
        for b in batches:
            encode_spans(b).SerializeToString()
    enc = 4 * len(spans) / (time.perf_counter() - t)
    with (
        Database.open(tmp / "otlp-c") as db,
        KroniclerServer(db, ServerOptions("127.0.0.1:0")) as srv,
    ):
        exporter = OTLPSpanExporter(endpoint=srv.address, insecure=True)
        t = time.perf_counter()
        for _ in range(4):
            for b in batches:
                exporter.export(b)
        db.flush()
        rate = 4 * len(spans) / (time.perf_counter() - t)
        exporter.shutdown()
    print(f"   stock OTLPSpanExporter, end to end          {rate:>10,.0f} spans/s")
    print(f"   baseline: stock exporter encode only        {enc:>10,.0f} spans/s")


def stats_client(address: str, count: int, until: float, gap: float = 0.01) -> None:
    """Child process: time GetStats calls (``count`` of them back to back, or one every ``gap``
    seconds until the wall clock reaches ``until``) and print their seconds, then its own CPU
    seconds.

    The querying client runs apart from the server so that its work (building requests,
    decoding answers, gRPC's client threads) takes no interpreter lock the server needs: the
    latencies are the server's, plus one loopback round trip.
    """
    from kronicler.server import Client

    client = Client(address)
    client.stats()  # a channel, a connection and the answer's decoding warmed up
    cpu = time.process_time()
    out = timed(client.stats, count) if count else []
    while not count and time.time() < until:
        out += timed(client.stats, 1)
        time.sleep(gap)
    cpu = time.process_time() - cpu
    client.close()
    print(" ".join(f"{x:.6f}" for x in out), flush=True)
    print(f"{cpu:.6f}", flush=True)


def query_from_another_process(
    address: str, *, count: int = 0, until: float = 0.0, gap: float = 0.01
) -> Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--stats-client", address, "--count", str(count),
         "--until", repr(until), "--gap", repr(gap)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def latencies(proc: Popen) -> tuple[list[float], float]:
    """What a :func:`stats_client` process printed: its latencies and its CPU seconds."""
    out, _ = proc.communicate(timeout=300)
    if proc.returncode:
        raise RuntimeError(f"the querying client failed (exit code {proc.returncode})")
    times, cpu = out.strip().splitlines()[-2:]
    return [float(x) for x in times.split()], float(cpu)


def bench_under_ingest(path: Path, seconds: float, workers: int, rate: float,
                       cases: str = "all", direct: bool = False, rounds: int = 1) -> None:  # fmt: skip
    """Section 3: per case, ``rounds`` rounds of a fresh server, each timing GetStats first
    with no ingest, then under ingest, with the same client, pace and length (``seconds``).

    Both sides are timed the same way (one query every 10 ms after the querier's warm-up
    call) so that their p99s compare: 100 queries back to back, as before, gave an idle p99
    that swung 5.5-21 ms between runs of one build, more than any change moved the ratio.
    The ratio printed last pools every round's queries (several hundred each side); the
    per-round ratios show the spread."""
    print(f"\n3. GetStats latency while ingesting over OTLP ({seconds:g} s each; the querying "
          f"client in a process of its own; {rounds} round(s) of idle then ingest)")  # fmt: skip
    configs = [(n, p) for n in (0, workers) for p in (rate, 0.0)]
    if cases == "paced":
        configs = [(workers, rate)]
    for n_workers, pace in configs:
        idle: list[float] = []
        busy: list[float] = []
        burst: list[float] = []
        for r in range(rounds):
            i, b, q = _ingest_round(path, seconds, n_workers, pace, direct, r)
            idle += i
            busy += b
            burst += q
        if rounds > 1:
            print(f"   all {rounds} rounds: under ingest p50 {ms(busy)}   p99 {ms(busy, 0.99)}   "
                  f"idle p50 {ms(idle)}   p99 {ms(idle, 0.99)}   "
                  f"(p99 / idle p99: {_ratio(busy, idle):.2f}x; against back to back "
                  f"{_ratio(busy, burst):.2f}x)")  # fmt: skip


def _ratio(busy: list[float], idle: list[float]) -> float:
    return float(np.quantile(busy, 0.99) / np.quantile(idle, 0.99))


def _ingest_round(path: Path, seconds: float, n_workers: int, pace: float, direct: bool,
                  r: int) -> tuple[list[float], list[float], list[float]]:  # fmt: skip
    from kronicler.db import Database
    from kronicler.server import KroniclerServer

    with Database.open(path) as db:
        srv = KroniclerServer(db, serve_options(n_workers, direct))
        srv.start()
        burst, _ = latencies(query_from_another_process(srv.address, count=100))
        idle, idle_cpu = latencies(
            query_from_another_process(srv.address, until=time.time() + seconds - 0.5)
        )
        proc = subprocess.Popen(
            [sys.executable, __file__, "--ingest-client", otlp_target(srv), "--seconds",
             str(seconds), "--threads", str(max(2, 2 * n_workers)), "--rate", str(pace)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == "sending"
        querier = query_from_another_process(srv.address, until=time.time() + seconds - 0.5)
        time.sleep(1.0)  # the querier starts timing once it is up (~1 s)
        pids = srv.ingest.pids if srv.ingest is not None else []
        cpu = (time.process_time(), sum(map(cpu_seconds, pids)), cpu_seconds(proc.pid))
        began = time.monotonic()
        busy, busy_cpu = latencies(querier)
        # cores used meanwhile (this process is the server alone)
        span = time.monotonic() - began
        cores = (time.process_time() - cpu[0], sum(map(cpu_seconds, pids)) - cpu[1],
                 cpu_seconds(proc.pid) - cpu[2])  # fmt: skip
        load = os.getloadavg()[0]
        out, _ = proc.communicate(timeout=120)
        srv.stop()
    acked, sending = int(out.split()[-2]), float(out.split()[-1])
    where = f"{n_workers} ingest workers" if n_workers else "OTLP in the server process"
    where += " taking OTLP on their own port" if direct and n_workers else ""
    print(f"   {where}, {acked / sending:>9,.0f} spans/s "
          f"({'paced' if pace else 'flat out'}, {len(busy)} queries; idle {len(idle)})"
          f"{f'; round {r + 1}' if r else ''}")  # fmt: skip
    print(
        f"      under ingest   p50 {ms(busy)}   p99 {ms(busy, 0.99)}   "
        f"(p99 / idle p99: {_ratio(busy, idle):.2f}x; against back to back "
        f"{_ratio(busy, burst):.2f}x)"
    )
    print(f"      idle           p50 {ms(idle)}   p99 {ms(idle, 0.99)}   "
          f"(100 back to back: p50 {ms(burst)}   p99 {ms(burst, 0.99)})")  # fmt: skip
    print(f"      cores used: {cores[0] / span:.2f} server, {cores[1] / span:.2f} workers, "
          f"{cores[2] / span:.2f} OTLP client; load average {load:.2f}")  # fmt: skip
    print(f"      querier CPU per query: idle {idle_cpu / len(idle) * 1e3:.2f} ms, under "
          f"ingest {busy_cpu / max(len(busy), 1) * 1e3:.2f} ms")  # fmt: skip
    return idle, busy, burst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spans", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--otlp-requests", type=int, default=200)
    ap.add_argument("--ingest-seconds", type=float, default=8.0)
    ap.add_argument("--ingest-workers", type=int, default=2)
    ap.add_argument("--ingest-rate", type=float, default=100_000, help="paced ingest, spans/s")
    ap.add_argument("--only", choices=["stats", "otlp", "ingest"], help="run one section")
    ap.add_argument("--ingest-client", metavar="ADDRESS", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument(
        "--ingest-cases",
        choices=["all", "paced"],
        default="all",
        help="section 3: every case, or only paced ingest into the workers",
    )
    ap.add_argument("--ingest-rounds", type=int, default=3,
                    help="section 3: rounds of idle-then-ingest per case, each on a fresh "
                         "server (the pooled ratio is printed last)")  # fmt: skip
    ap.add_argument("--otlp-direct", action="store_true",
                    help="sections 2 and 3: the ingest workers take OTLP on their own port "
                         "(ServerOptions.otlp_address), not relayed by the server process")  # fmt: skip
    ap.add_argument("--stats-client", metavar="ADDRESS", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--until", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--gap", type=float, default=0.01, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ingest_client:
        ingest_client(args.ingest_client, args.seconds, args.threads, args.rate)
        return
    if args.stats_client:
        stats_client(args.stats_client, args.count, args.until, args.gap)
        return
    print(f"kronicler server benchmark; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="kronicler-bench-") as d:
        tmp = Path(d)
        rate = populate(tmp / "db", args.spans)
        print(f"populated {args.spans:,} spans at {rate:,.0f} spans/s")
        if args.only in (None, "stats"):
            bench_get_stats(tmp / "db", args.spans, args.repeat)
        if args.only in (None, "otlp"):
            bench_otlp(tmp, args.otlp_requests, args.ingest_workers, args.otlp_direct)
        if args.only in (None, "ingest"):
            bench_under_ingest(
                tmp / "db",
                args.ingest_seconds,
                args.ingest_workers,
                args.ingest_rate,
                args.ingest_cases,
                args.otlp_direct,
                args.ingest_rounds,
            )


if __name__ == "__main__":
    main()
