"""Why a function is sometimes slow: its slow calls against the rest, in one snapshot.

The *selection* is the function's calls slower than a threshold (by default its exact p99 in the
range; or any quantile, or an absolute duration), the *baseline* the other calls of the same
function in the same range. Three questions are answered side by side:

- **attributes**: per attribute key, the values over-represented among slow calls, scored by the
  difference of shares (``slow_share - baseline_share``: the part of the slow calls a value
  explains beyond its usual share; bounded, so a value seen in 2 calls cannot outrank one seen in
  most slow calls, as a lift would let it), with the two-proportion z statistic as the bar a
  finding must clear. A value must be seen in at least 2 slow calls (one call is an anecdote, and
  ids never repeat); for a *near-unique* key (more distinct values than half the calls carrying
  it: ids, URLs) a value must also cluster, in at least a tenth of the slow calls.
- **child calls**: rows of the same trace whose parent span id is one of the calls' span id,
  grouped by child function: mean child time per slow call against per baseline call, the share
  of the parent's time, and the *self time* left (the parent's duration minus its children's).
- **when**: the slow share per time bucket, a chi-square score of how unevenly slow calls fall
  in time, and each ``service.version`` with the slow share before and after its first call.

Cost, bounded: one scan of the function's rows (start, duration, ids, attribute codes) and one of
every function's rows in the window the calls cover (name, duration, ids: the children), both
refused beyond :data:`~kronicler.query.limits.MAX_SCAN_ROWS`; everything per row is numpy
(bincounts over attribute-set codes, one sort of packed keys to join children). Python work is
per *distinct attribute set* (each parsed once, in one ``json.loads``, then one dictionary step
per key). A near-unique key (a request id) would make every call its own set, and the parse
cost ~15 us per call; so from :data:`STRIP_MIN_SETS` sets on, keys that look near-unique in a
sample have their plain string values moved out of the set texts first, by one regular
expression over all texts at once (:func:`_strip_unique`), and are counted per value with
numpy (:class:`Unique`). Measured (``bench/bench_explain.py --calls 1000000 --unique-ids``,
side by side on one loaded machine): 11.2 s of CPU before, 5.0 s after, against 1.6 s for the
1,024-set workload; the rest is C-level text work (joining, splitting and hashing 1M texts of
~110 bytes) and the scan mapping a 1M-entry dictionary per segment. What would take it to the
1,024-set cost: a key-per-column dictionary written at seal, so no query sees id texts at all.
Findings and examples are capped (:mod:`kronicler.query.limits`).

Every figure in the answer is a count or a sum, so answers of several nodes over one agreed
threshold add up; shares, means and scores are derived from them. The work is split that way:
:class:`Calls` reads one database's calls and counts them under a threshold
(:meth:`Calls.part`, an :class:`ExplainPart` of sums, top-k examples and min/max starts: every
attribute value's slow and baseline calls, every child function's sums, the series on a given
grid, every release's counts), :func:`finish` ranks on the merged parts and asks for the
details of what it ranked (:class:`Picks` -> :class:`Details`: examples, the calls before each
release's first start). One database answers through the same steps with one part, so a
cluster frontend (:mod:`kronicler.server.frontend`) answers exactly as one node holding all the
calls; the trade-off is that a database's part lists every attribute value, not only the top.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from kronicler import budget
from kronicler.db.scan import Scan, top_k
from kronicler.db.stats import Call, quantile_label
from kronicler.db.view import answer
from kronicler.query.filters import (
    RESOURCE_PREFIX,
    Filter,
    attribute_text,
    check_scan_rows,
    is_glob,
    resolve_functions,
)
from kronicler.query.limits import (
    MAX_EXPLAIN_EXAMPLES,
    MAX_EXPLAIN_FINDINGS,
    MAX_EXPLAIN_RELEASES,
)
from kronicler.query.partials import merge_slowest
from kronicler.query.results import (
    AttributeFinding,
    ChildFinding,
    Explanation,
    Release,
    SlowShareBucket,
)
from kronicler.query.series import pick_step
from kronicler.query.slowest import CALL_COLUMNS, call_at

if TYPE_CHECKING:
    from kronicler.db.view import ReadAPI, ReadView

#: The threshold when none is given: the function's p99 in the range.
DEFAULT_SLOW = "p99"
#: Keys whose values are releases: the resource's (as OTel SDKs set it), or a span attribute.
RELEASE_KEYS = (RESOURCE_PREFIX + "service.version", "service.version")
#: Columns of the function's own rows that :func:`_row_attributes` reads.
ATTRIBUTE_COLUMNS = ("attributes", "resource")
#: A value must be seen in this many slow calls to be a finding.
MIN_SLOW_CALLS = 2
#: ... and clear this z statistic (two proportions).
MIN_Z = 2.0
#: A key is near-unique when its distinct values exceed this share of the calls carrying it;
#: its values must then be seen in this share of the slow calls too.
NEAR_UNIQUE = 0.5
CLUSTER_SHARE = 0.1
#: Near-unique keys are moved out of the set texts before parsing (:func:`_strip_unique`)
#: from this many distinct attribute sets on, judged on a sample of this many sets, for keys
#: carried by at least this many of the sample.
STRIP_MIN_SETS = 2048
STRIP_SAMPLE = 512
STRIP_MIN_CARRIED = 32
#: At most this many keys are moved out (each is one pass over all texts); others are parsed.
STRIP_MAX_KEYS = 8
#: Time buckets of the slow-share series (at most).
SERIES_BUCKETS = 60
#: A release lines up with the slow calls when the slow share rose after it with this z.
RELEASE_Z = 3.0
#: Name of the self-time row.
SELF_TIME = "(self time)"

_QUANTILE = re.compile(r"^p(\d{1,6})$")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
_CHILD_COLUMNS = ("name", "duration", "trace_hi", "trace_lo", "parent_span_id")


@dataclass(frozen=True, slots=True)
class Threshold:
    """What "slow" means for one question: a quantile of the range, or nanoseconds."""

    quantile: float | None
    ns: int | None


def parse_slow(slow: int | str | None) -> Threshold:
    """``None``/``"p99"``/``"p95"``/``"p999"`` (a quantile) or a positive int (ns); else
    ``ValueError`` naming the value."""
    if slow is None:
        slow = DEFAULT_SLOW
    if isinstance(slow, bool):
        raise ValueError(f"slow must be a quantile such as 'p99' or nanoseconds, got {slow!r}")
    if isinstance(slow, (int, np.integer)):
        if not 0 < int(slow) < 2**63:
            raise ValueError(f"slow must be a positive number of nanoseconds, got {slow!r}")
        return Threshold(None, int(slow))
    if isinstance(slow, str):
        m = _QUANTILE.match(slow)
        if m:
            digits = m.group(1)
            q = float(digits[:2] + "." + digits[2:]) / 100
            if 0 < q < 1 and quantile_label(q) == slow:
                return Threshold(q, None)
    raise ValueError(
        f"slow must be a quantile such as 'p99', 'p95', 'p999' or a positive number of "
        f"nanoseconds, got {slow!r}"
    )


def check_explain(
    function: str, since: int | None, until: int | None, slow: int | str | None
) -> Threshold:
    """The checks of :func:`explain`'s arguments (a frontend's too): the threshold, or
    ``ValueError`` naming the bad value."""
    if not isinstance(function, str) or not function or is_glob(function):
        raise ValueError(f"explain needs one function name, not a pattern: {function!r}")
    threshold = parse_slow(slow)
    Filter((function,), since=since, until=until).check()  # bounds: ints, since < until
    return threshold


def explain(
    db: ReadAPI,
    function: str,
    *,
    since: int | None = None,
    until: int | None = None,
    slow: int | str | None = None,
) -> Explanation:
    """Why some calls of ``function`` in ``since <= start < until`` are slow (module doc).

    ``slow``: ``"p99"`` (default) or another quantile label, or a duration in ns; calls
    strictly slower are the selection. ``NotFoundError`` for an unknown function.
    """
    threshold = check_explain(function, since, until, slow)
    return answer(db, lambda view: _explain(view, function, since, until, threshold))


def _explain(
    db: ReadView, function: str, since: int | None, until: int | None, threshold: Threshold
) -> Explanation:
    resolve_functions(db, [function])  # NotFoundError for an unknown name
    calls = Calls.read(db, function, since, until)
    if calls.count == 0:
        return empty(function, since, until, threshold.quantile)
    if threshold.quantile is not None:
        limit = exact_quantile(calls.duration, threshold.quantile)
    else:
        limit = float(threshold.ns or 0)
    lo = since if since is not None else int(calls.start.min())
    hi = until if until is not None else int(calls.start.max()) + 1
    step = pick_step(hi - lo, SERIES_BUCKETS)
    part = calls.split(limit).part(lo, step, buckets(lo, hi, step))
    return finish(function, (lo, hi, step), threshold.quantile, limit, [part],
                  lambda picks: [calls.details(picks)])  # fmt: skip


def empty(
    function: str, since: int | None, until: int | None, quantile: float | None
) -> Explanation:
    """The answer when the function has no call in the range."""
    return Explanation(function, since, until, quantile, None, 0, 0, 0, 0, (), (), None, 0, (), 0.0,
                       (), ())  # fmt: skip


def exact_quantile(duration: np.ndarray, quantile: float) -> float:
    """The exact quantile of ``duration`` (non-empty): the value at rank ``floor(q (n - 1))``."""
    rank = int(math.floor(quantile * (len(duration) - 1)))
    return float(np.partition(duration, rank)[rank])


def buckets(lo: int, hi: int, step: int) -> int:
    """Buckets of the slow-share series over ``[lo, hi)``."""
    return -(-(hi - lo) // step)


# ---- one database's part, and the finish every answer shares ----------------------------------


@dataclass(frozen=True, slots=True)
class ValueCounts:
    """One attribute key's values (every value some call carries) with the slow and baseline
    calls carrying each: added up per value across databases."""

    key: str
    values: list[str]
    slow: np.ndarray
    baseline: np.ndarray


Weighted = tuple[tuple[int, Call], ...]


@dataclass(frozen=True, slots=True)
class ExplainPart:
    """One database's counts under an agreed threshold, range and series grid: every figure a
    sum (or a min/max, or a top-k), so the parts of several databases add up to the part of
    one holding all the rows.

    ``children``: every child function's sums (no examples); ``self_time`` likewise, with
    ``self_examples`` the slow calls with the most self time (weight = that time);
    ``releases``: every release value's calls, slow calls, first and last start (the before and
    after counts need the first start over all databases: :class:`Details`); ``examples``: the
    slowest calls.
    """

    count: int
    slow_count: int
    slow_time: int
    baseline_time: int
    values: tuple[ValueCounts, ...]
    children: tuple[ChildFinding, ...]
    self_time: ChildFinding
    self_examples: Weighted
    series_calls: np.ndarray
    series_slow: np.ndarray
    releases: tuple[Release, ...]
    examples: tuple[Call, ...]

    @classmethod
    def empty(cls, n_buckets: int) -> ExplainPart:
        none = np.zeros(n_buckets, dtype=np.int64)
        self_time = ChildFinding(SELF_TIME, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ())
        return cls(0, 0, 0, 0, (), (), self_time, (), none, none.copy(), (), ())


@dataclass(frozen=True, slots=True)
class Picks:
    """The findings ranked on the merged counts whose details a database is asked for: attribute
    values, child functions, and the first start of each release kept."""

    attributes: tuple[tuple[str, str], ...]
    children: tuple[str, ...]
    release_starts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Details:
    """One database's answer to :class:`Picks`, parallel to it: the slowest slow calls carrying
    each value; the slow calls that spent the most time in each child (weight = that time); the
    calls (and slow calls) that started before each release's first start."""

    attributes: tuple[tuple[Call, ...], ...]
    children: tuple[Weighted, ...]
    before: tuple[tuple[int, int], ...]

    @classmethod
    def none(cls, picks: Picks) -> Details:
        """The details of a database without calls."""
        return cls(tuple(() for _ in picks.attributes), tuple(() for _ in picks.children),
                   tuple((0, 0) for _ in picks.release_starts))  # fmt: skip


class Calls:
    """One database's calls of a function in a range: what it counts under a threshold
    (:meth:`part`) and, for the findings ranked on the counts, shows (:meth:`details`). The
    attribute sets and the children are read once, on first use."""

    def __init__(self, db: ReadView, scan: Scan) -> None:
        self.db, self.scan = db, scan
        self.duration = scan.columns["duration"]
        self.start = scan.columns["start"]
        self.count = len(self.duration)
        self.slow = np.zeros(self.count, dtype=bool)
        self._keys: dict[str, _KeyValues] | None = None
        self._ra: RowAttributes | None = None
        self._children: _Children | None = None
        self.child_window: tuple[int, int] | None = None

    @classmethod
    def read(
        cls, db: ReadView, function: str, since: int | None, until: int | None, *,
        columns: Sequence[str] = (),
    ) -> Calls:  # fmt: skip
        """The calls with every column explain reads, or only ``columns`` (and start and
        duration)."""
        check_scan_rows(db, [function], since, until)
        wanted = {*columns, "start", "duration"} if columns else {*CALL_COLUMNS, *ATTRIBUTE_COLUMNS}
        return cls(db, db.scan(sorted(wanted), names=[function], since=since, until=until))

    def split(self, limit: float, child_window: tuple[int, int] | None = None) -> Calls:
        """Slow calls are those with ``duration > limit``; children are the rows starting in
        ``child_window`` (by default from the calls' earliest start to their latest end: a
        frontend passes those of all nodes' calls, so every node looks where one node holding
        them all would)."""
        self.slow = self.duration > limit
        self.child_window = child_window
        self._keys = self._children = None
        return self

    def bounds(self) -> tuple[int, int, int] | None:
        """(earliest start, latest start, latest end) of the calls; None without calls."""
        if self.count == 0:
            return None
        end = int((self.start + self.duration).max())
        return int(self.start.min()), int(self.start.max()), end

    @property
    def ra(self) -> RowAttributes:
        if self._ra is None:
            self._ra = _row_attributes(self.scan)
        return self._ra

    def keys(self) -> dict[str, _KeyValues]:
        if self._keys is None:
            self._keys = {k.counts.key: k for k in _value_counts(self.ra, self.slow)}
        return self._keys

    def children(self) -> _Children:
        if self._children is None:
            self._children = _child_sums(self.db, self.scan, self.slow, self.child_window)
        return self._children

    def part(self, lo: int, step: int, n_buckets: int) -> ExplainPart:
        """The counts (module doc) with the series in ``n_buckets`` buckets of ``step`` from
        ``lo``."""
        d, start, slow = self.duration, self.start, self.slow
        if self.count == 0:
            return ExplainPart.empty(n_buckets)
        budget.check()
        values = tuple(k.counts for k in self.keys().values())
        budget.check()
        kids = self.children()
        budget.check()
        calls, slows = _slow_share(start, slow, lo, step, n_buckets)
        releases = _release_counts(start, self.ra.codes, self.ra.sets, slow)
        top = top_k(d, start, MAX_EXPLAIN_EXAMPLES)
        return ExplainPart(
            self.count, int(slow.sum()), int(d[slow].sum()), int(d[~slow].sum()), values,
            kids.sums, kids.self_time, _top_parents(self.scan, kids.own_slow), calls, slows,
            releases, tuple(_call(self.scan, int(i)) for i in top),
        )  # fmt: skip

    def details(self, picks: Picks) -> Details:
        if self.count == 0:
            return Details.none(picks)
        attrs = []
        for key, value in picks.attributes:
            budget.check()
            found = self.keys().get(key)
            attrs.append(
                () if found is None else _examples(self.scan, found.rows(value, self.slow))
            )
        children = tuple(self.children().examples(self.scan, self.slow, name)
                         for name in picks.children)  # fmt: skip
        before = []
        for first in picks.release_starts:
            early = self.start < first
            before.append((int(early.sum()), int((early & self.slow).sum())))
        return Details(tuple(attrs), children, tuple(before))


def merge_parts(parts: Sequence[ExplainPart]) -> ExplainPart:
    """The part of the union of the databases (one part is its own union)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        raise ValueError("no part to merge")
    if len({len(p.series_calls) for p in parts}) > 1:
        raise ValueError("explain parts over different series grids cannot be merged")
    releases: dict[tuple[str, str], Release] = {}
    for r in (r for p in parts for r in p.releases):
        old = releases.get((r.key, r.version))
        releases[(r.key, r.version)] = r if old is None else replace(
            old, calls=old.calls + r.calls, slow=old.slow + r.slow,
            first_start=min(old.first_start, r.first_start),
            last_start=max(old.last_start, r.last_start),
        )  # fmt: skip
    return ExplainPart(
        sum(p.count for p in parts), sum(p.slow_count for p in parts),
        sum(p.slow_time for p in parts), sum(p.baseline_time for p in parts),
        _merge_values([p.values for p in parts]),
        tuple(_add_children([c for p in parts for c in p.children]).values()),
        _add_children([p.self_time for p in parts])[SELF_TIME],
        _top_weighted([p.self_examples for p in parts]),
        np.sum([p.series_calls for p in parts], axis=0),
        np.sum([p.series_slow for p in parts], axis=0),
        tuple(releases.values()),
        tuple(merge_slowest((p.examples for p in parts), MAX_EXPLAIN_EXAMPLES)),
    )  # fmt: skip


def merge_details(got: Sequence[Details], picks: Picks) -> Details:
    """The details of the union: examples merged slowest (or heaviest) first, counts added."""
    return Details(
        tuple(tuple(merge_slowest((d.attributes[i] for d in got), MAX_EXPLAIN_EXAMPLES))
              for i in range(len(picks.attributes))),
        tuple(tuple((w, c) for w, c in _top_weighted([d.children[i] for d in got]))
              for i in range(len(picks.children))),
        tuple((sum(d.before[i][0] for d in got), sum(d.before[i][1] for d in got))
              for i in range(len(picks.release_starts))),
    )  # fmt: skip


def finish(
    function: str,
    grid: tuple[int, int, int],
    quantile: float | None,
    limit: float,
    parts: Sequence[ExplainPart],
    details: Callable[[Picks], Sequence[Details]],
    *,
    threshold_exact: bool = True,
) -> Explanation:
    """The explanation from the databases' parts over ``grid`` = (since, until, step): the
    findings ranked on the merged counts, then ``details`` asked for their examples and the
    release counts. One database's answer and a frontend's go through here alike."""
    lo, hi, step = grid
    p = merge_parts(parts)
    s_total, b_total = p.slow_count, p.count - p.slow_count
    found = _judge(p.values, s_total, b_total)
    children = _rank_children(p.children, s_total, b_total)
    kept = _pick_releases(p.releases)
    picks = Picks(tuple((f.key, f.value) for f in found), tuple(c.function for c in children),
                  tuple(r.first_start for r in kept))  # fmt: skip
    budget.check()
    got = merge_details(details(picks), picks) if found or children or kept else \
        Details((), (), ())  # fmt: skip
    series, cluster = _when(lo, step, p.series_calls, p.series_slow)
    return Explanation(
        function=function, since=lo, until=hi, quantile=quantile, threshold=limit,
        count=p.count, slow_count=s_total, slow_time=p.slow_time, baseline_time=p.baseline_time,
        attributes=tuple(
            AttributeFinding(f.key, f.value, f.slow, f.baseline, s_total, b_total,
                             round(f.score, 12), f.lift, round(f.z, 9), examples)
            for f, examples in zip(found, got.attributes, strict=True)
        ),
        children=tuple(replace(c, examples=tuple(x for _, x in examples))
                       for c, examples in zip(children, got.children, strict=True)),
        self_time=replace(p.self_time, examples=tuple(x for _, x in p.self_examples)),
        step=step, series=series, cluster_score=cluster,
        releases=_judge_releases(kept, got.before, p.count, s_total),
        examples=p.examples[: min(s_total, len(p.examples))], threshold_exact=threshold_exact,
    )  # fmt: skip


def _call(scan: Scan, i: int) -> Call:
    return call_at(scan.columns, scan.names, scan.services, scan.attributes, scan.resources, i)


def _examples(scan: Scan, rows: np.ndarray) -> tuple[Call, ...]:
    """The slowest of ``rows`` (indexes into ``scan``) as calls, slowest first."""
    if len(rows) == 0:
        return ()
    d, s = scan.columns["duration"][rows], scan.columns["start"][rows]
    return tuple(_call(scan, int(rows[i])) for i in top_k(d, s, MAX_EXPLAIN_EXAMPLES))


def _top_weighted(lists: Iterable[Weighted]) -> Weighted:
    """The heaviest of the weighted calls, ties to the earlier start (as :func:`top_k`)."""
    pairs = sorted((p for one in lists for p in one), key=lambda p: (-p[0], p[1].start))
    return tuple(pairs[:MAX_EXPLAIN_EXAMPLES])


# ---- attributes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unique:
    """The values of one near-unique key, moved out of the attribute set texts: ``sets`` are
    the distinct attribute sets carrying the key (indexes as in ``RowAttributes.used_row``),
    ``values`` the value text of each (an object array, aligned)."""

    key: str
    sets: np.ndarray
    values: np.ndarray


@dataclass(frozen=True, slots=True)
class RowAttributes:
    """``codes``: per row a code into ``sets`` (per code ``key -> value text``, near-unique
    keys left out); ``used_row``: per row its distinct attribute set (``n_used`` of them);
    ``uniques``: the near-unique keys' values per distinct attribute set."""

    codes: np.ndarray
    sets: list[dict[str, str]]
    used_row: np.ndarray
    n_used: int
    uniques: tuple[Unique, ...]


def _row_attributes(scan: Scan) -> RowAttributes:
    """The one place that reads attributes: keys are handled generically downstream.

    Resource attributes join as ``resource:KEY``: a code is a distinct pair (attribute set,
    resource set). Only sets some row uses are parsed, each in one ``json.loads`` per column;
    near-unique keys' values are moved out of the set texts first (:func:`_strip_unique`), so
    sets differing only in an id are parsed once.
    """
    attr = scan.columns["attributes"].astype(np.int64)
    res = scan.columns["resource"].astype(np.int64)
    used, used_row = np.unique(attr, return_inverse=True)
    used_row = used_row.reshape(-1)
    texts, reduced, uniques = _strip_unique(list(map(scan.attributes.__getitem__, used.tolist())))
    n_res = max(len(scan.resources), 1)
    pairs, codes = np.unique(reduced[used_row] * n_res + res, return_inverse=True)
    a_of, r_of = np.divmod(pairs, n_res)
    a_sets = _parse_sets(texts, a_of, "")
    r_sets = _parse_sets(scan.resources, r_of, RESOURCE_PREFIX)
    uniques = [_unstripped(u, a_sets, reduced) for u in uniques]
    sets: list[dict[str, str]] = []
    for i, (a, r) in enumerate(zip(a_of.tolist(), r_of.tolist(), strict=True)):
        if i % 4096 == 0:
            budget.check()
        sets.append({**r_sets[r], **a_sets[a]} if r_sets[r] else a_sets[a])
    return RowAttributes(codes.reshape(-1), sets, used_row, len(used), tuple(uniques))


def _strip_unique(texts: list[str]) -> tuple[list[str], np.ndarray, list[Unique]]:
    """``texts`` (distinct attribute set texts) with the plain string values of near-unique
    keys moved out: (the distinct remaining texts, per input text the code of what remains,
    the values moved out per key).

    A key is a candidate when, in an even sample of the sets, it takes more distinct values
    than :data:`NEAR_UNIQUE` of the sets carrying it. Set texts are compact JSON objects with
    unique keys (``canonical_attributes``), so an unescaped ``"KEY":"`` is always that key, and
    a value without a backslash ends at the next quote: one ``re.split`` over all texts joined
    by newlines (JSON text holds no raw newline) takes every such pair out and hands back its
    value, and the line of each comes from the newline positions. A value with an escape, a
    number, or a text holding a list (whose objects could hold the key too) stays in its text
    and is parsed as before (:func:`_unstripped`): the answer is exact either way.
    """
    identity: tuple[list[str], np.ndarray, list[Unique]] = (
        list(texts), np.arange(len(texts), dtype=np.int64), [])  # fmt: skip
    if len(texts) < STRIP_MIN_SETS:
        return identity
    keys = _unique_keys(texts)
    joined = "\n".join(texts)
    if not keys or not joined.isascii():
        return identity
    listed = [i for i, t in enumerate(texts) if "[" in t] if "[" in joined else []
    if listed:
        blank = list(texts)
        for i in listed:
            blank[i] = ""
        joined = "\n".join(blank)
    uniques = []
    for key in keys[:STRIP_MAX_KEYS]:
        if f'\\"{key}":' in joined:  # the key's text ends another key: leave it to the parse
            continue
        budget.check()
        parts = re.compile(f'"{re.escape(key)}":"([^"\\\\\\n]*)",?').split(joined)
        if len(parts) == 1:
            continue
        rest = parts[0::2]
        at = np.cumsum(np.fromiter(map(len, rest), np.int64, len(rest)))[:-1]
        joined = "".join(rest)
        data = np.frombuffer(joined.encode("ascii"), np.uint8)
        # A pair that was the last one leaves "...,}": drop that comma.
        dangling = at[(data[at - 1] == ord(",")) & (data[at] == ord("}"))]
        line = np.searchsorted(np.flatnonzero(data == ord("\n")), at)
        if len(dangling):
            joined = np.delete(data, dangling - 1).tobytes().decode("ascii")
        uniques.append(Unique(key, line.astype(np.int64), np.array(parts[1::2], dtype=object)))
    if not uniques:
        return identity
    budget.check()
    lines = joined.split("\n")
    for i in listed:
        lines[i] = texts[i]
    distinct, reduced = _codes(lines)
    return distinct, reduced, uniques


def _codes(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct ``texts`` and per text its code: grouped by ``hash`` in numpy (about 4x
    faster than a dictionary step per text), then checked to be equal to its group's first
    text (a hash collision falls back to the dictionary)."""
    hashes = np.fromiter(map(hash, texts), np.int64, len(texts))
    _, first, codes = np.unique(hashes, return_index=True, return_inverse=True)
    if len(first) == len(texts):  # distinct hashes: distinct texts
        return texts, np.arange(len(texts), dtype=np.int64)
    distinct = list(map(texts.__getitem__, first.tolist()))
    codes = codes.reshape(-1)
    if all(map(operator.eq, texts, map(distinct.__getitem__, codes.tolist()))):
        return distinct, codes
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(t, len(index)) for t in texts), np.int64, len(texts))
    return list(index), codes


def _unique_keys(texts: list[str]) -> list[str]:
    """Keys that look near-unique in an even sample of ``texts`` by their string values, names
    that need no escaping in JSON; never a release key (:func:`_releases` reads those)."""
    pick = np.unique(np.linspace(0, len(texts) - 1, STRIP_SAMPLE).astype(np.int64)).tolist()
    sample = json.loads("[" + ",".join(texts[i] or "{}" for i in pick) + "]")
    seen: dict[str, set[str]] = {}
    carried: dict[str, int] = {}
    for attrs in sample:
        for key, value in attrs.items():
            carried[key] = carried.get(key, 0) + 1
            if type(value) is str:
                seen.setdefault(key, set()).add(value)
    return sorted(
        key for key, values in seen.items()
        if carried[key] >= STRIP_MIN_CARRIED and len(values) > NEAR_UNIQUE * carried[key]
        and key not in RELEASE_KEYS and _PLAIN_KEY.fullmatch(key)
    )  # fmt: skip


def _unstripped(u: Unique, a_sets: dict[int, dict[str, str]], reduced: np.ndarray) -> Unique:
    """``u`` with the key's values that stayed in the texts (escaped, not strings) moved out of
    the parsed sets too, so the key is counted in one place."""
    left = [code for code, attrs in a_sets.items() if u.key in attrs]
    if not left:
        return u
    value_of = {code: a_sets[code][u.key] for code in left}
    for code in left:
        a_sets[code] = {k: v for k, v in a_sets[code].items() if k != u.key}
    lut = np.zeros(max(len(reduced) and int(reduced.max()) + 1, 1), dtype=bool)
    lut[left] = True
    more = np.flatnonzero(lut[reduced])
    values = np.array([value_of[c] for c in reduced[more].tolist()] or [], dtype=object)
    return Unique(u.key, np.concatenate((u.sets, more)), np.concatenate((u.values, values)))


_EMPTY: dict[str, str] = {}


def _parse_sets(texts: list[str], used: np.ndarray, prefix: str) -> dict[int, dict[str, str]]:
    """The sets ``used`` (codes into ``texts``) parsed, keys prefixed, values as text."""
    present = np.unique(used).tolist()
    parsed = json.loads("[" + ",".join(texts[c] or "{}" for c in present) + "]")
    as_text = _TextCache()
    out: dict[int, dict[str, str]] = {}
    for i, (code, attrs) in enumerate(zip(present, parsed, strict=True)):
        if i % 4096 == 0:
            budget.check()
        out[code] = {
            prefix + k: v if type(v) is str else as_text(v) for k, v in attrs.items()
        } if attrs else _EMPTY  # fmt: skip
    return out


class _TextCache:
    """:func:`attribute_text` of non-string values, remembered (sets repeat the same numbers)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[type, Any], str] = {}

    def __call__(self, value: Any) -> str:
        try:
            key = (type(value), value)  # the type keeps True apart from 1
            text = self._seen.get(key)
        except TypeError:  # a list: not hashable
            return attribute_text(value)
        if text is None:
            text = self._seen[key] = attribute_text(value)
        return text


@dataclass(frozen=True, slots=True)
class _KeyValues:
    """A key's :class:`ValueCounts` and where its values are, to find a value's rows: value
    ``value_codes[i]`` is that of set ``set_codes[i]``, and row ``r`` is in set
    ``row_codes[r]`` (of ``n_codes``)."""

    counts: ValueCounts
    value_codes: np.ndarray
    set_codes: np.ndarray
    row_codes: np.ndarray
    n_codes: int

    def rows(self, value: str, slow: np.ndarray) -> np.ndarray:
        """The slow rows carrying ``value`` (none when no call here carries it)."""
        try:
            v = self.counts.values.index(value)
        except ValueError:
            return np.empty(0, np.int64)
        has = np.zeros(self.n_codes, dtype=bool)
        has[self.set_codes[self.value_codes == v]] = True
        return np.flatnonzero(slow & has[self.row_codes])


def _value_counts(ra: RowAttributes, slow: np.ndarray) -> list[_KeyValues]:
    """Per attribute key, every value's slow and baseline calls."""
    codes, n_sets = ra.codes, len(ra.sets)
    slow_per_set = np.bincount(codes[slow], minlength=n_sets)
    base_per_set = np.bincount(codes[~slow], minlength=n_sets)
    # Per key: value -> value code, and one (set code, value code) pair per distinct set that
    # has the key. The counts per value are then bincounts, so a near-unique key costs one
    # dictionary step per set and no Python work per value.
    per_key: dict[str, tuple[dict[str, int], list[int], list[int]]] = {}
    for i, code in enumerate(np.flatnonzero(slow_per_set + base_per_set).tolist()):
        if i % 4096 == 0:
            budget.check()
        for key, value in ra.sets[code].items():
            entry = per_key.get(key)
            if entry is None:
                entry = per_key[key] = ({}, [], [])
            values, sets_with_key, value_of_set = entry
            sets_with_key.append(code)
            value_of_set.append(values.setdefault(value, len(values)))
    found: list[_KeyValues] = []
    for key, (values, set_list, value_list) in per_key.items():
        budget.check()
        set_codes = np.array(set_list, dtype=np.int64)
        found.append(_key_values(key, list(values), np.array(value_list, dtype=np.int64),
                                 set_codes, slow_per_set, base_per_set, codes, n_sets))  # fmt: skip
    if ra.uniques:  # the same, per distinct attribute set, over the values moved out
        slow_per_used = np.bincount(ra.used_row[slow], minlength=ra.n_used)
        base_per_used = np.bincount(ra.used_row[~slow], minlength=ra.n_used)
        for u in ra.uniques:
            budget.check()
            distinct, value_codes = _codes(u.values.tolist())
            found.append(_key_values(u.key, distinct, value_codes, u.sets, slow_per_used,
                                     base_per_used, ra.used_row, ra.n_used))  # fmt: skip
    return found


def _key_values(key: str, values: list[str], value_codes: np.ndarray, set_codes: np.ndarray,
                slow_per_set: np.ndarray, base_per_set: np.ndarray, row_codes: np.ndarray,
                n_codes: int) -> _KeyValues:  # fmt: skip
    """The counts of ``key``'s values (``value_codes[i]`` is the value of set
    ``set_codes[i]``)."""
    slow_n = np.bincount(value_codes, weights=slow_per_set[set_codes], minlength=len(values))
    base_n = np.bincount(value_codes, weights=base_per_set[set_codes], minlength=len(values))
    counts = ValueCounts(key, values, slow_n.astype(np.int64), base_n.astype(np.int64))
    return _KeyValues(counts, value_codes, set_codes, row_codes, n_codes)


def _merge_values(parts: Sequence[Sequence[ValueCounts]]) -> tuple[ValueCounts, ...]:
    """Per key, the values of every part united and their counts added (so a key is judged
    near-unique on the union's distinct values, not on any one database's)."""
    by_key: dict[str, list[ValueCounts]] = {}
    for part in parts:
        for vc in part:
            by_key.setdefault(vc.key, []).append(vc)
    out = []
    for key, group in by_key.items():
        if len(group) == 1:
            out.append(group[0])
            continue
        budget.check()
        distinct, codes = _codes([v for vc in group for v in vc.values])
        slow = np.zeros(len(distinct), dtype=np.int64)
        base = np.zeros(len(distinct), dtype=np.int64)
        np.add.at(slow, codes, np.concatenate([vc.slow for vc in group]))
        np.add.at(base, codes, np.concatenate([vc.baseline for vc in group]))
        out.append(ValueCounts(key, distinct, slow, base))
    return tuple(out)


def _judge(values: Sequence[ValueCounts], s_total: int, b_total: int) -> list[_Found]:
    """The values over-represented among slow calls, best first, at most
    :data:`MAX_EXPLAIN_FINDINGS`."""
    if s_total == 0:
        return []
    counts = _Counts(s_total, b_total, max(MIN_SLOW_CALLS, math.ceil(CLUSTER_SHARE * s_total)))
    found: list[_Found] = []
    for vc in values:
        budget.check()
        found += counts.findings(vc)
    found.sort(key=lambda f: (-f.score, -f.z, f.key, f.value))
    return found[:MAX_EXPLAIN_FINDINGS]


@dataclass(frozen=True, slots=True)
class _Found:
    """A candidate finding."""

    score: float
    z: float
    key: str
    value: str
    slow: int
    baseline: int
    lift: float | None


@dataclass(frozen=True, slots=True)
class _Counts:
    """The totals every key's values are judged against."""

    s_total: int
    b_total: int
    cluster_min: int

    def findings(self, vc: ValueCounts) -> list[_Found]:
        """The values of ``vc.key`` over-represented among slow calls; near-unique keys'
        values must cluster."""
        slow_n, base_n = vc.slow, vc.baseline
        near_unique = len(vc.values) > NEAR_UNIQUE * (int(slow_n.sum()) + int(base_n.sum()))
        need = self.cluster_min if near_unique else MIN_SLOW_CALLS
        out = []
        for v in np.flatnonzero(slow_n >= need).tolist():
            sc, bc = int(slow_n[v]), int(base_n[v])
            score, lift, z = _compare(sc, self.s_total, bc, self.b_total)
            if score <= 0 or z < MIN_Z:
                continue
            out.append(_Found(score, z, vc.key, vc.values[v], sc, bc, lift))
        return out


def _compare(a: int, a_total: int, b: int, b_total: int) -> tuple[float, float | None, float]:
    """(share difference, lift, two-proportion z) of ``a / a_total`` against ``b / b_total``."""
    pa = a / a_total if a_total else 0.0
    pb = b / b_total if b_total else 0.0
    lift = pa / pb if pb > 0 else None
    if not a_total or not b_total:
        return pa - pb, lift, 0.0
    pooled = (a + b) / (a_total + b_total)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a_total + 1 / b_total))
    return pa - pb, lift, ((pa - pb) / se if se > 0 else 0.0)


# ---- child calls ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Children:
    """The calls' children: per joined child row its parent's row (``pi``), function code
    (``f``, into ``names``) and duration (``kd``); every child function's sums and the self
    time's (no examples); ``own_slow``: each slow call's self time (0 for the others)."""

    names: Sequence[str]
    pi: np.ndarray
    f: np.ndarray
    kd: np.ndarray
    sums: tuple[ChildFinding, ...]
    self_time: ChildFinding
    own_slow: np.ndarray

    def examples(self, parents: Scan, slow: np.ndarray, name: str) -> Weighted:
        """The slow calls that spent the most time in child ``name``, with that time."""
        if name not in self.names:
            return ()
        mine = (self.f == list(self.names).index(name)) & slow[self.pi]
        per_parent = np.bincount(self.pi[mine], weights=self.kd[mine], minlength=len(slow))
        return _top_parents(parents, per_parent)


def _child_sums(
    db: ReadView, parents: Scan, slow: np.ndarray, window: tuple[int, int] | None
) -> _Children:
    pc = parents.columns
    d, start = pc["duration"], pc["start"]
    n = len(d)
    lo, hi = window or (int(start.min()), int((start + d).max()) + 1)
    check_scan_rows(db, None, lo, hi)
    kids = db.scan(_CHILD_COLUMNS, since=lo, until=hi)
    kc = kids.columns
    pi, ci = _join_parents(pc, kc)
    f = kc["name"][ci].astype(np.int64)
    kd = kc["duration"][ci].astype(np.int64)
    nf = max(len(kids.names), 1)
    sflag = slow[pi].astype(np.int64)
    key = f * 2 + sflag
    time = np.bincount(key, weights=kd, minlength=2 * nf).astype(np.int64)
    calls = np.bincount(key, minlength=2 * nf)
    pairs = np.sort(pi * nf + f)  # distinct (parent, child function) pairs, without a hash
    pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] if len(pairs) else pairs
    pair_key = (pairs % nf) * 2 + slow[pairs // nf]
    with_child = np.bincount(pair_key, minlength=2 * nf)
    s_total, b_total = int(slow.sum()), n - int(slow.sum())
    s_time, b_time = int(d[slow].sum()), int(d[~slow].sum())
    budget.check()

    def finding(name: str, sc: int, bc: int, skids: int, bkids: int, st: int, bt: int
                ) -> ChildFinding:  # fmt: skip
        return ChildFinding(name, sc, bc, skids, bkids, st, bt, s_total, b_total, s_time, b_time,
                            ())  # fmt: skip

    sums = tuple(
        finding(kids.names[code], int(with_child[2 * code + 1]), int(with_child[2 * code]),
                int(calls[2 * code + 1]), int(calls[2 * code]), int(time[2 * code + 1]),
                int(time[2 * code]))
        for code in np.flatnonzero(calls[0::2] + calls[1::2]).tolist()
    )  # fmt: skip
    child_time = np.bincount(pi, weights=kd, minlength=n)
    own = np.maximum(d - child_time, 0).astype(np.int64)
    alone = np.bincount(pi, minlength=n) == 0
    self_time = finding(
        SELF_TIME, int((alone & slow).sum()), int((alone & ~slow).sum()), 0, 0,
        int(own[slow].sum()), int(own[~slow].sum()),
    )  # fmt: skip
    return _Children(kids.names, pi, f, kd, sums, self_time, np.where(slow, own, 0))


def _add_children(found: Sequence[ChildFinding]) -> dict[str, ChildFinding]:
    """Per child function, the sums of every database added (examples left out)."""
    out: dict[str, ChildFinding] = {}
    for c in found:
        old = out.get(c.function)
        out[c.function] = (
            c
            if old is None
            else replace(old, **{f: getattr(old, f) + getattr(c, f) for f in _CHILD_SUMS})
        )
    return out


#: The figures of a :class:`ChildFinding`, every one a sum.
_CHILD_SUMS = ("slow_calls", "baseline_calls", "slow_children", "baseline_children", "slow_time",
               "baseline_time", "slow_total", "baseline_total", "slow_parent_time",
               "baseline_parent_time")  # fmt: skip


def _rank_children(
    children: Sequence[ChildFinding], s_total: int, b_total: int
) -> list[ChildFinding]:
    """The child functions by the extra time slow calls spend in them (by slow time when
    either side is empty), at most :data:`MAX_EXPLAIN_FINDINGS`."""
    ranked = []
    for c in children:
        extra = c.slow_time / max(s_total, 1) - c.baseline_time / max(b_total, 1)
        ranked.append((-extra if s_total and b_total else -c.slow_time, c.function, c))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [c for _, _, c in ranked[:MAX_EXPLAIN_FINDINGS]]


def _join_parents(
    parents: dict[str, np.ndarray], kids: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Child rows whose parent is one of ``parents`` (same trace, parent span id = the parent's
    span id): the parent's row index and the child's row index, one pair per child.

    One ``np.sort`` of packed keys instead of ``argsort`` + ``searchsorted`` (about 10x slower
    on a million random ids): each key holds the id's top bits, a parent/child tag and the row
    index, so after the sort every child follows the parents sharing its top bits. Candidates
    are then checked on the whole id and the trace; the rare child whose top bits several
    parents share is looked up exactly.
    """
    ids = parents["span_id"].astype(np.uint64)
    want = kids["parent_span_id"].astype(np.uint64)
    ci_all = np.flatnonzero(want != 0)
    empty = np.empty(0, np.int64)
    if len(ids) == 0 or len(ci_all) == 0:
        return empty, empty
    bits = max(len(ids), len(ci_all)).bit_length()
    shift = np.uint64(bits + 1)
    index_mask = np.uint64((1 << bits) - 1)
    tag = np.uint64(1 << bits)
    keys = np.concatenate((
        ((ids >> shift) << shift) | np.arange(len(ids), dtype=np.uint64),
        ((want[ci_all] >> shift) << shift) | tag | np.arange(len(ci_all), dtype=np.uint64),
    ))  # fmt: skip
    keys.sort()
    budget.check()
    is_child = (keys & tag) != 0
    last_parent = np.where(is_child, -1, np.arange(len(keys)))
    np.maximum.accumulate(last_parent, out=last_parent)
    cand = np.flatnonzero(is_child & (last_parent >= 0))
    child_keys, parent_keys = keys[cand], keys[last_parent[cand]]
    same_top = ((child_keys ^ parent_keys) >> shift) == 0
    pi = (parent_keys[same_top] & index_mask).astype(np.int64)
    ci = ci_all[(child_keys[same_top] & index_mask).astype(np.int64)]
    exact = ids[pi] == want[ci]
    if not exact.all():  # top bits shared by several parents: look those children up exactly
        order = np.argsort(ids, kind="stable")
        miss = ci[~exact]
        at = np.minimum(np.searchsorted(ids[order], want[miss]), len(ids) - 1)
        found = ids[order][at] == want[miss]
        pi = np.concatenate((pi[exact], order[at[found]]))
        ci = np.concatenate((ci[exact], miss[found]))
    same = (parents["trace_hi"][pi] == kids["trace_hi"][ci]) & (
        parents["trace_lo"][pi] == kids["trace_lo"][ci]
    )
    return pi[same], ci[same]


def _top_parents(parents: Scan, weight: np.ndarray) -> Weighted:
    """The calls with the largest ``weight`` (> 0), largest first, with their weight."""
    rows = np.flatnonzero(weight > 0)
    if len(rows) == 0:
        return ()
    top = top_k(weight[rows], parents.columns["start"][rows], MAX_EXPLAIN_EXAMPLES)
    return tuple((int(weight[rows[i]]), _call(parents, int(rows[i]))) for i in top)


# ---- when -------------------------------------------------------------------------------------


def _slow_share(
    start: np.ndarray, slow: np.ndarray, lo: int, step: int, n_buckets: int
) -> tuple[np.ndarray, np.ndarray]:
    """Calls and slow calls per bucket of ``step`` from ``lo``."""
    b = ((start - lo) // step).astype(np.int64)
    return np.bincount(b, minlength=n_buckets), np.bincount(b[slow], minlength=n_buckets)


def _when(
    lo: int, step: int, calls: np.ndarray, slows: np.ndarray
) -> tuple[tuple[SlowShareBucket, ...], float]:
    """The slow share per bucket, and chi-square / dof of the slow counts against an even
    spread (binomial variance per bucket; 0 when there is nothing to compare)."""
    series = tuple(SlowShareBucket(lo + i * step, int(c), int(s))
                   for i, (c, s) in enumerate(zip(calls.tolist(), slows.tolist(), strict=True)))  # fmt: skip
    p = slows.sum() / max(calls.sum(), 1)
    used = calls > 0
    if p <= 0 or p >= 1 or used.sum() < 2:
        return series, 0.0
    expected = calls[used] * p
    chi2 = float((((slows[used] - expected) ** 2) / (expected * (1 - p))).sum())
    return series, round(chi2 / (int(used.sum()) - 1), 9)


def _release_counts(
    start: np.ndarray, codes: np.ndarray, sets: list[dict[str, str]], slow: np.ndarray
) -> tuple[Release, ...]:
    """Every release value's calls, slow calls, first and last start (before/after left 0)."""
    out: list[Release] = []
    for key in RELEASE_KEYS:
        values: dict[str, int] = {}
        lut = np.full(max(len(sets), 1), -1, dtype=np.int64)
        for code, attrs in enumerate(sets):
            if key in attrs:
                lut[code] = values.setdefault(attrs[key], len(values))
        if not values:
            continue
        budget.check()
        version = lut[codes]
        has = version >= 0
        v, s = version[has], start[has]
        counts = np.bincount(v, minlength=len(values))
        slows = np.bincount(v[slow[has]], minlength=len(values))
        first = np.full(len(values), np.iinfo(np.int64).max, dtype=np.int64)
        last = np.full(len(values), np.iinfo(np.int64).min, dtype=np.int64)
        np.minimum.at(first, v, s)
        np.maximum.at(last, v, s)
        out.extend(
            Release(key, name, int(counts[i]), int(slows[i]), int(first[i]), int(last[i]), 0, 0,
                    0, 0, 0.0, False)
            for i, name in enumerate(values) if counts[i]
        )  # fmt: skip
    return tuple(out)


def _pick_releases(releases: Sequence[Release]) -> list[Release]:
    """Per release key, the :data:`MAX_EXPLAIN_RELEASES` values with the most calls (ties by
    value)."""
    out: list[Release] = []
    for key in RELEASE_KEYS:
        mine = sorted((r for r in releases if r.key == key), key=lambda r: (-r.calls, r.version))
        out.extend(mine[:MAX_EXPLAIN_RELEASES])
    return out


def _judge_releases(
    kept: Sequence[Release], before: Sequence[tuple[int, int]], count: int, slow_count: int
) -> tuple[Release, ...]:
    """``kept`` with the slow share before and after each first start compared; the one that
    lines up (if any) marked; per key in order of first appearance."""
    out: list[Release] = []
    for key in RELEASE_KEYS:
        found = []
        for r, (bc, bs) in zip(kept, before, strict=True):
            if r.key != key:
                continue
            ac, as_ = count - bc, slow_count - bs
            _, _, z = _compare(as_, ac, bs, bc)
            found.append(replace(r, before_calls=bc, before_slow=bs, after_calls=ac,
                                 after_slow=as_, z=round(z, 9)))  # fmt: skip
        if not found:
            continue
        best = max(found, key=lambda r: r.z)
        found = [replace(r, lines_up=True) if r is best and r.z >= RELEASE_Z else r for r in found]
        out.extend(sorted(found, key=lambda r: (r.first_start, r.version)))
    return tuple(out)
