"""Helpers shared by the capture and OpenTelemetry tests: reading a database back, globals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.util._once import Once

import kronicler
from kronicler.db import Database
from kronicler.db.schema import parse_attributes
from kronicler.otel import tracer

SERVICE = "capture-tests"
ROW_COLUMNS = ["name", "start", "duration", "status", "kind", "service", "trace_hi", "trace_lo",
               "span_id", "parent_span_id", "attributes", "resource"]  # fmt: skip


def read_rows(path: Path | str) -> list[dict[str, Any]]:
    """Every row stored at ``path`` as a plain dict, in start order."""
    with Database.open(path) as db:
        scan = db.scan(ROW_COLUMNS)
    cols = scan.columns
    rows = []
    for i in range(len(scan)):
        rows.append({
            "name": scan.names[int(cols["name"][i])],
            "start": int(cols["start"][i]),
            "duration": int(cols["duration"][i]),
            "status": int(cols["status"][i]),
            "kind": int(cols["kind"][i]),
            "service": scan.services[int(cols["service"][i])],
            "trace_id": int(cols["trace_hi"][i]) << 64 | int(cols["trace_lo"][i]),
            "span_id": int(cols["span_id"][i]),
            "parent_span_id": int(cols["parent_span_id"][i]),
            "attributes": parse_attributes(scan.attributes[int(cols["attributes"][i])]),
            "resource": parse_attributes(scan.resources[int(cols["resource"][i])]),
        })  # fmt: skip
    rows.sort(key=lambda r: (r["start"], r["span_id"]))
    return rows


class Store:
    """The zero-config pipeline pointed at a fresh directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self) -> list[dict[str, Any]]:
        assert kronicler.flush(10.0)
        return read_rows(self.path)


def reset_global_provider() -> None:
    """What opentelemetry-test-utils' reset_trace_globals does: forget the global provider."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    trace._PROXY_TRACER_PROVIDER = trace.ProxyTracerProvider()
    tracer.reset_resolution()
