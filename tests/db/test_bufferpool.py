"""Buffer pool contract: hits and misses, eviction, pinning, write-back, guards, concurrency.

The "disk" is a dict of arrays behind the pool's load/store callbacks, so every test can count
exactly what the pool read and wrote.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Hashable

import numpy as np
import pytest

from kronicler.db.bufferpool import BufferPool, BufferPoolStats
from kronicler.db.replacer import LRUKReplacer
from kronicler.errors import BufferPoolFullError, KroniclerError

PAGE = 100  # bytes per test page (uint8 arrays)


class Disk:
    """Pages at rest; counts loads and stores, and can hold a load until released."""

    def __init__(self, pages: dict[Hashable, np.ndarray] | None = None) -> None:
        self.pages = dict(pages or {})
        self.loads: Counter[Hashable] = Counter()
        self.stores: Counter[Hashable] = Counter()
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

    def store(self, key: Hashable, array: np.ndarray) -> None:
        assert not array.flags.writeable, "the pool must hand store a read-only view"
        with self.lock:
            self.pages[key] = array.copy()
            self.stores[key] += 1

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


def test_pinned_pages_are_never_evicted_and_a_full_pool_says_so() -> None:
    disk = make_disk(5)
    pool = BufferPool(2 * PAGE, load=disk.load)
    with pool.read_page(0) as g0, pool.read_page(1) as g1:
        with pytest.raises(BufferPoolFullError, match="pinned") as info:
            read(pool, 2)
        assert isinstance(info.value, KroniclerError)
        assert g0.data[0] == 0 and g1.data[0] == 1
        assert 0 in pool and 1 in pool and 2 not in pool
    assert read(pool, 2)[0] == 2  # room again once the guards are gone
    assert pool.stats.bytes_in_use <= 2 * PAGE


def test_one_pinned_page_stays_while_others_churn() -> None:
    disk = make_disk(20)
    pool = BufferPool(3 * PAGE, load=disk.load)
    with pool.read_page(0):
        for key in range(1, 20):
            read(pool, key)
            assert 0 in pool
            assert pool.stats.bytes_in_use <= 3 * PAGE


def test_read_guards_are_read_only_and_write_guards_change_the_page() -> None:
    disk = make_disk(2)
    pool = BufferPool(4 * PAGE, load=disk.load, store=disk.store)
    with pool.read_page(0) as g, pytest.raises(ValueError):
        g.data[0] = 9
    with pool.write_page(0) as w:
        w.data[:10] = 42
    assert read(pool, 0)[:10].tolist() == [42] * 10
    assert disk.stores[0] == 0  # not yet written: still cached and dirty


def test_dirty_pages_are_written_back_when_evicted_and_clean_ones_are_not() -> None:
    disk = make_disk(4)
    pool = BufferPool(2 * PAGE, load=disk.load, store=disk.store)
    with pool.write_page(0) as w:
        w.data[0] = 200
    read(pool, 1)
    read(pool, 2)  # evicts 0 (seen once, oldest): dirty, so stored first
    read(pool, 3)
    assert 0 not in pool
    assert disk.stores == Counter({0: 1})
    assert disk.pages[0][0] == 200
    assert read(pool, 0)[0] == 200  # reloaded from the "disk"
    assert pool.stats.write_backs == 1


def test_flush_writes_dirty_pages_once_and_keeps_them_cached() -> None:
    disk = make_disk(3)
    pool = BufferPool(5 * PAGE, load=disk.load, store=disk.store)
    for key in (0, 1):
        with pool.write_page(key) as w:
            w.data[1] = 7
    read(pool, 2)
    assert pool.flush_page(0) is True
    assert pool.flush_page(0) is False  # clean now
    assert pool.flush_page("absent") is False
    assert pool.flush_all_pages() == 1  # only page 1 was still dirty
    assert disk.stores == Counter({0: 1, 1: 1})
    assert disk.pages[1][1] == 7 and 0 in pool and 1 in pool


def test_new_pages_are_cached_dirty_and_duplicates_are_refused() -> None:
    disk = Disk()
    pool = BufferPool(3 * PAGE, load=disk.load, store=disk.store)
    with pool.new_page("fresh", np.arange(PAGE, dtype=np.uint8)) as w:
        w.data[0] = 99
    assert disk.loads["fresh"] == 0 and "fresh" in pool
    with pytest.raises(ValueError, match="already in the buffer pool"):
        pool.new_page("fresh", np.zeros(PAGE, dtype=np.uint8))
    pool.new_page("other", np.zeros(PAGE, dtype=np.uint8))  # usable without entering the guard
    assert pool.flush_all_pages() == 2
    assert disk.pages["fresh"][0] == 99
    with pytest.raises(ValueError, match="numpy array or have an int nbytes"):
        pool.new_page("bad", [1, 2, 3])


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


def test_a_pool_without_store_is_a_read_only_cache() -> None:
    disk = make_disk(2)
    pool = BufferPool(3 * PAGE, load=disk.load)
    with pytest.raises(ValueError, match="store"):
        pool.write_page(0)
    with pytest.raises(ValueError, match="store"):
        pool.new_page(5, np.zeros(3))
    guard = pool.new_page(5, np.zeros(3), dirty=False)  # a cache fill of a page already stored
    assert 5 in pool
    with pytest.raises(ValueError, match="store"), guard:
        pass
    assert read(pool, 5).tolist() == [0, 0, 0]


def test_pages_larger_than_the_pool_are_served_once_and_not_cached() -> None:
    disk = Disk({"big": np.ones(10 * PAGE, dtype=np.uint8), 0: np.zeros(PAGE, dtype=np.uint8)})
    pool = BufferPool(2 * PAGE, load=disk.load, store=disk.store)
    read(pool, 0)
    assert int(read(pool, "big").sum()) == 10 * PAGE
    assert "big" not in pool and 0 in pool and pool.stats.bytes_in_use == PAGE
    with pool.write_page("big") as w:
        w.data[:] = 3
    assert disk.stores["big"] == 1 and disk.pages["big"][0] == 3  # written through
    pool.new_page("huge", np.zeros(5 * PAGE, dtype=np.uint8))
    assert disk.stores["huge"] == 1 and "huge" not in pool


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


def test_dropping_pages_forgets_them_without_writing_back() -> None:
    disk = make_disk(6)
    pool = BufferPool(10 * PAGE, load=disk.load, store=disk.store)
    for key in range(6):
        with pool.write_page(key) as w:
            w.data[0] = 50
    assert pool.drop_page(0) is True and pool.drop_page(0) is False
    assert pool.drop(lambda k: isinstance(k, int) and k >= 4) == 2
    assert sorted(k for k in range(6) if k in pool) == [1, 2, 3]
    assert pool.stats.bytes_in_use == 3 * PAGE
    assert sum(disk.stores.values()) == 0
    assert read(pool, 0)[0] == 0  # reloaded: the unsaved change was discarded


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


def test_random_workload_from_four_threads_stays_within_capacity_and_loses_no_write() -> None:
    # Pages of 80-312 bytes: room for ~8 of 40, and always for the 4 that threads can pin.
    n_pages, capacity = 40, 1600
    rng = np.random.default_rng(11)
    sizes = rng.integers(10, 40, n_pages)
    disk = Disk({k: np.zeros(int(sizes[k]), dtype=np.int64) for k in range(n_pages)})
    pool = BufferPool(capacity, load=disk.load, store=disk.store)
    increments: list[Counter[int]] = [Counter() for _ in range(4)]
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        rnd = random.Random(i)
        try:
            for _ in range(2500):  # 4 threads x 2,500 = 10,000 accesses
                key = min(int(rnd.paretovariate(1.0)) - 1, n_pages - 1)  # skewed: hot pages
                if rnd.random() < 0.2:
                    with pool.write_page(key) as w:
                        w.data[0] += 1
                    increments[i][key] += 1
                else:
                    with pool.read_page(key) as g:
                        assert g.data.size == sizes[key]
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
    assert stats.evictions > 0 and stats.bytes_in_use <= capacity
    pool.flush_all_pages()
    total = sum(increments, Counter())
    assert {k: int(disk.pages[k][0]) for k in total} == dict(total)
    cached = [k for k in range(n_pages) if k in pool]
    assert stats.bytes_in_use == sum(int(sizes[k]) * 8 for k in cached)
