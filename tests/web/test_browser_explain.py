"""The function view's "Why slow?" panel in a real headless Chromium (see ``test_browser.py``).

Over the planted-causes dataset (``tests/query/explain_data.py``): the panel shows each cause
first, with the counts and the example trace id of the ``/api/v1/explain`` answer.
"""

from __future__ import annotations

from typing import Any

import pytest

from kronicler.web import WebServer
from tests.web.conftest import get_json
from tests.web.test_browser import By, browser, open_page, screenshot, wait_for  # noqa: F401
from tests.web.test_explain import db, path, web  # noqa: F401

CAUSES = [
    ("api.lookup", "attributes", "db.shard=7"),
    ("api.render", "children", "cache.fill"),
    ("api.search", "attributes", "service.version=1.5.0"),
]


@pytest.mark.parametrize(("function", "section", "first"), CAUSES)
def test_the_panel_shows_the_planted_cause_first(
    browser: Any,  # noqa: F811 - the imported fixture
    web: WebServer,  # noqa: F811
    function: str,
    section: str,
    first: str,
) -> None:
    open_page(browser, f"{web.url}?fn={function}&range=all&refresh=300")
    css = f"#explain table[data-section='{section}'] tbody tr td"
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, css))
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, css)]
    api = get_json(f"{web.url}api/v1/explain?function={function}&range=all")[1]
    finding = api[section][0]
    assert cells[0] == first
    width = 6  # cells per row in both tables
    assert cells[width - 1] == finding["examples"][0]["trace_id"]
    text = browser.find_element(By.ID, "explain").text
    assert f"{api['slow_count']} of {api['count']:,} calls slower than" in text
    assert ("lines up" in text) == (function == "api.search")
    screenshot(browser, f"explain-{function.split('.')[1]}")
