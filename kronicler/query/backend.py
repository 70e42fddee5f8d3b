"""``QueryBackend``: what the CLI and the dashboard read from.

Two implementations answer the same questions: :class:`kronicler.query.local.Local` binds an open
database to the :mod:`kronicler.query` functions, and :class:`kronicler.server.Client` asks a
server over gRPC. Callers hold a ``QueryBackend`` and never learn which one they got, so a command
or a page that works on a local directory works against a server by swapping the object.

The contract (``tests/contracts/test_query_backend.py`` runs it against every implementation over
one dataset): the same arguments give equal results (the query layer's frozen dataclasses) and
equal errors: ``ValueError`` (or its subclass ``LimitExceededError``) for a bad argument, with the
query layer's message, and :class:`~kronicler.errors.NotFoundError` for an unknown function. A
remote backend raises those same types rather than transport errors; only failures of the
transport itself (unreachable server, wrong token) stay transport errors.

Defaults are written ``...`` here: each implementation states the query layer's defaults (the
client's are the values the server applies), and the contract suite checks both answer alike
when an argument is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kronicler.db.stats import Call
    from kronicler.query.filters import Filter
    from kronicler.query.results import (
        Anomaly,
        Explanation,
        FunctionInfo,
        Histogram,
        SeriesTable,
        StatsTable,
    )

__all__ = ["QueryBackend"]


class QueryBackend(Protocol):
    """Aggregate queries over stored calls; see :mod:`kronicler.query` for each argument."""

    def list_functions(self, flt: Filter | None = None) -> list[FunctionInfo]:
        """Every function matching ``flt`` with its call and error counts, by name."""
        ...

    def time_range(self) -> tuple[int, int] | None:
        """(earliest, latest) start over every stored call, or None when nothing is stored."""
        ...

    def stats(
        self,
        flt: Filter | None = None,
        *,
        group_by: str = ...,
        quantiles: Sequence[float] = ...,
        exact: bool = ...,
        order_by: str = ...,
        limit: int | None = ...,
    ) -> StatsTable: ...

    def series(
        self,
        flt: Filter | None = None,
        *,
        step: int | None = ...,
        group_by: str = ...,
        quantiles: Sequence[float] = ...,
        exact: bool = ...,
    ) -> SeriesTable: ...

    def histogram(
        self,
        function: str,
        flt: Filter | None = None,
        *,
        per_decade: int = ...,
        exact: bool = ...,
    ) -> Histogram: ...

    def slowest(self, flt: Filter | None = None, *, k: int = ...) -> list[Call]: ...

    def anomalies(
        self,
        flt: Filter | None = None,
        *,
        min_count: int = ...,
        tail_threshold: float = ...,
        spike_threshold: float = ...,
        regression_threshold: float = ...,
        recent: int | None = ...,
        limit: int = ...,
        exemplars: int = ...,
    ) -> list[Anomaly]: ...

    def explain(
        self,
        function: str,
        *,
        since: int | None = ...,
        until: int | None = ...,
        slow: int | str | None = ...,
    ) -> Explanation:
        """Why some calls of ``function`` are slow (:func:`kronicler.query.explain`)."""

    def missing_peers(self) -> tuple[str, ...]:
        """The peers (``host:port: reason``) whose data the calling thread's last answer lacks:
        always empty but for a cluster frontend, which answers with the peers that did answer
        and names the others here (and to gRPC clients in trailing metadata)."""
        ...

    def close(self) -> None:
        """Release what the backend holds (a database it opened, a channel). Idempotent."""
        ...
