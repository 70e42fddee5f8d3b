"""Every QueryService RPC through a real channel to a real server on 127.0.0.1 port 0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from kronicler import query as q
from kronicler.errors import NotFoundError
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.proto.v1 import query_pb2_grpc as pb_grpc
from kronicler.server import Client, KroniclerServer, ServerOptions
from tests.query.shop_data import BASE_NS, SPAN_NS


@pytest.fixture
def server(shop_db) -> Iterator[KroniclerServer]:
    with KroniclerServer(shop_db, ServerOptions(address="127.0.0.1:0")) as srv:
        yield srv


@pytest.fixture
def client(server: KroniclerServer) -> Iterator[Client]:
    with Client(server.address, timeout=10) as c:
        yield c


def test_binds_loopback_and_reports_serving(server: KroniclerServer, client: Client) -> None:
    assert server.address.startswith("127.0.0.1:") and server.port > 0
    assert client.health() == "SERVING"
    assert client.health("kronicler.v1.QueryService") == "SERVING"
    assert client.health("opentelemetry.proto.collector.trace.v1.TraceService") == "SERVING"


def test_reflection_lists_the_services(server: KroniclerServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(stub.ServerReflectionInfo(iter([req]), timeout=10)))
        names = {s.name for s in reply.list_services_response.service}
        assert {
            "kronicler.v1.QueryService",
            "opentelemetry.proto.collector.trace.v1.TraceService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= names
        req = reflection_pb2.ServerReflectionRequest(file_containing_symbol="kronicler.v1.Filter")
        reply = next(iter(stub.ServerReflectionInfo(iter([req]), timeout=10)))
        assert reply.file_descriptor_response.file_descriptor_proto


def test_every_rpc_answers_like_the_query_layer(shop_db, client: Client) -> None:
    flt = q.Filter.make("shop.*", since=BASE_NS, until=BASE_NS + SPAN_NS)
    assert client.list_functions(flt) == q.list_functions(shop_db, flt)
    for kw in ({}, {"group_by": "service", "exact": True}, {"order_by": "p99", "limit": 2},
               {"group_by": "attribute:http.route", "quantiles": (0.5, 0.75)}):  # fmt: skip
        assert client.stats(flt, **kw) == q.stats(shop_db, flt, **kw)
    step = 10**10
    assert client.series(flt, step=step) == q.series(shop_db, flt, step=step)
    assert client.histogram("shop.tail", per_decade=4) == q.histogram(shop_db, "shop.tail",
                                                                      per_decade=4)  # fmt: skip
    remote, local = client.slowest(k=4), q.slowest(shop_db, k=4)
    assert [c.to_dict() for c in remote] == [c.to_dict() for c in local]
    found = client.anomalies()
    assert [a.function for a in found] == [a.function for a in q.anomalies(shop_db)]
    assert found[0].to_dict()["exemplars"] == q.anomalies(shop_db)[0].to_dict()["exemplars"]
    asks: list[dict[str, Any]] = [{}, {"slow": "p95", "since": BASE_NS + SPAN_NS // 2},
                                  {"slow": 5_000_000}]  # fmt: skip
    for ask in asks:
        assert client.explain("shop.tail", **ask) == q.explain(shop_db, "shop.tail", **ask)


def test_list_functions_reports_the_time_range(shop_db, server: KroniclerServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        reply = pb_grpc.QueryServiceStub(channel).ListFunctions(pb.ListFunctionsRequest())
    assert (reply.first_start_unix_nano, reply.last_start_unix_nano) == shop_db.time_range()
    assert len(reply.functions) == 4


F = pb.Filter


@pytest.mark.parametrize(
    ("method", "request_", "code", "message"),
    [
        ("GetStats", pb.GetStatsRequest(filter=F(functions=["shop.[ab"])), "INVALID_ARGUMENT",
         "bad glob"),
        ("GetStats", pb.GetStatsRequest(group_by="colour"), "INVALID_ARGUMENT", "unknown group key"),
        ("GetStats", pb.GetStatsRequest(filter=F(since_unix_nano=20, until_unix_nano=10)),
         "INVALID_ARGUMENT", "must be before"),
        ("GetStats", pb.GetStatsRequest(quantiles=[2.0]), "INVALID_ARGUMENT", "between 0 and 1"),
        ("GetStats", pb.GetStatsRequest(filter=F(functions=["shop.nope"])), "NOT_FOUND",
         "unknown function"),
        ("GetHistogram", pb.GetHistogramRequest(function="shop.nope"), "NOT_FOUND", "shop.nope"),
        ("GetHistogram", pb.GetHistogramRequest(function="shop.*"), "INVALID_ARGUMENT", "pattern"),
        ("GetSeries", pb.GetSeriesRequest(step_ns=1), "INVALID_ARGUMENT", "buckets"),
        ("GetSlowest", pb.GetSlowestRequest(k=10**6), "INVALID_ARGUMENT", "k must be"),
        ("GetAnomalies", pb.GetAnomaliesRequest(tail_threshold=0.5), "INVALID_ARGUMENT",
         "tail_threshold"),
        ("Explain", pb.ExplainRequest(function="shop.*"), "INVALID_ARGUMENT", "not a pattern"),
        ("Explain", pb.ExplainRequest(function="shop.nope"), "NOT_FOUND", "shop.nope"),
        ("Explain", pb.ExplainRequest(function="shop.tail", slow_quantile="p99", slow_ns=5),
         "INVALID_ARGUMENT", "not both"),
        ("Explain", pb.ExplainRequest(function="shop.tail", slow_ns=-1), "INVALID_ARGUMENT",
         "positive number of nanoseconds"),
        ("Explain", pb.ExplainRequest(function="shop.tail", slow_quantile="p100"),
         "INVALID_ARGUMENT", "'p100'"),
    ],
)  # fmt: skip
def test_bad_input_gets_its_status_code(
    server: KroniclerServer, method: str, request_: object, code: str, message: str
) -> None:
    # The status codes themselves; the Client turns them back into the query layer's exceptions
    # (tests/contracts/test_query_backend.py).
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.QueryServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            getattr(stub, method)(request_, timeout=10)
    assert info.value.code().name == code
    assert message in info.value.details()
    assert "Traceback" not in info.value.details()


def test_the_client_raises_the_query_layers_errors_with_the_status_as_cause(client: Client) -> None:
    with pytest.raises(ValueError, match="bad glob") as bad:
        client.stats(q.Filter(("shop.[ab",)))
    assert isinstance(bad.value.__cause__, grpc.RpcError)
    assert bad.value.__cause__.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(NotFoundError, match="shop.nope") as missing:
        client.histogram("shop.nope")
    assert isinstance(missing.value.__cause__, grpc.RpcError)
    assert missing.value.__cause__.code() == grpc.StatusCode.NOT_FOUND


def test_a_burst_of_bad_requests_leaves_the_server_serving(client: Client) -> None:
    for i in range(200):
        with pytest.raises(ValueError, match="bad glob") as info:
            client.stats(q.Filter((f"bad[{i}",)))
        assert isinstance(info.value.__cause__, grpc.RpcError)  # refused by the server
    assert client.health() == "SERVING"
    assert len(client.stats().rows) == 4


def test_oversized_request_is_refused(shop_db) -> None:
    opts = ServerOptions(address="127.0.0.1:0", max_receive_bytes=1024)
    with KroniclerServer(shop_db, opts) as srv, Client(srv.address, timeout=10) as c:
        with pytest.raises(grpc.RpcError) as info:
            c.stats(q.Filter(tuple(f"f{i}" for i in range(500))))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(c.stats().rows) == 4


def test_options_are_checked(shop_db) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        KroniclerServer(shop_db, ServerOptions(address="localhost"))
    with pytest.raises(ValueError, match="both"):
        KroniclerServer(shop_db, ServerOptions(address="127.0.0.1:0", tls_cert=Path("c.pem")))
