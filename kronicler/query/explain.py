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
(bincounts over attribute-set codes, one sort of packed keys to join children). No attribute
text is parsed to count: the scan keeps each segment's attribute codes, and each key's value per
code comes from the per-key columns written at seal (:mod:`kronicler.db.attr_keys`, read by
:mod:`kronicler.db.attr_scan`; sets they do not cover are split from their texts the same way).
A near-unique key (a request id) is stored as a 64-bit hash per set: a part to be merged counts
every hash (one sort with its inverse); a database answering alone counts only the hashes seen
in enough slow calls to be findings (the slow sets' hashes sorted, the baseline calls of those
found by binary search) and the distinct values by one plain sort; only a value that becomes a
finding has its text read, from one set carrying it, as are the examples' sets (one dictionary
page each). Measured (the ``bench/bench_explain.py --calls 1000000 --unique-ids`` database,
the build before and this one queried in turn by two processes on one loaded machine, CPU
median of 12 warm queries each): 1.02 s with every hash numbered, 0.76 s now (4.9 s with the
text stripping before that). The rest is the scans' page decoding and the child join.
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
calls; the trade-off is that a database's part lists every attribute value, not only the top
(a hashed key's as hashes, 8 bytes each, merged by hash; a database answering alone skips the
hashes that cannot be findings; the texts of the values that clear the bar are then asked of
the databases in one more round, before the ranking, so ties break on the text as on one node).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from kronicler import budget
from kronicler.db.attr_keys import distinct_count, hash_texts, value_text
from kronicler.db.attr_scan import KeyColumn, LocalTexts, key_columns
from kronicler.db.scan import Scan, top_k
from kronicler.db.schema import parse_attributes
from kronicler.db.stats import Call, quantile_label
from kronicler.db.view import answer
from kronicler.errors import KroniclerError, shorten
from kronicler.query.filters import (
    RESOURCE_PREFIX,
    Filter,
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
#: Time buckets of the slow-share series (at most).
SERIES_BUCKETS = 60
#: A release lines up with the slow calls when the slow share rose after it with this z.
RELEASE_Z = 3.0
#: Name of the self-time row.
SELF_TIME = "(self time)"

_QUANTILE = re.compile(r"^p(\d{1,6})$")
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
    part = calls.split(limit, sole=True).part(lo, step, buckets(lo, hi, step))
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
    calls carrying each: added up per value across databases. A key hashed at seal
    (:mod:`kronicler.db.attr_keys`) has ``hashes`` (distinct, sorted) in place of ``values``
    (then empty): its texts are read only for the values that become findings.

    ``whole``: set when a database answers alone (:meth:`Calls.split`), where a hashed key
    keeps only the hashes seen in :data:`MIN_SLOW_CALLS` slow calls (no other can be a finding):
    (distinct values, calls carrying the key) of all of them, for the near-unique judgement.
    Such counts cannot be merged."""

    key: str
    values: list[str]
    slow: np.ndarray
    baseline: np.ndarray
    hashes: np.ndarray | None = None
    whole: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.values) if self.hashes is None else len(self.hashes)

    def near_unique(self) -> bool:
        """More distinct values than :data:`NEAR_UNIQUE` of the calls carrying the key."""
        n, calls = self.whole or (len(self), int(self.slow.sum()) + int(self.baseline.sum()))
        return n > NEAR_UNIQUE * calls


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
    values, child functions, and the first start of each release kept. An attribute value given
    as an int is the hash of one to name (:attr:`Details.names`), before the ranking."""

    attributes: tuple[tuple[str, str | int], ...]
    children: tuple[str, ...]
    release_starts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Details:
    """One database's answer to :class:`Picks`, parallel to it: the slowest slow calls carrying
    each value; the slow calls that spent the most time in each child (weight = that time); the
    calls (and slow calls) that started before each release's first start; ``names``: the text
    of each hashed value asked, None where no call here carries it (or for a text)."""

    attributes: tuple[tuple[Call, ...], ...]
    children: tuple[Weighted, ...]
    before: tuple[tuple[int, int], ...]
    names: tuple[str | None, ...] = ()

    @classmethod
    def none(cls, picks: Picks) -> Details:
        """The details of a database without calls."""
        return cls(tuple(() for _ in picks.attributes), tuple(() for _ in picks.children),
                   tuple((0, 0) for _ in picks.release_starts),
                   tuple(None for _ in picks.attributes))  # fmt: skip


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
        self.sole = False
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
        return cls(db, db.scan(sorted(wanted), names=[function], since=since, until=until,
                               local_attributes=not columns))  # fmt: skip

    def split(
        self, limit: float, child_window: tuple[int, int] | None = None, *, sole: bool = False
    ) -> Calls:
        """Slow calls are those with ``duration > limit``; children are the rows starting in
        ``child_window`` (by default from the calls' earliest start to their latest end: a
        frontend passes those of all nodes' calls, so every node looks where one node holding
        them all would). ``sole``: this database answers alone, its part merged with none, so
        a hashed key's counts skip the values that cannot be findings
        (:attr:`ValueCounts.whole`)."""
        self.slow = self.duration > limit
        self.child_window = child_window
        self.sole = sole
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
            self._keys = {k.counts.key: k for k in _value_counts(self.ra, self.slow, self.sole)}
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
        releases = _release_counts(start, self.ra, slow)
        top = top_k(d, start, MAX_EXPLAIN_EXAMPLES)
        return ExplainPart(
            self.count, int(slow.sum()), int(d[slow].sum()), int(d[~slow].sum()), values,
            kids.sums, kids.self_time, _top_parents(self.scan, kids.own_slow), calls, slows,
            releases, tuple(_call(self.scan, int(i)) for i in top),
        )  # fmt: skip

    def details(self, picks: Picks) -> Details:
        if self.count == 0:
            return Details.none(picks)
        attrs: list[tuple[Call, ...]] = []
        names: list[str | None] = []
        for key, value in picks.attributes:
            budget.check()
            found = self.keys().get(key)
            if isinstance(value, int):  # a hash to name: no examples
                attrs.append(())
                names.append(None if found is None else found.name(value))
                continue
            names.append(None)
            attrs.append(
                () if found is None else _examples(self.scan, found.rows(value, self.slow))
            )
        children = tuple(self.children().examples(self.scan, self.slow, name)
                         for name in picks.children)  # fmt: skip
        before = []
        for first in picks.release_starts:
            early = self.start < first
            before.append((int(early.sum()), int((early & self.slow).sum())))
        return Details(tuple(attrs), children, tuple(before), tuple(names))


def merge_parts(parts: Sequence[ExplainPart]) -> ExplainPart:
    """The part of the union of the databases (one part is its own union)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        raise ValueError("no part to merge")
    if len({len(p.series_calls) for p in parts}) > 1:
        raise ValueError("explain parts over different series grids cannot be merged")
    if any(vc.whole is not None for p in parts for vc in p.values):
        raise ValueError("a part counted for one database alone (Calls.split sole) cannot be "
                         "merged")  # fmt: skip
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
        tuple(next((d.names[i] for d in got if d.names[i] is not None), None)
              for i in range(len(picks.attributes))),
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
    release counts. One database's answer and a frontend's go through here alike; when a hashed
    key has values that clear the bar, ``details`` is first asked for their texts, so findings
    are ranked (ties by value text) as one database would."""
    lo, hi, step = grid
    p = merge_parts(parts)
    s_total, b_total = p.slow_count, p.count - p.slow_count
    found = _judge(_named(_candidates(p.values, s_total, b_total), details))
    children = _rank_children(p.children, s_total, b_total)
    kept = _pick_releases(p.releases)
    picks = Picks(tuple((f.key, str(f.value)) for f in found),
                  tuple(c.function for c in children),
                  tuple(r.first_start for r in kept))  # fmt: skip
    budget.check()
    got = merge_details(details(picks), picks) if found or children or kept else \
        Details((), (), ())  # fmt: skip
    series, cluster = _when(lo, step, p.series_calls, p.series_slow)
    return Explanation(
        function=function, since=lo, until=hi, quantile=quantile, threshold=limit,
        count=p.count, slow_count=s_total, slow_time=p.slow_time, baseline_time=p.baseline_time,
        attributes=tuple(
            AttributeFinding(f.key, str(f.value), f.slow, f.baseline, s_total, b_total,
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


def _named(found: list[_Found], details: Callable[[Picks], Sequence[Details]]) -> list[_Found]:
    """``found`` with hashed values replaced by their texts, asked of the databases in one
    round (skipped when every value is a text)."""
    hashed = [i for i, f in enumerate(found) if isinstance(f.value, int)]
    if not hashed:
        return found
    picks = Picks(tuple((found[i].key, found[i].value) for i in hashed), (), ())
    names = merge_details(details(picks), picks).names
    out = list(found)
    for i, name in zip(hashed, names, strict=True):
        if name is None:
            raise KroniclerError(f"no database names the value of {shorten(found[i].key)} "
                                 f"hashed {found[i].value}")  # fmt: skip
        out[i] = replace(found[i], value=name)
    return out


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
class KeyValues:
    """One key's values per row, through a code: row ``i`` has the value of code
    ``row_codes[i]`` in ``column`` (an attribute set, a resource set, or the row itself)."""

    key: str
    row_codes: np.ndarray
    column: KeyColumn


@dataclass(frozen=True, slots=True)
class RowAttributes:
    """Every attribute and resource key (``resource:KEY``) of the scanned rows, by name."""

    keys: dict[str, KeyValues]


def _row_attributes(scan: Scan) -> RowAttributes:
    """The one place that reads attributes: keys are handled generically downstream.

    Attribute keys come per key from the per-key columns (:mod:`kronicler.db.attr_scan`; the
    scan keeps each segment's attribute codes), so no attribute text is parsed for counting;
    resource sets are few and parsed here. An attribute key that is also a resource key
    (``resource:KEY`` spelled as an attribute) takes the attribute's value where a row has it.
    """
    attr = scan.columns["attributes"].astype(np.int64)
    res = scan.columns["resource"].astype(np.int64)
    keys: dict[str, KeyValues] = {}
    texts = scan.attributes
    assert isinstance(texts, LocalTexts), "explain scans with local_attributes"
    used = np.zeros(len(texts), dtype=bool)
    used[attr] = True
    for col in key_columns(texts, used):
        keys[col.key] = KeyValues(col.key, attr, col)
    budget.check()
    for key, kv in _resource_keys(scan.resources, res).items():
        keys[key] = _either(keys[key], kv, len(attr)) if key in keys else kv
    return RowAttributes(keys)


def _resource_keys(resources: list[str], res: np.ndarray) -> dict[str, KeyValues]:
    per_key: dict[str, tuple[dict[str, int], np.ndarray]] = {}
    n = max(len(resources), 1)
    for code in np.flatnonzero(np.bincount(res)).tolist():
        for key, value in parse_attributes(resources[code]).items():
            index, value_of = per_key.setdefault(RESOURCE_PREFIX + key,
                                                 ({}, np.full(n, -1, dtype=np.int64)))  # fmt: skip
            value_of[code] = index.setdefault(value_text(value), len(index))
    return {key: KeyValues(key, res, KeyColumn(key, value=value_of, names=list(index)))
            for key, (index, value_of) in per_key.items()}  # fmt: skip


def _either(first: KeyValues, second: KeyValues, n: int) -> KeyValues:
    """Per row ``first``'s value where it has one, else ``second``'s (values equal as text are
    one value)."""
    one, two = first.column, second.column
    a, b = one.value[first.row_codes], two.value[second.row_codes]
    index = {one.name(v): v for v in range(len(one))}  # distinct texts
    lut = np.fromiter((index.setdefault(two.name(v), len(index)) for v in range(len(two))),
                      np.int64, len(two))  # fmt: skip
    value = np.where(a >= 0, a, np.r_[lut, -1][b])
    return KeyValues(first.key, np.arange(n), KeyColumn(first.key, value=value, names=list(index)))


@dataclass(frozen=True, slots=True)
class _KeyValues:
    """A key's :class:`ValueCounts` and where its values are (``kv``), to find a value's rows
    and name a hashed value; ``in_use``: the codes some row is in."""

    counts: ValueCounts
    kv: KeyValues
    in_use: np.ndarray

    def _has(self, value: str | int) -> np.ndarray:
        """Per code, whether it carries ``value`` (a text, or a hash of one)."""
        col = self.kv.column
        if col.hashes is not None:
            h = value if isinstance(value, int) else int(hash_texts([value])[0])
            return (col.hashes == np.uint64(h)) & self.in_use
        names = [col.name(v) for v in range(len(col))]
        if isinstance(value, int):
            found = np.flatnonzero(hash_texts(names) == np.uint64(value))
            v = int(found[0]) if len(found) else -1
        else:
            v = names.index(value) if value in names else -1
        return (col.value == v) & (v >= 0) & self.in_use

    def rows(self, value: str, slow: np.ndarray) -> np.ndarray:
        """The slow rows carrying ``value`` (none when no call here carries it)."""
        return np.flatnonzero(slow & self._has(value)[self.kv.row_codes])

    def name(self, h: int) -> str | None:
        """The text of the value hashed ``h``; None when no call here carries it."""
        has = np.flatnonzero(self._has(h))
        if not len(has):
            return None
        col = self.kv.column
        return col.name_of_hash(h) if col.hashes is not None else col.name(int(col.value[has[0]]))


def _value_counts(ra: RowAttributes, slow: np.ndarray, sole: bool = False) -> list[_KeyValues]:
    """Per attribute key, every value's slow and baseline calls: bincounts of calls per code
    (shared by the keys read through the same codes), then per value over the codes carrying
    the key (a bincount per value number). A hashed key's values are its hashes, numbered by
    one sort; with ``sole``, only
    those that can be findings (:func:`_sole_hashed`)."""
    per_code: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    out = []
    for kv in ra.keys.values():
        budget.check()
        col = kv.column
        n_codes = len(col.value if col.hashes is None else col.hashes)
        both = per_code.get(id(kv.row_codes))
        if both is None:
            slow_per = np.bincount(kv.row_codes[slow], minlength=n_codes)
            base_per = np.bincount(kv.row_codes[~slow], minlength=n_codes)
            both = per_code[id(kv.row_codes)] = (slow_per, base_per, (slow_per + base_per) > 0)
        slow_per, base_per, in_use = both
        if col.hashes is not None:
            set_codes = np.flatnonzero(in_use & (col.hashes != 0))
            if not len(set_codes):
                continue
            if sole:
                counts = _sole_hashed(kv.key, col.hashes[set_codes], slow_per[set_codes],
                                      base_per[set_codes])  # fmt: skip
                out.append(_KeyValues(counts, kv, in_use))
                continue
            hashes, value_codes = np.unique(col.hashes[set_codes], return_inverse=True)
            names: list[str] = []
        else:
            set_codes = np.flatnonzero(in_use & (col.value >= 0))
            if not len(set_codes):
                continue
            # Numbered by the column already (few values): counted per number, without a sort.
            value_codes, hashes = col.value[set_codes], None
        value_codes = value_codes.reshape(-1)
        n_values = len(col) if hashes is None else len(hashes)
        slow_n = np.bincount(value_codes, weights=slow_per[set_codes], minlength=n_values)
        base_n = np.bincount(value_codes, weights=base_per[set_codes], minlength=n_values)
        if hashes is None:  # the values some call here carries, in the column's order
            present = np.flatnonzero(slow_n + base_n)
            names, slow_n, base_n = [col.name(v) for v in present.tolist()], slow_n[present], \
                base_n[present]  # fmt: skip
        counts = ValueCounts(kv.key, names, slow_n.astype(np.int64), base_n.astype(np.int64),
                             hashes)  # fmt: skip
        out.append(_KeyValues(counts, kv, in_use))
    return out


def _sole_hashed(key: str, h: np.ndarray, slow_per: np.ndarray, base_per: np.ndarray
                 ) -> ValueCounts:  # fmt: skip
    """A hashed key's counts when one database answers alone: ``h`` the hash of each set
    carrying the key, with its slow and baseline calls. Only the hashes of sets with slow calls
    are numbered (a sort of those few), the ones seen in :data:`MIN_SLOW_CALLS` slow calls kept,
    and their baseline calls found by a binary search of every set's hash among them; the
    distinct count takes one plain sort of the hashes, about half the cost of numbering them
    all (a sort with its inverse) and counting per number."""
    has_slow = slow_per > 0
    hashes, inverse = np.unique(h[has_slow], return_inverse=True)
    slow_n = np.bincount(inverse.reshape(-1), weights=slow_per[has_slow], minlength=len(hashes))
    keep = slow_n >= MIN_SLOW_CALLS
    hashes, slow_n = hashes[keep], slow_n[keep]
    base_n: np.ndarray = np.zeros(len(hashes))
    if len(hashes):
        at = np.minimum(np.searchsorted(hashes, h), len(hashes) - 1)
        hit = hashes[at] == h
        base_n = np.bincount(at[hit], weights=base_per[hit], minlength=len(hashes))
    return ValueCounts(key, [], slow_n.astype(np.int64), base_n.astype(np.int64), hashes,
                       (distinct_count(h), int(slow_per.sum()) + int(base_per.sum())))  # fmt: skip


def _merge_values(parts: Sequence[Sequence[ValueCounts]]) -> tuple[ValueCounts, ...]:
    """Per key, the values of every part united and their counts added (so a key is judged
    near-unique on the union's distinct values, not on any one database's). A key hashed in
    some part is hashed in the union: the others' texts are hashed as the seal hashes them."""
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
        slow = np.concatenate([vc.slow for vc in group])
        base = np.concatenate([vc.baseline for vc in group])
        if any(vc.hashes is not None for vc in group):
            ids = np.concatenate([hash_texts(vc.values) if vc.hashes is None else vc.hashes
                                  for vc in group])  # fmt: skip
            hashes, codes = np.unique(ids, return_inverse=True)
            distinct: list[str] = []
            n = len(hashes)
        else:
            distinct, codes = _codes([v for vc in group for v in vc.values])
            hashes, n = None, len(distinct)
        s, b = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        np.add.at(s, codes.reshape(-1), slow)
        np.add.at(b, codes.reshape(-1), base)
        out.append(ValueCounts(key, distinct, s, b, hashes))
    return tuple(out)


def _codes(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct ``texts`` and per text its code (first seen first)."""
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(t, len(index)) for t in texts), np.int64, len(texts))
    return list(index), codes


def _candidates(values: Sequence[ValueCounts], s_total: int, b_total: int) -> list[_Found]:
    """The values over-represented among slow calls, unsorted; a hashed key's by hash."""
    if s_total == 0:
        return []
    counts = _Counts(s_total, b_total, max(MIN_SLOW_CALLS, math.ceil(CLUSTER_SHARE * s_total)))
    found: list[_Found] = []
    for vc in values:
        budget.check()
        found += counts.findings(vc)
    return found


def _judge(found: Sequence[_Found]) -> list[_Found]:
    """The named candidates best first, at most :data:`MAX_EXPLAIN_FINDINGS`."""
    return sorted(found, key=lambda f: (-f.score, -f.z, f.key, f.value))[:MAX_EXPLAIN_FINDINGS]


@dataclass(frozen=True, slots=True)
class _Found:
    """A candidate finding; ``value`` a text, or the hash of one until it is named."""

    score: float
    z: float
    key: str
    value: str | int
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
        need = self.cluster_min if vc.near_unique() else MIN_SLOW_CALLS
        out = []
        for v in np.flatnonzero(slow_n >= need).tolist():
            sc, bc = int(slow_n[v]), int(base_n[v])
            score, lift, z = _compare(sc, self.s_total, bc, self.b_total)
            if score <= 0 or z < MIN_Z:
                continue
            value = vc.values[v] if vc.hashes is None else int(vc.hashes[v])
            out.append(_Found(score, z, vc.key, value, sc, bc, lift))
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


def _release_counts(start: np.ndarray, ra: RowAttributes, slow: np.ndarray) -> tuple[Release, ...]:
    """Every release value's calls, slow calls, first and last start (before/after left 0)."""
    out: list[Release] = []
    for key in RELEASE_KEYS:
        kv = ra.keys.get(key)
        if kv is None:
            continue
        col = kv.column
        per_row = col.value[kv.row_codes]
        has = per_row >= 0
        if not has.any():
            continue
        budget.check()
        names, v = np.unique(per_row[has], return_inverse=True)
        v = v.reshape(-1)
        s = start[has]
        counts = np.bincount(v, minlength=len(names))
        slows = np.bincount(v[slow[has]], minlength=len(names))
        first = np.full(len(names), np.iinfo(np.int64).max, dtype=np.int64)
        last = np.full(len(names), np.iinfo(np.int64).min, dtype=np.int64)
        np.minimum.at(first, v, s)
        np.maximum.at(last, v, s)
        out.extend(
            Release(key, col.name(int(name)), int(counts[i]), int(slows[i]), int(first[i]),
                    int(last[i]), 0, 0, 0, 0, 0.0, False)
            for i, name in enumerate(names.tolist())
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
