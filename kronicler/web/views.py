"""What each dashboard view shows, as JSON-ready dicts built from the query layer alone.

Presentation only: every figure comes from a :mod:`kronicler.query` function, so the page, the
gRPC service and the CLI agree. This module adds what a screen needs on top: rates and error
ratios over the window, the anomaly evidence joined to the function's row, chart series in a
columnar form (one array per line, the shape chart libraries take without copying), and one
bundled answer for the detail view. The page asks for that answer without its series and then
for the series alone, so figures show before the one part that reads every call in the window.

Chart buckets start at a multiple of the step (see :func:`~kronicler.web.params.aligned_start`),
so a refreshed chart keeps its buckets; the first bucket may reach a little before the window.

Every query goes through a :class:`~kronicler.query.backend.QueryBackend` (the same interface the
CLI reads from), never the database: the app binds a database to one with
:class:`~kronicler.query.local.Local`, or is given a gRPC client or a cluster frontend. Only
:func:`meta` takes the catalogue facts (services, function count) from its caller, as no backend
question answers them cheaply (:class:`~kronicler.web.peers.Catalogue`).

Trade-off: the functions table asks for stats and anomalies separately (two passes over the
summaries). Joining them in one pass would mean reaching into the query layer's internals; on
merged summaries both passes stay cheap (see ``bench/bench_web.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kronicler import query as q
from kronicler.query.defaults import ANOMALY_EXEMPLARS, ANOMALY_LIMIT, PER_DECADE
from kronicler.web.params import (
    COMPARE_SHOWN,
    DEFAULT_THRESHOLDS,
    MIN_COUNT,
    PRESETS,
    SLOWEST_SHOWN,
    Window,
    aligned_start,
    chart_step,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kronicler.query.backend import QueryBackend

TABLE_QUANTILES = (0.5, 0.9, 0.99)
#: Most functions the anomaly finder ranks for the table (the table flags each of them).
MAX_FLAGGED = 10_000


def make_filter(
    window: Window,
    functions: Sequence[str] = (),
    *,
    service: str | None = None,
    attributes: dict[str, str] | None = None,
) -> q.Filter:
    return q.Filter.make(
        list(functions), service=service, since=window.since, until=window.until,
        attributes=attributes,
    )  # fmt: skip


def narrow(flt: q.Filter, functions: Sequence[str] | None) -> q.Filter:
    """``flt`` limited to ``functions`` (names or globs; none = all), checked."""
    out = flt.with_functions(functions or ())
    out.check()
    return out


def evidence(a: q.Anomaly, thresholds: dict[str, float] = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """The anomaly finding without its function name, plus which signals crossed."""
    d = a.to_dict()
    d.pop("function")
    ratios = {"tail": a.tail_ratio, "spike": a.spike_ratio, "regression": a.regression_ratio}
    d["signals"] = [s for s, r in ratios.items() if r is not None and r >= thresholds[s]]
    d["thresholds"] = dict(thresholds)
    return d


def row(g: q.Stats, window: Window, anomaly: dict[str, Any] | None) -> dict[str, Any]:
    """One functions-table row: the stats of ``g`` with rates over ``window``."""
    return {"function": g.key, **figures(g, window), "anomaly": anomaly}


def figures(g: q.Stats, window: Window) -> dict[str, Any]:
    """The figures of one group: counts, rates over ``window``, moments and quantiles."""
    seconds = window.seconds
    return {
        "count": g.count,
        "calls_per_s": None if not seconds else g.count / seconds,
        "errors": g.errors,
        "error_rate": g.errors / g.count if g.count else None,
        "mean_ns": g.mean,
        "min_ns": g.min,
        "max_ns": g.max,
        "stddev_ns": g.stddev,
        "stderr_ns": g.stderr,
        "p50_ns": g.quantile(0.5),
        "p90_ns": g.quantile(0.9),
        "p99_ns": g.quantile(0.99),
    }


def functions_table(backend: QueryBackend, window: Window, flt: q.Filter) -> dict[str, Any]:
    """Every function in the window with its figures and, when flagged, its anomaly evidence."""
    table = backend.stats(flt, quantiles=TABLE_QUANTILES)
    found = {
        a.function: evidence(a)
        for a in find_anomalies(backend, flt, limit=MAX_FLAGGED, exemplars=0)
    }
    return {
        "window": window.to_dict(),
        "data_range": _data_range(backend),
        "rows": [row(g, window, found.get(g.key)) for g in table.rows],
    }


def series_payload(
    backend: QueryBackend, window: Window, flt: q.Filter, *, step: int | None = None
) -> dict[str, Any]:
    """p50/p90/p99, mean, max, counts and errors per time bucket, columnar, per function."""
    if window.start is None or window.end is None:
        return {"step_ns": step, "since_unix_nano": None, "until_unix_nano": None,
                "start_unix_nano": [], "series": []}  # fmt: skip
    step = step or chart_step(window.start, window.end)
    since = aligned_start(window.start, step)
    table = backend.series(flt.with_range(since, window.end), step=step, quantiles=TABLE_QUANTILES)
    starts = [since + i * step for i in range(-(-(window.end - since) // step))]
    return {
        "step_ns": table.step,
        "since_unix_nano": table.since,
        "until_unix_nano": table.until,
        "start_unix_nano": starts,
        "series": [_columns(s) for s in table.series],
    }


def _columns(s: q.Series) -> dict[str, Any]:
    pts = s.points
    out: dict[str, Any] = {
        "function": s.key,
        "count": [p.count for p in pts],
        "errors": [p.errors for p in pts],
        "mean_ns": [p.mean for p in pts],
        "max_ns": [p.max for p in pts],
    }
    for i, qv in enumerate(TABLE_QUANTILES):
        out[f"{q.quantile_label(qv)}_ns"] = [p.quantiles[i][1] for p in pts]
    return out


def histogram_payload(
    backend: QueryBackend, function: str, flt: q.Filter, *, per_decade: int = PER_DECADE
) -> dict[str, Any]:
    return backend.histogram(function, flt, per_decade=per_decade).to_dict()


def slowest_payload(backend: QueryBackend, flt: q.Filter, *, k: int) -> list[dict[str, Any]]:
    return [c.to_dict() for c in backend.slowest(flt, k=k)]


def anomalies_payload(
    backend: QueryBackend,
    flt: q.Filter,
    *,
    thresholds: dict[str, float],
    min_count: int,
    recent: int | None,
    limit: int,
    exemplars: int,
) -> list[dict[str, Any]]:
    found = find_anomalies(backend, flt, thresholds=thresholds, min_count=min_count, recent=recent,
                           limit=limit, exemplars=exemplars)  # fmt: skip
    return [{"function": a.function, **evidence(a, thresholds)} for a in found]


def detail(
    backend: QueryBackend,
    function: str,
    window: Window,
    flt: q.Filter,
    *,
    k: int = SLOWEST_SHOWN,
    with_series: bool = True,
) -> dict[str, Any]:
    """Everything the function view draws, in one answer (``flt`` must not name functions).

    ``with_series=False`` leaves the time series out (``"series": null``): it is the one part
    that reads every call of the function in the window, so the page asks for it separately
    (``series_payload``) and shows the rest first.
    """
    one = flt.with_functions((function,))
    stats = backend.stats(one, quantiles=TABLE_QUANTILES).rows
    found = find_anomalies(backend, one, limit=1, exemplars=0)
    anomaly = evidence(found[0]) if found else None
    out = {
        "function": function,
        "window": window.to_dict(),
        "stats": row(stats[0], window, anomaly) if stats else None,
        "anomaly": anomaly,
        "thresholds": dict(DEFAULT_THRESHOLDS),
        "min_count": MIN_COUNT,
        "series": None,
        "histogram": histogram_payload(backend, function, flt),
        "slowest": slowest_payload(backend, one, k=k),
    }
    if with_series:
        series = series_payload(backend, window, one)
        out["series"] = {
            **{key: v for key, v in series.items() if key != "series"},
            **(series["series"][0] if series["series"] else {"function": function}),
        }
    return out


def compare_payload(
    backend: QueryBackend,
    function: str,
    window: Window,
    flt: q.Filter,
    *,
    by: str,
    limit: int = COMPARE_SHOWN,
) -> dict[str, Any]:
    """The calls of ``function`` grouped by ``by`` (``resource:service.version``, say): the
    figures of each value side by side, so two releases or two hosts compare at a glance.

    One grouped stats query (summaries: quantiles within 1%). At most ``limit`` values are
    listed, the most called ones, in key order; ``more`` says whether others were left out.
    Calls lacking the key are in no group: ``grouped`` is what the listed values hold, so the
    page can say how many calls of the function's total they cover.
    """
    one = flt.with_functions((function,))
    table = backend.stats(one, group_by=by, quantiles=TABLE_QUANTILES, order_by="count",
                          limit=limit + 1)  # fmt: skip
    shown = sorted(table.rows[:limit], key=lambda g: g.key)
    return {
        "function": function,
        "by": by,
        "window": window.to_dict(),
        "more": len(table.rows) > limit,
        "grouped": sum(g.count for g in shown),
        "rows": [{"value": g.key, **figures(g, window)} for g in shown],
    }


def explain_payload(
    backend: QueryBackend, function: str, window: Window, *, slow: int | str | None = None
) -> dict[str, Any]:
    """Why some calls of ``function`` in the window are slow (:func:`kronicler.query.explain`)."""
    found = backend.explain(function, since=window.since, until=window.until, slow=slow)
    return {"window": window.to_dict(), **found.to_dict()}


def meta(
    backend: QueryBackend,
    *,
    services: Sequence[str],
    functions: int,
    now: int,
    version: str,
    token_required: bool,
) -> dict[str, Any]:
    """What the page needs once: version, stored time range, services, function count."""
    return {
        "version": version,
        "now_unix_nano": now,
        "data_range": _data_range(backend),
        "services": [s for s in services if s],
        "functions": functions,
        "presets": list(PRESETS),
        "token_required": token_required,
    }


def _data_range(backend: QueryBackend) -> dict[str, int] | None:
    span = backend.time_range()
    if span is None:
        return None
    return {"first_start_unix_nano": span[0], "last_start_unix_nano": span[1]}


def find_anomalies(
    backend: QueryBackend,
    flt: q.Filter,
    *,
    thresholds: dict[str, float] = DEFAULT_THRESHOLDS,
    min_count: int = MIN_COUNT,
    recent: int | None = None,
    limit: int = ANOMALY_LIMIT,
    exemplars: int = ANOMALY_EXEMPLARS,
) -> list[q.Anomaly]:
    """:func:`kronicler.query.anomalies` with the thresholds as one dict."""
    return backend.anomalies(
        flt, min_count=min_count, tail_threshold=thresholds["tail"],
        spike_threshold=thresholds["spike"], regression_threshold=thresholds["regression"],
        recent=recent, limit=limit, exemplars=exemplars,
    )  # fmt: skip
