"""Comparing two releases on the page, in a real headless Chromium (see ``test_browser.py``).

Over the two releases of ``tests/web/releases.py`` (stock OTel SDK, a real resource per host):
the slowest calls show each call's resource; a ``resource:KEY=VALUE`` filter typed or clicked
narrows every panel to one release, with figures equal to brute force over the stored rows;
"Compare by" lists both releases with exact counts and p99 within 1%; bad text gets a clear
message while the page keeps working.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest

from kronicler.web import WebServer
from tests.oracle.truth import QUANTILE_TOLERANCE, Query, Rows, expected_slowest, expected_stats
from tests.web.releases import BY_RELEASE, PAY
from tests.web.test_browser import (
    By,
    browser,  # noqa: F401 - a fixture
    loads,
    open_page,
    screenshot,
    wait_for,
    webdriver,
)

Keys = webdriver.Keys  # imported through test_browser, which skips when selenium is missing

ONE_ONE = "resource:service.version=1.1"
QUIET = re.compile(r"^(service\.name|telemetry\.sdk\..*)$")
UNITS = {"ns": 1.0, "µs": 1e3, "ms": 1e6, "s": 1e9}
# Paths of the API requests the page made (the Resource Timing list keeps every fetch).
REQUESTS = """return performance.getEntriesByType('resource').map(e => e.name)
  .filter(n => n.includes('/api/v1/'));"""


def page(web: WebServer, **params: str) -> str:
    return f"{web.url}?{urllib.parse.urlencode({'refresh': '300', **params})}"


@pytest.fixture
def pay_view(browser: Any, releases_web: WebServer) -> Any:  # noqa: F811 - the imported fixture
    """The browser on the function view of ``checkout.pay``, every call shown."""
    open_page(browser, page(releases_web, fn=PAY))
    return browser


def card(driver: Any, label: str) -> str:
    for c in driver.find_elements(By.CSS_SELECTOR, "#cards .card"):
        if c.find_element(By.CLASS_NAME, "card-label").text == label:
            return str(c.find_element(By.CLASS_NAME, "card-value").text)
    raise AssertionError(f"no card {label!r}")


def duration_ns(text: str) -> float:
    number, unit = text.split(" ")
    return float(number) * UNITS[unit]


def slowest_traces(driver: Any) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#slowest td.trace-id")]


def act(driver: Any, action: Any) -> None:
    """Do ``action`` and wait until the page has loaded the view it leads to."""
    before = loads(driver)
    action()
    wait_for(driver, lambda d: loads(d) > before)
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"


def api_requests_since(driver: Any, start: int) -> list[tuple[str, dict[str, list[str]]]]:
    out = []
    for url in driver.execute_script(REQUESTS)[start:]:
        parsed = urllib.parse.urlparse(url)
        out.append((parsed.path.rsplit("/", 1)[1], urllib.parse.parse_qs(parsed.query)))
    return out


def test_slowest_calls_show_each_calls_resource(pay_view: Any, releases_truth: Rows) -> None:
    driver = pay_view
    want = {c["trace_id"]: c for c in expected_slowest(releases_truth, Query((PAY,)), 20)}
    rows = driver.find_elements(By.CSS_SELECTOR, "#slowest tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "td.trace-id").text for r in rows] == list(want)
    for row in rows:
        call = want[row.find_element(By.CSS_SELECTOR, "td.trace-id").text]
        chips = row.find_elements(By.CSS_SELECTOR, "td.attrs .attr.resource")
        assert chips[0].text.startswith("service.version=")  # the release first
        assert {c.text for c in chips} == {
            f"{k}={v}" for k, v in call["resource"].items() if not QUIET.match(k)
        }
        assert {c.get_attribute("data-filter") for c in chips} == {
            f"resource:{k}={v}" for k, v in call["resource"].items() if not QUIET.match(k)
        }
        spans = row.find_elements(By.CSS_SELECTOR, "td.attrs .attr:not(.resource)")
        assert [c.text for c in spans] == [f"http.route={call['attributes']['http.route']}"]
    shown = driver.find_elements(By.CSS_SELECTOR, "#slowest .attr.resource")
    assert any(c.text == "service.version=1.1" for c in shown)


def test_a_typed_resource_filter_narrows_every_panel_to_one_release(
    pay_view: Any, releases_truth: Rows
) -> None:
    driver = pay_view
    seen = len(driver.execute_script(REQUESTS))
    box = driver.find_element(By.ID, "attr-input")
    act(driver, lambda: box.send_keys(ONE_ONE + Keys.ENTER))
    assert "attr=resource%3Aservice.version%3D1.1" in driver.current_url
    chip = driver.find_element(By.CSS_SELECTOR, "#attr-chips .chip.resource")
    assert chip.get_attribute("data-condition") == ONE_ONE and box.get_attribute("value") == ""
    # Every request of the view carried the filter: figures and histogram (detail), series.
    asked = api_requests_since(driver, seen)
    assert {"detail", "series"} <= {route for route, _ in asked}
    for route, params in asked:
        if route != "explain":  # explain weighs every call; the panel says so
            assert params["attr"] == [ONE_ONE], (route, params)
    assert "filters do not apply" in driver.find_element(By.ID, "explain").text
    query = Query((PAY,), resource=(("service.version", "1.1"),))
    want = expected_stats(releases_truth, query)[PAY]
    assert want.count < len(releases_truth)
    assert card(driver, "Calls") == f"{want.count:,}"
    p99 = duration_ns(card(driver, "p99"))
    assert abs(p99 - want.quantile(0.99)) <= (QUANTILE_TOLERANCE + 0.005) * want.quantile(0.99)
    assert abs(duration_ns(card(driver, "Max")) - want.max) <= 0.005 * want.max  # 3 digits
    assert slowest_traces(driver) == [
        c["trace_id"] for c in expected_slowest(releases_truth, query, 20)
    ]
    releases = {c.text for c in driver.find_elements(By.CSS_SELECTOR, "#slowest .attr.resource")
                if c.text.startswith("service.version=")}  # fmt: skip
    assert releases == {"service.version=1.1"}
    screenshot(driver, "filtered")
    # The list view keeps the filter: each function's calls of release 1.1 only.
    act(driver, lambda: driver.find_element(By.ID, "back").click())
    listed = driver.find_elements(By.CSS_SELECTOR, "#functions tbody tr[data-function]")
    counts = {r.get_attribute("data-function"): r.find_elements(By.TAG_NAME, "td")[2].text
              for r in listed}  # fmt: skip
    everywhere = expected_stats(releases_truth, Query(resource=query.resource))
    assert counts == {name: f"{w.count:,}" for name, w in everywhere.items()}
    # Removing the chip brings every call back.
    act(driver, lambda: driver.find_element(By.CSS_SELECTOR, "#attr-chips .chip-remove").click())
    assert "attr=" not in driver.current_url
    assert driver.find_element(By.ID, "filters").is_displayed() is False


def test_compare_by_release_lists_both_side_by_side(pay_view: Any, releases_truth: Rows) -> None:
    driver = pay_view
    offer = driver.find_element(By.CSS_SELECTOR, f"#compare-body button[data-by='{BY_RELEASE}']")
    act(driver, offer.click)
    assert "by=resource%3Aservice.version" in driver.current_url
    want = expected_stats(releases_truth, Query((PAY,)), BY_RELEASE)
    rows = driver.find_elements(By.CSS_SELECTOR, "#compare-body tbody tr")
    assert [r.get_attribute("data-value") for r in rows] == ["1.0", "1.1"] == sorted(want)
    for row in rows:
        w = want[row.get_attribute("data-value")]
        cells = row.find_elements(By.TAG_NAME, "td")
        assert cells[1].text == f"{w.count:,}"
        p99 = float(cells[7].get_attribute("title").removesuffix(" ns").replace(",", ""))
        assert abs(p99 - w.quantile(0.99)) <= QUANTILE_TOLERANCE * w.quantile(0.99) + 1
        assert cells[9].get_attribute("title") == f"{int(w.max):,} ns"
    # 1.1 is the slow release: its p99 over 1.0's is marked.
    assert "over" in rows[1].find_elements(By.TAG_NAME, "td")[8].get_attribute("class")
    batch = expected_stats(releases_truth, Query((PAY,)), "resource:host.name")["batch-1"].count
    total = expected_stats(releases_truth, Query((PAY,)))[PAY].count
    note = driver.find_element(By.CSS_SELECTOR, "#compare-body .compare-note").text
    assert f"{batch:,} of {total:,} calls carry no {BY_RELEASE}" in note
    screenshot(driver, "compare")
    # "only this" on release 1.1 narrows the whole view to it, the compare table included.
    act(driver, rows[1].find_element(By.CSS_SELECTOR, "button[data-filter]").click)
    assert "attr=resource%3Aservice.version%3D1.1" in driver.current_url
    assert card(driver, "Calls") == f"{want['1.1'].count:,}"
    rows = driver.find_elements(By.CSS_SELECTOR, "#compare-body tbody tr")
    assert [r.get_attribute("data-value") for r in rows] == ["1.1"]
    driver.refresh()  # the compare key and the filter are in the URL
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#compare-body tbody tr"))
    assert driver.find_element(By.ID, "compare-input").get_attribute("value") == BY_RELEASE


def test_bad_filter_and_compare_text_get_a_clear_message_not_a_broken_page(
    browser: Any,  # noqa: F811 - the imported fixture
    releases_web: WebServer,
    releases_truth: Rows,
) -> None:
    total = f"{expected_stats(releases_truth, Query((PAY,)))[PAY].count:,}"
    open_page(browser, page(releases_web, fn=PAY))
    before = loads(browser)
    browser.find_element(By.ID, "attr-input").send_keys("release 1.1" + Keys.ENTER)
    hint = browser.find_element(By.ID, "attr-hint")
    wait_for(browser, lambda d: hint.is_displayed())
    assert "“release 1.1” is not a filter: write KEY=VALUE" in hint.text
    assert "resource:KEY=VALUE" in hint.text
    assert "attr=" not in browser.current_url and loads(browser) == before
    assert card(browser, "Calls") == total
    # A bad condition arriving in the URL: the server's message, and the chip to remove it.
    open_page(browser, page(releases_web, fn=PAY, attr="resource:=1.1"), want="error")
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    assert "attribute filter must be KEY=VALUE or resource:KEY=VALUE, got 'resource:=1.1'" in \
        error.text  # fmt: skip
    assert "Could not load this view" in browser.find_element(By.ID, "cards").text
    screenshot(browser, "filter-error")
    act(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#attr-chips .chip-remove").click())
    assert not error.is_displayed() and card(browser, "Calls") == total
    # A bad compare key: the panel says why, the rest of the view stands.
    compare = browser.find_element(By.ID, "compare-input")
    act(browser, lambda: compare.send_keys("version" + Keys.ENTER))
    body = browser.find_element(By.ID, "compare-body").text
    assert "Could not compare: unknown group key 'version'" in body
    assert card(browser, "Calls") == total and len(slowest_traces(browser)) == 20
    # A good condition no call meets: an empty table that names it, not a blank one.
    open_page(browser, page(releases_web, attr="resource:service.version=9.9"))
    text = browser.find_element(By.ID, "functions").text
    assert "No calls in the last hour where resource:service.version=9.9" in text
