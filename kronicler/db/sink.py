"""``SpanSink``: what every producer of span rows writes to.

The capture pipeline, the SDK ``KroniclerSpanExporter``, the OTLP receivers and the ingest
workers all hand converted rows to the same four operations, and nothing else of the database:

- ``append_batch(batch, *, block=True, timeout=None) -> int``: take a validated
  :class:`~kronicler.db.schema.SpanBatch` whole or not at all; returns its row count. Blocking
  (the default) waits for room, at most ``timeout`` seconds, then raises
  :class:`~kronicler.errors.WriteTimeoutError` having stored nothing. ``block=False`` never waits:
  a full sink refuses the batch and returns 0, counting nothing (the caller still holds it).
  Once closed it raises :class:`~kronicler.errors.ClosedError`.
- ``flush(timeout=None) -> bool``: everything taken so far is durable and readable; False when
  ``timeout`` passed first or rows were lost since the previous flush.
- ``close()``: flush and release; idempotent.
- ``dropped``: rows taken and then lost (writes that kept failing); a refusal is not a loss.

:class:`kronicler.db.Database` implements it. Writing to the protocol instead of the class lets
producers be typed without importing the read side, and lets a test or a future sink (another
process's writer, a remote node) stand in; ``tests/contracts/test_span_sink.py`` holds every
implementation to the behaviour above. The protocol is runtime-checkable so the exporter can
accept "an open sink" by shape; the check sees only that the members exist, so the contract
suite, not ``isinstance``, is what guarantees their meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kronicler.db.schema import SpanBatch
    from kronicler.db.site_batch import SiteBatch

__all__ = ["CaptureSink", "SpanSink"]


@runtime_checkable
class SpanSink(Protocol):
    """A bounded, durable destination for span rows (see the module docstring)."""

    @property
    def dropped(self) -> int:
        """Rows taken and then lost; refused batches are not counted."""
        ...

    def append_batch(
        self, batch: SpanBatch, *, block: bool = True, timeout: float | None = None
    ) -> int:
        """Take ``batch`` whole: its row count, or 0 when refused without blocking."""
        ...

    def flush(self, timeout: float | None = None) -> bool:
        """Make everything taken so far durable and readable; False on timeout or loss."""
        ...

    def close(self) -> None:
        """Flush and release; later appends raise ``ClosedError``. Idempotent."""
        ...


@runtime_checkable
class CaptureSink(SpanSink, Protocol):
    """A sink whose writer takes the capture path's records itself (one hand-off per call).

    ``attach_source(source, interval=..., on_loss=...)``: the writer calls ``source()`` every
    ``interval`` seconds and on every flush and close, storing the site-coded batches it returns,
    and tells ``on_loss(rows)`` how many of them it lost after taking them;
    ``detach_source(source)`` stops that; ``takes_from(source)`` is True while it goes on (False
    once the sink closed).
    """

    def attach_source(
        self,
        source: Callable[[], Sequence[SiteBatch]],
        *,
        interval: float,
        on_loss: Callable[[int], None] | None = None,
    ) -> None:
        """Have the writer take batches from ``source()`` itself; report their losses."""
        ...

    def detach_source(self, source: Callable[[], Sequence[SiteBatch]]) -> None:
        """Stop taking from ``source``."""
        ...

    def takes_from(self, source: Callable[[], Sequence[SiteBatch]]) -> bool:
        """True while the writer takes from ``source``."""
        ...
