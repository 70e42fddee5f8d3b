"""Dashboard benchmark: how fast the page and its JSON API answer over 10M spans, 100 functions.

Run by hand:  python bench/bench_web.py [--rows 10000000] [--path DIR] [--keep]

Workload: 100 functions with Zipf-like call frequencies spread over the 24 hours before now,
lognormal durations (medians from 20 us to 20 ms), one function in ten with a heavy tail and one
with a late regression, 1% errors, trace and span ids on every call (written once; ``--path``
reuses a database written by an earlier ``--keep`` run if it is there).

Figures:
- page load in headless Chromium (when installed): navigation start -> the first answer drawn,
  read from ``performance.now()`` by the page itself; the first load of each view on a freshly
  opened database (cold caches), then the median of 5 reloads;
- each JSON route over HTTP (median of 10 warm requests, and answer size);
- baseline, in the same run: the same view computed by calling the query layer directly (no HTTP,
  no JSON), so the web layer's own cost is the difference.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kronicler.db import Database  # noqa: E402
from kronicler.web import WebServer, views  # noqa: E402
from kronicler.web.params import resolve_window  # noqa: E402

N_FUNCTIONS = 100
BATCH = 200_000
DAY = 86_400 * 10**9


def generate(path: Path, n: int, now: int, seed: int = 3) -> float:
    rng = np.random.default_rng(seed)
    names = np.array([f"app.module_{i // 10}.function_{i}" for i in range(N_FUNCTIONS)])
    p = 1.0 / np.arange(1, N_FUNCTIONS + 1)
    p /= p.sum()
    medians = np.exp(rng.uniform(np.log(20e3), np.log(20e6), N_FUNCTIONS))
    db = Database.open(path)
    t0 = time.perf_counter()
    first = now - DAY
    for i in range(0, n, BATCH):
        m = min(BATCH, n - i)
        codes = rng.choice(N_FUNCTIONS, m, p=p)
        start = first + np.arange(i, i + m, dtype=np.int64) * (DAY // n)
        dur = rng.lognormal(np.log(medians[codes]), 0.4)
        tail = (codes % 10 == 3) & (rng.random(m) < 0.03)
        dur[tail] *= 30
        late = (codes == 7) & (start > now - DAY // 10)
        dur[late] *= 4
        status = np.where(rng.random(m) < 0.01, 2, 0).astype(np.uint8)
        trace = rng.integers(0, 2**63, (m, 2), dtype=np.uint64).astype(">u8").view(np.uint8)
        span = rng.integers(1, 2**63, m, dtype=np.uint64)
        while not db.append(
            names[codes],
            start,
            dur.astype(np.int64),
            status=status,
            service="bench",
            trace_id=trace.reshape(m, 16),
            span_id=span,
        ):
            db.flush()  # queue full: a loader waits rather than drop
    db.close()
    return time.perf_counter() - t0


def median_ms(fn: Callable[[], Any], repeat: int = 10) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        body: bytes = r.read()
        return body


def chromium() -> Any:
    chrome = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        return None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tempfile.mkdtemp()}",
                "--window-size=1400,1000"):  # fmt: skip
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def page_load_ms(browser: Any, url: str) -> tuple[float, float]:
    """(first answer drawn, everything drawn) in ms from navigation start, as the page saw it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    body = WebDriverWait(browser, 120).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "body[data-complete-ms], body[data-state=error]")
    )
    if body.get_attribute("data-state") != "ready":
        raise RuntimeError(f"{url}: {browser.find_element(By.ID, 'error').text}")
    return float(body.get_attribute("data-ready-ms")), float(body.get_attribute("data-complete-ms"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--path", type=Path, help="database directory (reused when it exists)")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument(
        "--bufferpool-mb",
        type=int,
        default=64,
        help="the database's cache of decoded pages (default: 64, the library's)",
    )
    args = ap.parse_args()
    path = args.path or Path(tempfile.mkdtemp(prefix="kbench-web-")) / "db"
    now = time.time_ns()
    if not (path / "segments").is_dir():
        elapsed = generate(path, args.rows, now)
        print(f"wrote {args.rows:,} spans, {N_FUNCTIONS} functions, over the last 24 h: "
              f"{elapsed:.1f} s")  # fmt: skip
    browser = chromium()  # started before the database opens, so its start-up is not counted
    db = Database.open(path, bufferpool_bytes=args.bufferpool_mb << 20)
    span = db.time_range()
    assert span is not None
    every = db.stats()
    assert isinstance(every, dict)
    rows = sum(s.count for s in every.values())
    top = db.functions()[0]
    print(f"database: {path}  ({rows:,} spans, {len(db.functions())} functions; "
          f"bufferpool {args.bufferpool_mb} MiB)")  # fmt: skip
    clock = (lambda: span[1] + 1) if args.path else (lambda: now)
    srv = WebServer(db, "127.0.0.1", 0, log_level="error", clock=clock).start()
    try:
        if browser is None:
            print("page load: skipped (chromium, chromedriver or selenium missing)")
        else:
            print(
                "page load in headless Chromium, ms from navigation start to: first answer drawn"
                " / everything drawn (detail: time charts come last)"
            )
            for label, query in (("functions, 1h", "range=1h"), ("functions, 24h", "range=24h"),
                                 ("functions, all", "range=all"), ("functions, 15m", "range=15m"),
                                 ("detail, 1h", f"range=1h&fn={top}"),
                                 ("detail, 24h", f"range=24h&fn={top}")):  # fmt: skip
                url = f"{srv.url}?{query}&refresh=0"
                first = page_load_ms(browser, url)
                again = [page_load_ms(browser, url) for _ in range(5)]
                med = [statistics.median(x[i] for x in again) for i in (0, 1)]
                print(
                    f"  {label:<16} first load {first[0]:5.0f} / {first[1]:5.0f}   "
                    f"then median of 5: {med[0]:5.0f} / {med[1]:5.0f}"
                )
        print("JSON API over HTTP (median of 10 warm requests)  vs  query layer called directly:")
        for preset in ("15m", "1h", "24h", "all"):
            window = resolve_window(preset, None, None, now=clock(), data_range=db.time_range())
            flt = views.make_filter(window)
            url = f"{srv.url}api/v1/functions?range={preset}"
            size = len(http_get(url))
            http_ms = median_ms(partial(http_get, url))
            base_ms = median_ms(partial(views.functions_table, db, window, flt))
            print(f"  functions range={preset:<4} {http_ms:7.1f} ms ({size / 1024:5.1f} KiB)   "
                  f"direct {base_ms:7.1f} ms")  # fmt: skip
        for preset in ("1h", "24h"):
            window = resolve_window(preset, None, None, now=clock(), data_range=db.time_range())
            flt = views.make_filter(window)
            url = f"{srv.url}api/v1/detail?range={preset}&function={top}"
            size = len(http_get(url))
            http_ms = median_ms(partial(http_get, url))
            base_ms = median_ms(partial(views.detail, db, top, window, flt))
            print(f"  detail    range={preset:<4} {http_ms:7.1f} ms ({size / 1024:5.1f} KiB)   "
                  f"direct {base_ms:7.1f} ms   ({top})")  # fmt: skip
        meta_ms = median_ms(lambda: http_get(f"{srv.url}api/v1/meta"))
        page_ms = median_ms(lambda: http_get(srv.url))
        print(f"  meta {meta_ms:.1f} ms; page HTML {page_ms:.1f} ms")
    finally:
        srv.stop()
        if browser is not None:
            browser.quit()
        db.close()
        if not args.keep and not args.path:
            shutil.rmtree(path.parent, ignore_errors=True)
        elif args.keep:
            print("kept", path)


if __name__ == "__main__":
    main()
