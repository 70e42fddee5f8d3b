"""The ``QueryBackend`` contract, run against every implementation over the shop dataset.

Each implementation (``Local`` over the database directory; the gRPC ``Client`` talking to a real
server on 127.0.0.1 port 0; a cluster ``Frontend`` over three real servers each holding a third
of the data, split by trace id, asked directly and through its own gRPC server) answers every question exactly as the query layer answers it on the
open database (the specification), and fails the same way: the same exception type
(``ValueError``, ``NotFoundError``) with the same message. Arguments the wire cannot carry
(0 or "" meaning "the default" there) are part of the contract: a remote backend must refuse them
as the local layer does, not answer with the default.

The span-side contracts live beside this one: ``test_span_sink.py`` (what producers write to) and
the row contract of the three span converters (fast path, SDK span, OTLP), which must give
identical rows for the same spans: ``tests/otel/test_contract.py`` (unit by unit) and
``tests/otel/test_contract_roads.py`` (the three whole roads, in fresh processes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest

from kronicler import query as q
from kronicler.db import Database
from kronicler.errors import NotFoundError
from kronicler.query.backend import QueryBackend
from kronicler.query.local import Local
from kronicler.server import Client, KroniclerServer, ServerOptions
from kronicler.server.frontend import Frontend
from tests.cluster.nodes import split_database, stored
from tests.query.shop_data import BASE_NS, SPAN_NS

IMPLEMENTATIONS = ("local", "grpc", "frontend", "frontend over grpc")


@dataclass
class Reference:
    """The specification: the query layer's functions on the open database."""

    db: Database

    def list_functions(self, flt: q.Filter | None = None) -> list[q.FunctionInfo]:
        return q.list_functions(self.db, flt)

    def time_range(self) -> tuple[int, int] | None:
        return self.db.time_range()

    def stats(self, flt: q.Filter | None = None, **kw: Any) -> q.StatsTable:
        return q.stats(self.db, flt, **kw)

    def series(self, flt: q.Filter | None = None, **kw: Any) -> q.SeriesTable:
        return q.series(self.db, flt, **kw)

    def histogram(self, function: str, flt: q.Filter | None = None, **kw: Any) -> q.Histogram:
        return q.histogram(self.db, function, flt, **kw)

    def slowest(self, flt: q.Filter | None = None, **kw: Any) -> list[q.Call]:
        return q.slowest(self.db, flt, **kw)

    def anomalies(self, flt: q.Filter | None = None, **kw: Any) -> list[q.Anomaly]:
        return q.anomalies(self.db, flt, **kw)

    def explain(self, function: str, **kw: Any) -> q.Explanation:
        return q.explain(self.db, function, **kw)


@pytest.fixture(scope="module")
def served(shop_path: Path) -> Iterator[KroniclerServer]:
    db = Database.open(shop_path, readonly=True)
    try:
        with KroniclerServer(db, ServerOptions(address="127.0.0.1:0")) as srv:
            yield srv
    finally:
        db.close()


@dataclass
class Cluster:
    peers: list[str]
    frontend: KroniclerServer


@pytest.fixture(scope="module")
def cluster(shop_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three servers, each holding the shop traces one shard of trace ids routes to it, and a
    frontend server over them."""
    dirs = [tmp_path_factory.mktemp(f"shard{i}") for i in range(3)]
    split_database(stored(shop_path), dirs)
    dbs = [Database.open(d, readonly=True) for d in dirs]
    servers = [KroniclerServer(db, ServerOptions(address="127.0.0.1:0")).start() for db in dbs]
    peers = [s.address for s in servers]
    front = Frontend(peers, timeout=30)
    try:
        with KroniclerServer(front, ServerOptions(address="127.0.0.1:0")) as fs:
            yield Cluster(peers, fs)
    finally:
        front.close()
        for s in servers:
            s.stop()
        for db in dbs:
            db.close()


def open_backend(
    kind: str, shop_path: Path, served: KroniclerServer, cluster: Cluster
) -> QueryBackend:
    if kind == "local":
        return Local(shop_path)
    if kind == "frontend":
        return Frontend(cluster.peers, timeout=30)
    if kind == "frontend over grpc":
        return Client(cluster.frontend.address, timeout=30)
    return Client(served.address, timeout=30)


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def backend(
    kind: str, shop_path: Path, served: KroniclerServer, cluster: Cluster
) -> Iterator[QueryBackend]:
    b = open_backend(kind, shop_path, served, cluster)
    yield b
    assert b.missing_peers() == ()  # every answer above was whole
    b.close()


@pytest.fixture(scope="module")
def reference(shop_path: Path) -> Iterator[Reference]:
    db = Database.open(shop_path, readonly=True)
    yield Reference(db)
    db.close()


WINDOW = q.Filter.make("shop.*", since=BASE_NS, until=BASE_NS + SPAN_NS)
LATE = q.Filter(since=BASE_NS + SPAN_NS // 2)
Ask = Callable[[Any], Any]


def dicts(found: list[Any]) -> list[dict[str, Any]]:
    return [x.to_dict() for x in found]


# Questions every backend must answer like the query layer: defaults, every option, filters.
ANSWERS: dict[str, Ask] = {
    "functions": lambda b: b.list_functions(),
    "functions in a window": lambda b: b.list_functions(WINDOW),
    "functions of a service": lambda b: b.list_functions(q.Filter(service="worker")),
    "time range": lambda b: b.time_range(),
    "stats": lambda b: b.stats(),
    "stats by service, exact": lambda b: b.stats(WINDOW, group_by="service", exact=True),
    "stats by attribute": lambda b: b.stats(group_by="attribute:http.route", quantiles=(0.5, 0.75)),
    "stats ordered and limited": lambda b: b.stats(order_by="p99", limit=2),
    "stats of a glob and an attribute": lambda b: b.stats(
        q.Filter.make("shop.*", attributes={"http.route": "/b"})
    ),
    "series": lambda b: b.series(),
    "series with a step": lambda b: b.series(WINDOW, step=10**10, quantiles=(0.5, 0.99)),
    "series by service, exact": lambda b: b.series(LATE, group_by="service", exact=True),
    "histogram": lambda b: b.histogram("shop.tail"),
    "histogram exact": lambda b: b.histogram("shop.pay", LATE, per_decade=4, exact=True),
    "slowest": lambda b: dicts(b.slowest()),
    "slowest of one function": lambda b: dicts(b.slowest(q.Filter(("shop.pay",)), k=3)),
    "slowest of a service": lambda b: dicts(b.slowest(q.Filter(service="api"), k=5)),
    "anomalies": lambda b: dicts(b.anomalies()),
    "anomalies with options": lambda b: dicts(
        b.anomalies(
            WINDOW,
            min_count=10,
            tail_threshold=3.0,
            spike_threshold=10.0,
            regression_threshold=1.5,
            recent=SPAN_NS // 5,
            limit=2,
            exemplars=0,
        )
    ),  # fmt: skip
    "explain": lambda b: b.explain("shop.tail"),
    "explain with options": lambda b: b.explain(
        "shop.search", since=BASE_NS + SPAN_NS // 2, until=BASE_NS + SPAN_NS, slow="p95"
    ),
    "explain over an absolute threshold": lambda b: b.explain("shop.pay", slow=2_100_000),
}


def plain(value: Any) -> Any:
    """Dataclasses (the fields they compare), tuples and lists as nested lists and dicts."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value) if f.compare}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def same(got: Any, want: Any, rel: float) -> bool:
    """Equal, floats within ``rel`` (a frontend merges moments in another order than one node:
    mean, stddev and stderr may differ in the last digits; every count and quantile is equal)."""
    if isinstance(want, float) and isinstance(got, float):
        return got == pytest.approx(want, rel=rel, abs=1e-9)
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(same(got[k], want[k], rel) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(
            same(g, w, rel) for g, w in zip(got, want, strict=True)
        )
    return bool(got == want)


@pytest.mark.parametrize("question", list(ANSWERS))
def test_answers_equal_the_query_layer(
    backend: QueryBackend, kind: str, reference: Reference, question: str
) -> None:
    ask = ANSWERS[question]
    if not kind.startswith("frontend"):
        assert ask(backend) == ask(reference)
    else:
        got, want = plain(ask(backend)), plain(ask(reference))
        assert same(got, want, 1e-9), (got, want)


def test_the_dataset_answers_are_not_trivial(reference: Reference) -> None:
    # Guards the comparisons above against comparing empty answers.
    assert [f.name for f in reference.list_functions()] == [
        "shop.fast", "shop.pay", "shop.search", "shop.tail"]  # fmt: skip
    assert {a.function for a in reference.anomalies()} == {"shop.tail", "shop.search"}
    assert reference.histogram("shop.tail").count == 1500
    assert len(reference.series(WINDOW, step=10**10).series) == 4
    assert reference.explain("shop.tail").slow_count == 15
    assert reference.explain("shop.search", slow="p95").releases == ()


# Bad questions: every backend raises the query layer's exception type with its message.
ERRORS: dict[str, Ask] = {
    "bad glob": lambda b: b.stats(q.Filter(("shop.[ab",))),
    "unknown group key": lambda b: b.stats(group_by="colour"),
    "empty group key": lambda b: b.stats(group_by=""),
    "since after until": lambda b: b.stats(q.Filter(since=20, until=10)),
    "quantile out of range": lambda b: b.stats(quantiles=(2.0,)),
    "no quantiles": lambda b: b.stats(quantiles=()),
    "unknown order": lambda b: b.stats(order_by="p42"),
    "empty order": lambda b: b.stats(order_by=""),
    "zero limit": lambda b: b.stats(limit=0),
    "unknown function": lambda b: b.stats(q.Filter(("shop.nope",))),
    "unknown function listed": lambda b: b.list_functions(q.Filter(("shop.nope",))),
    "unknown function's histogram": lambda b: b.histogram("shop.nope"),
    "histogram of a pattern": lambda b: b.histogram("shop.*"),
    "zero buckets per decade": lambda b: b.histogram("shop.tail", per_decade=0),
    "negative buckets per decade": lambda b: b.histogram("shop.tail", per_decade=-1),
    "too many buckets": lambda b: b.series(step=1),
    "zero step": lambda b: b.series(step=0),
    "series without quantiles": lambda b: b.series(quantiles=()),
    "series of an unknown function": lambda b: b.series(q.Filter(("shop.nope",))),
    "k too large": lambda b: b.slowest(k=10**6),
    "zero k": lambda b: b.slowest(k=0),
    "slowest of an unknown function": lambda b: b.slowest(q.Filter(("shop.nope",))),
    "low tail threshold": lambda b: b.anomalies(tail_threshold=0.5),
    "zero spike threshold": lambda b: b.anomalies(spike_threshold=0.0),
    "zero regression threshold": lambda b: b.anomalies(regression_threshold=0.0),
    "zero min count": lambda b: b.anomalies(min_count=0),
    "zero anomaly limit": lambda b: b.anomalies(limit=0),
    "negative exemplars": lambda b: b.anomalies(exemplars=-1),
    "too many exemplars": lambda b: b.anomalies(limit=1000, exemplars=100),
    "zero recent window": lambda b: b.anomalies(recent=0),
    "explain a pattern": lambda b: b.explain("shop.*"),
    "explain an unknown function": lambda b: b.explain("shop.nope"),
    "explain zero threshold": lambda b: b.explain("shop.tail", slow=0),
    "explain empty threshold": lambda b: b.explain("shop.tail", slow=""),
    "explain p100": lambda b: b.explain("shop.tail", slow="p100"),
    "explain since after until": lambda b: b.explain("shop.tail", since=20, until=10),
}


def raised(ask: Ask, target: Any) -> BaseException:
    try:
        ask(target)
    except Exception as exc:  # noqa: BLE001 - the exception is what is compared
        return exc
    raise AssertionError("no exception raised")


@pytest.mark.parametrize("question", list(ERRORS))
def test_errors_equal_the_query_layers(
    backend: QueryBackend, kind: str, reference: Reference, question: str
) -> None:
    expected = raised(ERRORS[question], reference)
    assert isinstance(expected, (ValueError, NotFoundError))  # the case tests what it says
    got = raised(ERRORS[question], backend)
    assert (type(got), str(got)) == (type(expected), str(expected))
    assert "Traceback" not in str(got)


def test_an_unknown_name_is_a_not_found_error_and_a_lookup_error(backend: QueryBackend) -> None:
    with pytest.raises(LookupError, match="shop.nope"):
        backend.histogram("shop.nope")


def test_close_is_idempotent(shop_path: Path, served: KroniclerServer, cluster: Cluster) -> None:
    for kind in IMPLEMENTATIONS:
        b = open_backend(kind, shop_path, served, cluster)
        assert b.list_functions()
        b.close()
        b.close()


def test_local_over_an_open_database_leaves_it_open(shop_path: Path) -> None:
    db = Database.open(shop_path, readonly=True)
    try:
        local = Local(db)
        assert local.time_range() == db.time_range()
        local.close()
        assert db.functions()  # still open: its owner closes it
    finally:
        db.close()
