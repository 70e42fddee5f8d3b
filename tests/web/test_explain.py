"""``explain`` through every interface (Python, gRPC, CLI --json, HTTP) and on the page.

One database with planted causes (``tests/query/explain_data.py``); each interface's answer must
equal the Python API's, field for field. The page's panel: ``test_browser_explain.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kronicler import query as q
from kronicler.db import Database
from kronicler.server import Client, KroniclerServer, ServerOptions
from kronicler.web import WebServer
from tests.query.explain_data import BASE_NS, SPAN_NS, make_explain_data, write_explain_data
from tests.web.conftest import get_json


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explain") / "db"
    write_explain_data(out, make_explain_data(), chunk_rows=512)
    return out


@pytest.fixture(scope="module")
def db(path: Path) -> Iterator[Database]:
    with Database.open(path, readonly=True) as opened:
        yield opened


@pytest.fixture(scope="module")
def web(db: Database) -> Iterator[WebServer]:
    with WebServer(db, "127.0.0.1", 0, clock=lambda: BASE_NS + 2 * SPAN_NS) as srv:
        yield srv


@pytest.fixture(scope="module")
def grpc_server(db: Database) -> Iterator[KroniclerServer]:
    with KroniclerServer(db, ServerOptions(address="127.0.0.1:0")) as srv:
        yield srv


def cli_json(*args: str) -> Any:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-m", "kronicler", "explain", *args, "--json"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


CASES = [
    ("api.lookup", {}),
    ("api.render", {"slow": "p95"}),
    ("api.search", {"slow": 5_000_000, "since": BASE_NS + SPAN_NS // 10,
                    "until": BASE_NS + SPAN_NS}),
]  # fmt: skip


@pytest.mark.parametrize(("function", "kw"), CASES)
def test_every_interface_gives_the_python_answer(
    db: Database, path: Path, web: WebServer, grpc_server: KroniclerServer, function: str,
    kw: dict[str, Any],
) -> None:  # fmt: skip
    want = q.explain(db, function, **kw).to_dict()
    assert want["slow_count"] and (want["attributes"] or want["children"])
    with Client(grpc_server.address) as client:
        assert client.explain(function, **kw).to_dict() == want
    flags = ["--slow", str(kw["slow"]) + ("ns" if isinstance(kw.get("slow"), int) else "")] \
        if "slow" in kw else []  # fmt: skip
    for bound in ("since", "until"):
        if bound in kw:
            flags += [f"--{bound}", f"@{kw[bound] // 10**9}.{kw[bound] % 10**9:09d}"]
    assert cli_json(function, "--path", str(path), *flags) == want
    assert cli_json(function, "--address", grpc_server.address, *flags) == want
    params = "&".join(f"{k}={v}" for k, v in kw.items())
    params += "" if "since" in kw else "&range=all"
    status, body = get_json(f"{web.url}api/v1/explain?function={function}&{params}")
    assert status == 200, body
    body.pop("window")
    assert body == want


def test_http_errors_name_the_bad_value(web: WebServer) -> None:
    status, body = get_json(f"{web.url}api/v1/explain?function=api.lookup&range=all&slow=p100")
    assert (status, "'p100'" in body["message"]) == (400, True)
    status, body = get_json(f"{web.url}api/v1/explain?function=api.nope&range=all")
    assert status == 404 and "api.nope" in body["message"]
    status, body = get_json(f"{web.url}api/v1/explain?function=api.*&range=all")
    assert status == 400 and "not a pattern" in body["message"]


def test_the_openapi_description_names_the_route(web: WebServer) -> None:
    status, spec = get_json(f"{web.url}api/openapi.json")
    assert status == 200 and "/api/v1/explain" in spec["paths"]
    assert "ExplainOut" in spec["components"]["schemas"]
