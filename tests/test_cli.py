"""The ``kronicler`` command run as a real subprocess; its tables and JSON parsed back."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.query import shop_data
from tests.query.shop_data import ShopData

shop, shop_path = shop_data.shop, shop_data.shop_path  # fixtures shared with tests/query

ROOT = Path(__file__).resolve().parents[1]
STATS_KEYS = ["function", "count", "errors", "mean_ns", "stddev_ns", "stderr_ns", "min_ns",
              "max_ns", "p50_ns", "p90_ns", "p95_ns", "p99_ns", "p999_ns"]  # fmt: skip


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    full_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("KRONICLER_TOKEN", "KRONICLER_ADDRESS"):
        full_env.pop(name, None)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "kronicler", *args], capture_output=True, text=True,
        env=full_env, cwd=cwd or ROOT, timeout=120,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of a table printed by the CLI: header, dashes, then rows split on 2+ spaces."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = re.split(r"\s{2,}", lines[0].strip())
    assert set(lines[1].replace(" ", "")) == {"-"}
    return [dict(zip(header, re.split(r"\s{2,}", ln.strip()), strict=True)) for ln in lines[2:]]


def test_stats_json_rows_have_the_documented_keys(shop_path: Path, shop: ShopData) -> None:
    rows = json.loads(run("stats", "--path", str(shop_path), "--json").stdout)
    assert [r["function"] for r in rows] == ["shop.fast", "shop.pay", "shop.search", "shop.tail"]
    for r in rows:
        assert list(r) == STATS_KEYS
        assert r["count"] == int(shop.mask(names=r["function"]).sum())
        assert r["min_ns"] <= r["p50_ns"] <= r["p99_ns"] <= r["max_ns"]


def test_stats_table_is_readable(shop_path: Path) -> None:
    rows = parse_table(run("stats", "--path", str(shop_path)).stdout)
    assert [r["function"] for r in rows] == ["shop.fast", "shop.pay", "shop.search", "shop.tail"]
    assert rows[0]["calls"] == "1,500"
    assert re.fullmatch(r"\d+(\.\d+)? (ns|µs|ms|s)", rows[0]["p50"])
    assert rows[0]["p50"].endswith("µs") and rows[3]["p99"].endswith("ms")


def test_top_ranks_by_a_figure(shop_path: Path) -> None:
    rows = parse_table(run("top", "--path", str(shop_path), "--by", "p99", "-n", "2").stdout)
    assert [r["function"] for r in rows] == ["shop.tail", "shop.search"]


def test_filters_and_grouping_from_the_command_line(shop_path: Path, shop: ShopData) -> None:
    out = run("stats", "--path", str(shop_path), "--json", "-f", "shop.t*", "-f", "shop.pay",
              "--attr", "http.route=/b", "--group-by", "service", "--exact").stdout  # fmt: skip
    rows = json.loads(out)
    assert {r["service"]: r["count"] for r in rows} == {
        "api": int(shop.mask(names="shop.tail").sum()),
        "worker": int(shop.mask(names="shop.pay").sum()),
    }
    since = run("stats", "--path", str(shop_path), "--json", "--since", "@1700000050").stdout
    assert sum(r["count"] for r in json.loads(since)) == int(
        (shop.start >= 1700000050 * 10**9).sum()
    )


def test_other_commands(shop_path: Path, shop: ShopData) -> None:
    p = ("--path", str(shop_path))
    funcs = json.loads(run("functions", *p, "--json").stdout)
    assert [f["function"] for f in funcs][:1] == ["shop.fast"]
    assert "first call" in run("functions", *p).stdout
    slow = json.loads(run("slowest", *p, "-k", "3", "--json").stdout)
    assert [s["duration_ns"] for s in slow] == sorted(shop.duration.tolist(), reverse=True)[:3]
    assert len(slow[0]["trace_id"]) == 32
    assert parse_table(run("slowest", *p, "-k", "2").stdout)[0]["function"] == "shop.tail"
    series = json.loads(run("series", *p, "--step", "10s", "-f", "shop.pay", "--json").stdout)
    assert series["step_ns"] == 10**10
    assert sum(pt["count"] for pt in series["series"][0]["points"]) == 600
    assert "bucket start" in run("series", *p, "--step", "20s").stdout
    found = json.loads(run("anomalies", *p, "--json").stdout)
    assert {a["function"] for a in found} == {"shop.tail", "shop.search"}
    text = run("anomalies", *p).stdout
    assert "shop.tail" in text and "score" in text and "trace" in text
    hist = run("histogram", "shop.tail", *p, "--per-decade", "5").stdout
    assert "shop.tail" in hist and "#" in hist


def test_errors_are_one_line_with_exit_status_1(shop_path: Path, tmp_path: Path) -> None:
    p = ("--path", str(shop_path))
    for args, message in [
        (("stats", *p, "-f", "shop.nope"), "unknown function 'shop.nope'"),
        (("stats", *p, "--group-by", "colour"), "unknown group key"),
        (("stats", *p, "--since", "tomorrow-ish"), "bad time"),
        (("stats", "--path", str(tmp_path / "missing")), "not a Kronicler database"),
    ]:
        proc = run(*args, check=False)
        assert proc.returncode == 1, args
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert run("stats", "--series-of-tubes", check=False).returncode == 2


@pytest.fixture
def served(shop_path: Path) -> Iterator[str]:
    """``kronicler serve`` in a subprocess on a free port (with a token); yields the address."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KRONICLER_TOKEN": "t0k"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kronicler", "serve", "--path", str(shop_path), "--address",
         "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        m = re.search(r"on (127\.0\.0\.1:\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        assert "token required" in line
        yield m.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_commands_against_a_server(served: str, shop_path: Path) -> None:
    local = json.loads(run("stats", "--path", str(shop_path), "--json").stdout)
    remote = run("stats", "--address", served, "--json", env={"KRONICLER_TOKEN": "t0k"})
    assert json.loads(remote.stdout) == local
    remote = run("anomalies", "--address", served, "--token", "t0k", "--json")
    assert {a["function"] for a in json.loads(remote.stdout)} == {"shop.tail", "shop.search"}
    denied = run("stats", "--address", served, check=False)
    assert denied.returncode == 1 and "UNAUTHENTICATED" in denied.stderr
    missing = run("stats", "--address", served, "-f", "shop.nope", "--token", "t0k", check=False)
    here = run("stats", "--path", str(shop_path), "-f", "shop.nope", check=False)
    assert missing.returncode == here.returncode == 1
    assert missing.stderr == here.stderr == "kronicler stats: unknown function 'shop.nope'\n"


def test_default_source_is_the_local_database_when_present(shop_path: Path, tmp_path: Path) -> None:
    (tmp_path / ".kronicler").symlink_to(shop_path, target_is_directory=True)
    rows = json.loads(run("stats", "--json", cwd=tmp_path).stdout)
    assert len(rows) == 4


def test_demo_runs_a_workload_serves_it_and_exits_cleanly(tmp_path: Path) -> None:
    pytest.importorskip("kronicler.capture")
    proc = run("demo", "--requests", "300", "--json", "--path", str(tmp_path / "demo"))
    data = json.loads(proc.stdout)
    rows = {r["function"].rsplit(".", 1)[-1]: r for r in data["stats"]}
    assert {"handle_request", "parse_request", "load_user", "search_catalog", "charge_card",
            "render_page"} <= set(rows)  # fmt: skip
    assert rows["handle_request"]["count"] == 300
    assert list(data["stats"][0]) == STATS_KEYS
    assert 0 < rows["charge_card"]["errors"] < 300
    flagged = {a["function"].rsplit(".", 1)[-1] for a in data["anomalies"]}
    assert "load_user" in flagged  # 4% of its calls take 15 ms instead of 0.2 ms
    assert data["explain"]["function"] == data["anomalies"][0]["function"]
    # the kept database answers the other commands
    again = json.loads(run("stats", "--path", str(tmp_path / "demo"), "--json").stdout)
    assert sum(r["count"] for r in again) == sum(r["count"] for r in data["stats"])
    # explain finds the planted cause: the cache misses' child call
    why = json.loads(run("explain", "shop.load_user", "--path", str(tmp_path / "demo"),
                         "--json").stdout)  # fmt: skip
    assert why["count"] == 300 and why["children"][0]["function"] == "shop.fetch_user_row"
    assert why["children"][0]["extra_ns"] > 0


def test_demo_prints_tables_and_leaves_nothing_behind(tmp_path: Path) -> None:
    pytest.importorskip("kronicler.capture")
    work, tmp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    proc = run("demo", "--requests", "150", cwd=work, env={"TMPDIR": str(tmp)})
    assert "Latency by function" in proc.stdout and "Anomalies" in proc.stdout
    table = proc.stdout.split("Latency by function (slowest total time first):\n", 1)[1]
    rows = parse_table(table.split("\n\n", 1)[0])
    assert rows[0]["function"].endswith("handle_request")
    assert list(tmp.iterdir()) == []  # the temporary database is gone


def test_demo_leaves_the_working_directory_alone(tmp_path: Path) -> None:
    pytest.importorskip("kronicler.capture")
    run("demo", "--requests", "20", cwd=tmp_path, env={"TMPDIR": str(tmp_path)})
    assert [p.name for p in tmp_path.iterdir()] == []


def _http_json(url: str, token: str | None = None) -> object:
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kronicler", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )  # fmt: skip


def _function_counts(url: str, token: str | None = None) -> dict[str, int]:
    body = _http_json(f"{url}/api/v1/functions?range=all", token)
    assert isinstance(body, dict)
    return {row["function"]: row["count"] for row in body["rows"]}


def test_dashboard_command_serves_the_page_and_api(shop_path: Path, shop: ShopData) -> None:
    pytest.importorskip("fastapi")
    proc = _start(["dashboard", "--path", str(shop_path), "--http", "127.0.0.1:0"], {})
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        local = json.loads(run("functions", "--path", str(shop_path), "--json").stdout)
        assert _function_counts(m.group(1)) == {f["function"]: f["count"] for f in local}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_serve_with_http_runs_grpc_and_dashboard_with_one_token(shop_path: Path) -> None:
    pytest.importorskip("fastapi")
    proc = _start(["serve", "--path", str(shop_path), "--address", "127.0.0.1:0", "--http",
                   "127.0.0.1:0"], {"KRONICLER_TOKEN": "s3cret"})  # fmt: skip
    try:
        assert proc.stdout is not None
        # gRPC, the ingest workers' own OTLP/gRPC port, OTLP/HTTP, dashboard
        lines = [proc.stdout.readline() for _ in range(4)]
        grpc_line, web_line = lines[0], next(x for x in lines if "dashboard" in x)
        address = re.search(r"on (127\.0\.0\.1:\d+)", grpc_line)
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", web_line)
        assert address and url, lines
        counts = _function_counts(url.group(1), "s3cret")
        remote = run("functions", "--address", address.group(1), "--json",
                     env={"KRONICLER_TOKEN": "s3cret"})  # fmt: skip
        assert counts == {f["function"]: f["count"] for f in json.loads(remote.stdout)}
        import urllib.error

        with pytest.raises(urllib.error.HTTPError) as denied:
            _http_json(f"{url.group(1)}/api/v1/functions")
        assert denied.value.code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_retain_deletes_old_closed_segments(tmp_path: Path) -> None:
    import numpy as np

    from kronicler.db import Database

    path = tmp_path / "db"
    with Database.open(path) as db:  # a segment whose calls are from 2001
        db.append(["old.job"] * 10, np.full(10, 1_000_000_000 * 10**9), np.ones(10, int))
    with Database.open(path) as db:  # and one from now
        db.append(["new.job"] * 5, np.full(5, __import__("time").time_ns()), np.ones(5, int))
    out = run("retain", "--path", str(path), "--max-age", "30d")
    assert out.stdout.startswith("removed 1 segment(s)")
    names = [
        f["function"] for f in json.loads(run("functions", "--path", str(path), "--json").stdout)
    ]
    assert names == ["new.job"]
    assert run("retain", "--path", str(path), "--max-size", "0").stdout.startswith("removed 1")
    bad = run("retain", "--path", str(path), "--max-size", "lots", check=False)
    assert bad.returncode == 1 and "bad size 'lots'" in bad.stderr
    assert run("retain", "--path", str(path), check=False).returncode == 1


def test_compact_merges_small_segments(tmp_path: Path) -> None:
    import numpy as np

    from kronicler.db import Database

    path = tmp_path / "db"
    for i in range(3):
        with Database.open(path) as db:
            db.append([f"job{i}"] * 10, np.arange(10), np.ones(10, int))
    before = run("stats", "--path", str(path), "--json").stdout
    out = run("compact", "--path", str(path))
    assert out.stdout.startswith("merged 3 segment(s); 1 segment(s) now in")
    assert run("stats", "--path", str(path), "--json").stdout == before


def test_upgrade_brings_an_older_database_to_the_current_files(tmp_path: Path) -> None:
    """A database written by an older release (format-2 indexes, no sorted-duration files):
    ``upgrade`` rewrites the indexes and adds the files once, and every answer stays the same."""
    import shutil

    from kronicler.db import durations, index

    path = tmp_path / "db"
    shutil.copytree(Path(__file__).parent / "db" / "data" / "index_v2", path)
    for side in (path / "segments").glob(f"*{durations.SUFFIX}"):
        side.unlink()
    asks = [("stats",), ("stats", "--exact"), ("slowest",), ("functions",)]
    before = [run(*a, "--path", str(path), "--json").stdout for a in asks]
    idx = sorted((path / "segments").glob(f"*{index.SUFFIX}"))
    assert len(idx) == 2 and all(p.read_bytes()[4:6] == (2).to_bytes(2, "little") for p in idx)

    out = run("upgrade", "--path", str(path)).stdout
    assert out.startswith("rewrote 2 segment index(es) in the current format; added sorted "
                          "durations to 2 segment(s)")  # fmt: skip
    assert all(p.read_bytes()[4:6] == index.VERSION.to_bytes(2, "little") for p in idx)
    assert len(list((path / "segments").glob(f"*{durations.SUFFIX}"))) == 2
    assert [run(*a, "--path", str(path), "--json").stdout for a in asks] == before
    again = run("upgrade", "--path", str(path)).stdout
    assert again.startswith("rewrote 0 segment index(es) in the current format; added sorted "
                            "durations to 0 segment(s)")  # fmt: skip
    bad = run("upgrade", "--path", str(path), "--wait", "-1", check=False)
    assert bad.returncode == 1 and "bad --wait -1.0" in bad.stderr


def test_read_commands_never_write_and_name_a_directory_without_a_database(
    shop_path: Path, tmp_path: Path
) -> None:
    def files(path: Path) -> list[tuple[str, int]]:
        return sorted((str(p.relative_to(path)), p.stat().st_mtime_ns) for p in path.rglob("*"))

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not a database")
    missing = tmp_path / "missing"
    for path in (plain, missing):
        for args in (("functions",), ("stats",), ("slowest",), ("dashboard", "--http", "127.0.0.1:0"),
                     ("compact",), ("upgrade",), ("retain", "--max-age", "1d")):  # fmt: skip
            proc = run(*args, "--path", str(path), check=False)
            assert proc.returncode == 1, (args, proc.stderr)
            assert (
                proc.stderr.strip() == f"kronicler {args[0]}: not a Kronicler database: {path}"
                or (args[0] == "dashboard" and f"not a Kronicler database: {path}" in proc.stderr)
            )
    assert [f for f, _ in files(plain)] == ["notes.txt"] and not missing.exists()
    before = files(shop_path)
    for read_args in (("functions",), ("stats", "--json"), ("slowest",), ("top",)):
        run(*read_args, "--path", str(shop_path))
    assert files(shop_path) == before  # reading a database changes none of its files
