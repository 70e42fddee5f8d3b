"""Kronicler's embedded columnar span store.

``Database`` is the one entry point; the modules below it are its parts (schema, codecs, pages,
segments, the write queue, summaries, the bufferpool), each usable and tested on its own.
"""

from __future__ import annotations

from kronicler.db.database import DEFAULT_PATH, Database
from kronicler.db.scan import FunctionSummary, Scan, TimeRange
from kronicler.db.schema import SpanBatch
from kronicler.db.sink import CaptureSink, SpanSink
from kronicler.db.stats import Call, Stats
from kronicler.db.view import ReadView

__all__ = [
    "DEFAULT_PATH", "Call", "Database", "FunctionSummary", "ReadView", "Scan", "SpanBatch",
    "CaptureSink", "SpanSink",
    "Stats", "TimeRange",
]  # fmt: skip

_SINK: type[SpanSink] = Database  # mypy holds the database to the SpanSink contract
_CAPTURE: type[CaptureSink] = Database  # ...and to the capture path's one hand-off
