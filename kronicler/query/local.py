"""``Local``: the query layer over a local database, as a :class:`QueryBackend`.

It binds an open database to the :mod:`kronicler.query` functions, so the CLI and the dashboard
read a local directory through the same interface as a server (:class:`kronicler.server.Client`);
they call ``backend.stats(...)`` and never learn which one they got.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kronicler import query
from kronicler.query.anomalies import (
    DEFAULT_MIN_COUNT,
    DEFAULT_REGRESSION_THRESHOLD,
    DEFAULT_SPIKE_THRESHOLD,
    DEFAULT_TAIL_THRESHOLD,
)
from kronicler.query.backend import QueryBackend
from kronicler.query.defaults import ANOMALY_EXEMPLARS, ANOMALY_LIMIT, PER_DECADE, SLOWEST_K

if TYPE_CHECKING:
    from kronicler.db import Database


class Local:
    """The query layer over a local database, as a :class:`QueryBackend`.

    ``source`` is a directory, opened read-only (and closed by :meth:`close`), or an open
    ``Database``, which stays its owner's to close. Asking never writes: a directory without a
    database raises ``DatabaseError`` ("not a Kronicler database: DIR") rather than becoming one.
    """

    def __init__(self, source: str | os.PathLike[str] | Database) -> None:
        from kronicler.db import Database

        if isinstance(source, Database):
            self.db, self._owns_db = source, False
        else:
            self.db, self._owns_db = Database.open(source, readonly=True), True

    def list_functions(self, flt: query.Filter | None = None) -> list[query.FunctionInfo]:
        return query.list_functions(self.db, flt)

    def time_range(self) -> tuple[int, int] | None:
        return self.db.time_range()

    def stats(
        self,
        flt: query.Filter | None = None,
        *,
        group_by: str = "function",
        quantiles: Sequence[float] = query.DEFAULT_QUANTILES,
        exact: bool = False,
        order_by: str = "key",
        limit: int | None = None,
    ) -> query.StatsTable:
        return query.stats(self.db, flt, group_by=group_by, quantiles=quantiles, exact=exact,
                           order_by=order_by, limit=limit)  # fmt: skip

    def series(
        self,
        flt: query.Filter | None = None,
        *,
        step: int | None = None,
        group_by: str = "function",
        quantiles: Sequence[float] = query.DEFAULT_QUANTILES,
        exact: bool = False,
    ) -> query.SeriesTable:
        return query.series(self.db, flt, step=step, group_by=group_by, quantiles=quantiles,
                            exact=exact)  # fmt: skip

    def histogram(
        self,
        function: str,
        flt: query.Filter | None = None,
        *,
        per_decade: int = PER_DECADE,
        exact: bool = False,
    ) -> query.Histogram:
        return query.histogram(self.db, function, flt, per_decade=per_decade, exact=exact)

    def slowest(self, flt: query.Filter | None = None, *, k: int = SLOWEST_K) -> list[query.Call]:
        return query.slowest(self.db, flt, k=k)

    def anomalies(
        self,
        flt: query.Filter | None = None,
        *,
        min_count: int = DEFAULT_MIN_COUNT,
        tail_threshold: float = DEFAULT_TAIL_THRESHOLD,
        spike_threshold: float = DEFAULT_SPIKE_THRESHOLD,
        regression_threshold: float = DEFAULT_REGRESSION_THRESHOLD,
        recent: int | None = None,
        limit: int = ANOMALY_LIMIT,
        exemplars: int = ANOMALY_EXEMPLARS,
    ) -> list[query.Anomaly]:
        return query.anomalies(
            self.db, flt, min_count=min_count, tail_threshold=tail_threshold,
            spike_threshold=spike_threshold, regression_threshold=regression_threshold,
            recent=recent, limit=limit, exemplars=exemplars,
        )  # fmt: skip

    def explain(
        self,
        function: str,
        *,
        since: int | None = None,
        until: int | None = None,
        slow: int | str | None = None,
    ) -> query.Explanation:
        return query.explain(self.db, function, since=since, until=until, slow=slow)

    def missing_peers(self) -> tuple[str, ...]:
        return ()  # one database: every answer is whole

    def close(self) -> None:
        if self._owns_db:
            self.db.close()


_: type[QueryBackend] = Local  # mypy holds Local to the QueryBackend contract
