"""Layouts built once per test session (a few seconds), and the servers that answer about them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kronicler.db import Database
from kronicler.server import Client, KroniclerServer, ServerOptions
from tests.oracle.layouts import (
    Layout,
    build_compacted,
    build_deployment,
    build_disjoint,
    build_retained,
)

LAYOUTS = ("deployment", "compacted", "disjoint", "retained")


@pytest.fixture(scope="session")
def oracle_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oracle")


@pytest.fixture(scope="session")
def deployment(oracle_work: Path) -> Iterator[Layout]:
    layout = build_deployment(oracle_work)
    yield layout
    layout.stop()


@pytest.fixture(scope="session")
def compacted(deployment: Layout, oracle_work: Path) -> Layout:
    return build_compacted(deployment, oracle_work)


@pytest.fixture(scope="session")
def disjoint(deployment: Layout, oracle_work: Path) -> Layout:
    return build_disjoint(deployment, oracle_work)


@pytest.fixture(scope="session")
def retained(deployment: Layout, oracle_work: Path) -> Layout:
    return build_retained(deployment, oracle_work)


@pytest.fixture(scope="session", params=LAYOUTS)
def layout(request: pytest.FixtureRequest) -> Layout:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def databases() -> Iterator[dict[str, Database]]:
    opened: dict[str, Database] = {}
    yield opened
    for db in opened.values():
        db.close()


@pytest.fixture(scope="session")
def db(layout: Layout, databases: dict[str, Database]) -> Database:
    """The layout opened by the test process (a reader; it writes nothing)."""
    if layout.name not in databases:
        databases[layout.name] = Database.open(layout.path)
    return databases[layout.name]


@pytest.fixture(scope="session")
def grpc_client(db: Database, layout: Layout) -> Iterator[Client]:
    with KroniclerServer(db, ServerOptions(address="127.0.0.1:0", otlp=False)) as server, \
            Client(server.address, timeout=60) as client:  # fmt: skip
        yield client
