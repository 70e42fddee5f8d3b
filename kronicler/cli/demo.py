"""``kronicler demo``: a small shop backend, captured, served, and asked what is slow.

The workload is ordinary code marked with ``@kronicler.capture``: a fast parser, a user lookup
that occasionally misses its cache and reads the row from the "database" (a heavy tail, caused by a
child call), a card payment that sometimes raises and is slow with one payment provider (an
attribute), a catalogue search that gets slower after a release near the end of the run (a
regression, with ``service.version`` on each call), and the request handler calling them all.
``kronicler explain`` finds each cause. It runs in its own process, like an application, which stores its
captured calls on exit; then a real gRPC server is started on a free loopback port over the
database, and the stats table the anomalies and the explanation of the top
anomaly are fetched through it, exactly as ``kronicler stats``, ``kronicler anomalies`` and
``kronicler explain`` would.

The database goes to a temporary directory that is deleted at exit (the demo says so), so the
demo leaves nothing behind; ``--path DIR`` keeps it for further ``kronicler ... --path DIR``
commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from opentelemetry import trace

import kronicler
from kronicler.cli import render
from kronicler.cli.explain_text import explain_text

#: The release the catalogue search regressed in, and the one before it.
RELEASES = ("1.4.0", "1.5.0")
#: The payment provider whose calls are slow.
SLOW_PROVIDER = "slowpay"


class PaymentDeclined(Exception):
    """The card was declined (the demo's occasional error)."""


class _Shop:
    """The demo's world: a seeded random source and the request where the regression starts."""

    rng = random.Random(7)
    regress_from = 10**9


@kronicler.capture(name="shop.parse_request")
def parse_request(i: int) -> dict[str, Any]:
    return json.loads(json.dumps({"id": i, "user": i % 37, "items": list(range(i % 5))}))


@kronicler.capture(name="shop.fetch_user_row")
def fetch_user_row(user_id: int) -> dict[str, Any]:
    time.sleep(0.015)  # the "database" behind the cache
    return {"id": user_id, "name": f"user-{user_id}"}


@kronicler.capture(name="shop.load_user")
def load_user(user_id: int) -> dict[str, Any]:
    # 4% cache misses read the row from the "database": a classic occasionally-slow function.
    time.sleep(0.0002)
    if _Shop.rng.random() < 0.04:
        return fetch_user_row(user_id)
    return {"id": user_id, "name": f"user-{user_id}"}


@kronicler.capture(name="shop.search_catalog")
def search_catalog(i: int) -> list[int]:
    # Release 1.5.0, deployed near the end of the run, made searches ten times slower.
    late = i >= _Shop.regress_from
    trace.get_current_span().set_attribute("service.version", RELEASES[late])
    time.sleep(0.03 if late else 0.003)
    return sorted(_Shop.rng.sample(range(1000), 20))


@kronicler.capture(name="shop.charge_card")
def charge_card(amount: float) -> str:
    # One payment provider in eight answers in 12 ms instead of 0.5 ms.
    provider = SLOW_PROVIDER if _Shop.rng.random() < 0.125 else _Shop.rng.choice(["acme", "paynow"])
    trace.get_current_span().set_attribute("payment.provider", provider)
    time.sleep(0.012 if provider == SLOW_PROVIDER else 0.0005)
    if _Shop.rng.random() < 0.06:
        raise PaymentDeclined(f"card declined for {amount:.2f}")
    return "ok"


@kronicler.capture(name="shop.render_page")
def render_page(user: dict[str, Any], results: list[int]) -> str:
    return "".join(f"<li>{r}</li>" for r in results) + user["name"]


@kronicler.capture(name="shop.handle_request")
def handle_request(i: int) -> str:
    req = parse_request(i)
    user = load_user(req["user"])
    results = search_catalog(i)
    with contextlib.suppress(PaymentDeclined):
        charge_card(10.0 + len(req["items"]))
    return render_page(user, results)


def run_workload(n_requests: int, seed: int) -> None:
    """Serve ``n_requests`` simulated requests; the last 1% (at least 3) hit a slower search.

    The regression must be flagged on every run, on an idle machine and a loaded one. The
    detector compares the p99 of the last tenth of the time range with the p99 before it, so:

    * the slowed calls are under 1% of all calls: however many fall before the recent window,
      they cannot lift the baseline p99;
    * they take 30 ms against 3 ms, and a request ~4 ms, so 1% of the requests fill about 8% of
      the time: the slow phase fits the recent window, and the window still holds a dozen normal
      calls besides (it needs 10 calls to judge);
    * 3 ms searches, not 0.3 ms: scheduling delays on a loaded machine add milliseconds to a
      sleep's tail, which would put the baseline p99 within 2x of the slowed calls.

    The earlier shape (the last 5% of requests at 5x a 0.3 ms search) spilled slowed calls into
    the baseline and was flagged in 3 runs of 8.
    """
    _Shop.rng = random.Random(seed)
    _Shop.regress_from = n_requests - max(3, n_requests // 100)
    for i in range(n_requests):
        handle_request(i)


def run_app_process(path: Path, n_requests: int, seed: int) -> None:
    """Run the workload in its own process, as an application would, capturing into ``path``.

    The database path and service name go through the environment the capture pipeline reads
    at start-up; the process stores every captured call on its normal exit.
    """
    env = {**os.environ, "KRONICLER_PATH": str(path), "KRONICLER_SERVICE_NAME": "kronicler-demo",
           "KRONICLER_ENABLED": "1"}  # fmt: skip
    code = f"from kronicler.cli.demo import run_workload; run_workload({n_requests}, {seed})"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the demo workload failed: {proc.stderr.strip()[-2000:]}")


def run_demo(args: argparse.Namespace) -> int:
    from kronicler.db import Database
    from kronicler.server import Client, KroniclerServer, ServerOptions

    keep = args.path is not None
    path = Path(args.path) if keep else Path(tempfile.mkdtemp(prefix="kronicler-demo-"))
    out = sys.stdout
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, file=out, flush=True))
    try:
        say(f"Kronicler demo: simulating {args.requests} requests of a small shop backend...")
        t0 = time.perf_counter()
        run_app_process(path, args.requests, args.seed)
        where = path if keep else f"{path} (temporary: deleted when the demo ends)"
        say(f"  done in {time.perf_counter() - t0:.1f} s; database: {where}")
        db = Database.open(path)
        try:
            server = KroniclerServer(db, ServerOptions(address="127.0.0.1:0")).start()
            try:
                say(f"  gRPC server listening on {server.address}\n")
                with Client(server.address) as client:
                    table = client.stats(order_by="total")
                    found = client.anomalies(min_count=30)
                    why = client.explain(found[0].function) if found else None
            finally:
                server.stop(grace=0.5)
        finally:
            db.close()
        if args.json:
            print(
                json.dumps(
                    {
                        "stats": [r.to_dict(table.key_name) for r in table.rows],
                        "anomalies": [a.to_dict() for a in found],
                        "explain": None if why is None else why.to_dict(),
                    },
                    indent=2,
                ),
                file=out,
            )
            return 0
        say("Latency by function (slowest total time first):")
        say(render.stats_table(table))
        say("\nAnomalies (functions whose calls are sometimes much slower than usual):")
        say(render.anomalies_text(found))
        if why is not None:
            say(f"\nWhy is {why.function} sometimes slow? (kronicler explain {why.function})")
            say(explain_text(why))
        if keep:
            say(
                f"\nExplore further: kronicler stats --path {path}   (or: top, slowest, series, "
                f"anomalies, histogram NAME, explain NAME)"
            )
        else:
            say(
                "\nRun `kronicler demo --path DIR` to keep the database and explore it with "
                "`kronicler stats --path DIR`."
            )
        return 0
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
