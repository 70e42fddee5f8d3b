"""Kronicler's embedded columnar span store.

``Database`` is the one entry point; the modules below it are its parts (schema, codecs, pages,
segments, the write queue, summaries, the bufferpool), each usable and tested on its own.

The names below are loaded on first use: the capture path imports only the schema, the batch
and the sink contract from here, so ``import kronicler`` loads none of the database's readers or
writers until something opens a database.
"""

from __future__ import annotations

import atexit
import importlib
import sys
from typing import TYPE_CHECKING, Any

from kronicler._config import DEFAULT_PATH

if TYPE_CHECKING:
    from kronicler.db.database import Database
    from kronicler.db.scan import FunctionSummary, Scan, TimeRange
    from kronicler.db.schema import SpanBatch
    from kronicler.db.sink import CaptureSink, SpanSink
    from kronicler.db.stats import Call, Stats
    from kronicler.db.view import ReadView

    _SINK: type[SpanSink] = Database  # mypy holds the database to the SpanSink contract
    _CAPTURE: type[CaptureSink] = Database  # ...and to the capture path's one hand-off

__all__ = [
    "DEFAULT_PATH", "Call", "Database", "FunctionSummary", "ReadView", "Scan", "SpanBatch",
    "CaptureSink", "SpanSink",
    "Stats", "TimeRange",
]  # fmt: skip

_HOMES = {
    "Database": "database", "FunctionSummary": "scan", "Scan": "scan", "TimeRange": "scan",
    "SpanBatch": "schema", "CaptureSink": "sink", "SpanSink": "sink", "Call": "stats",
    "Stats": "stats", "ReadView": "view",
}  # fmt: skip


@atexit.register
def _close_open_databases() -> None:
    # Registered when the package is first imported (as the decorator, an exporter or a
    # receiver is), not when the first database opens: atexit runs hooks last-in, first-out, so
    # the databases close after whatever set up their writers (an SDK provider's own exit
    # flush), as they did when this package loaded every module at once.
    database = sys.modules.get("kronicler.db.database")
    if database is not None:
        database.close_all()


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kronicler.db' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"kronicler.db.{home}"), name)
    globals()[name] = value  # found once; later lookups are plain module attributes
    return value
