"""The JSON API routes (``/api/v1``): thin handlers over :mod:`kronicler.web.views`.

Each handler parses its parameters (FastAPI checks types, :mod:`kronicler.web.params` checks
meaning), calls one view and sends the view's dict as it is. The query backend (a database bound
by :class:`~kronicler.query.local.Local`, a gRPC client, or a cluster frontend), the clock and
the token live on ``app.state`` (set by :func:`kronicler.web.app.create_app`), so the routes are
plain module-level functions and the OpenAPI description can read their signatures. Sync
handlers run in the server's thread pool; every backend is thread-safe for readers.

Each request sees the backend through a :class:`~kronicler.web.peers.PeerTracker`, which gathers
the peers missing from any of the request's answers; the app sends them as a header
(:data:`~kronicler.web.peers.MISSING_PEERS_HEADER`) so the page can say its figures are partial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from kronicler import __version__
from kronicler import query as q
from kronicler.query.defaults import ANOMALY_EXEMPLARS, ANOMALY_LIMIT, PER_DECADE
from kronicler.server.auth import bearer_matches
from kronicler.web import schemas as s
from kronicler.web import views
from kronicler.web.params import (
    DEFAULT_THRESHOLDS,
    MAX_SLOWEST,
    MIN_COUNT,
    SLOWEST_SHOWN,
    Window,
    check_int,
    check_threshold,
    parse_attributes,
    parse_compare_by,
    parse_slow,
    resolve_window,
)
from kronicler.web.peers import Catalogue, PeerTracker, request_missing

if TYPE_CHECKING:
    from kronicler.query.backend import QueryBackend

PREFIX = "/api/v1"
_BAD: dict[int | str, dict[str, Any]] = {
    400: {"model": s.ErrorBody, "description": "a bad parameter, named in the message"}
}
_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": s.ErrorBody, "description": "missing or wrong bearer token"}
}
_MISSING: dict[int | str, dict[str, Any]] = {
    404: {"model": s.ErrorBody, "description": "unknown function"}
}
_QUERY: dict[int | str, dict[str, Any]] = {**_BAD, **_AUTH, **_MISSING}
_bearer = HTTPBearer(auto_error=False, description="the server's token, when one is set")


@dataclass(frozen=True, slots=True)
class Context:
    """What every handler reads from the app: where queries go, the clock, the token, and the
    catalogue (services, number of functions) that :func:`meta` shows."""

    backend: QueryBackend
    catalogue: Catalogue
    clock: Callable[[], int]
    token: str | None
    timeout: float | None = None  # seconds each request may spend on its questions


def context(request: Request) -> Context:
    """The app's context with its backend seen through this request's :class:`PeerTracker`
    (FastAPI calls this once per request and hands the same object to every dependency)."""
    ctx: Context = request.app.state.kronicler
    tracker = PeerTracker(ctx.backend, request_missing(request.scope), ctx.timeout)
    return Context(tracker, ctx.catalogue, ctx.clock, ctx.token, ctx.timeout)


def require_token(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries ``Authorization: Bearer <token>`` (when a token is set).

    ``creds`` only declares the scheme in the OpenAPI description; the check is the gRPC
    server's own (:func:`kronicler.server.auth.bearer_matches`), so both accept the same headers.
    """
    del creds
    token = context(request).token
    if not token:
        return
    if not bearer_matches(request.headers.get("authorization"), token):
        raise HTTPException(401, "missing or wrong bearer token (send 'Authorization: Bearer "
                                 "<token>' or open the page with ?token=...)",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Selected:
    """The common part of every query: its time window and the filter for it."""

    window: Window
    flt: q.Filter


def selected(
    ctx: Annotated[Context, Depends(context)],
    range_: Annotated[str | None, Query(alias="range", description="preset: 15m, 1h, 24h, 7d "
                                        "or all (default 1h unless since/until are given)")] = None,
    since: Annotated[int | None, Query(description="Unix epoch ns, inclusive")] = None,
    until: Annotated[int | None, Query(description="Unix epoch ns, exclusive")] = None,
    service: Annotated[str | None, Query(description="only calls of this service")] = None,
    attr: Annotated[list[str] | None, Query(description="KEY=VALUE attribute equality "
                                            "(repeatable); resource:KEY=VALUE for a resource "
                                            "attribute")] = None,
) -> Selected:  # fmt: skip
    window = resolve_window(range_, since, until, now=ctx.clock(),
                            data_range=ctx.backend.time_range())  # fmt: skip
    flt = views.make_filter(window, service=service, attributes=parse_attributes(attr))
    return Selected(window, flt)


Ctx = Annotated[Context, Depends(context)]
Common = Annotated[Selected, Depends(selected)]
Functions = Annotated[list[str] | None, Query(alias="function", description="function name or "
                      "glob (repeatable; default: all)")]  # fmt: skip
OneFunction = Annotated[str, Query(alias="function", description="one function name")]
K = Annotated[int, Query(description=f"how many calls, 1..{MAX_SLOWEST}")]

router = APIRouter(prefix=PREFIX)
data = APIRouter(prefix=PREFIX, dependencies=[Depends(require_token)], responses=_AUTH)


@router.get("/health", response_model=s.Health, tags=["service"])
def health() -> Any:
    """Liveness probe; open even when a token is set."""
    return JSONResponse({"status": "ok"})


@data.get("/meta", response_model=s.Meta, tags=["service"])
def meta(ctx: Ctx) -> Any:
    """Version, the stored time range, services, number of functions, presets."""
    services, n_functions = ctx.catalogue.get(ctx.backend)
    return JSONResponse(views.meta(ctx.backend, services=services, functions=n_functions,
                                   now=ctx.clock(), version=__version__,
                                   token_required=bool(ctx.token)))  # fmt: skip


@data.get("/functions", response_model=s.FunctionsTable, responses=_QUERY, tags=["queries"])
def functions(ctx: Ctx, c: Common, function: Functions = None) -> Any:
    """The functions table: per function calls, calls/s over the window, error rate, mean,
    p50, p90, p99, max, standard error, and the anomaly evidence when flagged."""
    return JSONResponse(views.functions_table(ctx.backend, c.window, views.narrow(c.flt, function)))


@data.get("/detail", response_model=s.Detail, responses=_QUERY, tags=["queries"])
def detail(
    ctx: Ctx,
    c: Common,
    function: OneFunction,
    k: K = SLOWEST_SHOWN,
    series: Annotated[bool, Query(description="include the time series (the part that reads "
                                  "every call in the window; the page fetches it apart from "
                                  "/series)")] = True,
) -> Any:  # fmt: skip
    """Everything the function view shows, in one answer: stats, anomaly evidence,
    p50/p90/p99 and counts over time, log-scale histogram, slowest calls."""
    check_int("k", k, 1, MAX_SLOWEST)
    return JSONResponse(
        views.detail(ctx.backend, function, c.window, c.flt, k=k, with_series=series)
    )


@data.get("/series", response_model=s.SeriesOut, responses=_QUERY, tags=["queries"])
def series(
    ctx: Ctx,
    c: Common,
    function: Functions = None,
    step: Annotated[int | None, Query(description="bucket width in ns (default: a round width "
                                      "giving <= 120 buckets)")] = None,
) -> Any:  # fmt: skip
    """p50/p90/p99, mean, max, calls and errors per time bucket, one array per figure."""
    if step is not None:
        check_int("step", step, 1, 2**62)
    flt = views.narrow(c.flt, function)
    return JSONResponse(views.series_payload(ctx.backend, c.window, flt, step=step))


@data.get("/histogram", response_model=s.HistogramOut, responses=_QUERY, tags=["queries"])
def histogram(
    ctx: Ctx,
    c: Common,
    function: OneFunction,
    per_decade: Annotated[int, Query(description="buckets per power of ten, 1..100")] = PER_DECADE,
) -> Any:
    """Log-scale latency histogram of one function: only non-empty buckets, increasing."""
    return JSONResponse(
        views.histogram_payload(ctx.backend, function, c.flt, per_decade=per_decade)
    )


@data.get("/slowest", response_model=list[s.Call], responses=_QUERY, tags=["queries"])
def slowest(ctx: Ctx, c: Common, function: Functions = None, k: K = SLOWEST_SHOWN) -> Any:
    """The slowest calls, slowest first, with trace and span ids and attributes."""
    check_int("k", k, 1, MAX_SLOWEST)
    return JSONResponse(views.slowest_payload(ctx.backend, views.narrow(c.flt, function), k=k))


@data.get("/compare", response_model=s.CompareOut, responses=_QUERY, tags=["queries"])
def compare(
    ctx: Ctx,
    c: Common,
    function: OneFunction,
    by: Annotated[str, Query(description="group key: resource:KEY (resource:service.version "
                             "compares releases), attribute:KEY or service")],
) -> Any:  # fmt: skip
    """One function's figures per value of ``by``, side by side: calls, errors, mean, p50,
    p90, p99, max for each release, host, route... (the most called values; ``more`` says
    when some were left out)."""
    return JSONResponse(
        views.compare_payload(ctx.backend, function, c.window, c.flt, by=parse_compare_by(by))
    )


@data.get("/anomalies", response_model=list[s.AnomalyOut], responses=_QUERY, tags=["queries"])
def anomalies(
    ctx: Ctx,
    c: Common,
    function: Functions = None,
    min_count: Annotated[int, Query(description="judge only functions with this many calls")]
    = MIN_COUNT,
    tail_threshold: Annotated[float, Query(description="p99/p50 ratio scoring 1")]
    = DEFAULT_THRESHOLDS["tail"],
    spike_threshold: Annotated[float, Query(description="max/p50 ratio scoring 1")]
    = DEFAULT_THRESHOLDS["spike"],
    regression_threshold: Annotated[float, Query(description="recent/baseline p99 ratio "
                                                 "scoring 1")] = DEFAULT_THRESHOLDS["regression"],
    recent: Annotated[int | None, Query(description="recent window in ns (default: the last "
                                        "tenth of the range)")] = None,
    limit: Annotated[int, Query(description="most findings, 1..10000")] = ANOMALY_LIMIT,
    exemplars: Annotated[int, Query(description="slowest calls per finding, 0..100")]
    = ANOMALY_EXEMPLARS,
) -> Any:  # fmt: skip
    """Functions whose calls are sometimes much slower than usual, ranked by score."""
    thresholds = {
        "tail": check_threshold("tail_threshold", tail_threshold),
        "spike": check_threshold("spike_threshold", spike_threshold),
        "regression": check_threshold("regression_threshold", regression_threshold),
    }
    check_int("limit", limit, 1, 10_000)
    check_int("exemplars", exemplars, 0, 100)
    return JSONResponse(views.anomalies_payload(
        ctx.backend, views.narrow(c.flt, function), thresholds=thresholds, min_count=min_count,
        recent=recent, limit=limit, exemplars=exemplars,
    ))  # fmt: skip


@data.get("/explain", response_model=s.ExplainOut, responses=_QUERY, tags=["queries"])
def explain(
    ctx: Ctx,
    function: OneFunction,
    range_: Annotated[str | None, Query(alias="range", description="preset: 15m, 1h, 24h, 7d "
                                        "or all (default 1h unless since/until are given)")] = None,
    since: Annotated[int | None, Query(description="Unix epoch ns, inclusive")] = None,
    until: Annotated[int | None, Query(description="Unix epoch ns, exclusive")] = None,
    slow: Annotated[str | None, Query(description="slow calls: above this quantile of the "
                                      "function in the window (p99, p95, p999; default p99) or "
                                      "this many ns")] = None,
) -> Any:  # fmt: skip
    """Why some calls of one function are slow: attribute values over-represented among its
    slow calls, child functions' extra time, the slow share over time and releases."""
    window = resolve_window(range_, since, until, now=ctx.clock(),
                            data_range=ctx.backend.time_range())  # fmt: skip
    return JSONResponse(views.explain_payload(ctx.backend, function, window,
                                              slow=parse_slow(slow)))  # fmt: skip
