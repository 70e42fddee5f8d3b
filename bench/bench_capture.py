"""Capture benchmark: per-call overhead, exporter throughput, and the 8-thread count check.

Run by hand from the repository root::

    PYTHONPATH=. python bench/bench_capture.py            # ~1 minute on 2 cores

The capture figures are those of the C wrapper where it is built (``python setup.py build_ext
--inplace`` in a checkout) and of the pure-Python one otherwise or with
``KRONICLER_PURE_PYTHON=1``; the first line printed says which.

Figures, all from this one run:

1. Median cost per call of a no-op function: bare, a bare ``perf_counter_ns`` wrapper (two clock
   readings, nothing kept), ``@kronicler.capture`` on the zero-config
   pipeline, and the OpenTelemetry SDK way (``start_as_current_span`` on an SDK TracerProvider
   with a BatchSpanProcessor and a no-op exporter). Each round makes ``--calls`` calls and then
   flushes (kronicler.flush / provider.force_flush) inside the timed region, so the background
   work of turning records into stored, durable rows is paid for in the figure. Rounds of the
   three ways are interleaved so that machine noise hits them alike. Each is given twice: wall
   time, and CPU time of the whole process (every thread, so the background writer's work is
   counted even when it runs on another core); on a shared machine CPU time is the steadier.
2. ``KroniclerSpanExporter.export`` throughput on real SDK ``ReadableSpan`` batches of 512
   (the final flush is inside the timing), and ``spans_to_batch`` alone. Batches are made just
   before they are exported, as in a BatchSpanProcessor; making them is not timed. The
   conversion is the C loop (``kronicler.otel._fastrows``) where it is built, the pure-Python
   one otherwise or with ``KRONICLER_PURE_PYTHON=1``; the section's first line says which.
   ``--only exporter`` runs this section alone.
3. 8 threads x 100,000 captured calls: rows in the database, rows dropped. For reference the
   SDK's BatchSpanProcessor with its default queue runs the same loop shape (fewer calls, it is
   ~15x slower) and reports how many spans reached its exporter.
4. Bytes on disk per stored row of captured calls: 20 functions, a third of the calls with two
   nested calls, every column (ids included) stored; the database is closed first, so every row
   is in a sealed chunk.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from pathlib import Path as _Path  # noqa: E402
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout

import kronicler
from kronicler.db import Database
from kronicler.otel import KroniclerSpanExporter
from kronicler.otel.rows import spans_to_batch


class NoopExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.count += len(spans)
        return SpanExportResult.SUCCESS


def sdk_capture(tracer: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The SDK way of decorating a function, as OTel users write it."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        name = f"{fn.__module__}.{fn.__qualname__}"

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with tracer.start_as_current_span(name):
                return fn(*args, **kwargs)

        return wrapper

    return decorate


def noop() -> None:
    pass


def timed_wrapper(fn: Callable[[], None]) -> Callable[[], None]:
    """The least a timing decorator can do: two clock readings around the call, kept nowhere."""
    clock = time.perf_counter_ns

    def wrapper() -> None:
        t0 = clock()
        try:
            return fn()
        finally:
            clock() - t0

    return wrapper


def per_call(
    fn: Callable[[], None], calls: int, after: Callable[[], Any] | None = None
) -> tuple[float, float]:
    """Wall and process-CPU nanoseconds per call for one round of ``calls`` calls (plus
    ``after``, timed too)."""
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    for _ in range(calls):
        fn()
    if after is not None:
        after()
    return (time.perf_counter_ns() - t0) / calls, (time.process_time_ns() - c0) / calls


def bench_overhead(
    workdir: Path, calls: int, sdk_calls: int, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and CPU nanoseconds per call of each way."""
    kronicler.configure(path=workdir / "overhead", service_name="bench")
    captured = kronicler.capture(noop)
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
    sdk_noop = sdk_capture(provider.get_tracer("bench"))(noop)
    wrapped = timed_wrapper(noop)

    per_call(captured, 10_000, kronicler.flush)  # warm up: opens the database, starts threads
    per_call(sdk_noop, 2_000, provider.force_flush)
    results: dict[str, list[tuple[float, float]]] = {
        "bare": [], "wrapper": [], "kronicler": [], "sdk": []
    }  # fmt: skip
    for _ in range(rounds):
        results["bare"].append(per_call(noop, calls))
        results["wrapper"].append(per_call(wrapped, calls))
        results["kronicler"].append(per_call(captured, calls, kronicler.flush))
        results["sdk"].append(per_call(sdk_noop, sdk_calls, provider.force_flush))
    provider.shutdown()
    status = kronicler.status()
    assert status.dropped == 0, status
    wall = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in results.items()}
    return wall, cpu


def make_spans(n: int) -> list[ReadableSpan]:
    """Realistic SDK spans: ten functions, nesting, code attributes, 2% errors."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    names = [f"shop.handlers.func_{i}" for i in range(10)]
    attrs = [{"code.function.name": nm, "code.file.path": "/srv/shop/handlers.py",
              "code.line.number": 10 + i, "layer": "api"} for i, nm in enumerate(names)]  # fmt: skip
    made = 0
    while made < n:
        i = made % 10
        with tracer.start_as_current_span(names[i], attributes=attrs[i]) as outer:
            for j in (i + 1, i + 2):
                with tracer.start_as_current_span(names[j % 10], attributes=attrs[j % 10]):
                    pass
            if made % 50 == 0:
                outer.record_exception(ValueError(f"bad input {made}"))
                outer.set_status(Status(StatusCode.ERROR))
        made += 3
    provider.shutdown()
    return list(memory.get_finished_spans()[:n])


def bench_exporter(workdir: Path, batches: int) -> dict[str, float]:
    """Spans/s of export (final flush included) and of the conversion alone, in wall time and
    in CPU time (export: every thread of the process, the writer's included, while exporting;
    conversion: the calling thread only): the CPU figures are the steadier ones on a shared
    machine.

    Each batch of 512 spans is made just before it is exported, as a BatchSpanProcessor hands
    over spans that ended moments ago; making them is not timed.
    """
    exporter = KroniclerSpanExporter(workdir / "exporter")
    exporter.export(make_spans(512))  # warm up: first segment, dictionaries
    assert exporter.force_flush()
    export_s = export_cpu = convert_s = convert_cpu = 0.0
    total = 0
    for _ in range(batches):
        chunk = make_spans(512)
        t0, c0 = time.perf_counter(), time.thread_time()
        spans_to_batch(chunk)
        convert_s += time.perf_counter() - t0
        convert_cpu += time.thread_time() - c0
        chunk = make_spans(512)
        t0, c0 = time.perf_counter(), time.process_time()
        assert exporter.export(chunk) is SpanExportResult.SUCCESS
        export_s += time.perf_counter() - t0
        export_cpu += time.process_time() - c0
        total += len(chunk)
    t0, c0 = time.perf_counter(), time.process_time()
    assert exporter.force_flush()
    export_s += time.perf_counter() - t0
    export_cpu += time.process_time() - c0
    exporter.shutdown()
    with Database.open(workdir / "exporter") as db:
        stored = sum(s.count for s in db.stats().values())  # type: ignore[union-attr]
    assert stored == total + 512, stored
    return {"export": total / export_s, "export_cpu": total / export_cpu,
            "convert": total / convert_s, "convert_cpu": total / convert_cpu}  # fmt: skip


def report_exporter(workdir: Path, batches: int) -> None:
    from kronicler.otel import rows

    e = bench_exporter(workdir, batches)
    accelerated = getattr(rows, "ACCELERATED", False)  # absent in checkouts before the C loop
    print(f"\n2. KroniclerSpanExporter on {batches} real ReadableSpan batches of 512 "
          f"(conversion: {'C loop' if accelerated else 'pure Python'})")  # fmt: skip
    for label, key in (("export + final flush", "export"), ("spans_to_batch alone", "convert")):
        print(f"   {label:20s} wall {e[key]:10,.0f} spans/s ({1e6 / e[key]:.2f} us/span); "
              f"CPU {e[key + '_cpu']:10,.0f} spans/s ({1e6 / e[key + '_cpu']:.2f} us/span)"
              + ("   (target >= 500,000/s)" if key == "export" else ""))  # fmt: skip


def run_threads(fn: Callable[[int], Any], threads: int, calls: int) -> float:
    def loop() -> None:
        for i in range(calls):
            fn(i)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - t0


def bench_threads(workdir: Path, threads: int, calls: int, sdk_calls: int) -> dict[str, Any]:
    path = workdir / "threads"
    kronicler.configure(path=path)
    before = kronicler.status()

    @kronicler.capture
    def work(i: int) -> int:
        return i

    seconds = run_threads(work, threads, calls)
    t0 = time.perf_counter()
    flushed = kronicler.flush()
    flush_s = time.perf_counter() - t0
    status = kronicler.status()
    with Database.open(path) as db:
        stats = db.stats(f"{__name__}.{work.__qualname__}")
        stored = stats.count  # type: ignore[union-attr]
    out = {
        "seconds": seconds, "flushed": flushed, "stored": stored,
        "dropped": status.dropped - before.dropped, "flush_s": flush_s,
    }  # fmt: skip

    exporter = NoopExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))  # SDK defaults: queue of 2048
    sdk_work = sdk_capture(provider.get_tracer("bench"))(lambda i: i)
    out["sdk_seconds"] = run_threads(sdk_work, threads, sdk_calls)
    provider.shutdown()
    out["sdk_exported"] = exporter.count
    return out


def bench_bytes(workdir: Path, calls: int) -> tuple[int, float]:
    """(rows stored, bytes per row on disk) for ``calls`` captured top-level calls."""
    path = workdir / "bytes"
    kronicler.configure(path=path, service_name="bench")

    def make(i: int) -> Callable[[int], int]:
        def leaf(x: int) -> int:
            return x

        leaf.__name__ = leaf.__qualname__ = f"leaf{i}"
        return kronicler.capture(leaf)

    leaves = [make(i) for i in range(20)]

    @kronicler.capture
    def outer(i: int) -> int:
        leaves[i % 20](i)
        return leaves[(i * 7) % 20](i)

    for i in range(calls):
        if i % 3 == 0:
            outer(i)
        else:
            leaves[(i * 13) % 20](i)
    kronicler.shutdown()  # seals the last chunk
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    with Database.open(path) as db:
        rows = sum(s.count for s in db.stats().values())  # type: ignore[union-attr]
    return rows, size / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200_000, help="calls per round (capture)")
    parser.add_argument("--sdk-calls", type=int, default=20_000, help="calls per round (SDK)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=200, help="exporter batches of 512")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--thread-calls", type=int, default=100_000)
    parser.add_argument("--sdk-thread-calls", type=int, default=25_000)
    parser.add_argument("--bytes-calls", type=int, default=200_000)
    parser.add_argument("--only", choices=["exporter"], help="run one section alone")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="kronicler-bench-"))
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"data in {workdir}")  # fmt: skip
    from kronicler.otel import tracer

    accelerated = getattr(tracer, "ACCELERATED", False)  # absent in checkouts before the C path
    print("capture wrapper: " + ("C (kronicler.otel._fastcall)" if accelerated else "pure Python"))
    try:
        if args.only == "exporter":
            report_exporter(workdir, args.batches)
            return
        wall, cpu = bench_overhead(workdir, args.calls, args.sdk_calls, args.rounds)
        print(f"\n1. per-call cost of a no-op (median of {args.rounds} rounds; "
              f"flush inside each round)")  # fmt: skip
        for label, o in (("wall", wall), ("CPU, all threads", cpu)):
            k_over, s_over = o["kronicler"] - o["bare"], o["sdk"] - o["bare"]
            print(f"   -- {label}")
            print(f"   bare call                          {o['bare']:9.0f} ns")
            print(f"   bare perf_counter_ns wrapper       {o['wrapper']:9.0f} ns")
            print(f"   @kronicler.capture (zero-config)   {o['kronicler']:9.0f} ns"
                  f"   overhead {k_over / 1000:6.2f} us   (target <= 2 us)")  # fmt: skip
            print(f"   OTel SDK start_as_current_span     {o['sdk']:9.0f} ns"
                  f"   overhead {s_over / 1000:6.2f} us")  # fmt: skip
            print(f"   SDK overhead / Kronicler overhead  {s_over / k_over:9.1f} x"
                  f"   (target >= 8x)")  # fmt: skip
            print(f"   Kronicler total / wrapper total    {o['kronicler'] / o['wrapper']:9.2f} x"
                  f"   (target <= 3.5x)")  # fmt: skip
            print(f"   SDK total / Kronicler total        {o['sdk'] / o['kronicler']:9.2f} x"
                  f"   (target >= 12x)")  # fmt: skip

        report_exporter(workdir, args.batches)

        t = bench_threads(workdir, args.threads, args.thread_calls, args.sdk_thread_calls)
        total = args.threads * args.thread_calls
        print(
            f"\n3. {args.threads} threads x {args.thread_calls:,} captured calls (default settings)"
        )
        print(f"   calls {total:,} in {t['seconds']:.2f} s; flush took {t['flush_s']:.2f} s "
              f"(ok={t['flushed']})")  # fmt: skip
        print(
            f"   rows stored {t['stored']:,}   dropped {t['dropped']:,}   "
            f"{'OK: every call stored' if t['stored'] == total else 'MISSING ROWS'}"
        )
        sdk_total = args.threads * args.sdk_thread_calls
        print(f"   reference, SDK BatchSpanProcessor (default queue), {args.threads} x "
              f"{args.sdk_thread_calls:,}: {t['sdk_exported']:,} of {sdk_total:,} spans exported "
              f"({100 * (1 - t['sdk_exported'] / sdk_total):.0f}% dropped) in "
              f"{t['sdk_seconds']:.2f} s")  # fmt: skip

        rows, per_row = bench_bytes(workdir, args.bytes_calls)
        print(f"\n4. {args.bytes_calls:,} captured calls of 20 functions, a third with 2 nested")
        print(f"   rows stored {rows:,}   {per_row:.2f} bytes/row on disk (every column)")
    finally:
        kronicler.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
