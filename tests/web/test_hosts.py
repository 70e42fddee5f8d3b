"""The dashboard answers only the host names it serves, and takes the gRPC server's token rule.

Bound to loopback, a request addressed to another name (DNS rebinding: a hostile page's name
resolving to 127.0.0.1) gets 421 and no data; a browser request from another origin gets 403.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kronicler.db import Database
from kronicler.web import WebServer
from tests.web.conftest import TOKEN, fetch, get_json


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:80", "192.168.1.9", "10.0.0.1:8080"]
)
def test_foreign_host_names_are_refused(server: WebServer, host: str) -> None:
    status, body = get_json(server.url + "api/v1/functions", {"Host": host})
    assert status == 421
    assert "allow-host" in body["message"]
    assert "functions" not in body


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "127.0.0.2:9", "[::1]:8080", "a.localhost"]
)
def test_loopback_names_are_served(server: WebServer, host: str) -> None:
    status, _ = get_json(server.url + "api/v1/functions", {"Host": host})
    assert status == 200


def test_cross_origin_browser_requests_are_refused(server: WebServer) -> None:
    status, body = get_json(server.url + "api/v1/functions", {"Origin": "http://evil.example"})
    assert status == 403
    assert "cross-origin" in body["message"]
    port = server.port
    assert (
        get_json(server.url + "api/v1/functions", {"Origin": f"http://localhost:{port}"})[0] == 200
    )


@pytest.fixture
def allowing_server(shop_db: tuple[Database, object]) -> Iterator[WebServer]:
    with WebServer(shop_db[0], "127.0.0.1", 0, allowed_hosts=["kronicler.internal"]) as srv:
        yield srv


def test_allowed_names_are_served(allowing_server: WebServer) -> None:
    url = allowing_server.url + "api/v1/functions"
    assert get_json(url, {"Host": "kronicler.internal:8080"})[0] == 200
    assert get_json(url, {"Host": "other.internal"})[0] == 421


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_scheme_is_case_insensitive_as_over_grpc(
    token_server: WebServer, scheme: str
) -> None:
    status, _, _ = fetch(
        token_server.url + "api/v1/functions", {"Authorization": f"{scheme} {TOKEN}"}
    )
    assert status == 200
    status, _, _ = fetch(token_server.url + "api/v1/functions", {"Authorization": TOKEN})
    assert status == 401


def test_serve_and_dashboard_warn_beyond_loopback_without_token() -> None:
    from kronicler.cli import exposure_warning

    assert exposure_warning("0.0.0.0", None)
    assert exposure_warning("192.0.2.1", None)
    assert exposure_warning("0.0.0.0", "tok") is None
    assert exposure_warning("127.0.0.1", None) is None
    assert exposure_warning("localhost", None) is None
