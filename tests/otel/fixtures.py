"""Shared fixtures for the capture and OpenTelemetry tests (imported by their test modules)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

import kronicler
from kronicler.db import Database
from kronicler.db.schema import parse_attributes
from kronicler.otel import tracer

SERVICE = "capture-tests"
ROW_COLUMNS = ["name", "start", "duration", "status", "kind", "service", "trace_hi", "trace_lo",
               "span_id", "parent_span_id", "attributes"]  # fmt: skip


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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "kdb"
    kronicler.configure(path=path, service_name=SERVICE, enabled=True)
    yield Store(path)
    kronicler.flush(10.0)


def reset_global_provider() -> None:
    """What opentelemetry-test-utils' reset_trace_globals does: forget the global provider."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    trace._PROXY_TRACER_PROVIDER = trace.ProxyTracerProvider()
    tracer.reset_resolution()


@pytest.fixture
def sdk() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A global SDK TracerProvider whose spans land in memory (SimpleSpanProcessor)."""
    from opentelemetry.sdk.resources import Resource

    reset_global_provider()
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    try:
        yield provider, memory
    finally:
        provider.shutdown()
        reset_global_provider()
