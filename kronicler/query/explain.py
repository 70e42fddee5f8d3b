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
threshold add up; shares, means and scores are derived from them.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Sequence
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
                   until=until)  # fmt: skip
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
    releases = _releases(start, ra.codes, ra.sets, slow)
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


def _attribute_findings(
    scan: Scan, ra: RowAttributes, slow: np.ndarray
) -> tuple[AttributeFinding, ...]:
    codes, n_sets = ra.codes, len(ra.sets)
    slow_per_set = np.bincount(codes[slow], minlength=n_sets)
    base_per_set = np.bincount(codes[~slow], minlength=n_sets)
    s_total, b_total = int(slow.sum()), int(len(slow) - slow.sum())
    if s_total == 0:
        return ()
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
    counts = _Counts(s_total, b_total, max(MIN_SLOW_CALLS, math.ceil(CLUSTER_SHARE * s_total)))
    found: list[_Found] = []
    for key, (values, set_list, value_list) in per_key.items():
        budget.check()
        set_codes = np.array(set_list, dtype=np.int64)
        found += counts.findings(key, list(values), np.array(value_list, dtype=np.int64), set_codes,
                                 slow_per_set, base_per_set, codes, n_sets)  # fmt: skip
    if ra.uniques:  # the same, per distinct attribute set, over the values moved out
        slow_per_used = np.bincount(ra.used_row[slow], minlength=ra.n_used)
        base_per_used = np.bincount(ra.used_row[~slow], minlength=ra.n_used)
        for u in ra.uniques:
            budget.check()
            distinct, value_codes = _codes(u.values.tolist())
            found += counts.findings(u.key, distinct, value_codes, u.sets, slow_per_used,
                                     base_per_used, ra.used_row, ra.n_used)  # fmt: skip
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

    def findings(self, key: str, values: Sequence[str], value_codes: np.ndarray,
                 set_codes: np.ndarray, slow_per_set: np.ndarray, base_per_set: np.ndarray,
                 row_codes: np.ndarray, n_codes: int) -> list[_Found]:  # fmt: skip
        """The values of ``key`` (``value_codes[i]`` is the value of set ``set_codes[i]``)
        over-represented among slow calls; near-unique keys' values must cluster."""
        slow_n = np.bincount(value_codes, weights=slow_per_set[set_codes], minlength=len(values))
        base_n = np.bincount(value_codes, weights=base_per_set[set_codes], minlength=len(values))
        near_unique = len(values) > NEAR_UNIQUE * (slow_n.sum() + base_n.sum())
        need = self.cluster_min if near_unique else MIN_SLOW_CALLS
        names = None
        out = []
        for v in np.flatnonzero(slow_n >= need).tolist():
            sc, bc = int(slow_n[v]), int(base_n[v])
            score, lift, z = _compare(sc, self.s_total, bc, self.b_total)
            if score <= 0 or z < MIN_Z:
                continue
            names = names or list(values)
            out.append(_Found(score, z, key, names[v], sc, bc, lift, set_codes[value_codes == v],
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


def _releases(
    start: np.ndarray, codes: np.ndarray, sets: list[dict[str, str]], slow: np.ndarray
) -> tuple[Release, ...]:
    out: list[Release] = []
    for key in RELEASE_KEYS:
        values: dict[str, int] = {}
        lut = np.full(max(len(sets), 1), -1, dtype=np.int64)
        for code, attrs in enumerate(sets):
            if key in attrs:
                lut[code] = values.setdefault(attrs[key], len(values))
        if not values:
            continue
        version = lut[codes]
        counts = np.bincount(version[version >= 0], minlength=len(values))
        keep = np.argsort(-counts, kind="stable")[:MAX_EXPLAIN_RELEASES]
        names = list(values)
        found = []
        for v in keep.tolist():
            budget.check()
            mine = version == v
            first, last = int(start[mine].min()), int(start[mine].max())
            before = start < first
            bc, bs = int(before.sum()), int((before & slow).sum())
            ac, as_ = len(start) - bc, int(slow.sum()) - bs
            _, _, z = _compare(as_, ac, bs, bc)
            found.append(Release(key, names[v], int(counts[v]), int((mine & slow).sum()), first,
                                 last, bc, bs, ac, as_, round(z, 9), False))  # fmt: skip
        best = max(found, key=lambda r: r.z)
        found = [replace(r, lines_up=True) if r is best and r.z >= RELEASE_Z else r for r in found]
        out.extend(sorted(found, key=lambda r: (r.first_start, r.version)))
    return tuple(out)
