"""OpenTelemetry side of Kronicler: span -> row conversion, the SDK exporter, the fast pipeline.

``KroniclerSpanExporter`` and ``spans_to_batch`` need the OpenTelemetry SDK; they are imported
on first use so that ``import kronicler`` (the decorator) loads only the OpenTelemetry API.
``install_shutdown_flush(provider)`` makes SIGTERM/SIGINT/SIGQUIT flush an SDK provider and the
databases before the process goes (:mod:`kronicler.otel.shutdown`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kronicler.otel.shutdown import install_shutdown_flush

if TYPE_CHECKING:
    from kronicler.otel.exporter import KroniclerSpanExporter
    from kronicler.otel.rows import spans_to_batch

__all__ = ["KroniclerSpanExporter", "install_shutdown_flush", "spans_to_batch"]


def __getattr__(name: str) -> Any:
    if name == "KroniclerSpanExporter":
        from kronicler.otel.exporter import KroniclerSpanExporter

        return KroniclerSpanExporter
    if name == "spans_to_batch":
        from kronicler.otel.rows import spans_to_batch

        return spans_to_batch
    raise AttributeError(f"module 'kronicler.otel' has no attribute {name!r}")
