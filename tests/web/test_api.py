"""The JSON API over HTTP: a real uvicorn server on 127.0.0.1:0 over a real database."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from kronicler.db import Database
from kronicler.web import WebServer
from kronicler.web import schemas as s
from kronicler.web.params import MINUTE
from tests.web.conftest import TOKEN, fetch, get_json
from tests.web.workload import Shop

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def rows_by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["function"]: r for r in body["rows"]}


def test_functions_table_lists_every_function_with_its_counts(
    server: WebServer, shop: Shop
) -> None:
    status, body = get_json(server.url + "api/v1/functions")
    assert status == 200
    s.FunctionsTable.model_validate(body)
    rows = rows_by_name(body)
    assert set(rows) == set(shop.counts)
    assert body["window"]["preset"] == "1h" and body["window"]["seconds"] == 3600
    for name, row in rows.items():
        assert row["count"] == shop.counts[name]
        assert row["errors"] == shop.errors[name]
        assert row["error_rate"] == pytest.approx(shop.errors[name] / shop.counts[name])
        assert row["calls_per_s"] == pytest.approx(shop.counts[name] / 3600)
        assert row["p50_ns"] <= row["p90_ns"] <= row["p99_ns"] <= row["max_ns"] * 1.01
        assert row["min_ns"] <= row["mean_ns"] <= row["max_ns"]
        assert row["stderr_ns"] > 0
    assert rows["shop.load_user"]["max_ns"] == shop.slowest["shop.load_user"][0]
    assert rows["shop.charge_card"]["errors"] > 0


def test_anomalous_functions_carry_their_evidence(server: WebServer) -> None:
    rows = rows_by_name(get_json(server.url + "api/v1/functions")[1])
    load_user = rows["shop.load_user"]["anomaly"]
    assert load_user is not None and "tail" in load_user["signals"]
    assert load_user["score"] >= 1 and any("median" in r for r in load_user["reasons"])
    assert load_user["tail_ratio"] >= load_user["thresholds"]["tail"]
    assert "regression" in rows["shop.search_catalog"]["anomaly"]["signals"]
    assert "spike" in rows["shop.render_page"]["anomaly"]["signals"]
    assert rows["shop.parse_request"]["anomaly"] is None
    assert rows["shop.send_email"]["anomaly"] is None  # 40 calls: too few to judge


def test_presets_and_explicit_ranges_select_calls_by_start(server: WebServer, shop: Shop,
                                                           now: int) -> None:  # fmt: skip
    rows = rows_by_name(get_json(server.url + "api/v1/functions?range=15m")[1])
    for name in shop.counts:
        expected = shop.count_since(name, now - 15 * MINUTE)
        assert rows.get(name, {"count": 0})["count"] == expected
    everything = get_json(server.url + "api/v1/functions?range=all")[1]
    assert everything["window"]["since_unix_nano"] == shop.first
    assert {r["function"]: r["count"] for r in everything["rows"]} == shop.counts
    since, until = now - 30 * MINUTE, now - 10 * MINUTE
    status, body = get_json(server.url + f"api/v1/functions?since={since}&until={until}")
    assert status == 200 and body["window"]["preset"] is None
    name = "shop.parse_request"
    expected = int(((shop.starts[name] >= since) & (shop.starts[name] < until)).sum())
    assert rows_by_name(body)[name]["count"] == expected
    assert rows_by_name(body)[name]["calls_per_s"] == pytest.approx(expected / 1200)


def test_filters_by_function_glob_service_and_attribute(server: WebServer) -> None:
    body = get_json(server.url + "api/v1/functions?function=shop.load_*&function=shop.render_page")[
        1
    ]
    assert {r["function"] for r in body["rows"]} == {"shop.load_user", "shop.render_page"}
    body = get_json(server.url + "api/v1/functions?service=mailer")[1]
    assert [r["function"] for r in body["rows"]] == ["shop.send_email"]
    body = get_json(server.url + "api/v1/functions?attr=http.status_code=200")[1]
    assert [r["function"] for r in body["rows"]] == ["shop.handle_request"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("functions?since=10&until=5", "since (10) must be before until (5)"),
        ("functions?since=5&until=5", "must be before"),
        ("functions?range=2h", "unknown range '2h'"),
        ("functions?range=1h&since=5", "not both"),
        ("functions?since=yesterday", "since: "),
        ("functions?since=-3", "since must not be negative"),
        ("functions?since=99999999999999999999999", "since must fit in 64-bit"),
        ("functions?function=[abc", "bad glob pattern"),
        ("functions?attr=novalue", "KEY=VALUE"),
        ("detail?function=shop.load_user&k=0", "k must be between 1 and 1000"),
        ("detail", "function: Field required"),
        ("histogram?function=shop.load_user&per_decade=0", "per_decade"),
        ("histogram?function=shop.*", "not a pattern"),
        ("series?function=shop.load_user&step=0", "step must be between"),
        ("series?function=shop.load_user&step=1000&range=all", "buckets"),
        ("slowest?k=5000", "k must be between"),
        ("anomalies?tail_threshold=1", "tail_threshold must be greater than 1"),
        ("anomalies?limit=-1", "limit must be between"),
    ],
)
def test_bad_parameters_get_400_with_a_message(server: WebServer, query: str, message: str) -> None:
    status, headers, body = fetch(server.url + "api/v1/" + query)
    assert status == 400, body
    assert headers["content-type"].startswith("application/json")
    err = s.ErrorBody.model_validate_json(body)
    assert err.status == 400 and err.error == "Bad Request"
    assert message in err.message


def test_unknown_function_and_route_get_404(server: WebServer) -> None:
    status, body = get_json(server.url + "api/v1/detail?function=shop.nope")
    assert status == 404 and "shop.nope" in body["message"]
    status, body = get_json(server.url + "api/v1/nothing-here")
    assert status == 404 and body["error"] == "Not Found"


def test_detail_bundles_stats_series_histogram_slowest(server: WebServer, shop: Shop) -> None:
    status, d = get_json(server.url + "api/v1/detail?function=shop.load_user&k=7")
    assert status == 200
    s.Detail.model_validate(d)
    assert d["stats"]["count"] == shop.counts["shop.load_user"]
    assert "tail" in d["anomaly"]["signals"]
    series = d["series"]
    n = len(series["start_unix_nano"])
    assert series["step_ns"] == 30 * 10**9 and 120 <= n <= 121
    for key in ("count", "errors", "p50_ns", "p90_ns", "p99_ns", "mean_ns", "max_ns"):
        assert len(series[key]) == n
    assert sum(series["count"]) == shop.counts["shop.load_user"]
    assert all(v is None for v, c in zip(series["p99_ns"], series["count"], strict=True) if c == 0)
    assert sum(b["count"] for b in d["histogram"]["buckets"]) == shop.counts["shop.load_user"]
    slow = d["slowest"]
    assert len(slow) == 7
    assert [c["duration_ns"] for c in slow] == sorted(
        (c["duration_ns"] for c in slow), reverse=True
    )
    assert (slow[0]["duration_ns"], slow[0]["trace_id"]) == shop.slowest["shop.load_user"]
    assert all(HEX32.match(c["trace_id"]) and HEX16.match(c["span_id"]) for c in slow)
    assert slow[0]["attributes"].keys() == {"shop.request"}


def test_series_histogram_slowest_anomalies_routes(server: WebServer, shop: Shop) -> None:
    status, body = get_json(server.url + f"api/v1/series?function=shop.*&step={5 * 60 * 10**9}")
    assert status == 200
    s.SeriesOut.model_validate(body)
    assert len(body["start_unix_nano"]) == 13  # a 1 h window, aligned down to 5 min
    assert {x["function"] for x in body["series"]} == set(shop.counts)
    assert sum(body["series"][0]["count"]) == shop.counts[body["series"][0]["function"]]

    hist = get_json(server.url + "api/v1/histogram?function=shop.parse_request&per_decade=5")[1]
    s.HistogramOut.model_validate(hist)
    assert hist["per_decade"] == 5 and hist["count"] == shop.counts["shop.parse_request"]
    lowers = [b["lower_ns"] for b in hist["buckets"]]
    assert lowers == sorted(lowers)

    slow = get_json(server.url + "api/v1/slowest?k=3")[1]
    assert [c["function"] for c in slow][0] == "shop.handle_request"
    assert len(slow) == 3 and all(HEX32.match(c["trace_id"]) for c in slow)

    found = get_json(server.url + "api/v1/anomalies?exemplars=2")[1]
    for a in found:
        s.AnomalyOut.model_validate(a)
    names = [a["function"] for a in found]
    assert "shop.load_user" in names and "shop.parse_request" not in names
    assert [a["score"] for a in found] == sorted((a["score"] for a in found), reverse=True)
    assert all(len(a["exemplars"]) == 2 for a in found)
    lenient = get_json(server.url + "api/v1/anomalies?tail_threshold=1000&spike_threshold=1000"
                       "&regression_threshold=1000")[1]  # fmt: skip
    assert lenient == []


def test_token_guards_data_but_not_the_page_or_health(token_server: WebServer) -> None:
    url = token_server.url
    status, headers, body = fetch(url + "api/v1/functions")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert "token" in s.ErrorBody.model_validate_json(body).message
    assert fetch(url + "api/v1/functions", {"Authorization": "Bearer wrong"})[0] == 401
    assert fetch(url + "api/v1/meta", {"Authorization": TOKEN})[0] == 401
    status, body = get_json(url + "api/v1/functions", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and len(body["rows"]) == 7
    assert get_json(url + "api/v1/meta", {"Authorization": f"Bearer {TOKEN}"})[1]["token_required"]
    assert fetch(url + "api/v1/health")[0] == 200
    assert fetch(url)[0] == 200
    assert fetch(url + "assets/js/main.js")[0] == 200
    assert fetch(url + "api/openapi.json")[0] == 200


def test_page_assets_and_openapi_are_served(server: WebServer) -> None:
    status, headers, body = fetch(server.url)
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    page = body.decode()
    assets = re.findall(r'(?:src|href)="/(assets/[^"?]+)', page)
    assert len(assets) >= 5
    for asset in assets:
        assert fetch(server.url + asset)[0] == 200, asset
    for module in ("api", "charts", "detail", "format", "state", "table"):
        assert fetch(server.url + f"assets/js/{module}.js")[0] == 200
    licence = fetch(server.url + "assets/vendor/uplot/LICENSE")[2].decode()
    assert "MIT License" in licence
    status, spec = get_json(server.url + "api/openapi.json")
    paths = set(spec["paths"])
    assert {
        "/api/v1/functions",
        "/api/v1/detail",
        "/api/v1/series",
        "/api/v1/histogram",
        "/api/v1/slowest",
        "/api/v1/anomalies",
        "/api/v1/meta",
        "/api/v1/health",
    } <= paths
    params = {p["name"] for p in spec["paths"]["/api/v1/functions"]["get"]["parameters"]}
    assert {"range", "since", "until", "service", "attr", "function"} <= params
    assert "400" in spec["paths"]["/api/v1/functions"]["get"]["responses"]


def test_meta(server: WebServer, shop: Shop, now: int) -> None:
    status, meta = get_json(server.url + "api/v1/meta")
    s.Meta.model_validate(meta)
    assert meta["now_unix_nano"] == now and meta["functions"] == 7
    assert meta["services"] == ["mailer", "shop"] and not meta["token_required"]
    assert meta["data_range"]["first_start_unix_nano"] == shop.first


def test_empty_database_and_new_calls(tmp_path: Any) -> None:
    db = Database.open(tmp_path / "db")
    try:
        with WebServer(db, port=0) as srv:
            body = get_json(srv.url + "api/v1/functions?range=all")[1]
            assert body["rows"] == [] and body["data_range"] is None
            assert body["window"]["seconds"] is None
            assert get_json(srv.url + "api/v1/series?range=all")[1]["series"] == []
            assert get_json(srv.url + "api/v1/detail?function=f")[0] == 404
            now = time.time_ns()
            db.append(["f", "f"], [now - 10**9, now - 2 * 10**9], [1000, 3000], status=[0, 2])
            db.flush()
            rows = get_json(srv.url + "api/v1/functions")[1]["rows"]
            assert [(r["function"], r["count"], r["errors"]) for r in rows] == [("f", 2, 1)]
            d = get_json(srv.url + "api/v1/detail?function=f&range=15m")[1]
            assert d["stats"]["count"] == 2 and d["anomaly"] is None
            assert get_json(srv.url + f"api/v1/detail?function=f&until={now - 5 * 10**9}")[1][
                "stats"] is None  # fmt: skip
    finally:
        db.close()


def test_server_lifecycle(shop_db: tuple[Database, Shop]) -> None:
    srv = WebServer(shop_db[0], "127.0.0.1", 0).start()
    port = srv.port
    assert fetch(srv.url + "api/v1/health")[0] == 200
    with pytest.raises(OSError):
        WebServer(shop_db[0], "127.0.0.1", port).start()  # the port is taken
    srv.stop()
    with pytest.raises(OSError):
        fetch(f"http://127.0.0.1:{port}/api/v1/health")
