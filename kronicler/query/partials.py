"""Mergeable partial answers: what one node of a cluster sends its frontend, and the merge.

A frontend (:mod:`kronicler.server.frontend`) asks every node the same question and must answer
exactly as one node holding all the data would. That works because every answer is built from
pieces that combine without loss:

- statistics per group (stats) or per (group, time bucket) cell (series) travel as one mergeable
  :class:`~kronicler.db.summary.Summary` and an error count per non-empty cell; counts, sums and
  min/max add or combine exactly, and the log-bucket histograms merge with the same <= 1% quantile
  error, so the merged figures are the ones a single node computes from the same summaries;
- exact answers (``exact=True``) cannot be merged from summaries, so each node sends its selected
  rows' durations and statuses (cell id, duration, status) and the frontend runs the one-node
  exact computation over their union. That costs 13 bytes per row before compression, so a node
  refuses more than :data:`MAX_PARTIAL_ROWS` rows (``LimitExceededError``); summaries have no
  such cap;
- function lists add counts and take the earliest/latest start; histograms add bucket counts (a
  node bins by the same rule, so equal buckets line up); the k slowest calls of the union are
  among the nodes' own k slowest, so the frontend sorts the candidates and keeps k;
- anomalies are judged on the merged recent and baseline summaries (:func:`~kronicler.query.
  anomalies.judge`), and their exemplars are the merged slowest calls of each finding.
- explain ranks and cuts its findings, so nodes send counts under one threshold the frontend
  agreed (from the merged exact durations or summaries), which add up; the frontend ranks on
  their sum and asks for the examples of what it ranked (:class:`~kronicler.query.explain.
  ExplainPart`, :func:`~kronicler.query.explain.finish`; one node takes the same steps).

Questions whose range comes from the data (a series or anomalies without since/until) take one
more round: the frontend merges the nodes' time ranges first, then asks with explicit bounds, so
every node buckets and splits alike.

A plain function name one node never saw is not an error there (another node may hold it): each
node leaves it out and reports it, and the frontend raises ``NotFoundError`` only for a name no
node knows, with the single-node message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from kronicler.db.stats import Call, Stats
from kronicler.db.summary import Summary, summarize_groups
from kronicler.db.view import answer
from kronicler.errors import LimitExceededError, NotFoundError, shorten
from kronicler.query import summary_table
from kronicler.query.filters import Filter, is_glob, resolve_functions
from kronicler.query.grouping import (
    MAX_GROUPS,
    Grouped,
    compact,
    error_counts,
    exact_stats,
    group_rows,
    parse_group_by,
)
from kronicler.query.results import FunctionInfo, Histogram, HistogramBucket
from kronicler.query.series import cell_codes, check_buckets
from kronicler.query.summary_table import SummaryTable

if TYPE_CHECKING:
    from kronicler.db.view import ReadAPI, ReadView

#: The partial format this code speaks; a node refuses a request of any other version.
PARTIAL_VERSION = 1
#: ``PartialRequest.summary_encoding``: summaries as packed columns (:mod:`.summary_table`);
#: 0, what a frontend of an earlier release sends, asks for the summary block.
SUMMARY_PACKED = 1
#: Rows one node ships for an exact answer (13 bytes each before compression).
MAX_PARTIAL_ROWS = 2_000_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Cells:
    """Per group (stats) or per (group, time bucket) cell (series), what merges exactly.

    Fields:
        keys: the group keys, sorted; ``per_key``: cells per key (buckets; 1 for stats).
            A cell's id is ``key index * per_key + bucket``.
        table: the summary and error count of every non-empty cell, by id (summary road).
        rows: for exact answers instead, one entry per row: cell id (int64), duration (int64)
            and status (uint8).
    """

    keys: tuple[str, ...]
    per_key: int
    table: SummaryTable = field(default_factory=SummaryTable.empty)
    rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def exact(self) -> bool:
        return self.rows is not None


# ---- on a node -------------------------------------------------------------------------------


def known_filter(view: ReadView, flt: Filter) -> tuple[Filter | None, tuple[str, ...]]:
    """``flt`` without the plain names this node never saw, and those names.

    The filter is None when nothing is left to match (every pattern was such a name).
    """
    if not flt.functions:
        return flt, ()
    known = set(view.functions())
    unknown = tuple(p for p in flt.functions if not is_glob(p) and p not in known)
    if not unknown:
        return flt, ()
    kept = tuple(p for p in flt.functions if p not in unknown)
    if not kept:
        return None, unknown
    return Filter(kept, flt.service, flt.since, flt.until, flt.attributes), unknown


def on_node(
    db: ReadAPI, flt: Filter, ask: Callable[[ReadView, Filter], T], empty: T
) -> tuple[T, tuple[str, ...]]:
    """``ask`` on one snapshot with the names this node never saw left out (``empty`` when
    nothing is left), and those names."""

    def run(view: ReadView) -> tuple[T, tuple[str, ...]]:
        narrowed, unknown = known_filter(view, flt)
        return (empty if narrowed is None else ask(view, narrowed)), unknown

    return answer(db, run)


def stats_cells(view: ReadView, flt: Filter, group_by: str, exact: bool) -> Cells:
    """One node's part of a stats answer (one cell per group)."""
    kind, _ = parse_group_by(group_by)
    if kind == "function" and not exact and not flt.needs_scan:
        names = resolve_functions(view, flt.functions)
        sums = {} if names == [] else view.summaries(names, since=flt.since, until=flt.until)
        live = sorted(
            (n, fs) for n, fs in sums.items() if fs.summary is not None and fs.summary.count
        )
        _check_groups(len(live))
        return Cells(
            tuple(n for n, _ in live), 1,
            SummaryTable.of([(i, fs.summary, int(fs.errors)) for i, (_, fs) in enumerate(live)
                             if fs.summary is not None]),
        )  # fmt: skip
    return _cells(compact(group_rows(view, flt, group_by)), None, 1, exact)


def series_cells(view: ReadView, flt: Filter, step: int, group_by: str, exact: bool) -> Cells:
    """One node's part of a series answer over ``flt``'s explicit ``[since, until)``."""
    if flt.since is None or flt.until is None or flt.until <= flt.since:
        raise ValueError("a series partial needs since < until")
    n_buckets = check_buckets(flt.since, flt.until, step)
    grouped = compact(group_rows(view, flt, group_by, ("duration", "status", "start")))
    return _cells(grouped, cell_codes(grouped, flt.since, step, n_buckets), n_buckets, exact)


def _cells(grouped: Grouped, cells: np.ndarray | None, per_key: int, exact: bool) -> Cells:
    codes = grouped.codes if cells is None else cells
    keys = tuple(grouped.keys)
    duration, status = grouped.columns["duration"], grouped.columns["status"]
    if exact:
        if len(codes) > MAX_PARTIAL_ROWS:
            raise LimitExceededError(
                f"an exact answer over a cluster ships every selected row: {len(codes)} rows on "
                f"one node, more than the limit of {MAX_PARTIAL_ROWS}; ask without exact "
                "(quantiles within 1%) or narrow the filter"
            )
        return Cells(keys, per_key, rows=(codes.astype(np.int64), duration.astype(np.int64),
                                          status.astype(np.uint8)))  # fmt: skip
    n = len(keys) * per_key
    sums = summarize_groups(codes, duration, n) if len(codes) else []
    errors = error_counts(codes, status, n)
    live = [(i, s, int(errors[i])) for i, s in enumerate(sums) if s is not None and s.count]
    return Cells(keys, per_key, SummaryTable.of(live))


# ---- at the frontend -------------------------------------------------------------------------


def check_unknown(patterns: Sequence[str], unknown: Iterable[Iterable[str]]) -> None:
    """``NotFoundError`` for the first plain name in ``patterns`` every node reported unknown."""
    sets = [set(u) for u in unknown]
    if not sets:
        return
    nowhere = set.intersection(*sets)
    for p in patterns:
        if p in nowhere:
            raise NotFoundError(f"unknown function {shorten(p)}")


def merge_span(spans: Iterable[tuple[int, int] | None]) -> tuple[int, int] | None:
    have = [s for s in spans if s is not None]
    if not have:
        return None
    return min(s[0] for s in have), max(s[1] for s in have)


def merge_functions(parts: Iterable[Sequence[FunctionInfo]]) -> list[FunctionInfo]:
    """Per name: counts and errors added, earliest first start, latest last start."""
    acc: dict[str, FunctionInfo] = {}
    for part in parts:
        for f in part:
            old = acc.get(f.name)
            if old is None:
                acc[f.name] = f
                continue
            acc[f.name] = FunctionInfo(
                f.name, old.count + f.count, old.errors + f.errors,
                _pick(min, old.first_start, f.first_start), _pick(max, old.last_start, f.last_start),
            )  # fmt: skip
    return [acc[n] for n in sorted(acc)]


def _pick(fn: Callable[[int, int], int], a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return a if b is None else b
    return fn(a, b)


def merge_cells(parts: Sequence[Cells]) -> Cells:
    """The cells of the union: keys united, summaries merged per cell or rows concatenated."""
    if not parts:
        return Cells((), 1)
    per_key = parts[0].per_key
    if any(p.per_key != per_key for p in parts) or len({p.exact for p in parts}) > 1:
        raise ValueError("partials of different shapes cannot be merged")
    keys = tuple(sorted({k for p in parts for k in p.keys}))
    index = {k: i for i, k in enumerate(keys)}
    if parts[0].exact:
        ids, durations, statuses = [], [], []
        for p in parts:
            assert p.rows is not None
            cell, d, st = p.rows
            ids.append(_remap(p, index, cell))
            durations.append(d)
            statuses.append(st)
        rows = (np.concatenate(ids) if ids else np.empty(0, np.int64),
                np.concatenate(durations), np.concatenate(statuses))  # fmt: skip
        return Cells(keys, per_key, rows=rows)
    tables = [p.table.with_cells(_remap(p, index, p.table.cell)) for p in parts]
    return Cells(keys, per_key, summary_table.merge(summary_table.concat(tables)))


def _remap(part: Cells, index: dict[str, int], cell: np.ndarray) -> np.ndarray:
    """A part's cell ids in the united key numbering."""
    if not len(cell):
        return cell.astype(np.int64)
    lut = np.array([index[k] for k in part.keys], dtype=np.int64)
    local_key, bucket = np.divmod(cell.astype(np.int64), part.per_key)
    return np.asarray(lut[local_key] * part.per_key + bucket)


def cell_stats(cells: Cells, quantiles: Sequence[float], *, every_cell: bool) -> list[Stats]:
    """One stats row per non-empty cell (stats), or per cell, empty ones included (series);
    a row's key is its group's key."""
    n = len(cells.keys) * cells.per_key
    if cells.rows is not None:
        cell, d, st = cells.rows
        grouped = Grouped([cells.keys[i // cells.per_key] for i in range(n)], cell,
                          {"duration": d, "status": st})  # fmt: skip
        rows = exact_stats(grouped, quantiles)
        return rows if every_cell else [r for r in rows if r.count]
    table = cells.table
    values = summary_table.quantiles(table, quantiles).tolist()
    have = {c: i for i, c in enumerate(table.cell.tolist())}
    summaries = table.summaries()
    # The moments of every cell in one pass (the same floats as Summary's properties).
    count = table.count.astype(np.float64)
    mean = (table.sum / count).tolist()
    stddev_a = np.sqrt(np.where(count > 1, table.m2 / np.maximum(count - 1, 1), 0.0))
    stddev, stderr = stddev_a.tolist(), (stddev_a / np.sqrt(count)).tolist()
    errors, lo, hi = table.errors.tolist(), table.min.tolist(), table.max.tolist()
    out = []
    for c in range(n) if every_cell else sorted(have):
        key = cells.keys[c // cells.per_key]
        i = have.get(c)
        if i is None:
            out.append(Stats.empty(key, quantiles))
            continue
        qv = tuple(zip(quantiles, values[i], strict=True))
        out.append(Stats(key, summaries[i].count, errors[i], mean[i], stddev[i], stderr[i],
                         float(lo[i]), float(hi[i]), qv, _summary=summaries[i]))  # fmt: skip
    return out


def _check_groups(n: int, max_groups: int = MAX_GROUPS) -> None:
    if n > max_groups:
        raise ValueError(
            f"query would return {n} groups, more than the limit of {max_groups}; narrow the filter"
        )


def check_groups(cells: Cells, max_groups: int = MAX_GROUPS) -> None:
    """The single node's group cap, applied to the merged groups."""
    _check_groups(len(cells.keys), max_groups)


def cell_summaries(cells: Cells) -> dict[str, tuple[Summary | None, int]]:
    """Merged summary and error count per key (stats cells, one per key), as anomalies use."""
    t = cells.table
    return {cells.keys[c]: (t.summary(i), int(t.errors[i])) for i, c in enumerate(t.cell.tolist())}


def merge_histograms(function: str, per_decade: int, exact: bool,
                     parts: Iterable[Histogram]) -> Histogram:  # fmt: skip
    """Bucket counts added: every node bins by the same edges, so equal buckets line up."""
    acc: dict[tuple[float, float], int] = {}
    count = 0
    for h in parts:
        count += h.count
        exact = exact or h.exact
        for b in h.buckets:
            acc[(b.lower, b.upper)] = acc.get((b.lower, b.upper), 0) + b.count
    buckets = tuple(HistogramBucket(lo, hi, c) for (lo, hi), c in sorted(acc.items()) if c)
    return Histogram(function, count, per_decade, exact, buckets)


def merge_slowest(parts: Iterable[Sequence[Call]], k: int) -> list[Call]:
    """The k slowest of the union: they are among each node's own k slowest."""
    calls = [c for part in parts for c in part]
    calls.sort(key=lambda c: (-c.duration, c.start))
    return calls[:k]
