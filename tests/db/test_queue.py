"""The write queue on its own: hand-off, backpressure and refusals, flush semantics, errors,
shutdown."""

from __future__ import annotations

import threading
import time

import pytest

from kronicler.db.queue import WriteQueue


class Sink:
    """Records what the writer thread consumed and committed; can be made slow or failing."""

    def __init__(self) -> None:
        self.consumed: list[list[int]] = []
        self.commits = 0
        self.gate = threading.Event()
        self.gate.set()
        self.fail_writes = False

    def consume(self, items: list[list[int]]) -> None:
        self.gate.wait(10)
        if self.fail_writes:
            raise OSError("disk full")
        self.consumed.extend(items)

    def commit(self) -> None:
        self.commits += 1


def test_put_hands_items_to_the_writer_and_flush_waits_for_commit():
    sink = Sink()
    q = WriteQueue(sink.consume, sink.commit, flush_interval=60)
    assert q.put([1, 2, 3]) and q.put([4])
    assert q.flush(5)
    assert sink.consumed == [[1, 2, 3], [4]]
    assert sink.commits >= 1
    q.close()


def test_a_full_queue_refuses_without_waiting_when_asked_not_to_block():
    sink = Sink()
    sink.gate.clear()  # the writer is stuck: nothing leaves the queue
    q = WriteQueue(sink.consume, sink.commit, capacity_rows=10, flush_interval=60)
    q.put([0])  # taken by the writer thread, which then blocks in consume
    _wait_until(lambda: q.pending_rows == 0)
    results = [q.put(list(range(4)), block=False) for _ in range(5)]
    assert results == [True, True, False, False, False]  # refused whole, and not counted lost
    assert q.lost == 0 and q.pending_rows == 8
    assert not q.flush(0.2)  # times out rather than hanging
    sink.gate.set()
    assert q.flush(5)
    assert sum(len(i) for i in sink.consumed) == 9
    q.close()


def test_a_blocking_put_waits_for_room_and_loses_nothing():
    sink = Sink()
    sink.gate.clear()
    q = WriteQueue(sink.consume, sink.commit, capacity_rows=10, flush_interval=60)
    q.put([0])
    _wait_until(lambda: q.pending_rows == 0)
    assert q.put([1, 2, 3, 4]) and q.put([5, 6, 7, 8])
    done = threading.Event()

    def producer() -> None:
        for k in range(20):
            q.put([100 + k] * 4)  # blocks while the queue is full
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.3)  # held back while the writer is stuck...
    sink.gate.set()  # ...and let through once it drains
    t.join(10)
    assert done.is_set()
    assert q.flush(5)
    assert sum(len(i) for i in sink.consumed) == 1 + 8 + 80
    q.close()


def test_a_blocking_put_gives_up_after_its_timeout_having_queued_nothing():
    sink = Sink()
    sink.gate.clear()
    q = WriteQueue(sink.consume, sink.commit, capacity_rows=10, flush_interval=60)
    q.put([0])
    _wait_until(lambda: q.pending_rows == 0)
    assert q.put(list(range(8)))
    assert not q.put(list(range(4)), timeout=0.05)
    assert q.pending_rows == 8 and q.lost == 0
    sink.gate.set()
    assert q.flush(5)
    assert sum(len(i) for i in sink.consumed) == 9
    q.close()


def test_an_item_larger_than_the_queue_is_taken_when_the_queue_is_empty():
    sink = Sink()
    q = WriteQueue(sink.consume, sink.commit, capacity_rows=10, flush_interval=60)
    assert q.put(list(range(25)))  # would wait forever if it had to fit
    assert q.put(list(range(25)), block=False) or q.flush(5)
    assert q.flush(5)
    q.close()


def test_close_releases_a_put_waiting_for_room():
    sink = Sink()
    sink.gate.clear()
    q = WriteQueue(sink.consume, sink.commit, capacity_rows=10, flush_interval=60)
    q.put([0])
    _wait_until(lambda: q.pending_rows == 0)
    q.put(list(range(8)))
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(q.put(list(range(4)))))
    t.start()
    _wait_until(lambda: t.is_alive())
    assert not q.close(0.1)  # the stuck writer cannot flush within the timeout...
    t.join(10)
    assert got == [False]  # ...and the waiting put is refused, not left hanging
    sink.gate.set()
    _wait_until(lambda: not q.running)
    assert sum(len(i) for i in sink.consumed) == 9  # what was queued is still written


def _wait_until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_commits_happen_on_their_own_at_the_flush_interval():
    sink = Sink()
    q = WriteQueue(sink.consume, sink.commit, flush_interval=0.05)
    q.put([1])
    deadline = time.monotonic() + 5
    while sink.commits == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.commits >= 1
    q.close()


def test_writer_errors_are_counted_and_the_thread_survives(caplog):
    sink = Sink()
    sink.fail_writes = True
    q = WriteQueue(sink.consume, sink.commit, flush_interval=60)
    q.put([1, 2])
    q.put([3])
    assert q.flush(5)
    assert q.lost == 3
    sink.fail_writes = False
    q.put([4])
    assert q.flush(5)
    assert sink.consumed == [[4]]
    assert sum("could not write" in r.message for r in caplog.records) == 1  # logged once
    q.close()


def test_close_flushes_and_later_puts_are_dropped():
    sink = Sink()
    q = WriteQueue(sink.consume, sink.commit)
    q.put([1])
    assert q.close(5)
    assert sink.consumed == [[1]]
    assert not q.put([2]) and not q.put([2], block=False)
    assert q.close(5)  # idempotent


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity_rows"):
        WriteQueue(lambda batch: None, lambda: None, capacity_rows=0)
    with pytest.raises(ValueError, match="flush_interval"):
        WriteQueue(lambda batch: None, lambda: None, flush_interval=0)


class Source:
    """A producer the writer takes from itself: hands over what it holds, once."""

    def __init__(self) -> None:
        self.held: list[list[int]] = []
        self.lock = threading.Lock()
        self.takes = 0

    def add(self, item: list[int]) -> None:
        with self.lock:
            self.held.append(item)

    def __call__(self) -> list[list[int]]:
        with self.lock:
            self.takes += 1
            out, self.held = self.held, []
            return out


def test_an_attached_source_is_taken_by_the_writer_on_flush():
    sink, source = Sink(), Source()
    q = WriteQueue(sink.consume, sink.commit, flush_interval=60)
    assert q.attach(source, interval=60)
    source.add([1, 2])
    assert q.flush(5)  # nothing was put: the flush still takes what the source holds now
    assert sink.consumed == [[1, 2]]
    source.add([3])
    assert q.flush(5)
    assert sink.consumed == [[1, 2], [3]]
    q.close()


def test_an_attached_source_is_taken_at_its_interval_without_a_flush():
    sink, source = Sink(), Source()
    q = WriteQueue(sink.consume, sink.commit, flush_interval=60)
    q.attach(source, interval=0.01)
    source.add([7])
    _wait_until(lambda: sink.consumed == [[7]])
    q.close()


def test_close_takes_a_last_time_then_the_source_is_let_go():
    sink, source = Sink(), Source()
    q = WriteQueue(sink.consume, sink.commit, flush_interval=60)
    q.attach(source, interval=60)
    source.add([1])
    q.close(5)
    assert sink.consumed == [[1]]
    assert not q.attached(source)
    assert not q.attach(source, interval=60)  # a closed queue takes nothing more


def test_a_detached_source_is_no_longer_taken():
    sink, source = Sink(), Source()
    q = WriteQueue(sink.consume, sink.commit, flush_interval=60)
    q.attach(source, interval=60)
    q.detach(source)
    source.add([1])
    assert q.flush(5)
    assert sink.consumed == [] and source.held == [[1]]
    q.close()


def test_a_raising_source_is_logged_and_the_writer_goes_on(caplog):
    sink, source = Sink(), Source()

    def broken() -> list[list[int]]:
        raise RuntimeError("bug in a source")

    q = WriteQueue(sink.consume, sink.commit, flush_interval=60)
    q.attach(broken, interval=60)
    q.attach(source, interval=60)
    source.add([5])
    assert q.flush(5)
    assert sink.consumed == [[5]]
    assert "could not take records" in caplog.text
    with pytest.raises(ValueError, match="interval"):
        q.attach(source, interval=0)
    q.close()
