"""What the dashboard needs on top of a :class:`~kronicler.query.backend.QueryBackend`: the peers
missing from a request's answers, and the catalogue its ``/meta`` shows.

The dashboard runs on any backend: a database (through :class:`~kronicler.query.local.Local`), a
remote node (the gRPC :class:`~kronicler.server.Client`) or a cluster frontend. A frontend answers
with the peers that answered and names the others in ``missing_peers()``, which covers only the
calling thread's last question; one page request asks several (the functions table asks for
stats, anomalies and the time range). :class:`PeerTracker` wraps the backend for one request and
gathers every question's missing peers, and the app sends them with the answer (:func:`notice`)
as the ``X-Kronicler-Missing-Peers`` header (a JSON list of ``host:port: reason``), so every route,
list answers included, can say it is partial without changing its JSON body.

The catalogue (service names, number of functions) comes straight from a database when the app
has one. A backend has no question that lists services, so :class:`Catalogue` asks for stats
grouped by service, which scans the stored calls on every node: that answer is kept for
:data:`CATALOGUE_TTL` seconds (and not kept when peers were missing), trading a service list up
to that old for a bounded cost per page refresh; past the scan limit the list is left empty
(the page then offers every service together) instead of failing the page.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.types import Scope as ASGIScope

from kronicler import budget
from kronicler.errors import LimitExceededError

if TYPE_CHECKING:
    from kronicler.db import Database
    from kronicler.db.stats import Call
    from kronicler.query.backend import QueryBackend
    from kronicler.query.filters import Filter
    from kronicler.query.results import (
        Anomaly,
        Explanation,
        FunctionInfo,
        Histogram,
        SeriesTable,
        StatsTable,
    )

#: Response header naming the peers whose data the answer lacks (JSON list, ASCII).
MISSING_PEERS_HEADER = "x-kronicler-missing-peers"
#: Seconds a backend's catalogue (services, function count) is reused.
CATALOGUE_TTL = 30.0
_SCOPE_KEY = "kronicler.missing_peers"
T = TypeVar("T")


def request_missing(scope: ASGIScope) -> list[str]:
    """The list (kept in the request's ASGI scope) gathering the request's missing peers."""
    missing: list[str] = scope.setdefault(_SCOPE_KEY, [])
    return missing


class PeerTracker:
    """A :class:`QueryBackend` for one request: asks ``backend`` and adds each answer's missing
    peers to ``missing`` (one entry per peer, its first reason).

    ``seconds`` is the request's time budget (None: none), shared by all its questions: each
    runs under :func:`kronicler.budget.deadline` with what is left, so a local query's loops stop
    when it is spent and a remote one is sent with that much time (a page request answers 504,
    and its worker thread is free again, at most one scan step after the budget ran out).
    """

    def __init__(
        self, backend: QueryBackend, missing: list[str], seconds: float | None = None
    ) -> None:
        self._backend = backend
        self._missing = missing
        self._ends = None if seconds is None else time.monotonic() + seconds

    def _ask(self, question: Callable[[], T]) -> T:
        left = None if self._ends is None else self._ends - time.monotonic()
        try:
            with budget.deadline(left):
                return question()
        finally:  # a failed question names its missing peers too
            known = {_peer(m) for m in self._missing}
            for m in self._backend.missing_peers():
                if _peer(m) not in known:
                    known.add(_peer(m))
                    self._missing.append(m)

    def list_functions(self, flt: Filter | None = None) -> list[FunctionInfo]:
        return self._ask(lambda: self._backend.list_functions(flt))

    def time_range(self) -> tuple[int, int] | None:
        return self._ask(self._backend.time_range)

    def stats(self, flt: Filter | None = None, **options: Any) -> StatsTable:
        return self._ask(lambda: self._backend.stats(flt, **options))

    def series(self, flt: Filter | None = None, **options: Any) -> SeriesTable:
        return self._ask(lambda: self._backend.series(flt, **options))

    def histogram(self, function: str, flt: Filter | None = None, **options: Any) -> Histogram:
        return self._ask(lambda: self._backend.histogram(function, flt, **options))

    def slowest(self, flt: Filter | None = None, **options: Any) -> list[Call]:
        return self._ask(lambda: self._backend.slowest(flt, **options))

    def anomalies(self, flt: Filter | None = None, **options: Any) -> list[Anomaly]:
        return self._ask(lambda: self._backend.anomalies(flt, **options))

    def explain(self, function: str, **options: Any) -> Explanation:
        return self._ask(lambda: self._backend.explain(function, **options))

    def missing_peers(self) -> tuple[str, ...]:
        """Every peer missing from any answer of this request so far."""
        return tuple(self._missing)

    def close(self) -> None:
        """Nothing: the app's owner closes the backend itself."""


def _peer(missing: str) -> str:
    """``"host:port: reason"`` -> ``"host:port"``."""
    return missing.partition(": ")[0]


class Catalogue:
    """The service names and number of functions ``/meta`` shows (see the module docstring)."""

    def __init__(self, db: Database | None, *, ttl: float = CATALOGUE_TTL) -> None:
        self._db = db
        self._ttl = ttl
        self._lock = threading.Lock()  # one refresh at a time; readers take the kept answer
        self._kept: tuple[float, list[str], int] | None = None

    def get(self, backend: QueryBackend) -> tuple[list[str], int]:
        if self._db is not None:
            return self._db.services(), len(self._db.functions())
        kept = self._kept
        if kept is not None and time.monotonic() - kept[0] < self._ttl:
            return kept[1], kept[2]
        with self._lock:
            count = len(backend.list_functions())
            try:
                table = backend.stats(group_by="service", quantiles=(0.5,))
                services = [g.key for g in table.rows]
            except LimitExceededError:
                services = []
            if not backend.missing_peers():
                self._kept = (time.monotonic(), services, count)
        return services, count


def notice(missing: list[str]) -> list[tuple[bytes, bytes]]:
    """The response header naming ``missing`` (none when every peer answered)."""
    if not missing:
        return []
    value = json.dumps(missing)  # ASCII: non-ASCII reasons come \u-escaped
    return [(MISSING_PEERS_HEADER.encode(), value.encode())]


_: type[QueryBackend] = PeerTracker  # mypy holds the tracker to the QueryBackend contract
