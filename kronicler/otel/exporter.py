"""``KroniclerSpanExporter``: an OpenTelemetry SDK ``SpanExporter`` that stores spans as rows.

Put it behind a ``BatchSpanProcessor`` on any SDK ``TracerProvider`` and every span of the
application (``@kronicler.capture`` spans and auto-instrumentation alike) lands in the database::

    provider.add_span_processor(BatchSpanProcessor(KroniclerSpanExporter("./.kronicler")))

``export`` converts the batch with :func:`spans_to_batch` and hands it to the database's write
queue. When that queue is full it waits for room, at most ``export_timeout`` seconds: a
``BatchSpanProcessor`` drops a batch whose export reports FAILURE (it never retries), whereas
waiting only delays its worker thread while spans gather in its own queue, so a burst is
absorbed without losing a span. (With a ``SimpleSpanProcessor`` the wait happens in the
application thread, as every synchronous exporter's does.) Spans still refused after the wait are
counted in ``dropped`` and reported as FAILURE.

Like every SDK exporter it never raises: a conversion or storage problem is logged (once per
kind) and reported as ``SpanExportResult.FAILURE``; so is any call after ``shutdown``.
Instrumentation is suppressed while it runs, so storing spans cannot create spans.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from kronicler._config import DEFAULT_PATH
from kronicler._log import LogOnce
from kronicler.db.sink import SpanSink
from kronicler.otel.contract import DEFAULT_SERVICE
from kronicler.otel.rows import spans_to_batch

_log = logging.getLogger(__name__)
_SUPPRESS = otel_context._SUPPRESS_INSTRUMENTATION_KEY
#: Seconds ``export`` waits for room in a full write queue (the SDK's own export timeout).
DEFAULT_EXPORT_TIMEOUT = 30.0


class KroniclerSpanExporter(SpanExporter):
    """Stores exported spans in a Kronicler database.

    ``target`` is a directory (opened now, closed by ``shutdown``) or an open
    :class:`~kronicler.db.sink.SpanSink` such as a ``Database`` (left open: its owner closes it). ``default_service`` names spans whose resource has no
    ``service.name`` (by default ``unknown_service``, as the OTLP receiver stores them).
    ``export_timeout``: seconds an export waits for room in a full write queue.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | SpanSink = DEFAULT_PATH,
        *,
        default_service: str | None = None,
        export_timeout: float = DEFAULT_EXPORT_TIMEOUT,
    ) -> None:
        if (
            not isinstance(export_timeout, (int, float))
            or isinstance(export_timeout, bool)
            or not export_timeout >= 0
        ):
            raise ValueError(f"export_timeout must be >= 0 seconds, got {export_timeout!r}")
        if isinstance(target, (str, os.PathLike)):
            from kronicler.db import Database

            self._db: SpanSink = Database.open(os.fspath(target))
            self._owns_db = True
        elif isinstance(target, SpanSink):
            self._db, self._owns_db = target, False
        else:
            raise ValueError(
                f"target must be a directory or an open SpanSink (a kronicler Database), "
                f"got {target!r}"
            )
        self._default_service = default_service or DEFAULT_SERVICE
        self._export_timeout = float(export_timeout)
        self.dropped = 0  # spans not stored: refused after export_timeout, or failing to convert
        self._shutdown = False
        self._lock = threading.Lock()  # guards _shutdown against a concurrent export
        self._log_once = LogOnce(_log)

    @property
    def database(self) -> SpanSink:
        """Where exported spans go (the ``Database`` opened or passed in)."""
        return self._db

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        if not spans:
            return SpanExportResult.SUCCESS
        token = otel_context.attach(otel_context.set_value(_SUPPRESS, True))
        try:
            batch = spans_to_batch(spans, default_service=self._default_service)
            with self._lock:
                if self._shutdown:
                    return SpanExportResult.FAILURE
                # Waits while the write queue is full (see the module docstring).
                self._db.append_batch(batch, timeout=self._export_timeout)
            return SpanExportResult.SUCCESS
        except Exception as exc:  # noqa: BLE001 - exporters report, they never raise
            self.dropped += len(spans)
            self._warn("export", exc)
            return SpanExportResult.FAILURE
        finally:
            otel_context.detach(token)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        if self._shutdown:
            return False
        try:
            return bool(self._db.flush(timeout_millis / 1000.0))
        except Exception as exc:  # noqa: BLE001
            self._warn("flush", exc)
            return False

    def shutdown(self) -> None:
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
        try:
            if self._owns_db:
                self._db.close()
            else:
                self._db.flush()
        except Exception as exc:  # noqa: BLE001
            self._warn("shutdown", exc)

    def _warn(self, what: str, exc: BaseException) -> None:
        self._log_once(what, logging.WARNING, "kronicler: span %s failed (%s: %s)", what,
                       type(exc).__name__, exc, exc_info=exc, loss=True)  # fmt: skip
