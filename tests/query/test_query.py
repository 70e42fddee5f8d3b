"""The query layer against a real database holding a known dataset (tests/query/shop_data.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kronicler import query as q
from kronicler.errors import NotFoundError
from tests.query.shop_data import BASE_NS, SPAN_NS, ShopData, lower_quantile

FUNCS = ["shop.fast", "shop.pay", "shop.search", "shop.tail"]


def close(a: float | None, b: float, rel: float = 0.0101) -> bool:
    return a is not None and abs(a - b) <= rel * abs(b) + 1e-9


# ---- stats ------------------------------------------------------------------------------------


def test_stats_per_function_match_the_raw_data(shop_db, shop: ShopData) -> None:
    table = q.stats(shop_db)
    assert [r.key for r in table.rows] == FUNCS
    for row in table.rows:
        m = shop.mask(names=row.key)
        d = shop.duration[m]
        assert row.count == m.sum()
        assert row.errors == int((shop.status[m] == 2).sum())
        assert row.min == d.min() and row.max == d.max()
        assert row.mean == pytest.approx(d.mean())
        assert row.stddev == pytest.approx(d.std(ddof=1))
        assert row.stderr == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)))
        for qq, value in row.quantiles:
            assert close(value, lower_quantile(d, qq)), (row.key, qq)


def test_exact_stats_are_exact(shop_db, shop: ShopData) -> None:
    table = q.stats(shop_db, quantiles=(0.25, 0.5, 0.99), exact=True)
    assert table.exact and table.quantiles == (0.25, 0.5, 0.99)
    for row in table.rows:
        d = shop.duration[shop.mask(names=row.key)]
        assert [v for _, v in row.quantiles] == [lower_quantile(d, x) for x in (0.25, 0.5, 0.99)]
        assert row.stddev == pytest.approx(d.std(ddof=1))
        assert row.quantile(0.99) == lower_quantile(d, 0.99)


def test_group_by_service_and_attribute(shop_db, shop: ShopData) -> None:
    by_service = q.stats(shop_db, group_by="service")
    assert by_service.key_name == "service"
    assert {r.key: r.count for r in by_service.rows} == {
        "api": int(shop.mask(service="api").sum()),
        "worker": int(shop.mask(service="worker").sum()),
    }
    by_route = q.stats(shop_db, group_by="attribute:http.route", exact=True)
    assert by_route.key_name == "http.route"
    # calls without the attribute (shop.search) are left out
    assert {r.key: r.count for r in by_route.rows} == {
        "/a": int(shop.mask(route="/a").sum()),
        "/b": int(shop.mask(route="/b").sum()),
    }
    row_b = next(r for r in by_route.rows if r.key == "/b")
    assert row_b.errors == int((shop.status[shop.mask(route="/b")] == 2).sum())
    assert row_b.to_dict("http.route")["http.route"] == "/b"


def test_filters_narrow_the_calls(shop_db, shop: ShopData) -> None:
    since, until = BASE_NS + SPAN_NS // 4, BASE_NS + SPAN_NS // 2
    flt = q.Filter.make(["shop.t*", "shop.pay"], since=since, until=until)
    table = q.stats(flt=flt, db=shop_db)
    in_range = (shop.start >= since) & (shop.start < until)
    assert {r.key: r.count for r in table.rows} == {
        "shop.pay": int((in_range & shop.mask(names="shop.pay")).sum()),
        "shop.tail": int((in_range & shop.mask(names="shop.tail")).sum()),
    }
    # service and attribute filters take the scan road and must agree with the data
    flt = q.Filter.make(service="worker", attributes={"http.status_code": 500})
    rows = q.stats(shop_db, flt).rows
    assert [(r.key, r.count) for r in rows] == [
        ("shop.pay", int(shop.mask(names="shop.pay").sum()))
    ]
    assert q.stats(shop_db, q.Filter.make("shop.nothing*")).rows == ()
    assert q.stats(shop_db, q.Filter.make(service="nobody")).rows == ()


def test_summary_and_scan_roads_agree(shop_db) -> None:
    fast = q.stats(shop_db)
    # the scan road's aggregation over the same calls
    from kronicler.query.grouping import compact, group_rows, summary_stats

    rows = summary_stats(compact(group_rows(shop_db, q.Filter(), "function")), q.DEFAULT_QUANTILES)
    scan = q.StatsTable("function", q.DEFAULT_QUANTILES, False, tuple(rows))
    both = q.stats(shop_db, q.Filter.make(service="api"))
    assert [(r.key, r.count, r.min, r.max) for r in fast.rows] == [
        (r.key, r.count, r.min, r.max) for r in scan.rows
    ]
    assert {r.key for r in both.rows} == {"shop.fast", "shop.tail"}
    for a, b in zip(fast.rows, scan.rows, strict=True):
        for (_, va), (_, vb) in zip(a.quantiles, b.quantiles, strict=True):
            assert vb is not None and close(va, vb)


def test_order_and_limit(shop_db) -> None:
    rows = q.stats(shop_db, order_by="p99", limit=2).rows
    assert [r.key for r in rows] == ["shop.tail", "shop.search"]
    assert q.stats(shop_db, order_by="errors").rows[0].key == "shop.pay"
    totals = []
    for r in q.stats(shop_db, order_by="total").rows:
        assert r.mean is not None
        totals.append(r.mean * r.count)
    assert totals == sorted(totals, reverse=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_by": "colour"}, "unknown group key"),
        ({"quantiles": (1.5,)}, "quantile must be between 0 and 1"),
        ({"quantiles": ()}, "at least one quantile"),
        ({"order_by": "p42"}, "unknown order"),
        ({"flt": q.Filter(("shop.[ab",))}, "bad glob"),
        ({"flt": q.Filter(since=10, until=5)}, "since (10) must be before until (5)"),
        ({"max_groups": 2}, "more than the limit of 2"),
    ],
)
def test_bad_arguments_raise_value_error(shop_db, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        q.stats(shop_db, **kwargs)


def test_unknown_function_is_not_found(shop_db) -> None:
    with pytest.raises(NotFoundError, match="shop.nope"):
        q.stats(shop_db, q.Filter.make("shop.nope"))
    with pytest.raises(NotFoundError):
        q.histogram(shop_db, "shop.nope")


def test_list_functions(shop_db, shop: ShopData) -> None:
    fs = q.list_functions(shop_db)
    assert [f.name for f in fs] == FUNCS
    pay = next(f for f in fs if f.name == "shop.pay")
    m = shop.mask(names="shop.pay")
    assert (pay.count, pay.errors) == (int(m.sum()), int((shop.status[m] == 2).sum()))
    assert (pay.first_start, pay.last_start) == (shop.start[m].min(), shop.start[m].max())
    scanned = q.list_functions(shop_db, q.Filter.make(service="worker"))
    assert [(f.name, f.count, f.first_start) for f in scanned] == [
        (f.name, f.count, f.first_start) for f in fs if f.name in ("shop.pay", "shop.search")
    ]


# ---- series, histogram, slowest ------------------------------------------------------------------


def test_series_buckets_add_up(shop_db, shop: ShopData) -> None:
    step = 10 * 1_000_000_000
    flt = q.Filter.make(since=BASE_NS, until=BASE_NS + SPAN_NS)
    table = q.series(shop_db, flt, step=step, quantiles=(0.5, 0.99))
    assert (table.since, table.until, table.step) == (BASE_NS, BASE_NS + SPAN_NS, step)
    for s in table.series:
        assert len(s.points) == 10
        assert [p.start for p in s.points] == [BASE_NS + i * step for i in range(10)]
        m = shop.mask(names=s.key)
        assert sum(p.count for p in s.points) == m.sum()
        bucket = (shop.start[m] - BASE_NS) // step
        assert [p.count for p in s.points] == np.bincount(bucket, minlength=10).tolist()
    search = next(s for s in table.series if s.key == "shop.search")
    # the regression shows in the last bucket
    first, last = search.points[0].quantiles[0][1], search.points[-1].quantiles[0][1]
    assert first is not None and last is not None
    assert last > 3 * first
    exact = q.series(shop_db, flt, step=step, exact=True, group_by="service")
    assert {s.key for s in exact.series} == {"api", "worker"}


def test_series_over_the_widest_possible_range(shop_db, shop: ShopData) -> None:
    table = q.series(shop_db, q.Filter(since=-(2**63), until=2**63 - 1), step=2**62)
    assert len(table.series[0].points) == 4
    total = sum(p.count for s in table.series for p in s.points)
    assert total == sum(s.count for s in q.stats(shop_db).rows)


def test_series_default_step_and_limits(shop_db) -> None:
    table = q.series(shop_db)
    n = len(table.series[0].points)
    assert 1 <= n <= 60 and table.since % table.step == 0
    with pytest.raises(ValueError, match="buckets"):
        q.series(shop_db, step=1000)
    with pytest.raises(ValueError, match="points"):
        q.series(shop_db, step=SPAN_NS // 5000, max_points=1000)
    with pytest.raises(ValueError, match="step"):
        q.series(shop_db, step=-5)


def test_histogram_is_log_scale_and_counts_every_call(shop_db, shop: ShopData) -> None:
    h = q.histogram(shop_db, "shop.tail", per_decade=5)
    d = shop.duration[shop.mask(names="shop.tail")]
    assert h.count == len(d) == sum(b.count for b in h.buckets)
    for b in h.buckets:
        assert b.upper / b.lower == pytest.approx(10 ** (1 / 5))
    exact = q.histogram(shop_db, "shop.tail", per_decade=5, exact=True)
    idx = np.floor(np.log10(d) * 5 + 1e-9).astype(int)
    want = {int(k): int(c) for k, c in zip(*np.unique(idx, return_counts=True), strict=True)}
    got = {round(np.log10(b.lower) * 5): b.count for b in exact.buckets}
    assert got == want
    # the tail is visible: the slow 5% sit more than a decade above the body
    assert max(b.lower for b in exact.buckets) > 10 * min(b.lower for b in exact.buckets)
    with pytest.raises(ValueError, match="pattern"):
        q.histogram(shop_db, "shop.*")
    with pytest.raises(ValueError, match="per_decade"):
        q.histogram(shop_db, "shop.tail", per_decade=0)


def test_slowest_matches_the_data(shop_db, shop: ShopData) -> None:
    calls = q.slowest(shop_db, k=5)
    want = np.sort(shop.duration)[::-1][:5]
    assert [c.duration for c in calls] == want.tolist()
    top = calls[0]
    i = int(np.flatnonzero(shop.span_id == top.span_id)[0])
    assert (top.function, top.start, top.service) == (shop.names[i], shop.start[i], shop.service[i])
    assert top.trace_id == (7 << 64) | top.span_id
    assert top.to_dict()["trace_id"] == f"{(7 << 64) | top.span_id:032x}"
    # scan road: a service filter
    worker = q.slowest(shop_db, q.Filter.make(service="worker"), k=3)
    wd = np.sort(shop.duration[shop.mask(service="worker")])[::-1][:3]
    assert [c.duration for c in worker] == wd.tolist()
    assert all(c.service == "worker" for c in worker)
    with pytest.raises(ValueError, match="k must be"):
        q.slowest(shop_db, k=0)


# ---- anomalies -----------------------------------------------------------------------------------


def test_anomalies_find_the_tail_and_the_regression(shop_db) -> None:
    found = q.anomalies(shop_db)
    by_name = {a.function: a for a in found}
    assert set(by_name) == {"shop.tail", "shop.search"}
    assert [a.score for a in found] == sorted((a.score for a in found), reverse=True)
    tail = by_name["shop.tail"]
    assert tail.tail_ratio > 4 and tail.score >= 1
    assert any("p99 is" in r for r in tail.reasons)
    assert len(tail.exemplars) == 3 and tail.exemplars[0].duration == tail.max
    search = by_name["shop.search"]
    assert search.regression_ratio is not None and search.regression_ratio > 3
    assert any("recent p99" in r for r in search.reasons)
    assert search.recent_since == BASE_NS + SPAN_NS - SPAN_NS // 10 or search.recent_count > 0
    d = search.to_dict()
    assert d["function"] == "shop.search" and d["exemplars"][0]["span_id"]


def test_anomaly_thresholds_and_min_count(shop_db) -> None:
    assert q.anomalies(shop_db, min_count=100_000) == []
    strict = q.anomalies(shop_db, tail_threshold=1000, spike_threshold=1000,
                         regression_threshold=1000)  # fmt: skip
    assert strict == []
    scoped = q.anomalies(shop_db, q.Filter.make(service="api"), exemplars=0)
    assert [a.function for a in scoped] == ["shop.tail"] and scoped[0].exemplars == ()
    with pytest.raises(ValueError, match="tail_threshold"):
        q.anomalies(shop_db, tail_threshold=1.0)


def test_empty_database(tmp_path) -> None:
    from kronicler.db import Database

    with Database.open(tmp_path / "empty") as db:
        assert q.stats(db).rows == ()
        assert q.list_functions(db) == []
        assert q.series(db).series == ()
        assert q.slowest(db) == []
        assert q.anomalies(db) == []


def test_quantile_labels() -> None:
    assert [q.quantile_label(x) for x in (0.5, 0.9, 0.99, 0.999, 0.995, 0.05, 1.0)] == [
        "p50", "p90", "p99", "p999", "p995", "p5", "p100",
    ]  # fmt: skip


def test_stats_of_many_summaries_equal_each_alone() -> None:
    """Every group's quantiles in one pass give the very floats of each summary asked alone,
    groups without calls included (in place, as empty rows)."""
    from kronicler.db.stats import Stats
    from kronicler.db.summary import Summary
    from kronicler.query.grouping import stats_of_summaries

    rng = np.random.default_rng(3)
    sums: list[Summary | None] = [
        Summary.from_values(rng.lognormal(10 + i, 1 + i / 3, 50 + 400 * i).astype(np.int64))
        for i in range(5)
    ]
    sums[1:1] = [
        None,
        Summary.from_values(np.zeros(0, np.int64)),
        Summary.from_values(np.zeros(7, np.int64)),
    ]
    keys = [f"f{i}" for i in range(len(sums))]
    errors = list(range(len(sums)))
    qs = (0.0, 0.25, 0.5, 0.99, 0.999, 1.0)
    got = stats_of_summaries(keys, sums, errors, qs)
    want = [
        Stats.from_summary(s, e, key=k, quantiles=qs)
        for k, s, e in zip(keys, sums, errors, strict=True)
    ]
    assert got == want
    assert [r.key for r in got] == keys and got[1].count == 0 and got[1].errors == 1
    assert stats_of_summaries([], [], [], qs) == []
