"""The write queue on its own: hand-off, drops, flush semantics, errors, shutdown."""

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


def test_a_full_queue_drops_and_counts_rows_without_blocking():
    sink = Sink()
    sink.gate.clear()  # the writer is stuck: nothing leaves the queue
    q = WriteQueue(sink.consume, sink.commit, capacity_rows=10, flush_interval=60)
    q.put([0])  # taken by the writer thread, which then blocks in consume
    time.sleep(0.2)
    started = time.monotonic()
    results = [q.put(list(range(4))) for _ in range(5)]
    assert time.monotonic() - started < 0.5
    assert results == [True, True, False, False, False]
    assert q.dropped == 12
    assert not q.flush(0.2)  # times out rather than hanging
    sink.gate.set()
    assert q.flush(5)
    assert sum(len(i) for i in sink.consumed) == 9
    q.close()


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
    assert not q.put([2]) and q.dropped == 1
    assert q.close(5)  # idempotent


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="capacity_rows"):
        WriteQueue(list.append, lambda: None, capacity_rows=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flush_interval"):
        WriteQueue(list.append, lambda: None, flush_interval=0)  # type: ignore[arg-type]
