"""The CLI as a newcomer meets it: where the data is, what went wrong, and pipes and terminals
that are not UTF-8 or close early."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kronicler.cli import render
from kronicler.cli.units import format_ns, micro_unit
from tests.query import shop_data
from tests.test_cli import ROOT, run, served

__all__ = ["served"]  # the fixture, shared with tests/test_cli.py

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


def test_tables_fit_the_terminal_width() -> None:
    long_name = "service.module.SomeRatherLongClassName.method_with_a_long_name"
    rows = [[long_name, "1,234", "12.3 ms", "4.56 ms"], ["short", "7", "1.00 s", "2.00 ms"]]
    text = render.table(["function", "calls", "mean", "stddev"], rows, width=40, optional=[3])
    lines = text.splitlines()
    assert all(len(line) <= 40 for line in lines), text
    assert "stddev" not in lines[0]  # the optional column went first
    assert lines[2].startswith("service.module.S") and "…" in lines[2] or "..." in lines[2]
    assert "1,234" in lines[2] and "12.3 ms" in lines[2] and "1.00 s" in lines[3]  # numbers whole
    # without a limit (output piped to a file or grep) nothing is cut
    assert long_name in render.table(["function", "calls"], [[long_name, "1"]], width=None)


def test_cli_tables_follow_columns(shop_path: Path) -> None:
    args = ("stats", "--path", str(shop_path), "--quantiles", "0.5")
    narrow = run(*args, env={"COLUMNS": "60"}).stdout.splitlines()
    assert narrow and all(len(line) <= 60 for line in narrow), narrow
    assert "stddev" not in narrow[0] and "p50" in narrow[0]
    piped = run(*args, env={"COLUMNS": ""}).stdout.splitlines()  # not a terminal: whole table
    assert "stddev" in piped[0] and "stderr" in piped[0]


def test_errors_speak_the_units_typed(shop_path: Path, served: str) -> None:
    for where in (["--path", str(shop_path)], ["--address", served, "--token", "t0k"]):
        proc = run("series", *where, "--step", "1us", check=False)
        assert proc.returncode == 1
        assert re.search(r"step 1us over [\d.]+ (s|ms|min|h) gives", proc.stderr), proc.stderr
        assert not re.search(r"\d ns\b", proc.stderr), proc.stderr
        proc = run("stats", *where, "--since", "1h", "--until", "2h", check=False)
        assert proc.returncode == 1
        assert "--since 1h (" in proc.stderr and "is not before --until 2h (" in proc.stderr
        assert not re.search(r"\d{16}", proc.stderr), proc.stderr
    proc = run("anomalies", "--path", str(shop_path), "--recent", "0", check=False)
    assert proc.returncode == 2 and "--recent: must be longer than 0" in proc.stderr


def test_demo_flags_its_regression_in_every_run() -> None:
    for seed in (1, 2, 3):
        data = json.loads(run("demo", "--requests", "300", "--seed", str(seed), "--json").stdout)
        reasons = [r for a in data["anomalies"] if a["function"] == "shop.search_catalog"
                   for r in a["reasons"]]  # fmt: skip
        assert any(r.startswith("recent p99 is") for r in reasons), (seed, data["anomalies"])


def test_demo_says_its_database_is_temporary(tmp_path: Path) -> None:
    proc = run("demo", "--requests", "30", env={"TMPDIR": str(tmp_path)})
    [line] = [ln for ln in proc.stdout.splitlines() if "database:" in ln]
    path = line.split("database: ", 1)[1].split(" (", 1)[0]
    assert "(temporary: deleted when the demo ends)" in line and not Path(path).exists()
    kept = tmp_path / "kept"
    proc = run("demo", "--requests", "30", "--path", str(kept))
    assert f"database: {kept}\n" in proc.stdout and (kept / "catalog.json").exists()


APP = """
import kronicler

@kronicler.capture
def work():
    return 2

print(work() + work())
"""


@pytest.mark.parametrize(
    ("make", "says"),
    [
        pytest.param(lambda p: p.write_text("x") and p, "is a file, not a directory", id="file"),
        pytest.param(
            lambda p: (p.write_text("x") and p) / "db",
            "cannot be used: Not a directory",
            id="under-a-file",
        ),  # fmt: skip
        pytest.param(
            lambda p: (p.mkdir(), p.chmod(0o555), p)[2],
            "cannot write to",
            id="read-only-dir",  # fmt: skip
            marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere"),
        ),
    ],
)
def test_an_unusable_kronicler_path_is_one_warning_line(tmp_path: Path, make: Any,
                                                        says: str) -> None:  # fmt: skip
    path = make(tmp_path / "target")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KRONICLER_PATH": str(path)}
    proc = subprocess.run([sys.executable, "-c", APP], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout == "4\n"
    # One line: the data-loss warning (the package's logger has only a NullHandler).
    assert proc.stderr.splitlines() == [
        f"kronicler:0: DataLossWarning: kronicler: KRONICLER_PATH {path} {says}; captured calls "
        "are not stored (the application continues; kronicler.status() counts them)"
    ], proc.stderr
