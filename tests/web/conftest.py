"""Fixtures for the dashboard: a real database with a small shop's calls, real servers, and the
same calls split over three real gRPC nodes (a cluster frontend's peers)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the dashboard needs the web extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="the dashboard needs the web extra (fastapi, uvicorn)")

from kronicler.db import Database  # noqa: E402
from kronicler.server import KroniclerServer, ServerOptions  # noqa: E402
from kronicler.web import WebServer  # noqa: E402
from tests.cluster.nodes import spawn_node, split_database, stored  # noqa: E402
from tests.oracle.truth import Rows  # noqa: E402
from tests.web import releases  # noqa: E402
from tests.web.workload import Shop, fill  # noqa: E402

TOKEN = "s3cret-token"


@pytest.fixture(scope="package")
def now() -> int:
    """The servers' clock, pinned, so presets cut the data at a known instant."""
    return time.time_ns()


@pytest.fixture(scope="package")
def shop_db(tmp_path_factory: pytest.TempPathFactory, now: int) -> Iterator[tuple[Database, Shop]]:
    db = Database.open(tmp_path_factory.mktemp("shop") / "db")
    shop = fill(db, now)
    yield db, shop
    db.close()


@pytest.fixture(scope="package")
def shop(shop_db: tuple[Database, Shop]) -> Shop:
    return shop_db[1]


@pytest.fixture(scope="package")
def server(shop_db: tuple[Database, Shop], now: int) -> Iterator[WebServer]:
    with WebServer(shop_db[0], "127.0.0.1", 0, clock=lambda: now) as srv:
        yield srv


@pytest.fixture(scope="package")
def token_server(shop_db: tuple[Database, Shop], now: int) -> Iterator[WebServer]:
    with WebServer(shop_db[0], "127.0.0.1", 0, token=TOKEN, clock=lambda: now) as srv:
        yield srv


@pytest.fixture(scope="package")
def releases_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two releases of a checkout service, written by the stock OTel SDK (``releases.py``)."""
    out = tmp_path_factory.mktemp("releases") / "db"
    releases.write_releases(out, releases.BASE)
    return out


@pytest.fixture(scope="package")
def releases_truth(releases_path: Path) -> Rows:
    """Every stored row of the releases, read back by an exact scan: what brute force uses."""
    return stored(releases_path)


@pytest.fixture(scope="package")
def releases_web(releases_path: Path) -> Iterator[WebServer]:
    db = Database.open(releases_path, readonly=True)
    with db, WebServer(db, "127.0.0.1", 0, clock=lambda: releases.NOW) as srv:
        yield srv


@dataclass
class Nodes:
    paths: list[Path]
    servers: list[KroniclerServer]

    @property
    def peers(self) -> list[str]:
        return [s.address for s in self.servers]


@pytest.fixture(scope="package")
def nodes(
    shop_db: tuple[Database, Shop], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nodes]:
    work = tmp_path_factory.mktemp("shop-nodes")
    paths = [work / f"node{i}" for i in range(3)]
    split_database(stored(shop_db[0].path), paths)
    dbs = [Database.open(p, readonly=True) for p in paths]
    servers = [KroniclerServer(db, ServerOptions(address="127.0.0.1:0")).start() for db in dbs]
    try:
        yield Nodes(paths, servers)
    finally:
        for s in servers:
            s.stop()
        for db in dbs:
            db.close()


@pytest.fixture
def third_node(nodes: Nodes, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """Node 2's data served by a separate process the test kills."""
    path = tmp_path / "node2"
    shutil.copytree(nodes.paths[2], path)
    proc, address = spawn_node(path)
    try:
        yield proc, address, path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``: status, headers (lower-case names) and body, errors included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = fetch(url, headers)
    return status, json.loads(body)
