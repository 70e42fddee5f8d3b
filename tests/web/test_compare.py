"""Resource attributes in the dashboard's HTTP API: compare two releases, filter every panel.

Two releases written by the stock OTel SDK (``tests/web/releases.py``). ``/api/v1/compare``
groups one function's calls by ``resource:service.version`` (or any key) and must give the brute
force's figures over the stored rows; ``attr=resource:KEY=VALUE`` must narrow every panel the
function view draws (figures, histogram, slowest calls, series) to exactly the brute force's
calls. The page itself: ``test_browser_compare.py``.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kronicler.db import Database
from kronicler.query.local import Local
from kronicler.web import WebServer, views
from kronicler.web import schemas as s
from kronicler.web.params import resolve_window
from tests.oracle.truth import Query, Rows, check_group, expected_slowest, expected_stats, mask
from tests.web.conftest import get_json
from tests.web.releases import BASE, BY_RELEASE, CART, NOW, PAY, SPAN

QUANTILES = (0.5, 0.9, 0.99)


def api(web: WebServer, route: str, **params: Any) -> tuple[int, Any]:
    return get_json(f"{web.url}api/v1/{route}?{urllib.parse.urlencode(params, doseq=True)}")


def test_the_data_holds_two_releases_and_calls_without_one(releases_truth: Rows) -> None:
    rows = releases_truth
    versions = [rows.attrs(i, "resource").get("service.version") for i in range(len(rows))]
    assert sorted({v for v in versions if v}) == ["1.0", "1.1"] and None in versions


@pytest.mark.parametrize(
    ("by", "attr", "query"),
    [
        (BY_RELEASE, [], Query((PAY,))),
        ("resource:host.name", [], Query((PAY,))),
        (BY_RELEASE, ["http.route=/pay/{id}"],
         Query((PAY,), attributes=(("http.route", "/pay/{id}"),))),
        ("attribute:http.route", ["resource:host.name=web-2"],
         Query((PAY,), resource=(("host.name", "web-2"),))),
        ("service", [], Query((CART,))),
    ],
)  # fmt: skip
def test_compare_gives_the_brute_force_figures_of_each_value(
    releases_web: WebServer, releases_truth: Rows, by: str, attr: list[str], query: Query
) -> None:
    status, body = api(releases_web, "compare", function=query.functions[0], by=by, attr=attr)
    assert status == 200, body
    s.CompareOut.model_validate(body)
    want = expected_stats(releases_truth, query, group_by=by)
    assert [r["value"] for r in body["rows"]] == sorted(want)
    for r in body["rows"]:
        check_group(r, want[r["value"]], QUANTILES, exact=False, where=f"{by} {r['value']}")
        assert r["calls_per_s"] == pytest.approx(r["count"] / 3600)
    assert body["grouped"] == sum(w.count for w in want.values()) and body["more"] is False
    assert body["by"] == by and body["window"]["preset"] == "1h"


def test_calls_without_the_key_are_in_no_group(
    releases_web: WebServer, releases_truth: Rows
) -> None:
    body = api(releases_web, "compare", function=PAY, by=BY_RELEASE)[1]
    total = int(mask(releases_truth, Query((PAY,))).sum())
    batch = int(mask(releases_truth, Query((PAY,), resource=(("host.name", "batch-1"),))).sum())
    assert batch > 0 and body["grouped"] == total - batch


def test_compare_lists_the_most_called_values_and_says_more_exist(
    releases_path: Path, releases_truth: Rows
) -> None:
    with Database.open(releases_path, readonly=True) as db:
        window = resolve_window("all", None, None, now=NOW, data_range=db.time_range())
        flt = views.make_filter(window)
        one = views.compare_payload(Local(db), PAY, window, flt, by="resource:host.name", limit=1)
    assert one["more"] is True and [r["value"] for r in one["rows"]] == ["web-1"]
    assert (
        one["rows"][0]["count"]
        == expected_stats(releases_truth, Query((PAY,)), "resource:host.name")["web-1"].count
    )


FILTERS = [
    (["resource:service.version=1.1"], Query((PAY,), resource=(("service.version", "1.1"),))),
    (["resource:host.name=web-1", "http.route=/pay"],
     Query((PAY,), attributes=(("http.route", "/pay"),), resource=(("host.name", "web-1"),))),
]  # fmt: skip


@pytest.mark.parametrize(("attr", "query"), FILTERS)
def test_a_resource_filter_narrows_every_panel_to_the_brute_force_calls(
    releases_web: WebServer, releases_truth: Rows, attr: list[str], query: Query
) -> None:
    sel = mask(releases_truth, query)
    want = expected_stats(releases_truth, query)[PAY]
    detail = api(releases_web, "detail", function=PAY, attr=attr, k=5)[1]
    check_group(detail["stats"], want, QUANTILES, exact=False, where="detail stats")
    assert detail["histogram"]["count"] == want.count
    assert [c["trace_id"] for c in detail["slowest"]] == [
        c["trace_id"] for c in expected_slowest(releases_truth, query, 5)
    ]
    assert all(c["resource"] for c in detail["slowest"])
    series = api(releases_web, "series", function=PAY, attr=attr)[1]
    counts = np.array(series["series"][0]["count"])
    starts = np.array(series["start_unix_nano"])
    bucket = np.searchsorted(starts, releases_truth.start[sel], side="right") - 1
    assert counts.tolist() == np.bincount(bucket, minlength=len(starts)).tolist()
    hist = api(releases_web, "histogram", function=PAY, attr=attr)[1]
    assert sum(b["count"] for b in hist["buckets"]) == want.count
    slowest = api(releases_web, "slowest", function=PAY, attr=attr, k=3)[1]
    assert slowest == expected_slowest(releases_truth, query, 3)
    table = api(releases_web, "functions", attr=attr)[1]
    assert {r["function"]: r["count"] for r in table["rows"]} == {
        k: v.count
        for k, v in expected_stats(
            releases_truth, Query(attributes=query.attributes, resource=query.resource)
        ).items()
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"by": "function"}, "compare by 'function': use resource:KEY, attribute:KEY or service"),
        ({"by": "resource:"}, "unknown group key 'resource:'"),
        ({"by": "version"}, "unknown group key 'version'"),
        ({"by": BY_RELEASE, "attr": "release 1.1"},
         "attribute filter must be KEY=VALUE or resource:KEY=VALUE, got 'release 1.1'"),
        ({"by": BY_RELEASE, "attr": "resource:=1.1"}, "got 'resource:=1.1'"),
    ],
)  # fmt: skip
def test_bad_compare_keys_and_filters_get_400_naming_them(
    releases_web: WebServer, params: dict[str, str], message: str
) -> None:
    status, body = api(releases_web, "compare", function=PAY, **params)
    assert status == 400 and message in body["message"], body


def test_compare_of_an_unknown_function_is_404(releases_web: WebServer) -> None:
    status, body = api(releases_web, "compare", function="checkout.nope", by=BY_RELEASE)
    assert status == 404 and "checkout.nope" in body["message"]


def test_the_window_limits_the_compared_calls(
    releases_web: WebServer, releases_truth: Rows
) -> None:
    since = BASE + SPAN // 2
    body = api(releases_web, "compare", function=PAY, by=BY_RELEASE, since=since)[1]
    want = expected_stats(releases_truth, Query((PAY,), since=since), BY_RELEASE)
    assert {r["value"]: r["count"] for r in body["rows"]} == {k: w.count for k, w in want.items()}
    everything = expected_stats(releases_truth, Query((PAY,)), BY_RELEASE)
    assert body["grouped"] < sum(w.count for w in everything.values())  # the cut drops calls
