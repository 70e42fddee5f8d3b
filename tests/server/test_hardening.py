"""A hostile or careless client gets a clear status quickly, and cannot stall or bloat the server.

Every request has a bounded cost: text it sends is capped, answers are capped, an expired or
cancelled call stops its query, undecodable bytes are a client error (never INTERNAL), and no
int64 a client can send overflows anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp

from kronicler import budget, query
from kronicler.db import Database
from kronicler.errors import DeadlineExceededError, LimitExceededError
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.proto.v1 import query_pb2_grpc as pb_grpc
from kronicler.query.limits import MAX_PATTERN_CHARS, MAX_PATTERNS
from kronicler.server import KroniclerServer, ServerOptions
from tests.query.shop_data import ShopData

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture(scope="module")
def server(shop_path: Path) -> Iterator[KroniclerServer]:
    db = Database.open(shop_path)
    with KroniclerServer(db, ServerOptions(address="127.0.0.1:0")) as srv:
        yield srv
    db.close()


@pytest.fixture(scope="module")
def channel(server: KroniclerServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.QueryServiceStub:
    return pb_grpc.QueryServiceStub(channel)


def status_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_a_huge_pattern_is_refused_and_not_echoed(stub: pb_grpc.QueryServiceStub) -> None:
    pattern = "*" + "a" * 2_000_000
    req = pb.ListFunctionsRequest(filter=pb.Filter(functions=[pattern]))
    code, message = status_of(lambda: stub.ListFunctions(req, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(MAX_PATTERN_CHARS) in message
    assert len(message) < 400  # the value is quoted, cut short


def test_too_many_patterns_are_refused(stub: pb_grpc.QueryServiceStub) -> None:
    req = pb.GetStatsRequest(filter=pb.Filter(functions=["shop.*"] * (MAX_PATTERNS + 1)))
    code, message = status_of(lambda: stub.GetStats(req, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(MAX_PATTERNS) in message


def test_an_unknown_long_name_is_quoted_short(stub: pb_grpc.QueryServiceStub) -> None:
    req = pb.GetStatsRequest(filter=pb.Filter(functions=["x" * 1000]))
    code, message = status_of(lambda: stub.GetStats(req, timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND
    assert len(message) < 200


def test_long_attribute_filters_are_refused(stub: pb_grpc.QueryServiceStub) -> None:
    req = pb.GetStatsRequest(filter=pb.Filter(attributes={"k": "v" * 100_000}))
    code, message = status_of(lambda: stub.GetStats(req, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(message) < 400


def test_anomalies_cannot_ask_for_unbounded_exemplars(stub: pb_grpc.QueryServiceStub) -> None:
    for limit, exemplars, named in ((2**32 - 1, 3, "limit"), (20, 10_000, "exemplars"),
                                    (1000, 100, "limit x exemplars")):  # fmt: skip
        req = pb.GetAnomaliesRequest(limit=limit, exemplars=exemplars, min_count=1)
        code, message = status_of(partial(stub.GetAnomalies, req, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert message.startswith(named), message
    ok = pb.GetAnomaliesRequest(limit=100, exemplars=100, min_count=1)
    assert status_of(lambda: stub.GetAnomalies(ok, timeout=10))[0] == grpc.StatusCode.OK


def test_a_series_answer_is_capped(stub: pb_grpc.QueryServiceStub) -> None:
    # 4 functions x 10,000 buckets x (5 + 32 quantiles) figures is over the answer cap
    qs = [i / 40 for i in range(32)]
    req = pb.GetSeriesRequest(step_ns=10_000_000, quantiles=qs)
    code, message = status_of(lambda: stub.GetSeries(req, timeout=10))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit" in message


def test_a_scan_over_the_row_cap_is_refused_before_reading(
    shop_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kronicler.query import filters

    monkeypatch.setattr(filters, "MAX_SCAN_ROWS", 100)
    with Database.open(shop_path) as db:
        with pytest.raises(LimitExceededError, match="100"):
            query.stats(db, exact=True)
        # the index road reads no rows and is not limited
        assert query.stats(db).rows


@pytest.mark.parametrize("rpc", ["ListFunctions", "GetStats", "GetSlowest"])
def test_garbage_bytes_are_invalid_argument(channel: grpc.Channel, rpc: str) -> None:
    raw = channel.unary_unary(f"/kronicler.v1.QueryService/{rpc}")
    for garbage in (b"\xff\xff\xff\xff", b"\x0a\x80", b"\x0a\x05\xff\xfe\xfd\xfc\xfb"):
        code, message = status_of(partial(raw, garbage, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (garbage, message)


def _nested_any_value(depth: int) -> bytes:
    """An OTLP AnyValue nested ``depth`` arrays deep, encoded by hand (protobuf would refuse)."""
    inner = b"\x0a\x01x"  # string_value "x"
    for _ in range(depth):
        values = b"\x0a" + _varint(len(inner)) + inner  # ArrayValue.values
        inner = b"\x2a" + _varint(len(values)) + values  # AnyValue.array_value (field 5)
    return inner


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_otlp_garbage_and_deep_nesting_are_invalid_argument(channel: grpc.Channel) -> None:
    export = channel.unary_unary(EXPORT)
    kv = _field(1, b"deep") + _field(2, _nested_any_value(200))  # KeyValue{key, value}
    span = (
        _field(1, b"\x01" * 16) + _field(2, b"\x02" * 8) + _field(5, b"f") + _field(9, kv)
    )  # Span{trace_id, span_id, name, attributes}
    request = _field(1, _field(2, _field(2, span)))  # ResourceSpans.scope_spans.spans
    for payload in (request, b"\xff" * 64, b"\x0a\x10\x12"):
        code, message = status_of(partial(export, payload, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, message


def test_lowercase_bearer_works_over_grpc(shop_path: Path) -> None:
    db = Database.open(shop_path)
    opts = ServerOptions(address="127.0.0.1:0", token="tok")
    try:
        with KroniclerServer(db, opts) as srv, grpc.insecure_channel(srv.address) as ch:
            stub = pb_grpc.QueryServiceStub(ch)
            for header in ("Bearer tok", "bearer tok", "BEARER tok"):
                reply = stub.ListFunctions(
                    pb.ListFunctionsRequest(), timeout=10, metadata=[("authorization", header)]
                )
                assert len(reply.functions) == 4
            code, _ = status_of(
                lambda: stub.ListFunctions(
                    pb.ListFunctionsRequest(), timeout=10, metadata=[("authorization", "tok")]
                )
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        db.close()


# ---- deadlines ----------------------------------------------------------------------------


def test_a_spent_budget_stops_a_query(shop_path: Path) -> None:
    with (
        Database.open(shop_path) as db,
        pytest.raises(DeadlineExceededError),
        budget.deadline(0.0),
    ):
        query.stats(db, exact=True)


def test_a_cancelled_caller_stops_the_query_inside_its_loops(tmp_path: Path) -> None:
    """Cancellation is seen inside the per-attribute-set loop, not only between steps."""
    import numpy as np

    n = 50_000
    with Database.open(tmp_path / "db") as db:
        assert db.append(
            ["f"] * n, np.arange(n, dtype=np.int64), np.arange(1, n + 1, dtype=np.int64),
            attributes=[{"u": str(i)} for i in range(n)],
        ) == n  # fmt: skip
        assert db.flush()
        checks = 0

        def gone() -> bool:
            nonlocal checks
            checks += 1
            return checks > 3  # the caller leaves after the query started working

        flt = query.Filter.make(attributes={"u": "7"})
        with (
            pytest.raises(DeadlineExceededError, match="cancelled"),
            budget.deadline(None, cancelled=gone),
        ):
            query.stats(db, flt)
        assert query.stats(db, flt).rows[0].count == 1  # without a budget it answers


def test_expired_calls_get_deadline_exceeded_and_the_server_stays_healthy(
    server: KroniclerServer, stub: pb_grpc.QueryServiceStub, channel: grpc.Channel
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    req = pb.GetStatsRequest(exact=True, group_by="attribute:http.route")
    results = []

    def call() -> None:
        results.append(status_of(lambda: stub.GetStats(req, timeout=0.001))[0])

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.OK}
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert stub.ListFunctions(pb.ListFunctionsRequest(), timeout=10).functions


# ---- int64 extremes -------------------------------------------------------------------------

EXTREMES = st.sampled_from(
    [INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 5, INT64_MAX - 1, INT64_MAX]
) | st.integers(INT64_MIN, INT64_MAX)


@settings(max_examples=60, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(since=st.none() | EXTREMES, until=st.none() | EXTREMES,
       step=st.sampled_from([0, 1, 1_000_000_000, INT64_MAX]))  # fmt: skip
def test_no_int64_input_overflows(
    stub: pb_grpc.QueryServiceStub, since: int | None, until: int | None, step: int
) -> None:
    flt = pb.Filter()
    if since is not None:
        flt.since_unix_nano = since
    if until is not None:
        flt.until_unix_nano = until
    for method, req in (
        (stub.GetSeries, pb.GetSeriesRequest(filter=flt, step_ns=step)),
        (stub.GetStats, pb.GetStatsRequest(filter=flt)),
        (stub.GetAnomalies, pb.GetAnomaliesRequest(filter=flt, min_count=1, recent_ns=step)),
        (stub.GetSlowest, pb.GetSlowestRequest(filter=flt)),
        (stub.GetHistogram, pb.GetHistogramRequest(function="shop.fast", filter=flt)),
    ):
        try:
            reply = method(req, timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() in (
                grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
            ), (method, exc.details())  # fmt: skip
            continue
        if isinstance(reply, pb.GetSeriesResponse):
            assert reply.since_unix_nano <= reply.until_unix_nano


# ---- fuzz: random requests and bytes; the server stays up and bounded ------------------------

_TEXT = st.text(max_size=40) | st.sampled_from(["*", "shop.*", "shop.fast", "[", "[!a]", ""])
_FILTERS = st.builds(
    pb.Filter,
    functions=st.lists(_TEXT, max_size=4),
    service=_TEXT,
    attributes=st.dictionaries(_TEXT, _TEXT, max_size=3),
)
_REQUESTS = st.one_of(
    st.builds(pb.ListFunctionsRequest, filter=_FILTERS),
    st.builds(pb.GetStatsRequest, filter=_FILTERS,
              group_by=st.sampled_from(["", "function", "service", "attribute:http.route",
                                        "attribute:", "bogus"]),
              quantiles=st.lists(st.floats(allow_nan=True), max_size=5),
              exact=st.booleans(), limit=st.integers(0, 2**32 - 1),
              order_by=st.sampled_from(["", "key", "p99", "count", "nope"])),
    st.builds(pb.GetSlowestRequest, filter=_FILTERS, k=st.integers(0, 2**32 - 1)),
    st.builds(pb.GetHistogramRequest, function=_TEXT, filter=_FILTERS,
              per_decade=st.integers(0, 2**32 - 1), exact=st.booleans()),
    st.builds(pb.GetSeriesRequest, filter=_FILTERS, step_ns=st.integers(INT64_MIN, INT64_MAX),
              exact=st.booleans()),
    st.builds(pb.GetAnomaliesRequest, filter=_FILTERS, min_count=st.integers(0, 2**32 - 1),
              limit=st.integers(0, 2**32 - 1), exemplars=st.integers(0, 2**32 - 1),
              tail_threshold=st.floats(allow_nan=True),
              recent_ns=st.integers(INT64_MIN, INT64_MAX)),
)  # fmt: skip
_METHODS = {
    pb.ListFunctionsRequest: "ListFunctions", pb.GetStatsRequest: "GetStats",
    pb.GetSlowestRequest: "GetSlowest", pb.GetHistogramRequest: "GetHistogram",
    pb.GetSeriesRequest: "GetSeries", pb.GetAnomaliesRequest: "GetAnomalies",
}  # fmt: skip
_CLIENT_ERRORS = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}  # fmt: skip


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(request=_REQUESTS)
def test_fuzz_query_requests(channel: grpc.Channel, request: Message) -> None:
    method = _METHODS[type(request)]
    raw = channel.unary_unary(f"/kronicler.v1.QueryService/{method}")
    code, message = status_of(lambda: raw(request.SerializeToString(), timeout=10))
    assert code in _CLIENT_ERRORS, (method, request, code, message)
    assert len(message) < 1000


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(payload=st.binary(max_size=512))
def test_fuzz_otlp_bytes(channel: grpc.Channel, payload: bytes) -> None:
    export = channel.unary_unary(EXPORT)
    code, message = status_of(lambda: export(payload, timeout=10))
    assert code in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}, message


def test_after_fuzzing_the_server_is_serving_and_bounded(
    channel: grpc.Channel, stub: pb_grpc.QueryServiceStub
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    before = _rss_bytes()
    export = channel.unary_unary(EXPORT)
    for i in range(200):
        export(otlp.ExportTraceServiceRequest().SerializeToString(), timeout=10)
        req = pb.GetStatsRequest(filter=pb.Filter(functions=["*" + "a" * i]))
        status_of(partial(stub.GetStats, req, timeout=10))
    grown = _rss_bytes() - before
    assert grown < 64 << 20, grown
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("what", ["summaries", "scan", "slowest"])
def test_the_database_loops_over_chunks_honour_the_budget(
    shop_path: Path, shop: ShopData, what: str
) -> None:
    checks = 0

    def gone() -> bool:
        nonlocal checks
        checks += 1
        return checks > 2  # gone once the chunk loop is under way

    with Database.open(shop_path) as db:
        run = {
            # from the middle on: a range holding the whole segment reads its roll-up, no chunk
            "summaries": lambda: db.summaries(since=int(np.median(shop.start))),
            "scan": lambda: db.scan(["duration"]),
            "slowest": lambda: db.slowest(k=10_000),
        }[what]
        with pytest.raises(DeadlineExceededError), budget.deadline(None, cancelled=gone):
            run()
        assert checks == 3
        run()  # outside a budget nothing is checked
