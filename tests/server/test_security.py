"""TLS with a certificate made in the test, and the bearer token on every RPC except health."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from kronicler.server import Client, KroniclerServer, ServerOptions
from tests.certs import issue, make_ca

TOKEN = "s3cret-token"


@pytest.fixture
def tls_server(shop_db, tmp_path: Path) -> Iterator[tuple[KroniclerServer, Path]]:
    ca = make_ca(tmp_path, "ca")
    leaf = issue(ca, tmp_path, "server")
    opts = ServerOptions(address="127.0.0.1:0", tls_cert=leaf.cert, tls_key=leaf.key, token=TOKEN)
    with KroniclerServer(shop_db, opts) as srv:
        yield srv, ca.cert


def test_tls_with_token_answers(tls_server) -> None:
    server, cert = tls_server
    assert server.tls
    with Client(server.address, token=TOKEN, ca_cert=cert, timeout=10) as c:
        assert len(c.stats().rows) == 4
        assert c.health() == "SERVING"


def test_plaintext_client_cannot_talk_to_a_tls_server(tls_server) -> None:
    server, _ = tls_server
    with Client(server.address, token=TOKEN, timeout=3) as c, pytest.raises(grpc.RpcError) as info:
        c.stats()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_untrusted_certificate_is_refused(tls_server, tmp_path: Path) -> None:
    server, _ = tls_server
    wrong_ca = make_ca(tmp_path / "other", "other").cert
    client = Client(server.address, token=TOKEN, ca_cert=wrong_ca, timeout=3)
    with client as c, pytest.raises(grpc.RpcError) as info:
        c.stats()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def token_server(shop_db) -> Iterator[KroniclerServer]:
    with KroniclerServer(shop_db, ServerOptions(address="127.0.0.1:0", token=TOKEN)) as srv:
        yield srv


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", ""])
def test_missing_or_wrong_token_is_unauthenticated(token_server, token) -> None:
    with Client(token_server.address, token=token, timeout=10) as c:
        for call in (c.stats, c.list_functions, c.slowest, c.anomalies):
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in info.value.details()
        # health stays open for probes
        assert c.health() == "SERVING"


def test_token_guards_reflection_and_otlp_too(token_server) -> None:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

    with grpc.insecure_channel(token_server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as info:
            list(stub.ServerReflectionInfo(iter([req]), timeout=10))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = stub.ServerReflectionInfo(
            iter([req]), timeout=10, metadata=[("authorization", f"Bearer {TOKEN}")]
        )
        assert next(iter(ok)).list_services_response.service
        trace = otlp_grpc.TraceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            trace.Export(otlp.ExportTraceServiceRequest(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_right_token_answers(token_server) -> None:
    with Client(token_server.address, token=TOKEN, timeout=10) as c:
        assert [f.name for f in c.list_functions()][:1] == ["shop.fast"]
