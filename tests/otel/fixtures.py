"""Fixtures shared by the capture and OpenTelemetry tests (``pytest_plugins`` in each module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import kronicler
from tests.otel.helpers import SERVICE, Store, reset_global_provider


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """The zero-config pipeline pointed at a fresh directory."""
    path = tmp_path / "kdb"
    kronicler.configure(path=path, service_name=SERVICE, enabled=True)
    yield Store(path)
    kronicler.flush(10.0)


@pytest.fixture
def sdk() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A global SDK TracerProvider whose spans land in memory (SimpleSpanProcessor)."""
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
