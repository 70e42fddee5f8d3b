"""The CLI as a newcomer meets it: where the data is, what went wrong, and pipes and terminals
that are not UTF-8 or close early."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from kronicler.cli.units import format_ns, micro_unit
from tests.query import shop_data
from tests.test_cli import ROOT, run

shop, shop_path = shop_data.shop, shop_data.shop_path  # fixtures shared with tests/query


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_database_and_no_server_says_what_to_do(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    proc = run("stats", cwd=tmp_path, check=False,
               env={"KRONICLER_ADDRESS": "", "KRONICLER_PATH": ""})  # fmt: skip
    assert proc.returncode == 1
    assert "no database at .kronicler" in proc.stderr and "--path" in proc.stderr
    assert "UNAVAILABLE" not in proc.stderr
    # an address the user chose is reported as it is
    proc = run("stats", "--address", f"127.0.0.1:{port}", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "UNAVAILABLE" in proc.stderr


def test_address_without_port_is_refused_before_any_lookup(tmp_path: Path) -> None:
    proc = run("stats", "--address", "no-such-host.invalid", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "HOST:PORT" in proc.stderr


def test_kronicler_path_is_the_default_database(shop_path: Path, tmp_path: Path) -> None:
    proc = run("functions", "--json", cwd=tmp_path, env={"KRONICLER_PATH": str(shop_path)})
    assert "shop.fast" in proc.stdout


def test_auth_failure_mentions_the_token(shop_path: Path, tmp_path: Path) -> None:
    from kronicler.db import Database
    from kronicler.server import KroniclerServer, ServerOptions

    with Database.open(shop_path, readonly=True) as db, KroniclerServer(
        db, ServerOptions(address="127.0.0.1:0", token="secret", otlp=False)
    ) as server:  # fmt: skip
        proc = run("stats", "--address", server.address, cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "UNAUTHENTICATED" in proc.stderr and "KRONICLER_TOKEN" in proc.stderr


def test_a_closed_pipe_ends_quietly(shop_path: Path) -> None:
    cmd = (f"{sys.executable} -m kronicler series --path {shop_path} --step 1s | head -n 2; "
           "exit ${PIPESTATUS[0]}")  # fmt: skip
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert len(proc.stdout.splitlines()) == 2


def test_an_ascii_terminal_gets_us_not_micro(shop_path: Path) -> None:
    proc = run("stats", "--path", str(shop_path), env={"PYTHONIOENCODING": "ascii"})
    assert "µ" not in proc.stdout and " us" in proc.stdout
    assert micro_unit() in ("µs", "us")
    assert format_ns(1500).endswith("s")
