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
A near-unique key (a request id) is stored as a 64-bit hash per set: its values are counted
only where enough slow calls share one (:func:`_hashed_findings`), and a value's text is read
from one set carrying it, as are the examples' sets (one dictionary page each). Measured
(``bench/bench_explain.py --calls 1000000 --unique-ids``, side by side on one loaded machine,
CPU of a warm query): 5.8 s before, 0.8-1.2 s after; before the text stripping it replaced,
11.2 s. The rest is the scans' page decoding and the child join.
Findings and examples are capped (:mod:`kronicler.query.limits`).

Every figure in the answer is a count or a sum, so answers of several nodes over one agreed
threshold add up; shares, means and scores are derived from them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from kronicler import budget
from kronicler.db.attr_keys import distinct_count, value_text
from kronicler.db.attr_scan import KeyColumn, LocalTexts, key_columns
from kronicler.db.scan import Scan, top_k
from kronicler.db.schema import parse_attributes
from kronicler.db.stats import Call, quantile_label
from kronicler.db.view import answer
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
    if not isinstance(function, str) or not function or is_glob(function):
        raise ValueError(f"explain needs one function name, not a pattern: {function!r}")
    threshold = parse_slow(slow)
    Filter((function,), since=since, until=until).check()  # bounds: ints, since < until
    return answer(db, lambda view: _explain(view, function, since, until, threshold))


def _explain(
    db: ReadView, function: str, since: int | None, until: int | None, threshold: Threshold
) -> Explanation:
    resolve_functions(db, [function])  # NotFoundError for an unknown name
    check_scan_rows(db, [function], since, until)
    cols = db.scan(sorted({*CALL_COLUMNS, *ATTRIBUTE_COLUMNS}), names=[function], since=since,
                   until=until, local_attributes=True)  # fmt: skip
    d = cols.columns["duration"]
    start = cols.columns["start"]
    n = len(d)
    if n == 0:
        return Explanation(function, since, until, threshold.quantile, None, 0, 0, 0, 0, (), (),
                           None, 0, (), 0.0, (), ())  # fmt: skip
    if threshold.quantile is not None:
        rank = int(math.floor(threshold.quantile * (n - 1)))
        limit = float(np.partition(d, rank)[rank])
    else:
        limit = float(threshold.ns or 0)
    slow = d > limit
    n_slow = int(slow.sum())
    lo = since if since is not None else int(start.min())
    hi = until if until is not None else int(start.max()) + 1
    budget.check()
    ra = _row_attributes(cols)
    attrs = _attribute_findings(cols, ra, slow)
    budget.check()
    children, self_time = _child_findings(db, cols, slow)
    budget.check()
    step, series, cluster = _when(start, slow, lo, hi)
    releases = _releases(start, ra, slow)
    top = top_k(d, start, MAX_EXPLAIN_EXAMPLES) if n_slow else np.empty(0, np.int64)
    return Explanation(
        function=function, since=lo, until=hi, quantile=threshold.quantile, threshold=limit,
        count=n, slow_count=n_slow, slow_time=int(d[slow].sum()), baseline_time=int(d[~slow].sum()),
        attributes=attrs, children=children, self_time=self_time, step=step, series=series,
        cluster_score=cluster, releases=releases,
        examples=tuple(_call(cols, int(i)) for i in top[: min(n_slow, len(top))]),
    )  # fmt: skip


def _call(scan: Scan, i: int) -> Call:
    return call_at(scan.columns, scan.names, scan.services, scan.attributes, scan.resources, i)


def _examples(scan: Scan, rows: np.ndarray) -> tuple[Call, ...]:
    """The slowest of ``rows`` (indexes into ``scan``) as calls, slowest first."""
    if len(rows) == 0:
        return ()
    d, s = scan.columns["duration"][rows], scan.columns["start"][rows]
    return tuple(_call(scan, int(rows[i])) for i in top_k(d, s, MAX_EXPLAIN_EXAMPLES))


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


def _attribute_findings(
    scan: Scan, ra: RowAttributes, slow: np.ndarray
) -> tuple[AttributeFinding, ...]:
    s_total, b_total = int(slow.sum()), int(len(slow) - slow.sum())
    if s_total == 0:
        return ()
    counts = _Counts(s_total, b_total, max(MIN_SLOW_CALLS, math.ceil(CLUSTER_SHARE * s_total)))
    # Per key, the counts are bincounts: calls per code (slow and baseline, shared by the keys
    # read through the same codes), then per value over the codes carrying the key.
    per_code: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    found: list[_Found] = []
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
            found += _hashed_findings(counts, kv, slow_per, base_per, in_use)
            continue
        set_codes = np.flatnonzero(in_use & (col.value >= 0))
        values = col.value[set_codes]
        present = np.flatnonzero(np.bincount(values, minlength=len(col)))  # values in use
        remap = np.zeros(len(col), dtype=np.int64)
        remap[present] = np.arange(len(present))
        found += counts.findings(kv.key, len(present), _named(col, present), remap[values],
                                 set_codes, slow_per, base_per, kv.row_codes, n_codes)  # fmt: skip
    found.sort(key=lambda f: (-f.score, -f.z, f.key, f.value))
    out = []
    for f in found[:MAX_EXPLAIN_FINDINGS]:
        has = np.zeros(f.n_codes, dtype=bool)
        has[f.with_value] = True
        rows = np.flatnonzero(slow & has[f.row_codes])
        out.append(AttributeFinding(f.key, f.value, f.slow, f.baseline, s_total, b_total,
                                    round(f.score, 12), f.lift, round(f.z, 9),
                                    _examples(scan, rows)))  # fmt: skip
    return tuple(out)


def _hashed_findings(counts: _Counts, kv: KeyValues, slow_per: np.ndarray, base_per: np.ndarray,
                     in_use: np.ndarray) -> list[_Found]:  # fmt: skip
    """:meth:`_Counts.findings` for a hashed key without numbering all its values: only those
    seen in enough slow calls can be findings, and the slow calls are few."""
    h = kv.column.hashes
    assert h is not None
    set_codes = np.flatnonzero(in_use & (h != 0))
    carried = int(slow_per[set_codes].sum() + base_per[set_codes].sum())
    n_values = distinct_count(h[set_codes])
    near_unique = n_values > NEAR_UNIQUE * carried
    need = counts.cluster_min if near_unique else MIN_SLOW_CALLS
    slow_sets = set_codes[slow_per[set_codes] > 0]
    seen, inverse = np.unique(h[slow_sets], return_inverse=True)
    per_hash = np.bincount(inverse.reshape(-1), weights=slow_per[slow_sets], minlength=len(seen))
    candidates = seen[per_hash >= need]
    if not len(candidates):
        return []
    set_codes = set_codes[np.isin(h[set_codes], candidates)]
    value_codes = np.searchsorted(candidates, h[set_codes])
    col = kv.column
    return counts.findings(kv.key, len(candidates), lambda v: col.name_of_hash(int(candidates[v])),
                           value_codes, set_codes, slow_per, base_per, kv.row_codes,
                           len(h), near_unique=near_unique)  # fmt: skip


def _named(col: KeyColumn, present: np.ndarray) -> Callable[[int], str]:
    """The text of value ``v`` among ``col``'s values ``present``."""
    return lambda v: col.name(int(present[v]))


@dataclass(frozen=True, slots=True)
class _Found:
    """A candidate finding; its rows are those whose ``row_codes`` is in ``with_value``."""

    score: float
    z: float
    key: str
    value: str
    slow: int
    baseline: int
    lift: float | None
    with_value: np.ndarray
    row_codes: np.ndarray
    n_codes: int


@dataclass(frozen=True, slots=True)
class _Counts:
    """The totals every key's values are judged against."""

    s_total: int
    b_total: int
    cluster_min: int

    def findings(self, key: str, n_values: int, name: Callable[[int], str],
                 value_codes: np.ndarray, set_codes: np.ndarray, slow_per_set: np.ndarray,
                 base_per_set: np.ndarray, row_codes: np.ndarray, n_codes: int,
                 near_unique: bool | None = None) -> list[_Found]:  # fmt: skip
        """The values of ``key`` (``value_codes[i]`` is the value of set ``set_codes[i]``, its
        text ``name(value)``) over-represented among slow calls; near-unique keys' values must
        cluster (``near_unique``: judged here from the counts when None). Only the values found
        are named (a near-unique key's are read from texts)."""
        slow_n = np.bincount(value_codes, weights=slow_per_set[set_codes], minlength=n_values)
        base_n = np.bincount(value_codes, weights=base_per_set[set_codes], minlength=n_values)
        if near_unique is None:
            near_unique = n_values > NEAR_UNIQUE * (slow_n.sum() + base_n.sum())
        need = self.cluster_min if near_unique else MIN_SLOW_CALLS
        out = []
        for v in np.flatnonzero(slow_n >= need).tolist():
            sc, bc = int(slow_n[v]), int(base_n[v])
            score, lift, z = _compare(sc, self.s_total, bc, self.b_total)
            if score <= 0 or z < MIN_Z:
                continue
            out.append(_Found(score, z, key, name(v), sc, bc, lift, set_codes[value_codes == v],
                              row_codes, n_codes))  # fmt: skip
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


def _child_findings(
    db: ReadView, parents: Scan, slow: np.ndarray
) -> tuple[tuple[ChildFinding, ...], ChildFinding | None]:
    pc = parents.columns
    d, start = pc["duration"], pc["start"]
    n = len(d)
    lo, hi = int(start.min()), int((start + d).max()) + 1
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

    def finding(name: str, sc: int, bc: int, skids: int, bkids: int, st: int, bt: int,
                examples: tuple[Call, ...]) -> ChildFinding:  # fmt: skip
        return ChildFinding(name, sc, bc, skids, bkids, st, bt, s_total, b_total, s_time, b_time,
                            examples)  # fmt: skip

    ranked = []
    for code in np.flatnonzero(calls[0::2] + calls[1::2]).tolist():
        extra = time[2 * code + 1] / max(s_total, 1) - time[2 * code] / max(b_total, 1)
        ranked.append((-extra if s_total and b_total else -time[2 * code + 1], kids.names[code],
                       code))  # fmt: skip
    ranked.sort()
    out = []
    for _, name, code in ranked[:MAX_EXPLAIN_FINDINGS]:
        mine = (f == code) & (sflag == 1)
        per_parent = np.bincount(pi[mine], weights=kd[mine], minlength=n)
        out.append(finding(name, int(with_child[2 * code + 1]), int(with_child[2 * code]),
                           int(calls[2 * code + 1]), int(calls[2 * code]), int(time[2 * code + 1]),
                           int(time[2 * code]), _top_parents(parents, per_parent)))  # fmt: skip
    child_time = np.bincount(pi, weights=kd, minlength=n)
    own = np.maximum(d - child_time, 0).astype(np.int64)
    alone = np.bincount(pi, minlength=n) == 0
    self_time = finding(
        SELF_TIME, int((alone & slow).sum()), int((alone & ~slow).sum()), 0, 0,
        int(own[slow].sum()), int(own[~slow].sum()),
        _top_parents(parents, np.where(slow, own, 0)),
    )  # fmt: skip
    return tuple(out), self_time


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


def _top_parents(parents: Scan, weight: np.ndarray) -> tuple[Call, ...]:
    """The calls with the largest ``weight`` (> 0), largest first."""
    rows = np.flatnonzero(weight > 0)
    if len(rows) == 0:
        return ()
    top = top_k(weight[rows], parents.columns["start"][rows], MAX_EXPLAIN_EXAMPLES)
    return tuple(_call(parents, int(rows[i])) for i in top)


# ---- when -------------------------------------------------------------------------------------


def _when(
    start: np.ndarray, slow: np.ndarray, lo: int, hi: int
) -> tuple[int, tuple[SlowShareBucket, ...], float]:
    """The slow share per bucket, and chi-square / dof of the slow counts against an even
    spread (binomial variance per bucket; 0 when there is nothing to compare)."""
    step = pick_step(hi - lo, SERIES_BUCKETS)
    buckets = -(-(hi - lo) // step)
    b = ((start - lo) // step).astype(np.int64)
    calls = np.bincount(b, minlength=buckets)
    slows = np.bincount(b[slow], minlength=buckets)
    series = tuple(SlowShareBucket(lo + i * step, int(c), int(s))
                   for i, (c, s) in enumerate(zip(calls.tolist(), slows.tolist(), strict=True)))  # fmt: skip
    p = slows.sum() / max(calls.sum(), 1)
    used = calls > 0
    if p <= 0 or p >= 1 or used.sum() < 2:
        return step, series, 0.0
    expected = calls[used] * p
    chi2 = float((((slows[used] - expected) ** 2) / (expected * (1 - p))).sum())
    return step, series, round(chi2 / (int(used.sum()) - 1), 9)


def _releases(start: np.ndarray, ra: RowAttributes, slow: np.ndarray) -> tuple[Release, ...]:
    out: list[Release] = []
    for key in RELEASE_KEYS:
        kv = ra.keys.get(key)
        if kv is None:
            continue
        col = kv.column
        per_row = col.value[kv.row_codes]
        carried = per_row >= 0
        if not carried.any():
            continue
        names = np.flatnonzero(np.bincount(per_row[carried], minlength=len(col)))
        remap = np.full(len(col) + 1, -1, dtype=np.int64)  # the last: -1 stays -1
        remap[names] = np.arange(len(names))
        version = remap[per_row]
        counts = np.bincount(version[carried], minlength=len(names))
        keep = np.argsort(-counts, kind="stable")[:MAX_EXPLAIN_RELEASES]
        found = []
        for v in keep.tolist():
            budget.check()
            mine = version == v
            first, last = int(start[mine].min()), int(start[mine].max())
            before = start < first
            bc, bs = int(before.sum()), int((before & slow).sum())
            ac, as_ = len(start) - bc, int(slow.sum()) - bs
            _, _, z = _compare(as_, ac, bs, bc)
            found.append(Release(key, col.name(int(names[v])), int(counts[v]),
                                 int((mine & slow).sum()), first, last, bc, bs, ac, as_,
                                 round(z, 9), False))  # fmt: skip
        best = max(found, key=lambda r: r.z)
        found = [replace(r, lines_up=True) if r is best and r.z >= RELEASE_Z else r for r in found]
        out.extend(sorted(found, key=lambda r: (r.first_start, r.version)))
    return tuple(out)
