"""LRU-K replacer: eviction order, evictability, removal, and agreement with a plain model."""

from __future__ import annotations

import random
import threading
from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kronicler.db.replacer import LRUKReplacer


def evictable(replacer: LRUKReplacer, *frames: Hashable) -> None:
    for f in frames:
        replacer.set_evictable(f, True)


def drain(replacer: LRUKReplacer) -> list[Hashable]:
    out = []
    while (victim := replacer.evict()) is not None:
        out.append(victim)
    return out


def test_frames_seen_fewer_than_k_times_go_first_oldest_first() -> None:
    r = LRUKReplacer(k=2)
    for f in [1, 2, 3, 4]:
        r.record_access(f)
    r.record_access(1)  # 1 now has two accesses: a finite backward distance
    evictable(r, 1, 2, 3, 4)
    assert r.size() == 4
    assert drain(r) == [2, 3, 4, 1]
    assert r.size() == 0


def test_among_full_frames_the_oldest_kth_access_goes_first() -> None:
    r = LRUKReplacer(k=2)
    for f in ["a", "b", "c", "a", "b", "c", "a"]:  # 2nd most recent access: a@4, b@2, c@3
        r.record_access(f)
    evictable(r, "a", "b", "c")
    assert drain(r) == ["b", "c", "a"]


def test_a_scan_of_pages_touched_once_does_not_push_out_hot_pages() -> None:
    r = LRUKReplacer(k=2)
    for hot in ["h1", "h2", "h1", "h2"]:
        r.record_access(hot)
    for page in range(100):  # a long range scan, each page read once, after the hot pages
        r.record_access(page)
    evictable(r, "h1", "h2", *range(100))
    assert drain(r)[:100] == list(range(100))


def test_k_equal_one_is_plain_lru() -> None:
    r = LRUKReplacer(k=1)
    for f in [1, 2, 3, 1, 2]:
        r.record_access(f)
    evictable(r, 1, 2, 3)
    assert drain(r) == [3, 1, 2]


def test_non_evictable_frames_are_never_chosen() -> None:
    r = LRUKReplacer()
    for f in [1, 2, 3]:
        r.record_access(f)
    assert r.evict() is None and r.size() == 0  # frames are born non-evictable
    evictable(r, 1, 2, 3)
    r.set_evictable(1, False)
    assert r.size() == 2
    assert drain(r) == [2, 3]
    r.set_evictable(1, True)
    r.set_evictable(1, True)  # idempotent
    assert r.size() == 1 and r.evict() == 1


def test_access_while_pinned_counts_when_the_frame_returns() -> None:
    r = LRUKReplacer(k=2)
    for f in [1, 2]:
        r.record_access(f)
    evictable(r, 1, 2)
    r.set_evictable(1, False)
    r.record_access(1)  # 1 becomes "full" while pinned
    r.set_evictable(1, True)
    assert drain(r) == [2, 1]


def test_remove_forgets_an_evictable_frame_and_refuses_a_pinned_one() -> None:
    r = LRUKReplacer()
    for f in [1, 2]:
        r.record_access(f)
    r.set_evictable(1, True)
    r.remove(1)
    r.remove("never seen")  # ignored
    assert r.size() == 0 and r.evict() is None
    with pytest.raises(ValueError, match="not evictable"):
        r.remove(2)


def test_unknown_frames_and_bad_k_are_rejected() -> None:
    with pytest.raises(KeyError):
        LRUKReplacer().set_evictable("ghost", True)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be"):
            LRUKReplacer(bad)  # type: ignore[arg-type]  # 1.5: a wrong type on purpose


class ModelLRUK:
    """The definition, computed the slow way: full access history, O(n) evict."""

    def __init__(self, k: int) -> None:
        self.k, self.clock = k, 0
        self.history: dict[int, list[int]] = {}
        self.evictable: dict[int, bool] = {}

    def record_access(self, f: int) -> None:
        self.clock += 1
        self.history.setdefault(f, []).append(self.clock)
        self.evictable.setdefault(f, False)

    def set_evictable(self, f: int, e: bool) -> None:
        if f in self.history:
            self.evictable[f] = e

    def evict(self) -> int | None:
        candidates = [f for f, e in self.evictable.items() if e]
        if not candidates:
            return None

        def rank(f: int) -> tuple[int, int]:
            h = self.history[f]
            return (0, h[0]) if len(h) < self.k else (1, h[-self.k])

        victim = min(candidates, key=rank)
        del self.history[victim], self.evictable[victim]
        return victim

    def size(self) -> int:
        return sum(self.evictable.values())


ops = st.lists(
    st.tuples(st.sampled_from(["access", "on", "off", "evict"]), st.integers(0, 12)),
    max_size=300,
)


@settings(deadline=None)
@given(st.integers(1, 4), ops)
def test_agrees_with_the_definition_on_any_sequence(
    k: int, sequence: list[tuple[str, int]]
) -> None:
    real, model = LRUKReplacer(k), ModelLRUK(k)
    for op, f in sequence:
        if op == "access":
            real.record_access(f)
            model.record_access(f)
        elif op == "evict":
            assert real.evict() == model.evict()
        elif f in model.history:
            real.set_evictable(f, op == "on")
            model.set_evictable(f, op == "on")
        assert real.size() == model.size()
    assert drain(real) == [model.evict() for _ in range(model.size())]


def test_concurrent_use_keeps_the_books_straight() -> None:
    r = LRUKReplacer()
    pinned: set[int] = set()
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(5000):
            f = rnd.randrange(64)
            r.record_access(f)
            with lock:  # keeps `pinned` in step with the replacer, as the pool's lock does
                pin = rnd.random() < 0.3
                try:
                    r.set_evictable(f, not pin)
                except KeyError:  # another thread evicted f since this one touched it
                    pinned.discard(f)
                    continue
                if pin:
                    pinned.add(f)
                else:
                    pinned.discard(f)
                if rnd.random() < 0.05:
                    victim = r.evict()
                    assert victim not in pinned

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    victims = drain(r)
    assert len(victims) == len(set(victims))
    assert not set(victims) & pinned
    assert r.size() == 0
