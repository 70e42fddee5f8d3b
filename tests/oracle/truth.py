"""The ground truth: the exact raw rows a layout wrote, and brute-force answers over them.

Every answer here is computed the slow, obvious way with numpy over all the rows, independent of
Kronicler's summaries, chunks, zone maps and dictionaries, following only the *documented*
definitions: a call matches a filter when ``since <= start < until``, its name matches a name or
glob, its service is equal, and every wanted attribute compares equal as text (strings as
themselves, other values in JSON form), and so does every wanted resource attribute; quantile q is the value at rank ``floor(q * (n - 1))`` of
the sorted durations (numpy's ``method="lower"``); stddev is the sample deviation; the slowest
calls are ordered by duration (descending) then start (ascending).

Quantiles from summaries are promised within 1% relative error of that exact value; everything
else (counts, errors, min, max) is exact, and mean/stddev/stderr exact up to float rounding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kronicler.db.schema import STATUS_ERROR, canonical_attributes, parse_attributes

#: Relative error the summaries promise on quantiles (plus a hair for float rounding).
QUANTILE_TOLERANCE = 0.01 + 1e-9
#: Relative tolerance on mean, stddev and stderr (float rounding of merged moments).
MOMENT_TOLERANCE = 1e-7

#: Generators with different lanes interleave their start times without collisions.
LANES = 16


@dataclass
class Rows:
    """Span rows, column by column (the same shape ``Database.append`` takes)."""

    name: np.ndarray  # object (str)
    start: np.ndarray  # int64
    duration: np.ndarray  # int64
    status: np.ndarray  # uint8
    kind: np.ndarray  # uint8
    service: np.ndarray  # object (str)
    trace_hi: np.ndarray  # uint64
    trace_lo: np.ndarray  # uint64
    span_id: np.ndarray  # uint64
    parent_span_id: np.ndarray  # uint64
    attributes: np.ndarray  # object (canonical JSON text, "" = none)
    resource: np.ndarray  # object (canonical JSON text of the resource, "" = none)
    _parsed: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False, init=False)

    FIELDS: ClassVar[tuple[str, ...]] = (
        "name", "start", "duration", "status", "kind", "service", "trace_hi", "trace_lo",
        "span_id", "parent_span_id", "attributes", "resource",
    )  # fmt: skip
    TEXT: ClassVar[tuple[str, ...]] = ("name", "service", "attributes", "resource")

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def empty(cls) -> Rows:
        return cls.concat([])

    @classmethod
    def concat(cls, parts: Sequence[Rows]) -> Rows:
        if not parts:
            return cls(
                np.empty(0, object), np.empty(0, np.int64), np.empty(0, np.int64),
                np.empty(0, np.uint8), np.empty(0, np.uint8), np.empty(0, object),
                np.empty(0, np.uint64), np.empty(0, np.uint64), np.empty(0, np.uint64),
                np.empty(0, np.uint64), np.empty(0, object), np.empty(0, object),
            )  # fmt: skip
        return cls(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in cls.FIELDS})

    def take(self, index: np.ndarray) -> Rows:
        return Rows(**{f: getattr(self, f)[index] for f in self.FIELDS})

    def trace_id(self, i: int) -> int:
        return (int(self.trace_hi[i]) << 64) | int(self.trace_lo[i])

    def attrs(self, i: int, column: str = "attributes") -> dict[str, Any]:
        text = str(getattr(self, column)[i])
        got = self._parsed.get(text)
        if got is None:
            got = self._parsed[text] = parse_attributes(text)
        return got

    def append_kwargs(self) -> dict[str, Any]:
        """Arguments of ``Database.append`` for these rows."""
        tid = [(int(h) << 64) | int(lo) for h, lo in zip(self.trace_hi, self.trace_lo, strict=True)]
        return {
            "names": [str(n) for n in self.name],
            "start_unix_nano": self.start,
            "duration_ns": self.duration,
            "status": self.status,
            "kind": self.kind,
            "service": [str(s) for s in self.service],
            "trace_id": tid,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "attributes": [str(a) for a in self.attributes],
            "resource": [str(a) for a in self.resource],
        }

    def save(self, path: Path) -> None:
        arrays = {f: getattr(self, f) for f in self.FIELDS}
        for f in self.TEXT:
            arrays[f] = np.array([json.dumps(str(v)) for v in arrays[f]], dtype=np.str_)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> Rows:
        with np.load(path) as data:
            cols = {f: data[f] for f in cls.FIELDS}
        for f in cls.TEXT:
            cols[f] = np.array([json.loads(str(v)) for v in cols[f]], dtype=object)
        return cls(**cols)

    def row(self, i: int) -> dict[str, Any]:
        """One row in the shape of ``Call.to_dict()``."""
        return {
            "function": str(self.name[i]),
            "service": str(self.service[i]),
            "start_unix_nano": int(self.start[i]),
            "duration_ns": int(self.duration[i]),
            "status": int(self.status[i]),
            "kind": int(self.kind[i]) + 1,  # every API gives OTLP's numbering
            "trace_id": f"{self.trace_id(i):032x}",
            "span_id": f"{int(self.span_id[i]):016x}",
            "parent_span_id": f"{int(self.parent_span_id[i]):016x}",
            "attributes": dict(self.attrs(i)),
            "resource": dict(self.attrs(i, "resource")),
        }


def generate(
    rng: np.random.Generator,
    n: int,
    functions: Sequence[str],
    *,
    base: int,
    span: int,
    services: Sequence[str] = ("api",),
    tail: Sequence[str] = (),
    lane: int = 0,
) -> Rows:
    """Seeded rows with the shapes that break things: zero durations, ties, heavy tails,
    errors, several services, attribute sets of mixed value types, absent attributes.

    Starts are unique (strictly increasing before shuffling) and, across generators given
    different ``lane`` numbers (0..15), never collide, so "slowest" has one right answer once
    durations tie; span ids are unique across lanes too. ``tail`` functions get a heavy tail
    (5% of calls ~30x slower).
    """
    if not 0 <= lane < LANES:
        raise ValueError(f"lane must be in [0, {LANES}), got {lane}")
    if n == 0:
        return Rows.empty()
    names = np.array([functions[i] for i in rng.integers(0, len(functions), n)], dtype=object)
    gaps = rng.integers(1, max(2, 2 * span // max(n, 1) // LANES), n)
    start = base + (np.cumsum(gaps) - gaps[0]) * LANES + lane
    rng.shuffle(start)
    # Durations: lognormal around 1 ms, quantised to 1 us for a fifth of the rows (ties), a few
    # exact zeros and a few huge values.
    dur = (1_000_000 * rng.lognormal(0.0, 0.6, n)).astype(np.int64)
    quant = rng.random(n) < 0.2
    dur[quant] = (dur[quant] // 1000) * 1000
    dur[rng.random(n) < 0.01] = 0
    dur[rng.random(n) < 0.002] = int(rng.integers(1 << 36, 1 << 40))
    for t in tail:
        heavy = (names == t) & (rng.random(n) < 0.05)
        dur[heavy] *= 30
    status = rng.choice(np.array([0, 1, 2], dtype=np.uint8), n, p=[0.5, 0.4, 0.1])
    kind = rng.integers(0, 5, n).astype(np.uint8)
    service = np.array([services[i] for i in rng.integers(0, len(services), n)], dtype=object)
    trace_hi = rng.integers(0, 1 << 63, n, dtype=np.int64).astype(np.uint64) | np.uint64(1 << 63)
    trace_lo = rng.integers(0, 1 << 63, n, dtype=np.int64).astype(np.uint64)
    first = lane * (1 << 40) + 1
    span_id = np.arange(first, first + n, dtype=np.uint64)
    parent = np.where(rng.random(n) < 0.5, 0, span_id - 1).astype(np.uint64)
    choices = [
        "",
        canonical_attributes({"route": "/a"}),
        canonical_attributes({"route": "/b", "code": 200}),
        canonical_attributes({"route": "/b", "code": 500}),
        canonical_attributes({"code": 500, "retry": True}),
        canonical_attributes({"route": "/c", "ratio": 0.5, "tags": ["x", "y"]}),
    ]
    attributes = np.array([choices[i] for i in rng.integers(0, len(choices), n)], dtype=object)
    resource = np.array([RESOURCES[i] for i in rng.integers(0, len(RESOURCES), n)], dtype=object)
    return Rows(names, start.astype(np.int64), dur, status, kind, service, trace_hi, trace_lo,
                span_id, parent, attributes, resource)  # fmt: skip


#: Resource attribute sets rows draw from: two releases on two hosts, a typed value, none.
RESOURCES = [
    "",
    canonical_attributes({"service.version": "1.0", "host.name": "web-1"}),
    canonical_attributes({"service.version": "1.1", "host.name": "web-1",
                          "deployment.environment.name": "prod"}),
    canonical_attributes({"service.version": "1.1", "host.name": "web-2", "cpu.count": 8}),
]  # fmt: skip


# ---- filters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """What a query selects, in the friendliest form every interface can express."""

    functions: tuple[str, ...] = ()
    service: str | None = None
    since: int | None = None
    until: int | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    resource: tuple[tuple[str, str], ...] = ()

    def label(self) -> str:
        parts = []
        if self.functions:
            parts.append("f=" + ",".join(self.functions))
        if self.service:
            parts.append(f"svc={self.service}")
        if self.since is not None or self.until is not None:
            parts.append(f"t=[{self.since},{self.until})")
        if self.attributes:
            parts.append("attr=" + ",".join(f"{k}={v}" for k, v in self.attributes))
        if self.resource:
            parts.append("resource=" + ",".join(f"{k}={v}" for k, v in self.resource))
        return " ".join(parts) or "all"


def _attr_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def mask(rows: Rows, q: Query) -> np.ndarray:
    """Which rows ``q`` selects (the documented semantics, evaluated row set by row set)."""
    m = np.ones(len(rows), dtype=bool)
    if q.functions:
        known = sorted(set(rows.name.tolist()))
        chosen = {n for n in known if any(fnmatchcase(n, p) for p in q.functions)}
        m &= np.isin(rows.name, np.array(sorted(chosen), dtype=object))
    if q.service is not None:
        m &= rows.service == q.service
    if q.since is not None:
        m &= rows.start >= q.since
    if q.until is not None:
        m &= rows.start < q.until
    for column, wanted in (("attributes", q.attributes), ("resource", q.resource)):
        if wanted:
            texts = getattr(rows, column).tolist()
            ok = {}
            for text in set(texts):
                attrs = parse_attributes(text)
                ok[text] = all(k in attrs and _attr_text(attrs[k]) == v for k, v in wanted)
            m &= np.array([ok[t] for t in texts], dtype=bool)
    return m


def group_keys(rows: Rows, group_by: str) -> np.ndarray:
    """The group of each row as text (None: the row has no such attribute and is left out)."""
    if group_by == "function":
        return rows.name
    if group_by == "service":
        return rows.service
    kind, key = group_by.split(":", 1)
    column = {"attribute": "attributes", "resource": "resource"}[kind]
    out = np.empty(len(rows), dtype=object)
    for i in range(len(rows)):
        a = rows.attrs(i, column)
        out[i] = _attr_text(a[key]) if key in a else None
    return out


# ---- statistics -----------------------------------------------------------------------------------


def exact_quantile(sorted_values: np.ndarray, q: float) -> float:
    return float(sorted_values[int(math.floor(q * (len(sorted_values) - 1)))])


@dataclass(frozen=True)
class Expected:
    count: int
    errors: int
    mean: float
    stddev: float
    stderr: float
    min: float
    max: float
    sorted: np.ndarray

    def quantile(self, q: float) -> float:
        return exact_quantile(self.sorted, q)

    @classmethod
    def of(cls, durations: np.ndarray, status: np.ndarray) -> Expected:
        d = np.sort(durations.astype(np.int64))
        n = len(d)
        # Exact integer moments, then one float division: the most faithful "true" value.
        total = int(d.astype(object).sum())
        mean = total / n
        ss = sum((int(x) * n - total) ** 2 for x in d.tolist())  # n^2 * sum((x - mean)^2)
        var = ss / (n * n) / (n - 1) if n > 1 else 0.0
        sd = math.sqrt(var)
        return cls(n, int((status == STATUS_ERROR).sum()), mean, sd, sd / math.sqrt(n),
                   float(d[0]), float(d[-1]), d)  # fmt: skip


def expected_stats(rows: Rows, q: Query, group_by: str = "function") -> dict[str, Expected]:
    sel = rows.take(np.flatnonzero(mask(rows, q)))
    keys = group_keys(sel, group_by)
    out = {}
    for key in sorted({k for k in keys.tolist() if k is not None}):
        m = keys == key
        out[key] = Expected.of(sel.duration[m], sel.status[m])
    return out


def close(got: float | None, want: float, rel: float, what: str, floor: float = 1e-9) -> None:
    assert got is not None, f"{what}: got None, want {want}"
    assert abs(got - want) <= rel * abs(want) + floor, f"{what}: got {got}, want {want}"


def check_group(got: dict[str, Any], want: Expected, quantiles: Sequence[float], exact: bool,
                where: str) -> None:  # fmt: skip
    """One stats row (``Stats.to_dict()`` shape) against the brute force."""
    assert got["count"] == want.count, f"{where}: count {got['count']} != {want.count}"
    assert got["errors"] == want.errors, f"{where}: errors {got['errors']} != {want.errors}"
    assert got["min_ns"] == want.min, f"{where}: min {got['min_ns']} != {want.min}"
    assert got["max_ns"] == want.max, f"{where}: max {got['max_ns']} != {want.max}"
    close(got["mean_ns"], want.mean, MOMENT_TOLERANCE, f"{where}: mean")
    # A deviation is a difference of large moments: allow rounding relative to the mean too.
    floor = 1e-9 * abs(want.mean) + 1e-9
    close(got["stddev_ns"], want.stddev, 1e-6, f"{where}: stddev", floor)
    close(got["stderr_ns"], want.stderr, 1e-6, f"{where}: stderr", floor)
    for qv in quantiles:
        label = "p" + f"{qv * 100:.10g}".replace(".", "") + "_ns"
        exp = want.quantile(qv)
        if exact:
            assert got[label] == exp, f"{where}: exact {label} {got[label]} != {exp}"
        else:
            close(got[label], exp, QUANTILE_TOLERANCE, f"{where}: {label}")


def check_table(rows_got: list[dict[str, Any]], key_name: str, want: dict[str, Expected],
                quantiles: Sequence[float], exact: bool, where: str) -> None:  # fmt: skip
    keys = [r[key_name] for r in rows_got]
    assert keys == sorted(want), f"{where}: groups {keys} != {sorted(want)}"
    for r in rows_got:
        check_group(r, want[r[key_name]], quantiles, exact, f"{where} [{r[key_name]}]")


# ---- functions, slowest, series, histogram ----------------------------------------------------------


def expected_functions(rows: Rows, q: Query) -> list[dict[str, Any]]:
    sel = rows.take(np.flatnonzero(mask(rows, q)))
    out = []
    for name in sorted(set(sel.name.tolist())):
        m = sel.name == name
        out.append({
            "function": name, "count": int(m.sum()),
            "errors": int((sel.status[m] == STATUS_ERROR).sum()),
            "first_start_unix_nano": int(sel.start[m].min()),
            "last_start_unix_nano": int(sel.start[m].max()),
        })  # fmt: skip
    return out


def expected_slowest(rows: Rows, q: Query, k: int) -> list[dict[str, Any]]:
    idx = np.flatnonzero(mask(rows, q))
    order = idx[np.lexsort((rows.start[idx], -rows.duration[idx]))][:k]
    return [rows.row(int(i)) for i in order]


def expected_series_counts(
    rows: Rows, q: Query, since: int, until: int, step: int, group_by: str = "function"
) -> dict[str, list[tuple[int, int]]]:
    """(count, errors) per bucket ``[since + i*step, +step)`` per group key."""
    sel = rows.take(np.flatnonzero(mask(rows, Query(q.functions, q.service, since, until,
                                                      q.attributes, q.resource))))  # fmt: skip
    keys = group_keys(sel, group_by)
    n_buckets = -(-(until - since) // step)
    out = {}
    for key in sorted({k for k in keys.tolist() if k is not None}):
        m = keys == key
        b = (sel.start[m] - since) // step
        counts = np.bincount(b, minlength=n_buckets)
        errors = np.bincount(b[sel.status[m] == STATUS_ERROR], minlength=n_buckets)
        out[key] = list(zip(counts.tolist(), errors.tolist(), strict=True))
    return out


def check_exact_histogram(hist: dict[str, Any], durations: np.ndarray, where: str) -> None:
    """Every listed bucket ``[lower, upper)`` holds exactly the calls inside it; they add up."""
    assert hist["count"] == len(durations), f"{where}: count {hist['count']} != {len(durations)}"
    total = 0
    prev_upper = -1.0
    d = durations.astype(np.float64)
    for b in hist["buckets"]:
        lo, hi, c = b["lower_ns"], b["upper_ns"], b["count"]
        assert lo >= prev_upper * (1 - 1e-12), f"{where}: buckets overlap at {lo}"
        prev_upper = hi
        inside = (
            int(((d >= lo * (1 - 1e-12)) & (d < hi * (1 - 1e-12))).sum())
            if lo > 0
            else int((d < hi).sum())
        )
        assert c == inside, f"{where}: bucket [{lo}, {hi}) has {c}, want {inside}"
        total += c
    assert total == len(durations), f"{where}: buckets add to {total}, want {len(durations)}"
