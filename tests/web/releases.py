"""Two releases of a checkout service, written by the stock OTel SDK into a Kronicler database.

Release 1.0 runs on host web-1 and is fast; release 1.1 runs on web-2 and is slower and fails
more often; a batch host with no ``service.version`` in its resource calls the same function.
Every span has explicit start and end times (so the stored rows are known), an ``http.route``
attribute, and the resource its ``TracerProvider`` was built with, exported through
:class:`~kronicler.otel.exporter.KroniclerSpanExporter`. The tests compare the dashboard with
brute force over the stored rows (``tests.cluster.nodes.stored``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from kronicler.db import Database
from kronicler.otel.exporter import KroniclerSpanExporter

MINUTE = 60 * 10**9
SPAN = 20 * MINUTE  # calls start in [base, base + SPAN)
PAY = "checkout.pay"
CART = "checkout.cart"
BY_RELEASE = "resource:service.version"
#: The test servers' pinned clock; the calls start in the hour before it.
NOW = 1_796_000_000_000_000_000
BASE = NOW - 2 * SPAN
#: resource -> {function: (calls, median duration ns, error share)}
HOSTS: dict[tuple[str | None, str], dict[str, tuple[int, float, float]]] = {
    ("1.0", "web-1"): {PAY: (90, 2e6, 0.05), CART: (30, 300e3, 0.0)},
    ("1.1", "web-2"): {PAY: (60, 9e6, 0.15), CART: (30, 350e3, 0.0)},
    (None, "batch-1"): {PAY: (12, 4e6, 0.0)},
}


def write_releases(path: Path, base: int, *, seed: int = 7) -> None:
    """Write every host's calls through its own ``TracerProvider`` into the database at ``path``."""
    rng = np.random.default_rng(seed)
    with Database.open(path, chunk_rows=64) as db:
        for (version, host), calls in HOSTS.items():
            attrs = {"service.name": "checkout", "host.name": host,
                     "deployment.environment.name": "prod"}  # fmt: skip
            if version is not None:
                attrs["service.version"] = version
            provider = TracerProvider(resource=Resource.create(attrs))
            provider.add_span_processor(SimpleSpanProcessor(KroniclerSpanExporter(db)))
            tracer = provider.get_tracer("tests.web.releases")
            for name, (n, median, errors) in calls.items():
                starts = np.sort(base + rng.integers(0, SPAN, n))
                durations = rng.lognormal(np.log(median), 0.5, n).astype(np.int64) + 1
                failed = rng.random(n) < errors
                for i in range(n):
                    route = "/pay/{id}" if i % 3 else "/pay"
                    span = tracer.start_span(name, kind=SpanKind.SERVER,
                                             start_time=int(starts[i]),
                                             attributes={"http.route": route})  # fmt: skip
                    if failed[i]:
                        span.set_status(Status(StatusCode.ERROR))
                    span.end(end_time=int(starts[i] + durations[i]))
            provider.shutdown()
        assert db.flush(timeout=30)
