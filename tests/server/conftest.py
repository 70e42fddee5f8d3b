from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kronicler.db import Database
from kronicler.server import KroniclerServer, ServerOptions
from tests.query.shop_data import shop, shop_db, shop_path  # noqa: F401


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Database, KroniclerServer]]:
    """A database served with OTLP ingest in 2 worker processes."""
    db = Database.open(tmp_path / "db")
    server = KroniclerServer(db, ServerOptions(address="127.0.0.1:0", ingest_workers=2)).start()
    try:
        yield db, server
    finally:
        server.stop()
        db.close()


@pytest.fixture
def served_direct(tmp_path: Path) -> Iterator[tuple[Database, KroniclerServer]]:
    """As ``served``, with the 2 workers also taking OTLP/gRPC on a port of their own."""
    db = Database.open(tmp_path / "db")
    options = ServerOptions(address="127.0.0.1:0", ingest_workers=2, otlp_address="127.0.0.1:0")
    server = KroniclerServer(db, options).start()
    try:
        yield db, server
    finally:
        server.stop()
        db.close()
