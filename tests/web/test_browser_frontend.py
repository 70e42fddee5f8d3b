"""The page on a cluster frontend in a real headless Chromium: it draws the merged answer, and
when a node is SIGKILLed it still draws the other nodes' data with a notice naming the node."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

from kronicler.server.frontend import Frontend
from kronicler.web import WebServer
from tests.cluster.nodes import stored
from tests.web.conftest import Nodes
from tests.web.test_browser import (  # noqa: F401 (browser is a fixture)
    By,
    browser,
    open_page,
    screenshot,
    table_rows,
    wait_for,
)
from tests.web.workload import Shop


def counts(driver: Any) -> dict[str, int]:
    return {r.get_attribute("data-function"): int(r.find_elements(By.TAG_NAME, "td")[2].text
                                                  .replace(",", "")) for r in table_rows(driver)}  # fmt: skip


def test_the_page_draws_the_merged_answer_then_names_a_killed_node(
    browser: Any,  # noqa: F811
    nodes: Nodes,
    third_node: tuple[subprocess.Popen[str], str, Path],
    shop: Shop,
    now: int,
) -> None:
    proc, address, path = third_node
    with (
        Frontend([*nodes.peers[:2], address], timeout=10) as front,
        WebServer(front, "127.0.0.1", 0, clock=lambda: now) as web,
    ):
        open_page(browser, web.url + "?range=all&refresh=300")
        assert counts(browser) == shop.counts
        assert not browser.find_element(By.ID, "peers").is_displayed()

        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        open_page(browser, web.url + "?range=all&refresh=300")
        notice = wait_for(browser, lambda d: d.find_element(By.ID, "peers"))
        assert notice.is_displayed()
        assert "1 peer did not answer" in notice.text and address in notice.text
        lost = stored(path)
        assert counts(browser) == {
            name: n - int((lost.name == name).sum()) for name, n in shop.counts.items()
        }
        screenshot(browser, "frontend-missing-peer")

        # The function view draws too; explain, which a frontend does not answer, says why.
        open_page(browser, web.url + "?range=all&refresh=300&fn=shop.search_catalog")
        assert browser.find_element(By.ID, "peers").is_displayed()
        assert browser.find_element(By.ID, "fn-name").text == "shop.search_catalog"
        panel = wait_for(browser, lambda d: d.find_element(By.ID, "explain")
                         if "Comparing" not in d.find_element(By.ID, "explain").text else None)  # fmt: skip
        if "Could not explain" in panel.text:
            assert "cluster frontend" in panel.text
        else:  # a frontend that merges explanations
            assert "calls slower than" in panel.text
