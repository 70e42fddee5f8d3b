"""Kronicler: capture call timings as OpenTelemetry spans and answer latency statistics fast."""

from __future__ import annotations

__version__ = "0.2.0"
