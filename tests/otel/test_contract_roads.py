"""The same spans stored three ways give the same rows.

One workload (``contract_workload.py``: nested calls, exceptions escaping and recorded, error
statuses with descriptions, the SDK's status rules, attributes of every type, a generator, a
coroutine; under a default, a named and no service) runs in a fresh process three times:
through the zero-config decorator, through the OTel SDK with ``KroniclerSpanExporter``, and
through the OTel SDK with the stock ``OTLPSpanExporter`` over gRPC to a real Kronicler server
on 127.0.0.1. The stored rows must agree on everything but ids and times, which are compared by
structure: every parent link points at a stored span of the same trace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from kronicler.db import Database
from kronicler.server import KroniclerServer, ServerOptions
from tests.otel import contract_workload
from tests.otel.helpers import read_rows

ROOT = Path(__file__).resolve().parents[2]
RUN = "from tests.otel import contract_workload as w; w.main()"


def _env() -> dict[str, str]:
    """No service named by the environment, and this checkout first on the path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "KRONICLER_"))}  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _start(mode: str, path: Path, endpoint: str = "") -> subprocess.Popen[str]:
    args = [sys.executable, "-c", RUN, mode, str(path)] + ([endpoint] if endpoint else [])
    return subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _wait(proc: subprocess.Popen[str]) -> None:
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out


def comparable(rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """Rows without ids and times; parent links checked and replaced by the parent's name."""
    by_span = {(r["trace_id"], r["span_id"]): r for r in rows}
    out: Counter[tuple[Any, ...]] = Counter()
    for r in rows:
        assert r["trace_id"] and r["span_id"], r
        parent = None
        if r["parent_span_id"]:
            parent = by_span.get((r["trace_id"], r["parent_span_id"]))
            assert parent is not None, f"{r['name']} has a parent that was not stored"
        # json text keeps what Python equality hides: true vs 1 vs 1.0, -0.0 vs 0.0
        attrs = json.dumps(r["attributes"], sort_keys=True)
        out[(r["name"], r["status"], r["kind"], r["service"], attrs,
             parent["name"] if parent else None)] += 1  # fmt: skip
    return out


def resources(rows: list[dict[str, Any]], service: str) -> set[tuple[tuple[str, Any], ...]]:
    """The distinct resources of a service's rows, without the per-process instance id."""
    return {tuple(sorted((k, v) for k, v in r["resource"].items() if k != "service.instance.id"))
            for r in rows if r["service"] == service}  # fmt: skip


def test_decorator_sdk_exporter_and_otlp_store_identical_rows(tmp_path: Path) -> None:
    paths = {mode: tmp_path / mode for mode in ("fast", "sdk", "otlp")}
    with Database.open(paths["otlp"]) as db:
        options = ServerOptions(address="127.0.0.1:0", token=contract_workload.TOKEN)
        with KroniclerServer(db, options) as server:
            procs = [_start("fast", paths["fast"]), _start("sdk", paths["sdk"]),
                     _start("otlp", paths["otlp"], server.address)]  # fmt: skip
            for proc in procs:
                _wait(proc)
            assert db.flush(timeout=30)
    rows = {mode: read_rows(path) for mode, path in paths.items()}
    fast, sdk, otlp = (comparable(rows[m]) for m in ("fast", "sdk", "otlp"))

    # Spans per workload run: handle x3 with 18 children each (fetch > parse, a generator,
    # 11 status/exception cases, one interrupted call, 3 flags), then a coroutine > parse.
    assert len(rows["fast"]) == 3 * (3 * 19 + 2)
    assert sdk == fast
    assert otlp == fast

    # The resource: the fast path stores what the SDK's Resource.create() gives, so the default
    # and named setups agree on every key but the per-process service.instance.id.
    for service in (f"unknown_service:{os.path.basename(sys.executable)}", "shop.api"):
        seen = {mode: resources(rows[mode], service) for mode in ("fast", "sdk", "otlp")}
        assert seen["fast"] == seen["sdk"] == seen["otlp"], (service, seen)
        (one,) = seen["fast"]
        assert dict(one)["service.name"] == service and "telemetry.sdk.version" in dict(one)
    (bare,) = resources(rows["sdk"], "unknown_service")
    assert dict(bare) == {"deployment.environment": "ci"}  # no service.name: the default service

    by_service = Counter(r["service"] for r in rows["fast"])
    exe = os.path.basename(sys.executable)
    assert by_service == {f"unknown_service:{exe}": 59, "shop.api": 59, "unknown_service": 59}
    named = [r for r in rows["otlp"] if r["service"] == "shop.api"]
    attrs = {r["name"].rsplit(".", 1)[-1]: r["attributes"] for r in named}
    assert attrs["declined"]["otel.status_description"] == "card declined"
    assert attrs["unset_is_ignored"]["otel.status_description"] == "first"
    assert attrs["recorded"]["exception.message"] == "overridden"
    assert attrs["explode"]["exception.message"] == "x" * 1024
    assert "otel.status_description" not in attrs["replaced"]
    handled = [r for r in named if r["name"].endswith(".handle") and r["attributes"]
               .get("request.index") == 0][0]["attributes"]  # fmt: skip
    assert handled["payload"] == "AP9r" and handled["nested"]["b"] == ["x", True]
    assert handled["codes"] == [200, 404] and handled["bits"] == [True, False]
