"""``OTEL_TRACES_EXPORTER=kronicler``: the exporter the OpenTelemetry SDK's auto-configuration builds.

``opentelemetry-instrument`` (and any SDK set up from the environment) looks exporters up by name in
the ``opentelemetry_traces_exporter`` entry points and calls the class with no arguments, so the
settings come from the environment, as every other exporter's do: ``KRONICLER_PATH`` (default
``./.kronicler``) names the database. An unchanged application run as
``OTEL_TRACES_EXPORTER=kronicler opentelemetry-instrument python app.py`` stores every span locally.
"""

from __future__ import annotations

from kronicler._config import Settings
from kronicler.otel.exporter import KroniclerSpanExporter


class EnvironmentSpanExporter(KroniclerSpanExporter):
    """A :class:`KroniclerSpanExporter` on the database ``KRONICLER_PATH`` names."""

    def __init__(self) -> None:
        super().__init__(Settings.from_env().path)
