"""Kronicler: capture call timings as OpenTelemetry spans and answer latency statistics fast.

The public face::

    import kronicler

    @kronicler.capture
    def handler(req): ...

    kronicler.configure(path="./.kronicler", service_name="api")   # optional
    kronicler.flush()          # make everything captured so far readable
    kronicler.shutdown()       # flush and stop (also done at normal interpreter exit)
    db = kronicler.open("./.kronicler")                               # read it back

The decorator and its pipeline load on first use of ``kronicler.capture`` (or ``configure``,
``flush``, ``shutdown``, ``status``, ``PipelineStatus``), not at ``import kronicler``: a process
that only reads a database (``kronicler.db``, the CLI, ``serve``) imports this package too, and
the capture side (OpenTelemetry's API, the tracer, multiprocessing, ~35-40 ms) was most of a cold
reader's import time, against a 200 ms budget for a cold time range at a billion rows.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kronicler._config import DEFAULT_PATH
from kronicler._version import __version__

if TYPE_CHECKING:
    from kronicler.capture import capture
    from kronicler.db import Database
    from kronicler.otel.pipeline import PipelineStatus

# A library leaves output to the application's logging setup. Calls that cannot be stored are
# also issued as warnings (kronicler.errors.DataLossWarning), which reach stderr without it.
logging.getLogger("kronicler").addHandler(logging.NullHandler())

__all__ = [
    "PipelineStatus",
    "__version__",
    "capture",
    "configure",
    "flush",
    "open",
    "shutdown",
    "status",
]


class _Package(types.ModuleType):
    """This package's module type: ``capture`` is the decorator, loaded on first use.

    A property, not a module ``__getattr__``: importing the submodule ``kronicler.capture``
    (``pytest.importorskip``, a user's ``from kronicler.capture import ...``) makes the import
    system bind the submodule to the package's ``capture`` attribute, which would then shadow the
    decorator; the property keeps the name the decorator's whatever imported first."""

    @property
    def capture(self) -> Callable[..., Any]:
        decorator: Callable[..., Any] = importlib.import_module("kronicler.capture").capture
        return decorator

    @capture.setter
    def capture(self, value: object) -> None:
        pass  # the import system binding the submodule: the name stays the decorator's


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name == "PipelineStatus":
        from kronicler.otel.pipeline import PipelineStatus

        globals()[name] = PipelineStatus  # found once; later lookups are plain attributes
        return PipelineStatus
    raise AttributeError(f"module 'kronicler' has no attribute {name!r}")


def configure(
    *,
    path: str | os.PathLike[str] | None = None,
    service_name: str | None = None,
    enabled: bool | None = None,
    flush_interval: float | None = None,
    max_pending: int | None = None,
    stop_timeout: float | None = None,
    database: Database | None = None,
) -> None:
    """Change the default pipeline's settings; arguments left as None keep their value.

    ``path``: database directory (default ``./.kronicler`` or ``KRONICLER_PATH``).
    ``service_name``: service stored on every row (default ``KRONICLER_SERVICE_NAME``, then
    ``OTEL_SERVICE_NAME``, then the OpenTelemetry SDK's ``unknown_service:<executable>``).
    ``enabled``: False makes captured functions plain calls.
    ``flush_interval``: seconds between background hand-offs to the database (default 0.1).
    ``max_pending``: rows held in memory while the database lags; beyond that rows are dropped.
    ``stop_timeout``: seconds a stop signal (SIGTERM, SIGINT, SIGQUIT) waits for captured calls
    to be stored before the signal goes on (default 5).
    ``database``: an open ``kronicler.Database`` to store into instead of ``path`` (the caller
    keeps ownership and closes it).

    Records captured before the change are stored under the old settings first. Calling
    ``configure`` after ``shutdown`` starts capturing again. Bad values raise ``ValueError``.
    """
    from kronicler.otel import tracer as _tracer

    pipeline = _tracer.PIPELINE
    settings = pipeline.settings.updated(
        path=path,
        service_name=service_name,
        enabled=enabled,
        flush_interval=flush_interval,
        max_pending=max_pending,
        stop_timeout=stop_timeout,
    )
    pipeline.reconfigure(settings)
    if database is not None:
        pipeline.use_database(database)
    _tracer.set_shut(False)
    if settings.enabled:
        pipeline.arm_stop_signals()


def flush(timeout: float | None = None) -> bool:
    """Store everything captured so far; True when it is durable and readable. Never raises."""
    from kronicler.otel import tracer as _tracer

    return _tracer.PIPELINE.flush(timeout)


def shutdown(timeout: float | None = 5.0) -> bool:
    """Flush, stop the background thread and close the database. Later calls run uncaptured."""
    from kronicler.otel import tracer as _tracer

    _tracer.set_shut(True)
    return _tracer.PIPELINE.shutdown(timeout)


def status() -> PipelineStatus:
    """Counters of the default pipeline: rows stored, dropped, pending; last error."""
    from kronicler.otel import tracer as _tracer

    return _tracer.PIPELINE.status()


def open(path: str | os.PathLike[str] = DEFAULT_PATH, **options: Any) -> Database:  # noqa: A001
    """Open a Kronicler database for reading (and writing): ``kronicler.db.Database.open``."""
    from kronicler.db import Database

    return Database.open(os.fspath(path), **options)
