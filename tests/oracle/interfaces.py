"""The same questions through every interface, answered in one plain JSON shape.

Each adapter turns a :class:`~tests.oracle.truth.Query` into that interface's own form (a
``Filter`` for Python, a protobuf request through the real gRPC client, command-line flags for
a ``python -m kronicler`` subprocess, URL parameters for the dashboard's HTTP API over a real
socket) and returns the result types' ``to_dict()`` shapes, so answers compare with ``==``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kronicler import query as kq
from kronicler.db import Database
from kronicler.server import Client
from tests.oracle.layouts import ROOT, writer_env
from tests.oracle.truth import Query

QUANTILES = kq.DEFAULT_QUANTILES


def to_filter(q: Query) -> kq.Filter:
    return kq.Filter.make(list(q.functions), service=q.service, since=q.since, until=q.until,
                          attributes=dict(q.attributes), resource=dict(q.resource))  # fmt: skip


class PythonApi:
    """``kronicler.query`` over an open ``Database``."""

    name = "python"

    def __init__(self, db: Database) -> None:
        self.db = db

    def stats(self, q: Query, *, group_by: str = "function",
              quantiles: Sequence[float] = QUANTILES, exact: bool = False) -> list[dict[str, Any]]:  # fmt: skip
        t = kq.stats(self.db, to_filter(q), group_by=group_by, quantiles=quantiles, exact=exact)
        return [r.to_dict(t.key_name) for r in t.rows]

    def functions(self, q: Query) -> list[dict[str, Any]]:
        return [f.to_dict() for f in kq.list_functions(self.db, to_filter(q))]

    def slowest(self, q: Query, k: int) -> list[dict[str, Any]]:
        return [c.to_dict() for c in kq.slowest(self.db, to_filter(q), k=k)]

    def series(self, q: Query, *, step: int | None, group_by: str = "function",
               quantiles: Sequence[float] = (0.5, 0.99)) -> dict[str, Any]:  # fmt: skip
        return kq.series(self.db, to_filter(q), step=step, group_by=group_by,
                         quantiles=quantiles).to_dict()  # fmt: skip

    def histogram(self, function: str, q: Query, *, exact: bool = False) -> dict[str, Any]:
        return kq.histogram(self.db, function, to_filter(q), exact=exact).to_dict()

    def anomalies(self, q: Query, *, exemplars: int = 3) -> list[dict[str, Any]]:
        return [a.to_dict() for a in kq.anomalies(self.db, to_filter(q), exemplars=exemplars)]


class GrpcApi:
    """The gRPC ``Client`` against a real server."""

    name = "grpc"

    def __init__(self, client: Client) -> None:
        self.client = client

    def stats(self, q: Query, *, group_by: str = "function",
              quantiles: Sequence[float] = QUANTILES, exact: bool = False) -> list[dict[str, Any]]:  # fmt: skip
        t = self.client.stats(to_filter(q), group_by=group_by, quantiles=quantiles, exact=exact)
        return [r.to_dict(t.key_name) for r in t.rows]

    def functions(self, q: Query) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.client.list_functions(to_filter(q))]

    def slowest(self, q: Query, k: int) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.client.slowest(to_filter(q), k=k)]

    def series(self, q: Query, *, step: int | None, group_by: str = "function",
               quantiles: Sequence[float] = (0.5, 0.99)) -> dict[str, Any]:  # fmt: skip
        return self.client.series(to_filter(q), step=step, group_by=group_by,
                                  quantiles=quantiles).to_dict()  # fmt: skip

    def histogram(self, function: str, q: Query, *, exact: bool = False) -> dict[str, Any]:
        return self.client.histogram(function, to_filter(q), exact=exact).to_dict()

    def anomalies(self, q: Query, *, exemplars: int = 3) -> list[dict[str, Any]]:
        return [a.to_dict() for a in self.client.anomalies(to_filter(q), exemplars=exemplars)]


def _seconds(ns: int) -> str:
    """``@epoch-seconds`` for the CLI; only whole seconds are exact through its float parser."""
    assert ns % 1_000_000_000 == 0, f"the CLI takes whole seconds here, got {ns}"
    return f"@{ns // 1_000_000_000}"


class CliApi:
    """``python -m kronicler ... --json`` as a subprocess, on ``--path`` or ``--address``."""

    def __init__(self, *, path: Path | None = None, address: str | None = None) -> None:
        self.source = ["--path", str(path)] if path is not None else ["--address", str(address)]
        self.name = "cli-path" if path is not None else "cli-address"

    def run(self, *args: str) -> Any:
        proc = subprocess.run(
            [sys.executable, "-m", "kronicler", *args, *self.source, "--json"],
            capture_output=True, text=True, env=writer_env(), cwd=ROOT, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, f"kronicler {' '.join(args)}: {proc.stderr}"
        return json.loads(proc.stdout)

    @staticmethod
    def flags(q: Query) -> list[str]:
        out: list[str] = []
        for f in q.functions:
            out += ["-f", f]
        if q.service:
            out += ["--service", q.service]
        if q.since is not None:
            out += ["--since", _seconds(q.since)]
        if q.until is not None:
            out += ["--until", _seconds(q.until)]
        for k, v in q.attributes:
            out += ["--attr", f"{k}={v}"]
        for k, v in q.resource:
            out += ["--attr", f"resource:{k}={v}"]
        return out

    def stats(self, q: Query, *, group_by: str = "function",
              quantiles: Sequence[float] = QUANTILES, exact: bool = False) -> list[dict[str, Any]]:  # fmt: skip
        args = ["stats", *self.flags(q), "--group-by", group_by, "--quantiles",
                ",".join(f"{x:g}" for x in quantiles)]  # fmt: skip
        return self.run(*args, *(["--exact"] if exact else []))

    def functions(self, q: Query) -> list[dict[str, Any]]:
        return self.run("functions", *self.flags(q))

    def slowest(self, q: Query, k: int) -> list[dict[str, Any]]:
        return self.run("slowest", *self.flags(q), "-k", str(k))

    def series(self, q: Query, *, step: int | None, group_by: str = "function",
               quantiles: Sequence[float] = (0.5, 0.99)) -> dict[str, Any]:  # fmt: skip
        args = ["series", *self.flags(q), "--group-by", group_by, "--quantiles",
                ",".join(f"{x:g}" for x in quantiles)]  # fmt: skip
        if step is not None:
            args += ["--step", f"{step}ns"]
        return self.run(*args)

    def histogram(self, function: str, q: Query, *, exact: bool = False) -> dict[str, Any]:
        args = ["histogram", function, *self.flags(q), *(["--exact"] if exact else [])]
        return self.run(*args)

    def anomalies(self, q: Query, *, exemplars: int = 3) -> list[dict[str, Any]]:
        assert exemplars == 3, "the CLI always asks for the default 3 exemplars"
        return self.run("anomalies", *self.flags(q))


class HttpApi:
    """The dashboard's JSON API (``/api/v1``) over a real socket."""

    name = "http"

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/") + "/api/v1/"

    def get(self, route: str, params: list[tuple[str, Any]]) -> Any:
        url = self.base + route + "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise AssertionError(f"GET {url}: {e.code} {e.read()[:500]!r}") from None

    @staticmethod
    def params(q: Query, *, functions: bool = True) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        if functions:
            out += [("function", f) for f in q.functions]
        if q.since is None and q.until is None:
            out.append(("range", "all"))
        if q.since is not None:
            out.append(("since", q.since))
        if q.until is not None:
            out.append(("until", q.until))
        if q.service:
            out.append(("service", q.service))
        out += [("attr", f"{k}={v}") for k, v in q.attributes]
        out += [("attr", f"resource:{k}={v}") for k, v in q.resource]
        return out

    def table(self, q: Query) -> list[dict[str, Any]]:
        """The functions table (stats with p50/p90/p99, plus rates and anomaly evidence)."""
        return self.get("functions", self.params(q))["rows"]

    def slowest(self, q: Query, k: int) -> list[dict[str, Any]]:
        return self.get("slowest", [*self.params(q), ("k", k)])

    def histogram(self, function: str, q: Query) -> dict[str, Any]:
        params = [("function", function), *self.params(q, functions=False)]
        return self.get("histogram", params)

    def series(self, q: Query, *, step: int) -> dict[str, Any]:
        return self.get("series", [*self.params(q), ("step", step)])

    def anomalies(self, q: Query, *, exemplars: int = 3) -> list[dict[str, Any]]:
        return self.get("anomalies", [*self.params(q), ("exemplars", exemplars)])

    def detail(self, function: str, q: Query, k: int, *, series: bool = False) -> dict[str, Any]:
        params = [("function", function), *self.params(q, functions=False), ("k", k),
                  ("series", "true" if series else "false")]  # fmt: skip
        return self.get("detail", params)
