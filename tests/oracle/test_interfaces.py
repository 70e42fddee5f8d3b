"""Every interface gives the same answer as the Python API, and that answer is the brute force's.

The gRPC client (a real server on 127.0.0.1:0), the dashboard's HTTP API (uvicorn on a real
socket) and the ``kronicler`` command (``--json``, as a subprocess, on ``--path`` and on
``--address``) are asked the same questions. The Python API's answers are checked against the
brute force in ``test_answers.py``; here each other interface must equal them, and the figures
only the dashboard computes (its table and columnar series) are checked against the brute force.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from kronicler.db import Database
from kronicler.server import Client, KroniclerServer, ServerOptions
from tests.oracle.interfaces import CliApi, GrpcApi, HttpApi, PythonApi
from tests.oracle.layouts import BASE, Layout
from tests.oracle.queries import Failures, standard_queries, time_bounds
from tests.oracle.truth import (
    Query,
    check_table,
    expected_series_counts,
    expected_stats,
    mask,
)

pytest.importorskip("fastapi", reason="the dashboard needs the web extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="the dashboard needs the web extra (fastapi, uvicorn)")

from kronicler.web import WebServer  # noqa: E402

SECOND = 1_000_000_000
TABLE_QUANTILES = (0.5, 0.9, 0.99)
RELEASE = "resource:service.version"


@pytest.fixture(scope="session")
def http(db: Database, layout: Layout) -> Iterator[HttpApi]:
    with WebServer(db, "127.0.0.1", 0) as server:
        yield HttpApi(server.url)


def transport_queries(layout: Layout) -> list[Query]:
    """Every third standard query: each kind of filter, not each instance (the Python API
    answers all of them against the brute force in ``test_answers.py``)."""
    return standard_queries(layout.truth)[::3]


def test_grpc_equals_python(layout: Layout, db: Database, grpc_client: Client) -> None:
    py, rpc, failures = PythonApi(db), GrpcApi(grpc_client), Failures()
    names = sorted(set(layout.truth.name.tolist()))
    for q in transport_queries(layout):
        label = q.label()
        for exact in (False, True):
            failures.check(f"stats exact={exact} {label}", lambda q=q, exact=exact: _same(
                rpc.stats(q, exact=exact), py.stats(q, exact=exact)))  # fmt: skip
        failures.check(f"stats by service {label}", lambda q=q: _same(
            rpc.stats(q, group_by="service"), py.stats(q, group_by="service")))  # fmt: skip
        failures.check(f"stats by release {label}", lambda q=q: _same(
            rpc.stats(q, group_by=RELEASE), py.stats(q, group_by=RELEASE)))  # fmt: skip
        failures.check(f"functions {label}", lambda q=q: _same(rpc.functions(q),
                                                               py.functions(q)))  # fmt: skip
        # attribute values keep their types over gRPC (``attributes_json``): 500 stays a number
        failures.check(f"slowest {label}", lambda q=q: _same(rpc.slowest(q, 10),
                                                             py.slowest(q, 10)))  # fmt: skip
        failures.check(f"anomalies {label}", lambda q=q: _same(rpc.anomalies(q),
                                                               py.anomalies(q)))  # fmt: skip
        if not q.functions:
            for name in names[:2]:
                failures.check(f"histogram {name} {label}", lambda q=q, name=name: _same(
                    rpc.histogram(name, q, exact=True), py.histogram(name, q, exact=True)))  # fmt: skip
    a, b = time_bounds(layout.truth)["middle third"]
    assert a is not None and b is not None
    for q in (Query(since=a, until=b), Query(("app.*",), since=a + 1, until=b)):
        failures.check(f"series {q.label()}", lambda q=q: _same(
            rpc.series(q, step=(b - a) // 9 + 1), py.series(q, step=(b - a) // 9 + 1)))  # fmt: skip
    failures.assert_none()


def _same(got: Any, want: Any) -> None:
    assert got == want, f"\n got {str(got)[:600]}\nwant {str(want)[:600]}"


def test_http_equals_python_and_brute_force(layout: Layout, db: Database, http: HttpApi) -> None:
    py, failures, t = PythonApi(db), Failures(), layout.truth
    names = sorted(set(t.name.tolist()))
    for q in transport_queries(layout):
        label = q.label()

        def table(q: Query = q) -> None:
            rows = http.table(q)
            want = expected_stats(t, q)
            check_table(rows, "function", want, TABLE_QUANTILES, False, "http table")
            py_rows = {r["function"]: r for r in py.stats(q, quantiles=TABLE_QUANTILES)}
            for r in rows:
                same = {k: r[k] for k in py_rows[r["function"]] if k in r}
                assert same == {k: py_rows[r["function"]][k] for k in same}, r["function"]

        failures.check(f"table {label}", table)
        failures.check(f"slowest {label}", lambda q=q: _same(http.slowest(q, 10),
                                                             py.slowest(q, 10)))  # fmt: skip
        failures.check(f"anomalies {label}", lambda q=q: _same(
            [{k: a[k] for k in ("function", "score", "count", "errors", "p50_ns", "p99_ns",
                                "max_ns", "exemplars")} for a in http.anomalies(q)],
            [{k: a[k] for k in ("function", "score", "count", "errors", "p50_ns", "p99_ns",
                                "max_ns", "exemplars")} for a in py.anomalies(q)]))  # fmt: skip
        if not q.functions:
            for name in names[:2]:
                failures.check(f"histogram {name} {label}", lambda q=q, name=name: _same(
                    http.histogram(name, q), py.histogram(name, q)))  # fmt: skip

                def detail(q: Query = q, name: str = name) -> None:
                    d = http.detail(name, q, 5, series=True)
                    one = Query((name,), q.service, q.since, q.until, q.attributes, q.resource)
                    _same(d["slowest"], py.slowest(one, 5))
                    want = expected_stats(t, one)
                    # The chart's first bucket starts at a multiple of the step, a little
                    # before the window (documented in kronicler/web/views.py).
                    chart = d["series"]
                    drawn = Query((name,), q.service, chart["since_unix_nano"],
                                  chart["until_unix_nano"], q.attributes, q.resource)  # fmt: skip
                    assert q.since is None or chart["since_unix_nano"] <= q.since
                    assert sum(chart.get("count", [])) == int(mask(t, drawn).sum()), "chart"
                    if name in want:
                        check_table([d["stats"]], "function", want, TABLE_QUANTILES, False,
                                    "detail")  # fmt: skip
                    else:
                        assert d["stats"] is None

                failures.check(f"detail {name} {label}", detail)
    a, b = time_bounds(t)["middle third"]
    assert a is not None and b is not None
    for q in (Query(since=a, until=b), Query(("app.*",), service="api", since=a + 1, until=b)):
        step = (b - a) // 11 + 1

        def series(q: Query = q, step: int = step) -> None:
            got = http.series(q, step=step)
            assert q.since is not None
            since = q.since - q.since % step  # the dashboard aligns buckets to the step
            want = expected_series_counts(t, q, since, b, step)
            assert got["since_unix_nano"] == since and got["step_ns"] == step
            assert {s["function"]: s["count"] for s in got["series"]} == {
                k: [c for c, _ in v] for k, v in want.items()}  # fmt: skip
            assert {s["function"]: s["errors"] for s in got["series"]} == {
                k: [e for _, e in v] for k, v in want.items()}  # fmt: skip

        failures.check(f"series {q.label()}", series)
    failures.assert_none()


def _cli_queries(layout: Layout) -> list[tuple[str, Query]]:
    names = sorted(set(layout.truth.name.tolist()))
    window = Query(since=BASE + 600 * SECOND, until=BASE + 2400 * SECOND)
    return [
        ("stats", Query()),
        ("stats", Query(("app.*",), service="api", since=window.since, until=window.until)),
        ("stats-exact", Query(attributes=(("code", "500"),))),
        ("stats-route", Query(since=window.since)),
        ("functions", Query(until=window.until)),
        ("slowest", Query((names[-1],))),
        ("slowest", Query(service="api", attributes=(("route", "/b"),))),
        ("stats-release", Query(("app.*",), resource=(("host.name", "web-1"),))),
        ("slowest", Query(resource=(("service.version", "1.1"),))),
        ("series", window),
        ("histogram", Query(service="worker")),
        ("anomalies", Query()),
    ]


def _ask(api: Any, what: str, q: Query, layout: Layout) -> Any:
    if what == "stats":
        return api.stats(q)
    if what == "stats-exact":
        return api.stats(q, exact=True)
    if what == "stats-route":
        return api.stats(q, group_by="attribute:route", quantiles=(0.5, 0.99))
    if what == "stats-release":
        return api.stats(q, group_by=RELEASE, quantiles=(0.5, 0.99))
    if what == "functions":
        return api.functions(q)
    if what == "slowest":
        return api.slowest(q, 5)
    if what == "series":
        assert q.since is not None and q.until is not None
        return api.series(q, step=(q.until - q.since) // 6)
    if what == "histogram":
        name = sorted(set(layout.truth.name.tolist()))[0]
        return api.histogram(name, q, exact=True)
    assert what == "anomalies"
    return api.anomalies(q)


def test_cli_on_path_equals_python_and_brute_force(layout: Layout, db: Database) -> None:
    py, cli, failures = PythonApi(db), CliApi(path=layout.path), Failures()
    asked = _cli_queries(layout)
    if layout.name != "deployment":  # a subprocess per question: the other layouts ask fewer
        asked = asked[1::3]
    for what, q in asked:

        def check(what: str = what, q: Query = q) -> None:
            got, want = _ask(cli, what, q, layout), _ask(py, what, q, layout)
            _same(got, want)
            if what in ("stats", "stats-exact"):
                check_table(got, "function", expected_stats(layout.truth, q),
                            (0.5, 0.9, 0.95, 0.99, 0.999), what == "stats-exact", "cli")  # fmt: skip
            if what == "stats-release":
                check_table(got, "service.version", expected_stats(layout.truth, q, RELEASE),
                            (0.5, 0.99), False, "cli")  # fmt: skip

        failures.check(f"{what} {q.label()}", check)
    failures.assert_none()


def test_cli_on_address_equals_grpc(deployment: Layout) -> None:
    """The CLI over ``--address`` answers as the gRPC client does (one layout is enough: the
    other layouts reach the same server code through ``test_grpc_equals_python``)."""
    with (
        Database.open(deployment.path, readonly=True) as db,
        KroniclerServer(db, ServerOptions(address="127.0.0.1:0", otlp=False)) as server,
        Client(server.address) as client,
    ):
        rpc, cli, failures = GrpcApi(client), CliApi(address=server.address), Failures()
        for what, q in _cli_queries(deployment)[::2]:
            failures.check(f"{what} {q.label()}", lambda what=what, q=q: _same(
                _ask(cli, what, q, deployment), _ask(rpc, what, q, deployment)))  # fmt: skip
        failures.assert_none()


def test_slowest_json_is_the_same_on_path_and_address(deployment: Layout) -> None:
    """``kronicler slowest --json`` must print the same calls whichever road it takes.

    Attribute values keep their JSON types on both (``"code": 500``, not ``"500"``): the gRPC
    ``Call`` carries them typed in ``attributes_json`` beside the text map.
    """
    q = Query(attributes=(("code", "500"),))
    with Database.open(deployment.path) as db, \
            KroniclerServer(db, ServerOptions(address="127.0.0.1:0", otlp=False)) as server:  # fmt: skip
        remote = CliApi(address=server.address).slowest(q, 3)
    local = CliApi(path=deployment.path).slowest(q, 3)
    assert [c["span_id"] for c in local] == [c["span_id"] for c in remote]
    assert local == remote


def test_every_row_is_counted_once(layout: Layout, db: Database) -> None:
    """The row total and each function's count, through the index and through a full scan."""
    t = layout.truth
    total = sum(r["count"] for r in PythonApi(db).functions(Query()))
    scanned = len(db.scan(["start"]))
    assert (total, scanned) == (len(t), len(t))
    names, counts = np.unique(t.name.astype(str), return_counts=True)
    got = {r["function"]: r["count"] for r in PythonApi(db).functions(Query())}
    assert got == dict(zip(names.tolist(), counts.tolist(), strict=True))
