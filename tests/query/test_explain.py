"""``explain``: each planted cause ranked first, with the counts brute force gives.

The dataset (``explain_data.py``) plants one cause per function: an attribute value, a child
function, a release, a clustering value of a near-unique key. Every count below is recomputed
from the raw rows: the threshold as the exact quantile, the slow set as ``duration >
threshold``, children by (trace id, parent span id).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kronicler import query as q
from kronicler.db import Database
from kronicler.errors import NotFoundError
from kronicler.query.filters import attribute_text
from tests.query.explain_data import (
    BASE_NS,
    SPAN_NS,
    ExplainData,
    make_explain_data,
    write_explain_data,
)
from tests.query.shop_data import lower_quantile

NOISE_KEYS = {"http.route", "host.name", "request.id"}


@pytest.fixture(scope="module")
def data() -> ExplainData:
    return make_explain_data()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, data: ExplainData) -> Iterator[Database]:
    path = tmp_path_factory.mktemp("explain") / "db"
    write_explain_data(path, data, chunk_rows=512)
    with Database.open(path, readonly=True) as opened:
        yield opened


def slow_mask(data: ExplainData, fn: str, q_: float = 0.99) -> tuple[np.ndarray, float]:
    _, d, _ = data.rows(fn)
    limit = lower_quantile(d, q_)
    return d > limit, limit


def value_counts(attrs: list[dict[str, Any]], slow: np.ndarray, key: str, value: str) -> tuple[
        int, int]:  # fmt: skip
    has = np.array([key in a and attribute_text(a[key]) == value for a in attrs])
    return int((has & slow).sum()), int((has & ~slow).sum())


def test_an_attribute_cause_ranks_first_with_exact_counts(db: Database, data: ExplainData) -> None:
    e = q.explain(db, "api.lookup")
    slow, limit = slow_mask(data, "api.lookup")
    _, d, attrs = data.rows("api.lookup")
    assert (e.count, e.slow_count, e.threshold, e.quantile) == (len(d), int(slow.sum()), limit,
                                                                0.99)  # fmt: skip
    assert (e.slow_time, e.baseline_time) == (int(d[slow].sum()), int(d[~slow].sum()))
    top = e.attributes[0]
    assert (top.key, top.value) == ("db.shard", "7")
    assert (top.slow, top.baseline) == value_counts(attrs, slow, "db.shard", "7")
    assert (top.slow_total, top.baseline_total) == (int(slow.sum()), int((~slow).sum()))
    assert top.score == pytest.approx(top.slow_share - top.baseline_share)
    # the evidence: the slowest calls carrying the value, with their trace ids
    assert top.examples and all(c.attributes["db.shard"] == 7 for c in top.examples)
    assert top.examples[0].duration == d[slow].max()
    assert len(top.examples[0].to_dict()["trace_id"]) == 32


def test_noise_and_unique_ids_stay_out_of_the_top(db: Database) -> None:
    for fn in ("api.lookup", "api.render", "api.search", "api.fetch"):
        e = q.explain(db, fn)
        assert all(a.key != "request.id" for a in e.attributes), fn
        if e.attributes:
            assert e.attributes[0].key not in NOISE_KEYS, fn
        for a in e.attributes:
            if a.key in NOISE_KEYS:
                assert a.score < 0.5 * e.attributes[0].score, (fn, a)


def test_a_child_cause_ranks_first_with_exact_times(db: Database, data: ExplainData) -> None:
    e = q.explain(db, "api.render")
    slow, _ = slow_mask(data, "api.render")
    _, d, _ = data.rows("api.render")
    kids = data.children_of("api.render")
    top = e.children[0]
    assert top.function == "cache.fill"
    fill = [(k, dur) for k, name, dur in kids if name == "cache.fill"]
    assert top.slow_children == sum(1 for k, _ in fill if slow[k])
    assert top.baseline_children == sum(1 for k, _ in fill if not slow[k])
    assert top.slow_calls == len({k for k, _ in fill if slow[k]})
    assert top.baseline_calls == len({k for k, _ in fill if not slow[k]})
    assert top.slow_time == sum(dur for k, dur in fill if slow[k])
    assert top.baseline_time == sum(dur for k, dur in fill if not slow[k])
    assert top.slow_parent_time == int(d[slow].sum())
    assert top.slow_mean == pytest.approx(top.slow_time / slow.sum())
    assert top.extra > 0.5 * (d[slow].mean() - d[~slow].mean())
    # self time: the parent's duration minus all its children's
    child_time = np.zeros(len(d), np.int64)
    for k, _, dur in kids:
        child_time[k] += dur
    own = np.maximum(d - child_time, 0)
    assert e.self_time is not None
    assert (e.self_time.slow_time, e.self_time.baseline_time) == (int(own[slow].sum()),
                                                                  int(own[~slow].sum()))  # fmt: skip
    assert {c.function for c in e.children} == {"cache.fill", "tmpl.compile", "log.write"}
    assert all(c.function == "api.render" and c.trace_id for c in top.examples)


def test_a_release_lines_up_with_the_slow_calls(db: Database, data: ExplainData) -> None:
    e = q.explain(db, "api.search")
    slow, _ = slow_mask(data, "api.search")
    start, _, attrs = data.rows("api.search")
    version = np.array([a["service.version"] for a in attrs])
    lined = [r for r in e.releases if r.lines_up]
    assert [r.version for r in lined] == ["1.5.0"]
    r = lined[0]
    mine = version == "1.5.0"
    first = int(start[mine].min())
    assert (r.calls, r.slow, r.first_start, r.last_start) == (int(mine.sum()),
        int((mine & slow).sum()), first, int(start[mine].max()))  # fmt: skip
    before = start < first
    assert (r.before_calls, r.before_slow) == (int(before.sum()), int((before & slow).sum()))
    assert (r.after_calls, r.after_slow) == (int((~before).sum()), int((~before & slow).sum()))
    assert [x.version for x in e.releases] == ["1.4.0", "1.5.0"]  # by first appearance
    assert (e.attributes[0].key, e.attributes[0].value) == ("service.version", "1.5.0")
    # the slow share over time: every slow call is in a bucket from 70 s on
    assert sum(b.slow for b in e.series) == e.slow_count
    assert sum(b.calls for b in e.series) == e.count
    early = [b for b in e.series if b.start + e.step <= BASE_NS + int(SPAN_NS * 0.7)]
    assert early and all(b.slow == 0 for b in early)


def test_no_release_lines_up_where_the_version_never_changes(db: Database) -> None:
    e = q.explain(db, "api.lookup")
    assert [(r.version, r.lines_up) for r in e.releases] == [("1.4.0", False)]


def test_a_near_unique_key_counts_only_where_a_value_clusters(
    db: Database, data: ExplainData
) -> None:
    e = q.explain(db, "api.fetch")
    slow, _ = slow_mask(data, "api.fetch")
    _, _, attrs = data.rows("api.fetch")
    urls = [a for a in e.attributes if a.key == "url"]
    assert [(a.value, a.slow, a.baseline) for a in urls] == [
        ("/export/all", *value_counts(attrs, slow, "url", "/export/all"))]  # fmt: skip
    assert e.attributes[0] is urls[0]


def test_an_absolute_threshold_and_a_time_range(db: Database, data: ExplainData) -> None:
    since, until = BASE_NS + SPAN_NS // 4, BASE_NS + 3 * SPAN_NS // 4
    e = q.explain(db, "api.lookup", since=since, until=until, slow=5_000_000)
    start, d, attrs = data.rows("api.lookup")
    inside = (start >= since) & (start < until)
    slow = d[inside] > 5_000_000
    assert (e.count, e.slow_count, e.quantile, e.threshold) == (int(inside.sum()),
                                                                int(slow.sum()), None, 5e6)  # fmt: skip
    assert (e.since, e.until) == (since, until)
    top = e.attributes[0]
    kept = [a for a, i in zip(attrs, inside, strict=True) if i]
    assert (top.key, top.value, top.slow, top.baseline) == (
        "db.shard", "7", *value_counts(kept, slow, "db.shard", "7"))  # fmt: skip
    assert q.explain(db, "api.lookup", slow="p95").slow_count == int(
        slow_mask(data, "api.lookup", 0.95)[0].sum())  # fmt: skip


def test_an_empty_range_and_a_threshold_nothing_exceeds(db: Database) -> None:
    e = q.explain(db, "api.lookup", since=1, until=2)
    assert (e.count, e.slow_count, e.attributes, e.children, e.threshold) == (0, 0, (), (), None)
    e = q.explain(db, "api.lookup", slow=10**15)
    assert e.count == 2000 and e.slow_count == 0 and e.attributes == () and e.examples == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(function="api.*"), "one function name, not a pattern"),
        (dict(function=""), "one function name"),
        (dict(function="api.lookup", slow=0), "positive number of nanoseconds"),
        (dict(function="api.lookup", slow=-5), "positive number of nanoseconds"),
        (dict(function="api.lookup", slow="p100"), "'p100'"),
        (dict(function="api.lookup", slow="fast"), "'fast'"),
        (dict(function="api.lookup", slow=True), "True"),
        (dict(function="api.lookup", since=5, until=5), "since (5) must be before until (5)"),
    ],
)
def test_bad_arguments_name_the_value(db: Database, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        q.explain(db, **kwargs)


def test_an_unknown_function_is_not_found(db: Database) -> None:
    with pytest.raises(NotFoundError, match="api.nope"):
        q.explain(db, "api.nope")


def test_the_answer_is_json_ready(db: Database, tmp_path: Path) -> None:

    d = q.explain(db, "api.render").to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["children"][0]["function"] == "cache.fill"
    assert d["self_time"]["function"] == "(self time)"


def test_children_join_on_the_whole_span_id_and_the_trace(tmp_path: Path) -> None:
    # Small sequential span ids share all their top bits (the sort's shortcut cannot tell them
    # apart, so each is looked up exactly); a child in another trace is not a child.
    n = 50
    start = BASE_NS + np.arange(n, dtype=np.int64) * 1_000_000
    with Database.open(tmp_path / "db") as w:
        w.append(["p.fn"] * n, start, np.arange(1, n + 1) * 10_000, trace_id=[1] * n,
                 span_id=np.arange(1, n + 1, dtype=np.uint64))  # fmt: skip
        w.append(["c.fn"] * n, start + 10, np.full(n, 5_000), trace_id=[1] * n,
                 span_id=np.arange(1001, 1001 + n, dtype=np.uint64),
                 parent_span_id=np.arange(1, n + 1, dtype=np.uint64))  # fmt: skip
        w.append(["x.decoy"], start[:1] + 20, [9_000_000], trace_id=[2], span_id=[5000],
                 parent_span_id=[n])  # fmt: skip
        assert w.flush(timeout=30)
    with Database.open(tmp_path / "db", readonly=True) as db:
        e = q.explain(db, "p.fn", slow=n * 10_000 - 1)
    assert [c.function for c in e.children] == ["c.fn"]
    c = e.children[0]
    assert (c.slow_children, c.baseline_children, c.slow_calls, c.baseline_calls) == (1, n - 1, 1,
                                                                                       n - 1)  # fmt: skip
    assert (c.slow_time, c.baseline_time) == (5_000, 5_000 * (n - 1))
    assert e.self_time is not None and e.self_time.slow_time == n * 10_000 - 5_000


def test_a_near_unique_value_must_cluster_in_a_tenth_of_the_slow_calls(tmp_path: Path) -> None:
    # 1,000 calls with a unique url each, except "/dup" on 3 slow calls and "/hot" on 20: with
    # 100 slow calls, "/dup" repeats (and would score) but stays under a tenth of them.
    n = 1000
    duration = np.where(np.arange(n) < 100, 5_000_000, 1_000_000)
    urls = [f"/item/{i}" for i in range(n)]
    urls[:3] = ["/dup"] * 3
    urls[10:30] = ["/hot"] * 20
    with Database.open(tmp_path / "db") as w:
        w.append(["f"] * n, BASE_NS + np.arange(n, dtype=np.int64), duration,
                 attributes=[{"url": u} for u in urls])  # fmt: skip
        assert w.flush(timeout=30)
    with Database.open(tmp_path / "db", readonly=True) as db:
        e = q.explain(db, "f", slow=2_000_000)
    assert [(a.value, a.slow, a.baseline) for a in e.attributes] == [("/hot", 20, 0)]


def _strip_workload(n: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``n`` calls, every one with its own ``request.id``: plain strings mostly, some with an
    escape, some numbers, a few sets holding a list; ``zz.id`` is near-unique too and sorts
    last in its text. 40 slow calls share ``req-hot``, 30 others
    the number 777, 25 share ``zz.id = z-hot``."""
    duration = np.full(n, 1_000_000, dtype=np.int64)
    duration[:120] = 9_000_000
    attrs: list[dict[str, Any]] = []
    for i in range(n):
        rid: Any = f"req-{i}"
        if i % 7 == 3:
            rid = f'req "{i}"'  # an escape: parsed, not moved out
        elif i % 11 == 5:
            rid = 10_000_000 + i  # a number
        a: dict[str, Any] = {"request.id": rid, "db.shard": i % 4, "zz.id": f"z{i}"}
        if i % 13 == 0:
            a["tags"] = ["x", f"t{i % 3}"]
        attrs.append(a)
    for i in range(40):
        attrs[i]["request.id"] = "req-hot"
    for i in range(40, 70):
        attrs[i]["request.id"] = 777
    for i in range(70, 95):
        attrs[i]["zz.id"] = "z-hot"
    attrs[5000]["request.id"] = "req-hot"  # one baseline call too
    return duration, attrs


def test_near_unique_values_of_any_type_count_exactly(tmp_path: Path) -> None:
    n = 6000
    duration, attrs = _strip_workload(n)
    with Database.open(tmp_path / "db") as w:
        w.append(["f"] * n, BASE_NS + np.arange(n, dtype=np.int64) * 1000, duration,
                 attributes=attrs, resource={"host.name": "h1"})  # fmt: skip
        assert w.flush(timeout=30)
    with Database.open(tmp_path / "db", readonly=True) as db:
        e = q.explain(db, "f", slow=2_000_000)
    slow = duration > 2_000_000
    got = {(a.key, a.value): (a.slow, a.baseline) for a in e.attributes}
    assert got == {
        kv: value_counts(attrs, slow, *kv)
        for kv in [("request.id", "req-hot"), ("request.id", "777"), ("zz.id", "z-hot")]
    }
    assert got[("request.id", "req-hot")] == (40, 1)
    assert e.attributes[0].value == "req-hot"
    hot = e.attributes[0].examples
    assert hot and all(c.attributes["request.id"] == "req-hot" for c in hot)


# (version, host, first start offset in s, {function: (calls, slow calls)}): the release 2.1
# makes "checkout.pay" slow; host web-2 makes "checkout.ship" slow, in both releases.
_PROVIDERS = [
    ("2.0", "web-1", 0, {"checkout.pay": (150, 0), "checkout.ship": (100, 0)}),
    ("2.0", "web-2", 0, {"checkout.pay": (150, 0), "checkout.ship": (100, 40)}),
    ("2.1", "web-1", 100, {"checkout.pay": (100, 50), "checkout.ship": (100, 0)}),
    ("2.1", "web-2", 100, {"checkout.pay": (100, 50), "checkout.ship": (100, 40)}),
]


def test_a_release_and_a_host_in_the_otel_resource_rank_first(tmp_path: Path) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from kronicler.otel.exporter import KroniclerSpanExporter

    truth: list[tuple[str, str, str, int, int]] = []  # function, version, host, start, duration
    with Database.open(tmp_path / "db", chunk_rows=64) as db:
        for version, host, offset, calls in _PROVIDERS:
            provider = TracerProvider(resource=Resource.create(
                {"service.name": "shop", "service.version": version, "host.name": host}))  # fmt: skip
            provider.add_span_processor(SimpleSpanProcessor(KroniclerSpanExporter(db)))
            tracer = provider.get_tracer("tests")
            for fn, (n, n_slow) in calls.items():
                for i in range(n):
                    start = BASE_NS + offset * 1_000_000_000 + i * 100_000_000
                    d = (10_000_000 if i < n_slow else 1_000_000) + 1000 * i
                    tracer.start_span(fn, start_time=start).end(end_time=start + d)
                    truth.append((fn, version, host, start, d))
            provider.shutdown()
        assert db.flush(timeout=30)
    with Database.open(tmp_path / "db", readonly=True) as db:
        pay = q.explain(db, "checkout.pay", slow=5_000_000)
        ship = q.explain(db, "checkout.ship", slow=5_000_000)

    def brute(fn: str, key: int, value: str) -> tuple[int, int]:
        rows = [t for t in truth if t[0] == fn]
        return (sum(1 for t in rows if t[key] == value and t[4] > 5_000_000),
                sum(1 for t in rows if t[key] == value and t[4] <= 5_000_000))  # fmt: skip

    top = pay.attributes[0]
    assert (top.key, top.value, top.slow, top.baseline) == (
        "resource:service.version", "2.1", *brute("checkout.pay", 1, "2.1"))  # fmt: skip
    assert (top.slow, top.baseline) == (100, 100)
    assert all(a.key != "resource:host.name" for a in pay.attributes)
    lined = [r for r in pay.releases if r.lines_up]
    assert [(r.key, r.version) for r in lined] == [("resource:service.version", "2.1")]
    r = lined[0]
    pay_rows = [t for t in truth if t[0] == "checkout.pay"]
    first = min(t[3] for t in pay_rows if t[1] == "2.1")
    before = [t for t in pay_rows if t[3] < first]
    after = [t for t in pay_rows if t[3] >= first]
    assert (r.calls, r.slow, r.first_start) == (200, 100, first)
    assert (r.before_calls, r.before_slow, r.after_calls, r.after_slow) == (
        len(before), sum(1 for t in before if t[4] > 5_000_000),
        len(after), sum(1 for t in after if t[4] > 5_000_000))  # fmt: skip
    assert [x.version for x in pay.releases] == ["2.0", "2.1"]

    top = ship.attributes[0]
    assert (top.key, top.value, top.slow, top.baseline) == (
        "resource:host.name", "web-2", *brute("checkout.ship", 2, "web-2"))  # fmt: skip
    assert (top.slow, top.baseline) == (80, 120)
    assert all(a.key != "resource:service.version" for a in ship.attributes)
    assert top.examples and all(c.resource["host.name"] == "web-2" for c in top.examples)


def _shard_rows(offset: int) -> tuple[list[int], list[int], list[dict[str, Any]]]:
    """One shard: ``user`` u0..u9 on 10 calls (u0 slow), 20 slow and 100 fast calls without."""
    start = [BASE_NS + offset + i for i in range(130)]
    duration = [10_000_000 if i == 0 or 10 <= i < 30 else 1_000_000 for i in range(130)]
    attrs: list[dict[str, Any]] = [{"user": f"u{i}"} if i < 10 else {} for i in range(130)]
    return start, duration, attrs


def test_the_parts_of_several_databases_finish_as_one_database(tmp_path: Path) -> None:
    """Two databases' parts, merged, explain as one database holding both. The key ``user``
    takes 10 values on each database's 10 calls (near-unique there) but the same 10 over the
    union's 20 calls (not near-unique): ``u0``, slow on both, is judged on the union (seen in 2
    slow calls, enough for a key that is not near-unique), not on a count of distinct values
    per database (which would ask it to cluster in a tenth of the 42 slow calls)."""
    from kronicler.query.explain import SERIES_BUCKETS, Calls, buckets, finish
    from kronicler.query.series import pick_step

    both = Database.open(tmp_path / "both")
    parts = []
    for n, offset in enumerate((0, 1_000)):
        start, duration, attrs = _shard_rows(offset)
        both.append(["f"] * len(start), np.array(start), np.array(duration), attributes=attrs)
        with Database.open(tmp_path / f"shard{n}") as w:
            w.append(["f"] * len(start), np.array(start), np.array(duration), attributes=attrs)
            assert w.flush(timeout=30)
        parts.append(Database.open(tmp_path / f"shard{n}", readonly=True))
    assert both.flush(timeout=30)
    try:
        want = q.explain(both, "f", slow=5_000_000)
        assert [(a.key, a.value, a.slow, a.baseline) for a in want.attributes] == [
            ("user", "u0", 2, 0)]  # fmt: skip
        lo, hi = BASE_NS, BASE_NS + 1_130
        step = pick_step(hi - lo, SERIES_BUCKETS)
        views = [db.snapshot() for db in parts]
        calls = [Calls.read(v, "f", lo, hi).split(5_000_000.0) for v in views]
        got = finish("f", (lo, hi, step), None, 5_000_000.0,
                     [c.part(lo, step, buckets(lo, hi, step)) for c in calls],
                     lambda picks: [c.details(picks) for c in calls])  # fmt: skip
        assert got.to_dict() == q.explain(both, "f", since=lo, until=hi, slow=5_000_000).to_dict()
        assert got.attributes[0].value == "u0" and got.attributes[0].examples
        for v in views:
            v.close()
    finally:
        both.close()
        for db in parts:
            db.close()


def test_one_database_alone_counts_only_the_hashes_that_can_be_findings(tmp_path: Path) -> None:
    """A database answering alone (``sole``) keeps, per hashed key, only the hashes seen in 2
    slow calls, with the same counts as the full part, and the distinct values and calls of
    the whole key; it finishes to the same answer, and such a part refuses to be merged."""
    from kronicler.query.explain import (
        MIN_SLOW_CALLS,
        SERIES_BUCKETS,
        Calls,
        ExplainPart,
        buckets,
        finish,
        merge_parts,
    )
    from kronicler.query.series import pick_step

    n = 6000
    duration, attrs = _strip_workload(n)
    start = BASE_NS + np.arange(n, dtype=np.int64) * 1000
    with Database.open(tmp_path / "db") as w:
        w.append(["f"] * n, start, duration, attributes=attrs)
        assert w.flush(timeout=30)
    slow = duration > 2_000_000
    with Database.open(tmp_path / "db", readonly=True) as db, db.snapshot() as view:
        lo, hi = int(start[0]), int(start[-1]) + 1
        step = pick_step(hi - lo, SERIES_BUCKETS)

        def counted(sole: bool) -> tuple[ExplainPart, dict[str, Any]]:
            calls = Calls.read(view, "f", None, None).split(2_000_000.0, sole=sole)
            part = calls.part(lo, step, buckets(lo, hi, step))
            return part, finish("f", (lo, hi, step), None, 2_000_000.0, [part],
                                lambda picks: [calls.details(picks)]).to_dict()  # fmt: skip

        (full_part, full_answer), (alone_part, alone_answer) = counted(False), counted(True)
        full = {vc.key: vc for vc in full_part.values}
        alone = {vc.key: vc for vc in alone_part.values}
        assert full_answer == alone_answer == q.explain(db, "f", slow=2_000_000).to_dict()
    hashed = [k for k, vc in alone.items() if vc.whole is not None]
    assert sorted(hashed) == ["request.id", "zz.id"]
    for key in hashed:
        a, f = alone[key], full[key]
        assert f.hashes is not None and a.hashes is not None and f.whole is None
        values = [attribute_text(x[key]) for x in attrs]
        assert a.whole == (len(set(values)), n) == (len(f), int(f.slow.sum() + f.baseline.sum()))
        keep = f.slow >= MIN_SLOW_CALLS
        assert a.hashes.tolist() == f.hashes[keep].tolist()
        assert a.slow.tolist() == f.slow[keep].tolist()
        assert a.baseline.tolist() == f.baseline[keep].tolist()
        texts = {attribute_text(attrs[i][key]) for i in np.flatnonzero(slow)}
        repeated = sorted(t for t in texts if value_counts(attrs, slow, key, t)[0] >= 2)
        assert len(a) == len(repeated) == (1 if key == "zz.id" else 2)
    with pytest.raises(ValueError, match="one database alone"):
        merge_parts([alone_part, alone_part])
