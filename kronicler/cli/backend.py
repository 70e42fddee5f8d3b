"""Where CLI commands get answers: a local database or a server, behind one shape.

:class:`Local` binds an open database to the :mod:`kronicler.query` functions; the gRPC
:class:`kronicler.server.Client` has the same methods. Commands call ``backend.stats(...)``
and never learn which one they got.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kronicler import query


class Local:
    """The query layer over the database at ``path``, opened read-only (closed by :meth:`close`).

    Asking never writes: a directory without a database raises ``DatabaseError``
    ("not a Kronicler database: DIR") rather than becoming one.
    """

    def __init__(self, path: Path) -> None:
        from kronicler.db import Database

        self.db = Database.open(path, readonly=True)

    def list_functions(self, flt: query.Filter | None = None) -> list[query.FunctionInfo]:
        return query.list_functions(self.db, flt)

    def stats(self, flt: query.Filter | None = None, **kw: Any) -> query.StatsTable:
        return query.stats(self.db, flt, **kw)

    def series(self, flt: query.Filter | None = None, **kw: Any) -> query.SeriesTable:
        return query.series(self.db, flt, **kw)

    def histogram(
        self, function: str, flt: query.Filter | None = None, **kw: Any
    ) -> query.Histogram:
        return query.histogram(self.db, function, flt, **kw)

    def slowest(self, flt: query.Filter | None = None, **kw: Any) -> list[query.SlowCall]:
        return query.slowest(self.db, flt, **kw)

    def anomalies(self, flt: query.Filter | None = None, **kw: Any) -> list[query.Anomaly]:
        return query.anomalies(self.db, flt, **kw)

    def close(self) -> None:
        self.db.close()
