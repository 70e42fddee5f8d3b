"""Buffer pool contract: hits and misses, eviction, pinning, one-offs, guards, concurrency.

The "disk" is a dict of arrays behind the pool's load callback, so every test can count exactly
what the pool read. The last tests watch the pool under the database's own queries.
"""

from __future__ import annotations

import random
import threading
import weakref
from collections import Counter
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import pytest

from kronicler.db import Database
from kronicler.db.bufferpool import BufferPool, BufferPoolStats
from kronicler.db.page_guard import PinnedPages
from kronicler.db.replacer import LRUKReplacer

from .conftest import make_rows

PAGE = 100  # bytes per test page (uint8 arrays)


class Disk:
    """Pages at rest; counts loads, and can hold a load until released."""

    def __init__(self, pages: dict[Hashable, np.ndarray] | None = None) -> None:
        self.pages = dict(pages or {})
        self.loads: Counter[Hashable] = Counter()
        self.gates: dict[Hashable, threading.Event] = {}
        self.started: dict[Hashable, threading.Event] = {}
        self.lock = threading.Lock()

    def load(self, key: Hashable) -> np.ndarray:
        with self.lock:
            self.loads[key] += 1
            gate = self.gates.get(key)
            started = self.started.setdefault(key, threading.Event())
        started.set()
        if gate is not None:
            assert gate.wait(10), "test gate never opened"
        with self.lock:
            return self.pages[key].copy()

    def hold(self, key: Hashable) -> threading.Event:
        gate = self.gates[key] = threading.Event()
        return gate


def make_disk(n: int, size: int = PAGE) -> Disk:
    return Disk({i: np.full(size, i, dtype=np.uint8) for i in range(n)})


def read(pool: BufferPool, key: Hashable) -> np.ndarray:
    with pool.read_page(key) as g:
        return g.data.copy()


def test_a_second_read_is_a_hit_and_loads_nothing() -> None:
    disk = make_disk(3)
    pool = BufferPool(10 * PAGE, load=disk.load)
    assert read(pool, 1)[0] == 1
    assert read(pool, 1)[0] == 1
    s = pool.stats
    assert (s.hits, s.misses, s.evictions, s.bytes_in_use, s.pages) == (1, 1, 0, PAGE, 1)
    assert disk.loads[1] == 1 and 1 in pool and len(pool) == 1
    assert isinstance(s, BufferPoolStats) and s.to_dict()["capacity_bytes"] == 10 * PAGE


def test_eviction_follows_lru_k_and_keeps_memory_within_capacity() -> None:
    disk = make_disk(10)
    pool = BufferPool(3 * PAGE, load=disk.load)
    for key in [0, 0, 1, 1, 2]:  # 0 and 1 are "hot" (two accesses), 2 was seen once
        read(pool, key)
    read(pool, 3)  # evicts 2, the page seen once
    assert 2 not in pool and {0, 1, 3} <= {k for k in range(10) if k in pool}
    read(pool, 3)
    read(pool, 4)  # now 0 has the oldest second-to-last access
    assert 0 not in pool and 1 in pool
    assert pool.stats.evictions == 2 and pool.stats.bytes_in_use == 3 * PAGE


def test_a_replacer_can_be_passed_in() -> None:
    disk = make_disk(4)
    pool = BufferPool(2 * PAGE, load=disk.load, replacer=LRUKReplacer(k=1))
    for key in [0, 0, 1, 0, 2]:  # plain LRU: 1 is least recently used
        read(pool, key)
    assert 1 not in pool and 0 in pool


def test_pinned_pages_are_never_evicted_and_a_page_with_no_room_is_a_counted_one_off() -> None:
    disk = make_disk(5)
    pool = BufferPool(2 * PAGE, load=disk.load)
    with pool.read_page(0) as g0, pool.read_page(1) as g1:
        with pool.read_page(2) as g2:  # no room beside two pinned pages: served, not cached
            assert g2.data[0] == 2 and 2 not in pool
            s = pool.stats
            assert (s.bytes_in_use, s.pinned_bytes, s.pages) == (3 * PAGE, 3 * PAGE, 2)
        assert pool.stats.bytes_in_use == 2 * PAGE  # the one-off's memory is free again
        assert g0.data[0] == 0 and g1.data[0] == 1
        assert 0 in pool and 1 in pool
    assert read(pool, 2)[0] == 2 and 2 in pool  # room again once the guards are gone
    s = pool.stats
    assert s.bytes_in_use <= 2 * PAGE and s.pinned_bytes == 0 and s.evictions == 1


def test_one_pinned_page_stays_while_others_churn() -> None:
    disk = make_disk(20)
    pool = BufferPool(3 * PAGE, load=disk.load)
    with pool.read_page(0):
        for key in range(1, 20):
            read(pool, key)
            assert 0 in pool
            assert pool.stats.bytes_in_use <= 3 * PAGE


def test_pages_are_read_only_and_shared() -> None:
    disk = make_disk(2)
    pool = BufferPool(4 * PAGE, load=disk.load)
    with pool.read_page(0) as g, pool.read_page(0) as h:
        assert g.data is h.data and g.nbytes == PAGE
        with pytest.raises(ValueError, match="read-only"):
            g.data[0] = 9


class Block:
    """A page that is not an array: a decoded structure that knows its own size."""

    def __init__(self, value: str, nbytes: int) -> None:
        self.value, self.nbytes = value, nbytes


def test_any_object_with_nbytes_can_be_a_page() -> None:
    blocks = {k: Block(f"block {k}", PAGE) for k in range(3)}
    pool = BufferPool(2 * PAGE, load=lambda k: blocks[k])
    for key in (0, 1, 2, 2):
        with pool.read_page(key) as g:
            assert g.data.value == f"block {key}"
    assert pool.stats.bytes_in_use == 2 * PAGE and 0 not in pool
    bad = BufferPool(2 * PAGE, load=lambda k: "no size")
    with pytest.raises(ValueError, match="int nbytes"), bad.read_page(0):
        pass


def test_pages_larger_than_the_pool_are_one_offs_counted_while_held() -> None:
    disk = Disk({"big": np.ones(10 * PAGE, dtype=np.uint8), 0: np.zeros(PAGE, dtype=np.uint8)})
    pool = BufferPool(2 * PAGE, load=disk.load)
    read(pool, 0)
    with pool.read_page("big") as g:
        assert int(g.data.sum()) == 10 * PAGE
        assert pool.stats.bytes_in_use == 11 * PAGE and pool.stats.pinned_bytes == 10 * PAGE
    assert "big" not in pool and 0 in pool and pool.stats.bytes_in_use == PAGE
    read(pool, "big")
    assert disk.loads["big"] == 2


def test_guard_misuse_raises() -> None:
    disk = make_disk(1)
    pool = BufferPool(2 * PAGE, load=disk.load)
    guard = pool.read_page(0)
    with pytest.raises(RuntimeError, match="not held"):
        _ = guard.data
    with pytest.raises(RuntimeError, match="not held"):
        guard.release()
    with guard:
        with pytest.raises(RuntimeError, match="already entered"), guard:
            pass
        assert guard.key == 0 and guard.data[0] == 0
    with pytest.raises(RuntimeError, match="released, not held"):
        _ = guard.data
    with pytest.raises(RuntimeError, match="not held"):
        guard.release()
    with pytest.raises(RuntimeError, match="already entered"):
        guard.__enter__()
    assert pool.stats.bytes_in_use == PAGE
    read(pool, 0)  # the pin count survived the misuse


def test_dropping_pages_forgets_them() -> None:
    disk = make_disk(6)
    pool = BufferPool(10 * PAGE, load=disk.load)
    for key in range(6):
        read(pool, key)
    assert pool.drop_page(0) is True and pool.drop_page(0) is False
    assert pool.drop(lambda k: isinstance(k, int) and k >= 4) == 2
    assert sorted(k for k in range(6) if k in pool) == [1, 2, 3]
    assert pool.stats.bytes_in_use == 3 * PAGE
    disk.pages[0][:] = 77  # the segment changed on disk: a dropped page is loaded afresh
    assert read(pool, 0)[0] == 77 and disk.loads[0] == 2


def test_a_page_dropped_while_pinned_stays_usable_until_released() -> None:
    disk = make_disk(2)
    pool = BufferPool(2 * PAGE, load=disk.load)
    with pool.read_page(0) as g:
        assert pool.drop_page(0) is True
        assert 0 not in pool and g.data[0] == 0
        assert pool.stats.bytes_in_use == PAGE  # still in memory
    assert pool.stats.bytes_in_use == 0
    read(pool, 0)
    assert disk.loads[0] == 2


def test_two_threads_missing_the_same_page_load_it_once() -> None:
    disk = make_disk(1)
    gate = disk.hold(0)
    pool = BufferPool(2 * PAGE, load=disk.load)
    results: list[int] = []

    def reader() -> None:
        results.append(int(read(pool, 0)[0]))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    assert disk.started.setdefault(0, threading.Event()).wait(10)
    gate.set()
    for t in threads:
        t.join(10)
    assert results == [0, 0, 0, 0]
    assert disk.loads[0] == 1
    assert pool.stats.misses == 1 and pool.stats.hits == 3


def test_a_slow_load_does_not_block_hits_on_other_pages() -> None:
    disk = make_disk(2)
    pool = BufferPool(4 * PAGE, load=disk.load)
    read(pool, 0)
    gate = disk.hold(1)
    slow = threading.Thread(target=read, args=(pool, 1))
    slow.start()
    assert disk.started[1].wait(10)
    assert read(pool, 0)[0] == 0  # answered while page 1 is still loading
    assert slow.is_alive()
    gate.set()
    slow.join(10)
    assert 1 in pool


def test_a_failed_load_reaches_every_waiter_and_a_retry_loads_again() -> None:
    disk = Disk()
    gate = disk.hold("missing")
    pool = BufferPool(2 * PAGE, load=disk.load)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            read(pool, "missing")
        except KeyError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    assert disk.started["missing"].wait(10)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(errors) == 3 and disk.loads["missing"] <= 3
    disk.pages["missing"] = np.zeros(PAGE, dtype=np.uint8)
    assert read(pool, "missing")[0] == 0


def test_a_page_dropped_while_loading_is_not_cached() -> None:
    disk = make_disk(1)
    gate = disk.hold(0)
    pool = BufferPool(2 * PAGE, load=disk.load)
    loader = threading.Thread(target=read, args=(pool, 0))
    loader.start()
    assert disk.started[0].wait(10)
    assert pool.drop_page(0) is False  # not cached yet, but the load is marked
    gate.set()
    loader.join(10)
    assert 0 not in pool and pool.stats.bytes_in_use == 0


def test_bad_capacity_is_rejected() -> None:
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="capacity_bytes"):
            BufferPool(bad, load=make_disk(1).load)  # type: ignore[arg-type]  # 1.5: on purpose


def test_random_workload_from_four_threads_stays_within_capacity() -> None:
    # Pages of 80-312 bytes: room for ~8 of 40, and always for the 4 that threads can pin.
    n_pages, capacity = 40, 1600
    rng = np.random.default_rng(11)
    sizes = rng.integers(10, 40, n_pages)
    disk = Disk({k: np.full(int(sizes[k]), k, dtype=np.int64) for k in range(n_pages)})
    pool = BufferPool(capacity, load=disk.load)
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        rnd = random.Random(i)
        try:
            for _ in range(2500):  # 4 threads x 2,500 = 10,000 accesses
                key = min(int(rnd.paretovariate(1.0)) - 1, n_pages - 1)  # skewed: hot pages
                with pool.read_page(key) as g:
                    assert g.data.size == sizes[key] and int(g.data[0]) == key
                    assert key in pool  # pinned: cached, and never evicted while held
                    assert pool.stats.bytes_in_use <= capacity
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures[:3]
    stats = pool.stats
    assert stats.hits + stats.misses == 10_000
    assert stats.evictions > 0 and stats.bytes_in_use <= capacity and stats.pinned_bytes == 0
    cached = [k for k in range(n_pages) if k in pool]
    assert stats.bytes_in_use == sum(int(sizes[k]) * 8 for k in cached)


def test_pinned_pages_move_between_sets_and_release_once() -> None:
    disk = make_disk(4)
    pool = BufferPool(3 * PAGE, load=disk.load)
    held = PinnedPages()
    with PinnedPages() as chunk:
        assert chunk.pin(pool, 0)[0] == 0 and chunk.pin(pool, 1)[0] == 1
        assert (len(chunk), chunk.nbytes, pool.stats.pinned_bytes) == (2, 2 * PAGE, 2 * PAGE)
        chunk.move_to(held)
        assert (len(chunk), chunk.nbytes, held.nbytes) == (0, 0, 2 * PAGE)
    assert pool.stats.pinned_bytes == 2 * PAGE  # leaving the chunk's block kept the moved pins
    for key in (2, 3, 2, 3):  # churn through the one free frame: 0 and 1 stay
        read(pool, key)
    assert 0 in pool and 1 in pool
    held.release()
    held.release()  # nothing left to release
    assert pool.stats.pinned_bytes == 0
    read(pool, 2)
    read(pool, 3)
    assert pool.stats.bytes_in_use <= 3 * PAGE


# -- the pool under the database's own queries -------------------------------------------------


class LivePages:
    """Wraps a pool's loader to follow every decoded array it hands out until it is garbage:
    ``live`` is the memory the pool's pages really take, whatever the pool believes."""

    def __init__(self, pool: BufferPool) -> None:
        self.pool = pool
        self.inner = pool._load
        self.lock = threading.Lock()
        self.live = self.peak = 0
        pool._load = self.load  # the test watches the real loader

    def load(self, key: Hashable) -> object:
        page = self.inner(key)
        if isinstance(page, np.ndarray):
            with self.lock:
                self.live += page.nbytes
                self.peak = max(self.peak, self.live - page.nbytes)  # this one is in flight
            weakref.finalize(page, self.freed, page.nbytes)
        return page

    def freed(self, nbytes: int) -> None:
        with self.lock:
            self.live -= nbytes


def filled_db(path: Path, capacity: int) -> Database:
    db = Database.open(path, chunk_rows=2048, bufferpool_bytes=capacity)
    db.append(**make_rows(40_000, seed=9))  # 20 chunks of 2,048 rows: ~2.5 MB decoded
    db.flush()
    return db


def test_pages_a_query_holds_stay_within_the_budget_while_threads_query(tmp_path: Path) -> None:
    capacity = 256 << 10
    with filled_db(tmp_path / "db", capacity) as db:
        pool = db._reads.pool
        live = LivePages(pool)
        lo, hi = db.time_range() or (0, 0)
        failures: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                for j in range(3):
                    cut = lo + (hi - lo) * (i + j) // 8
                    db.scan(["duration", "span_id", "parent_span_id"])  # every chunk, whole
                    db.scan(["duration", "kind"], names=["app.f1"], since=cut)
                    db.stats(since=cut + 1, until=hi)
                    db.slowest(k=3, since=cut)
                    assert pool.stats.bytes_in_use <= capacity
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures, failures[:3]
        s = pool.stats
        assert s.evictions > 0 and s.bytes_in_use <= capacity and s.pinned_bytes == 0
        # What the pool counts is what its pages take: no evicted page lived on in a query.
        assert live.peak <= capacity
        assert live.live == s.bytes_in_use - sum(  # cached pages that are not arrays
            f.nbytes for f in pool._frames.values() if not isinstance(f.data, np.ndarray)
        )


def test_a_chunk_a_query_reads_stays_pinned_while_other_queries_churn(tmp_path: Path) -> None:
    capacity = 512 << 10
    with filled_db(tmp_path / "db", capacity) as db:
        reads = db._reads
        seg = reads.snapshot().segments[0]
        chunk = seg.chunks[3]
        with reads.chunk_columns(seg, chunk, ["start", "duration"]) as (cols, pins):
            before = {c: a.copy() for c, a in cols.items()}
            assert reads.pool.stats.pinned_bytes == pins.nbytes == 2048 * 16
            churn = threading.Thread(target=db.scan, args=(["duration", "trace_hi", "attributes"],))
            churn.start()
            churn.join(60)
            assert reads.pool.stats.evictions > 0
            keys = [k for k in reads.pool._frames
                    if getattr(k, "seq", None) == chunk.seq and getattr(k, "segment", None) == seg.id]  # fmt: skip
            assert {getattr(k, "column", None) for k in keys} >= {"start", "duration"}
            for c, a in cols.items():
                np.testing.assert_array_equal(a, before[c])
        assert reads.pool.stats.pinned_bytes == 0


def test_a_use_that_does_not_count_leaves_a_page_first_to_go() -> None:
    """Page 0 read twice, but the second time as part of the same work (``count=False``):
    it stays a page used once, so it goes before page 1, read twice earlier (counted, the
    second read would keep 0: its second access would be the more recent)."""
    disk = make_disk(3)
    pool = BufferPool(2 * PAGE, load=disk.load)
    read(pool, 1)
    read(pool, 1)
    read(pool, 0)
    with PinnedPages() as pins:
        assert pins.pin(pool, 0, count=False)[0] == 0  # a hit, not an access
    read(pool, 2)  # room for two pages: one of 0 and 1 goes
    assert 1 in pool and 0 not in pool
    assert pool.stats.hits == 2 and disk.loads[0] == 1
