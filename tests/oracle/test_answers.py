"""Every query of the Python API, on every layout, against the brute force over the raw rows.

Each test sweeps the layout's standard queries (see ``queries.py``) and reports every wrong
answer at once, labelled with the query, so one failing run shows the whole pattern.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from kronicler import query as kq
from kronicler.db import Database, segment_tree
from kronicler.db.database import SEGMENTS
from tests.oracle.interfaces import QUANTILES, PythonApi, to_filter
from tests.oracle.layouts import Layout
from tests.oracle.queries import Failures, standard_queries, time_bounds
from tests.oracle.truth import (
    QUANTILE_TOLERANCE,
    Expected,
    Query,
    check_exact_histogram,
    check_table,
    close,
    expected_functions,
    expected_series_counts,
    expected_slowest,
    expected_stats,
    group_keys,
    mask,
)

ALL_QUANTILES = (0.0, 0.001, 0.25, *QUANTILES, 1.0)


def test_maintained_layouts_read_the_roll_up_across_segments(layout: Layout) -> None:
    """Compaction, the time-disjoint one and retention leave a roll-up across the closed
    segments (``segment_tree.py``), which the layout's answers here and through every interface
    (``test_interfaces.py``) read: a fresh reader's whole-history answer takes its nodes, and
    its answers over time ranges equal the brute force."""
    file = layout.path / SEGMENTS / segment_tree.FILE
    if layout.name == "deployment":
        assert not file.exists()  # no maintenance ran
        return
    assert file.exists()
    with Database.open(layout.path, readonly=True) as fresh:
        for since, until in [(None, None), *time_bounds(layout.truth).values()]:
            q = Query(since=since, until=until)
            check_table(PythonApi(fresh).stats(q), "function", expected_stats(layout.truth, q),
                        QUANTILES, exact=False, where=f"{layout.name} {q.label()}")  # fmt: skip
        tree = fresh._reads.tree.current
        assert tree is not None and tree.reads >= 1


@pytest.mark.parametrize("exact", [False, True], ids=["summaries", "exact"])
def test_stats_by_function(layout: Layout, db: Database, exact: bool) -> None:
    api, failures = PythonApi(db), Failures()
    for q in standard_queries(layout.truth):
        want = expected_stats(layout.truth, q)
        failures.check(q.label(), lambda q=q, want=want: check_table(
            api.stats(q, quantiles=ALL_QUANTILES, exact=exact), "function", want,
            ALL_QUANTILES, exact, "stats"))  # fmt: skip
    failures.assert_none()


WEB_1 = (("host.name", "web-1"),)
GROUP_KEYS = ["service", "attribute:route", "attribute:code", "resource:service.version",
              "resource:cpu.count"]  # fmt: skip


@pytest.mark.parametrize("group_by", GROUP_KEYS)
@pytest.mark.parametrize("exact", [False, True], ids=["summaries", "exact"])
def test_stats_grouped(layout: Layout, db: Database, group_by: str, exact: bool) -> None:
    api, failures = PythonApi(db), Failures()
    key_name = group_by.split(":", 1)[-1]
    for q in standard_queries(layout.truth):
        want = expected_stats(layout.truth, q, group_by)
        failures.check(q.label(), lambda q=q, want=want: check_table(
            api.stats(q, group_by=group_by, exact=exact), key_name, want, QUANTILES, exact,
            group_by))  # fmt: skip
    failures.assert_none()


@pytest.mark.parametrize("order_by", ["count", "errors", "max", "total", "p99", "key"])
def test_stats_ordered_and_limited(layout: Layout, db: Database, order_by: str) -> None:
    """``order_by`` (descending, ties by key) and ``limit`` on exact figures, against the brute
    force's order (quantiles exact here, so that the order has one right answer)."""
    failures = Failures()
    for q in standard_queries(layout.truth)[::4]:
        for group_by in ("function", "service"):

            def check(q: Query = q, group_by: str = group_by) -> None:
                t = kq.stats(db, to_filter(q), group_by=group_by, exact=True, order_by=order_by,
                             limit=3)  # fmt: skip
                want = expected_stats(layout.truth, q, group_by)

                def figure(key: str) -> float:
                    e = want[key]
                    return {"count": e.count, "errors": e.errors, "max": e.max,
                            "total": e.mean * e.count, "p99": e.quantile(0.99)}[order_by]  # fmt: skip

                order = sorted(want) if order_by == "key" else sorted(
                    want, key=lambda k: (-figure(k), k))  # fmt: skip
                assert [r.key for r in t.rows] == order[:3]

            failures.check(f"{group_by} {q.label()}", check)
    failures.assert_none()


def test_functions(layout: Layout, db: Database) -> None:
    api, failures = PythonApi(db), Failures()
    for q in standard_queries(layout.truth):

        def check(q: Query = q) -> None:
            got, want = api.functions(q), expected_functions(layout.truth, q)
            assert got == want, f"\n got {got}\nwant {want}"

        failures.check(q.label(), check)
    failures.assert_none()


@pytest.mark.parametrize("k", [1, 7, 100])
def test_slowest(layout: Layout, db: Database, k: int) -> None:
    api, failures = PythonApi(db), Failures()
    for q in standard_queries(layout.truth):

        def check(q: Query = q) -> None:
            got, want = api.slowest(q, k), expected_slowest(layout.truth, q, k)
            keys = [(c["function"], c["duration_ns"], c["start_unix_nano"]) for c in got]
            want_keys = [(c["function"], c["duration_ns"], c["start_unix_nano"]) for c in want]
            assert keys == want_keys, f"\n got {keys[:8]}\nwant {want_keys[:8]}"
            assert got == want  # every field of every call

        failures.check(q.label(), check)
    failures.assert_none()


def test_database_facade(layout: Layout, db: Database) -> None:
    """``Database`` itself: functions, services, time range, stats, slowest, scan, summaries."""
    t, failures = layout.truth, Failures()
    names = sorted(set(t.name.tolist()))

    def overview() -> None:
        assert db.functions() == names
        assert db.services() == sorted(set(t.service.tolist()))
        assert db.time_range() == (int(t.start.min()), int(t.start.max()))

    failures.check("overview", overview)
    for name in names:
        m = t.name == name
        want = Expected.of(t.duration[m], t.status[m])

        def stats(name: str = name, want: Expected = want) -> None:
            got = db.stats(name, exact=True)
            assert (got.count, got.errors, got.min, got.max) == (want.count, want.errors,
                                                                 want.min, want.max)  # fmt: skip
            for label, qv in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999)):
                assert getattr(got, label) == want.quantile(qv), label
            approx = db.stats(name)
            assert (approx.count, approx.errors) == (want.count, want.errors)
            close(approx.p99, want.quantile(0.99), QUANTILE_TOLERANCE, "p99")

        def slowest(name: str = name, m: np.ndarray = m) -> None:
            calls = db.slowest(name, k=5)
            got = [(c.function, c.duration, c.start) for c in calls]
            idx = np.flatnonzero(m)
            top = idx[np.lexsort((t.start[idx], -t.duration[idx]))][:5]
            assert got == [(name, int(t.duration[i]), int(t.start[i])) for i in top]

        failures.check(f"stats {name}", stats)
        failures.check(f"Database.slowest {name}", slowest)

    def scan() -> None:
        s = db.scan(["name", "start", "duration", "span_id"])
        got = sorted(zip([s.names[c] for c in s.columns["name"].tolist()],
                         s.columns["start"].tolist(), s.columns["duration"].tolist(),
                         s.columns["span_id"].tolist(), strict=True))  # fmt: skip
        want = sorted(zip(t.name.tolist(), t.start.tolist(), t.duration.tolist(),
                          t.span_id.tolist(), strict=True))  # fmt: skip
        assert len(got) == len(want), f"scan has {len(got)} rows, want {len(want)}"
        assert got == want

    failures.check("scan", scan)
    for label, (since, until) in time_bounds(t).items():

        def summaries(since: int | None = since, until: int | None = until) -> None:
            got = db.summaries(since=since, until=until)
            want = expected_stats(t, Query(since=since, until=until))
            assert sorted(got) == sorted(want)
            for name, fs in got.items():
                assert fs.summary.count == want[name].count, name
                assert fs.errors == want[name].errors, name

        failures.check(f"summaries {label}", summaries)
    failures.assert_none()


def _series_cases(layout: Layout) -> list[tuple[Query, int, int, int, str]]:
    bounds = time_bounds(layout.truth)
    a, b = bounds["middle third"]
    lo, hi = bounds["all, tight"]
    assert lo is not None and hi is not None and a is not None and b is not None
    return [
        (Query(), a, b, (b - a) // 7 + 1, "function"),
        (Query(("app.*",)), a + 1, b + 1, (b - a) // 13 + 3, "function"),
        (Query(service="worker"), a, b, (b - a) // 5, "function"),
        (Query(attributes=(("route", "/b"),)), lo, hi, (hi - lo) // 40 + 1, "function"),
        (Query(), lo, hi, hi - lo, "function"),  # one bucket
        (Query(), a, b, (b - a) // 4 + 1, "service"),
        (Query(("app.*", "job.*")), a, b, (b - a) // 3 + 1, "attribute:route"),
        (Query(resource=WEB_1), a, b, (b - a) // 6 + 1, "resource:service.version"),
    ]


@pytest.mark.parametrize("exact", [False, True], ids=["summaries", "exact"])
def test_series(layout: Layout, db: Database, exact: bool) -> None:
    failures = Failures()
    qs = (0.5, 0.99)
    for q, since, until, step, group_by in _series_cases(layout):

        def check(q: Query = q, since: int = since, until: int = until, step: int = step,
                  group_by: str = group_by) -> None:  # fmt: skip
            flt = to_filter(replace(q, since=since, until=until))
            got = kq.series(db, flt, step=step, quantiles=qs, exact=exact, group_by=group_by)
            assert (got.since, got.until, got.step) == (since, until, step)
            want = expected_series_counts(layout.truth, q, since, until, step, group_by)
            assert [s.key for s in got.series] == sorted(want)
            window = replace(q, since=since, until=until)
            sel = layout.truth.take(np.flatnonzero(mask(layout.truth, window)))
            keys = group_keys(sel, group_by)
            for s in got.series:
                counts = [(p.count, p.errors) for p in s.points]
                assert counts == want[s.key], f"{s.key}: bucket counts differ"
                for i, p in enumerate(s.points):
                    assert p.start == since + i * step
                    if not p.count:
                        assert p.max is None and p.min is None
                        continue
                    inside = (keys == s.key) & (sel.start >= p.start) & (sel.start < p.start + step)
                    e = Expected.of(sel.duration[inside], sel.status[inside])
                    assert (p.min, p.max) == (e.min, e.max), f"{s.key} bucket {i}"
                    for qv, v in p.quantiles:
                        if exact:
                            assert v == e.quantile(qv), f"{s.key} bucket {i} q{qv}"
                        else:
                            close(v, e.quantile(qv), QUANTILE_TOLERANCE, f"{s.key} b{i} q{qv}")

        failures.check(f"{group_by} {q.label()} [{since},{until}) step {step}", check)

    def default_range() -> None:
        got = kq.series(db, kq.Filter(), quantiles=qs, exact=exact)
        t = layout.truth
        assert got.since <= int(t.start.min()) and got.until > int(t.start.max())
        assert got.since % got.step == 0
        want = expected_series_counts(t, Query(), got.since, got.until, got.step)
        assert {s.key: [(p.count, p.errors) for p in s.points] for s in got.series} == want

    failures.check("default range", default_range)
    failures.assert_none()


@pytest.mark.parametrize("exact", [False, True], ids=["summaries", "exact"])
def test_histogram(layout: Layout, db: Database, exact: bool) -> None:
    failures, t = Failures(), layout.truth
    for q in standard_queries(t):
        if q.functions:
            continue
        for name in sorted(set(t.name.tolist())):

            def check(q: Query = q, name: str = name) -> None:
                got = kq.histogram(db, name, to_filter(q), exact=exact).to_dict()
                d = t.duration[mask(t, replace(q, functions=(name,)))]
                if exact or q.service or q.attributes or q.resource:
                    check_exact_histogram(got, d, "histogram")
                else:  # summaries: a call may move to a neighbour bucket, never get lost
                    assert got["count"] == len(d)
                    assert sum(b["count"] for b in got["buckets"]) == len(d)

            failures.check(f"{name} {q.label()}", check)
    failures.assert_none()


def _score(ratio: float | None, threshold: float) -> float:
    return 0.0 if ratio is None or ratio <= 1.0 else math.log(ratio) / math.log(threshold)


def test_anomalies(layout: Layout, db: Database) -> None:
    """Figures within the summaries' error, counts exact, and exemplars the real slowest calls."""
    t, failures = layout.truth, Failures()
    cases = [Query(), Query(service="api"), Query(since=time_bounds(t)["middle third"][0])]
    for q in cases:

        def check(q: Query = q) -> None:
            found = kq.anomalies(db, kq.Filter.make(service=q.service, since=q.since),
                                 exemplars=4, limit=1000)  # fmt: skip
            since = q.since if q.since is not None else int(t.start.min())
            until = int(t.start.max()) + 1
            split = max(since, until - max(1, int((until - since) * 0.1)))
            reported = {a.function for a in found}
            for name in sorted(set(t.name.tolist())):
                whole = Query((name,), q.service, since, until)
                m = mask(t, whole)
                if m.sum() < 50:
                    assert name not in reported, f"{name}: judged with {m.sum()} < 50 calls"
                    continue
                e = Expected.of(t.duration[m], t.status[m])
                p50, p99 = max(e.quantile(0.5), 1.0), max(e.quantile(0.99), 1.0)
                recent = mask(t, Query((name,), q.service, split, until))
                base = mask(t, Query((name,), q.service, since, split))
                reg = None
                if recent.sum() >= 10 and base.sum() >= 50:
                    rp99 = Expected.of(t.duration[recent], t.status[recent]).quantile(0.99)
                    bp99 = Expected.of(t.duration[base], t.status[base]).quantile(0.99)
                    reg = max(rp99, 1.0) / max(bp99, 1.0)
                score = max(_score(p99 / p50, 4.0), _score(max(e.max, 1.0) / p50, 20.0),
                            _score(reg, 2.0))  # fmt: skip
                if score >= 1.05:
                    assert name in reported, f"{name} (score {score:.2f}) not reported"
                if score <= 0.95:
                    assert name not in reported, f"{name} (score {score:.2f}) reported"
                a = next((a for a in found if a.function == name), None)
                if a is None:
                    continue
                assert (a.count, a.errors, a.max) == (e.count, e.errors, e.max), name
                close(a.p50, e.quantile(0.5), QUANTILE_TOLERANCE, f"{name} p50")
                close(a.p99, e.quantile(0.99), QUANTILE_TOLERANCE, f"{name} p99")
                assert a.recent_since == split and a.recent_count == int(recent.sum()), name
                close(a.tail_ratio, p99 / p50, 2.1 * QUANTILE_TOLERANCE, f"{name} tail ratio")
                ex = [(c.function, c.duration, c.start) for c in a.exemplars]
                want = [(c["function"], c["duration_ns"], c["start_unix_nano"])
                        for c in expected_slowest(t, whole, 4)]  # fmt: skip
                assert ex == want, f"{name} exemplars\n got {ex}\nwant {want}"

        failures.check(q.label(), check)
    failures.assert_none()
