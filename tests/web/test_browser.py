"""The page in a real headless Chromium (Debian's chromium + chromium-driver, via selenium).

Skipped, with the reason, only when Chromium, its driver or selenium is missing. Set
``KRONICLER_SCREENSHOTS=docs`` to save a screenshot of each view as ``docs/dashboard-*.png``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kronicler.web import WebServer
from tests.web.conftest import TOKEN, get_json
from tests.web.workload import Shop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver"
                                          if os.path.exists("/usr/bin/chromedriver") else None)  # fmt: skip
if not CHROMIUM or not DRIVER:
    pytest.skip("Chromium and chromedriver are not installed (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)  # fmt: skip
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

WAIT = 20  # seconds; generous for a loaded CI machine (the page needs well under one)
SHOTS = os.environ.get("KRONICLER_SCREENSHOTS")

# Counts the painted pixels of every canvas inside an element (uPlot draws on <canvas>).
PAINTED = """
const root = arguments[0];
let painted = 0;
for (const c of root.querySelectorAll('canvas')) {
  if (!c.width || !c.height) continue;
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted++;
}
return painted;
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="kronicler-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                "--window-size=1400,1000", "--force-device-scale-factor=1"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: Any, url: str, *, want: str = "ready") -> None:
    """Load ``url`` and wait until the page has drawn an answer (or shown an error)."""
    driver.get(url)
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
             in ("ready", "error"))  # fmt: skip
    state = driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")
    assert state == want, driver.find_element(By.ID, "error").text


def wait_for(driver: Any, condition: Any) -> Any:
    return WebDriverWait(driver, WAIT).until(condition)


def loads(driver: Any) -> int:
    return int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-loads") or 0)


def table_rows(driver: Any) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, "#functions tbody tr[data-function]")


def names(driver: Any) -> list[str]:
    return [r.get_attribute("data-function") for r in table_rows(driver)]


def screenshot(driver: Any, name: str) -> None:
    if not SHOTS:
        return
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(700, min(height + 100, 2400)))
    driver.execute_script("return new Promise(r => requestAnimationFrame(() => r()))")
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(Path(SHOTS) / f"dashboard-{name}.png"))
    driver.set_window_size(1400, 1000)


def test_table_lists_the_captured_functions_with_their_counts(browser: Any, server: WebServer,
                                                              shop: Shop) -> None:  # fmt: skip
    open_page(browser, server.url + "?refresh=300")
    assert sorted(names(browser)) == sorted(shop.counts)
    for row in table_rows(browser):
        cells = row.find_elements(By.TAG_NAME, "td")
        assert cells[2].text == f"{shop.counts[row.get_attribute('data-function')]:,}"
    summary = browser.find_element(By.ID, "summary").text
    assert "7 functions" in summary and "last hour" in summary
    flagged = {r.get_attribute("data-function") for r in table_rows(browser)
               if "flagged" in r.get_attribute("class")}  # fmt: skip
    assert {"shop.load_user", "shop.search_catalog"} <= flagged
    assert "shop.parse_request" not in flagged


def test_sorting_by_any_column_and_the_url_keeps_it(browser: Any, server: WebServer) -> None:
    open_page(browser, server.url + "?refresh=300")
    rows = get_json(server.url + "api/v1/functions")[1]["rows"]
    header = browser.find_element(By.CSS_SELECTOR, "#functions th[data-key='p99_ns']")
    header.click()
    by_p99 = [r["function"] for r in sorted(rows, key=lambda r: -r["p99_ns"])]
    assert names(browser) == by_p99
    assert "sort=p99_ns" in browser.current_url
    header.click()
    assert names(browser) == by_p99[::-1]
    assert "dir=asc" in browser.current_url
    browser.find_element(By.CSS_SELECTOR, "#functions th[data-key='function']").click()
    assert names(browser) == sorted(r["function"] for r in rows)
    browser.find_element(By.CSS_SELECTOR, "#functions th[data-key='count']").click()
    assert names(browser)[-1] == "shop.send_email"
    browser.refresh()  # the state survives a reload: it is in the URL
    wait_for(browser, lambda d: names(d))
    assert names(browser)[-1] == "shop.send_email"


def test_filter_box_narrows_the_table(browser: Any, server: WebServer) -> None:
    open_page(browser, server.url + "?refresh=300")
    box = browser.find_element(By.ID, "filter")
    box.send_keys("load")
    assert names(browser) == ["shop.load_user"]
    assert "q=load" in browser.current_url
    assert "1 of 7 functions" in browser.find_element(By.ID, "summary").text
    box.send_keys("zzz")
    assert names(browser) == []
    assert "No function matches" in browser.find_element(By.ID, "functions").text
    box.clear()
    box.send_keys(" ")
    assert len(names(browser)) == 7


def test_flag_shows_its_evidence_on_hover(browser: Any, server: WebServer) -> None:
    open_page(browser, server.url + "?refresh=300")
    flag = browser.find_element(By.CSS_SELECTOR, "tr[data-function='shop.load_user'] .flag")
    assert "tail" in flag.text
    ActionChains(browser).move_to_element(flag).perform()
    tip = browser.find_element(By.ID, "tooltip")
    wait_for(browser, lambda d: tip.is_displayed())
    assert "Anomaly score" in tip.text and "median" in tip.text
    screenshot(browser, "functions")


def test_detail_view_draws_charts_and_lists_slowest_calls(browser: Any, server: WebServer,
                                                          shop: Shop) -> None:  # fmt: skip
    open_page(browser, server.url + "?refresh=300")
    before = loads(browser)
    browser.find_element(By.LINK_TEXT, "shop.load_user").click()
    wait_for(browser, lambda d: loads(d) > before)
    assert "fn=shop.load_user" in browser.current_url
    assert browser.find_element(By.ID, "fn-name").text == "shop.load_user"
    for chart in ("chart-latency", "chart-calls", "chart-hist"):
        element = browser.find_element(By.ID, chart)
        assert browser.execute_script(PAINTED, element) > 500, chart
    evidence = browser.find_element(By.ID, "evidence").text
    assert "Flagged" in evidence and "p99 is" in evidence
    cards = browser.find_element(By.ID, "cards").text
    assert "3,000" in cards
    trace_ids = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#slowest td.trace-id")]
    assert len(trace_ids) == 20 and trace_ids[0] == shop.slowest["shop.load_user"][1]
    assert all(len(t) == 32 for t in trace_ids)
    assert browser.find_elements(By.CSS_SELECTOR, "#slowest td.span-id")[0].text
    screenshot(browser, "detail")
    browser.back()  # history: back to the table
    wait_for(browser, lambda d: d.find_element(By.ID, "list-view").is_displayed())
    assert "fn=" not in browser.current_url


def test_regression_detail_and_not_flagged_detail(browser: Any, server: WebServer) -> None:
    open_page(browser, server.url + "?fn=shop.search_catalog&refresh=300")
    assert "Regression" in browser.find_element(By.ID, "evidence").text
    screenshot(browser, "regression")
    open_page(browser, server.url + "?fn=shop.parse_request&refresh=300")
    assert "Not flagged" in browser.find_element(By.ID, "evidence").text


def test_presets_and_custom_range(browser: Any, server: WebServer, shop: Shop, now: int) -> None:
    open_page(browser, server.url + "?refresh=300")
    before = loads(browser)
    browser.find_element(By.CSS_SELECTOR, "#presets [data-preset='15m']").click()
    wait_for(browser, lambda d: loads(d) > before)
    assert "range=15m" in browser.current_url
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-function='shop.parse_request']")
    expected = shop.count_since("shop.parse_request", now - 15 * 60 * 10**9)
    assert row.find_elements(By.TAG_NAME, "td")[2].text == f"{expected:,}"
    browser.find_element(By.ID, "custom-toggle").click()
    assert browser.find_element(By.ID, "custom").is_displayed()
    before = loads(browser)
    browser.find_element(By.CSS_SELECTOR, "#custom button[type='submit']").click()
    wait_for(browser, lambda d: loads(d) > before)
    assert "since=" in browser.current_url and "until=" in browser.current_url


def test_service_filter(browser: Any, server: WebServer) -> None:
    open_page(browser, server.url + "?refresh=300")
    before = loads(browser)
    Select(browser.find_element(By.ID, "service")).select_by_value("mailer")
    wait_for(browser, lambda d: loads(d) > before)
    assert names(browser) == ["shop.send_email"] and "service=mailer" in browser.current_url


def test_dragging_across_a_time_chart_zooms_into_that_range(browser: Any, server: WebServer,
                                                            now: int) -> None:  # fmt: skip
    open_page(browser, server.url + "?fn=shop.parse_request&refresh=300")
    over = browser.find_element(By.CSS_SELECTOR, "#chart-latency .u-over")
    width = over.size["width"]
    before = loads(browser)
    ActionChains(browser).move_to_element_with_offset(over, -width // 4, 0).click_and_hold() \
        .move_by_offset(width // 4, 0).release().perform()  # fmt: skip
    wait_for(browser, lambda d: loads(d) > before)
    params = dict(p.split("=", 1) for p in browser.current_url.split("?", 1)[1].split("&"))
    since, until = int(params["since"]), int(params["until"])
    hour = 3600 * 10**9
    # the chart spans the last hour: a quarter of its width is about 15 minutes
    assert now - hour < since < until < now and 0.15 * hour < until - since < 0.35 * hour
    assert "range" not in params
    custom = browser.find_element(By.ID, "custom-toggle")
    assert custom.get_attribute("aria-pressed") == "true"


def test_bad_range_shows_an_error_message_not_a_blank_page(browser: Any, server: WebServer) -> None:
    open_page(browser, server.url + "?since=20&until=10&refresh=300", want="error")
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and "since (20) must be before until (10)" in error.text
    assert "Could not load" in browser.find_element(By.ID, "functions").text
    screenshot(browser, "error")
    open_page(browser, server.url + "?fn=shop.load_user&range=3w&refresh=300", want="error")
    assert "unknown range '3w'" in browser.find_element(By.ID, "error").text


def test_auto_refresh_runs_and_pauses(browser: Any, server: WebServer) -> None:
    open_page(browser, server.url + "?refresh=1")
    start = loads(browser)
    wait_for(browser, lambda d: loads(d) >= start + 1)
    pause = browser.find_element(By.ID, "pause")
    pause.click()
    assert pause.text == "Resume" and "refresh=0" in browser.current_url
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
             == "ready")  # a load already on its way may still land  # fmt: skip
    paused_at = loads(browser)
    browser.execute_script("return new Promise(r => setTimeout(r, 1500))")
    assert loads(browser) == paused_at
    pause.click()
    wait_for(browser, lambda d: loads(d) > paused_at)


def test_token_from_the_url_is_kept_for_the_session(browser: Any, token_server: WebServer) -> None:
    open_page(browser, token_server.url + "?refresh=300", want="error")
    assert browser.find_element(By.ID, "token-form").is_displayed()
    assert "token" in browser.find_element(By.ID, "error").text
    open_page(browser, token_server.url + f"?token={TOKEN}&refresh=300")
    assert "token=" not in browser.current_url
    assert len(names(browser)) == 7
    browser.get(token_server.url + "?refresh=300&range=all")  # same tab: sessionStorage holds it
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
             == "ready")  # fmt: skip
