"""The optional C wrapper (kronicler/otel/_fastcall.c) against the pure-Python one it replaces.

Both wrappers are made for the same call sites in one process and driven through the same
calls; the rows they store must be the same, and equal to what was called (the brute-force
truth). The record buffers (C ``Records`` and ``ListRecords``) share one contract test. The
pure path as a whole is run in a subprocess with ``KRONICLER_PURE_PYTHON=1``.
"""

from __future__ import annotations

import gc
import inspect
import os
import pickle
import subprocess
import sys
import threading
import time
import tracemalloc
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry import trace

import kronicler
from kronicler._config import pure_python
from kronicler.otel import current, tracer
from kronicler.otel.records import COMPACT_WIDTH, ListRecords
from tests.otel.helpers import Store

pytest_plugins = ["tests.otel.fixtures"]

ROOT = Path(__file__).resolve().parents[1]

try:
    from kronicler.otel import _fastcall
except ImportError:  # no compiler where this was installed: the pure path is all there is
    _fastcall = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(not tracer.ACCELERATED, reason="the C fast path is not in use")


def both(fn: Any, name: str) -> dict[str, Any]:
    """``fn`` captured twice under one call site: by the C wrapper and by the Python one."""
    cs = tracer.new_site(name, 0, {"code.function.name": name}, "")
    return {
        "c": _fastcall.Wrapper(fn, cs.index, cs.site),
        "py": tracer.wrap_function_python(fn, cs),
    }


def shape(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a row says apart from ids and times: name, status, attributes, and its parent."""
    names = {r["span_id"]: r["name"] for r in rows}
    out = []
    for r in rows:
        parent = names.get(r["parent_span_id"], "-") if r["parent_span_id"] else None
        attrs = {k: v for k, v in r["attributes"].items() if not k.startswith("code.")}
        out.append((r["name"], r["status"], tuple(sorted(attrs.items())), parent))
    return sorted(out, key=repr)


@needs_c
def test_the_c_wrapper_stores_what_the_python_wrapper_stores(store: Store) -> None:
    """Plain, keyword, nested, recursive, failing, asked-for and BaseException calls."""
    made: dict[str, dict[str, Any]] = {}

    def leaf(x: int, *, scale: int = 1) -> int:
        return x * scale

    def node(kind: str, n: int) -> int:
        w = made[kind]
        if n <= 0:
            return int(w["leaf"](n, scale=3))
        return int(w["node"](kind, n - 1)) + int(w["leaf"](n))

    def failing(kind: str, exc: BaseException) -> None:
        raise exc

    def asks(kind: str) -> int:
        span = trace.get_current_span()
        span.set_attribute("asked", True)
        return int(made[kind]["leaf"](2))

    for kind in ("c", "py"):
        made[kind] = {}
    sites = {"leaf": both(leaf, "t.leaf"), "node": both(node, "t.node"),
             "failing": both(failing, "t.failing"), "asks": both(asks, "t.asks")}  # fmt: skip
    for name, pair in sites.items():
        for kind in ("c", "py"):
            made[kind][name] = pair[kind]
    assert type(made["c"]["leaf"]) is _fastcall.Wrapper
    assert inspect.isfunction(made["py"]["leaf"])

    calls: Counter[str] = Counter()
    for kind in ("c", "py"):
        w = made[kind]
        assert w["leaf"](5, scale=2) == 10
        assert w["node"](kind, 4) == 10
        assert w["asks"](kind) == 2
        with pytest.raises(ValueError, match="bad") as info:
            w["failing"](kind, ValueError("bad"))
        assert info.value.__traceback__ is not None
        with pytest.raises(KeyboardInterrupt):
            w["failing"](kind, KeyboardInterrupt())
    calls.update({"t.leaf": 1 + 5 + 1, "t.node": 5, "t.asks": 1, "t.failing": 2})

    rows = store.rows()
    # Each kind made its own five traces (leaf, node tree, asks tree, two failures), C first.
    by_trace: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_trace.setdefault(r["trace_id"], []).append(r)
    assert len(by_trace) == 2 * 5
    assert Counter(r["name"] for r in rows) == Counter({k: 2 * v for k, v in calls.items()})
    halves: dict[str, list[dict[str, Any]]] = {"c": [], "py": []}
    order = sorted(by_trace.values(), key=lambda t: min(r["start"] for r in t))
    for i, group in enumerate(order):
        halves["c" if i < 5 else "py"].extend(group)
    assert shape(halves["c"]) == shape(halves["py"])
    assert [r["attributes"]["asked"] for r in halves["c"] if "asked" in r["attributes"]] == [True]
    failed = [r for r in halves["c"] if r["name"] == "t.failing"]
    assert sorted(r["status"] for r in failed) == [0, 2]  # KeyboardInterrupt is not an error
    assert all(r["duration"] >= 0 for r in rows)


@needs_c
def test_methods_staticmethods_classmethods_bind_like_functions(store: Store) -> None:
    class Shop:
        @kronicler.capture
        def price(self, qty: int, *, each: int = 2) -> tuple[Any, int]:
            """Price of qty items."""
            return self, qty * each

        @kronicler.capture
        @staticmethod
        def tax(x: int) -> int:
            return x // 10

        @kronicler.capture
        @classmethod
        def make(cls) -> Any:
            return cls()

    shop = Shop.make()
    assert isinstance(shop, Shop)
    assert shop.price(3) == (shop, 6)
    assert Shop.price(shop, 3, each=5) == (shop, 15)
    assert shop.tax(50) == Shop.tax(50) == 5
    bound: Any = shop.price
    assert bound.__self__ is shop and bound(1) == (shop, 2)
    raw: Any = vars(Shop)["price"]
    assert type(raw) is _fastcall.Wrapper
    assert raw.__get__(None, Shop) is raw
    assert raw.__name__ == "price" and raw.__doc__ == "Price of qty items."
    assert raw.__qualname__.endswith("Shop.price") and raw.__module__ == __name__
    assert list(inspect.signature(raw).parameters) == ["self", "qty", "each"]
    raw.flag = 1  # a function's __dict__
    assert raw.__dict__["flag"] == 1
    assert weakref.ref(raw)() is raw
    names = Counter(r["name"] for r in store.rows())
    assert names == Counter({f"{__name__}.{Shop.__qualname__}.price": 3,
                             f"{__name__}.{Shop.__qualname__}.tax": 2,
                             f"{__name__}.{Shop.__qualname__}.make": 1})  # fmt: skip


@kronicler.capture
def module_level(x: int) -> int:
    return x + 1


def test_a_captured_function_pickles_by_name() -> None:
    assert pickle.loads(pickle.dumps(module_level)) is module_level


@needs_c
def test_the_clock_is_perf_counter_ns() -> None:
    for _ in range(100):
        a = time.perf_counter_ns()
        b = _fastcall.now()
        c = time.perf_counter_ns()
        assert a <= b <= c


@needs_c
def test_a_broken_current_context_means_a_plain_uncaptured_call(store: Store) -> None:
    """Internal errors before the call: both wrappers log, run the call, and record nothing."""
    pair = both(lambda x: x * 2, "t.broken")

    class Unreadable:
        def __bool__(self) -> bool:
            raise RuntimeError("no truth")

    for odd in (Unreadable(), object()):
        token = current.value_set(odd)
        try:
            assert pair["c"](4) == pair["py"](4) == 8
        finally:
            current.value_reset(token)
    assert pair["c"](1) == 2  # and the next call is captured again
    assert [r["name"] for r in store.rows()] == ["t.broken"]


def test_the_variable_picks_the_path() -> None:
    """In this process: C exactly when built and not refused; in a child with the variable: never."""
    expected = _fastcall is not None and not pure_python()
    assert expected == tracer.ACCELERATED
    script = (
        "import inspect, kronicler\nfrom kronicler.otel import tracer\n"
        "f = kronicler.capture(lambda: 1)\n"
        "print(tracer.ACCELERATED, inspect.isfunction(f), type(tracer.PIPELINE.rows).__name__)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONICLER_", "OTEL_"))}
    env.update(PYTHONPATH=str(ROOT), KRONICLER_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()  # fmt: skip
    assert out == ["False", "True", "ListRecords"]


@needs_c
def test_the_pure_python_path_passes_the_capture_tests(tmp_path: Path) -> None:
    """The in-process capture tests, again with the pure-Python wrapper and buffer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONICLER_", "OTEL_"))}
    env.update(PYTHONPATH=str(ROOT), KRONICLER_PURE_PYTHON="1")
    files = ["tests/test_capture.py", "tests/test_capture_context.py",
             "tests/test_capture_async.py", "tests/test_capture_sdk.py",
             "tests/otel/test_records.py", "tests/test_capture_fastcall.py"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         f"--basetemp={tmp_path / 'tmp'}", *files],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


# -- the record buffers ------------------------------------------------------------------------
def buffers() -> list[Any]:
    made: list[Any] = [ListRecords]
    if _fastcall is not None:
        made.append(_fastcall.Records)
    return made


def flat(taken: Any) -> list[int]:
    if isinstance(taken, bytes):
        return [int(v) for v in np.frombuffer(taken, dtype=np.int64)]
    return list(taken)


@pytest.mark.parametrize("make", buffers(), ids=lambda m: m.__name__)
def test_buffer_take_drop_clear_keep_order_and_counts(make: Any) -> None:
    buf = make()
    for i in range(10):
        buf.extend((i, 10 + i, 20 + i, -i, 1 << 62, 0))
    assert buf.pending() == 10 and buf.lost == 0
    assert flat(buf.take(2)) == [0, 10, 20, 0, 1 << 62, 0, 1, 11, 21, -1, 1 << 62, 0]
    assert buf.drop(3) == 3  # records 2, 3, 4
    assert flat(buf.take(1))[0] == 5
    assert buf.drop(100) == 4 and buf.pending() == 0
    assert flat(buf.take(5)) == []
    buf.extend((1, 2, 3, 4, 5, 6) * 3)
    buf.clear()
    assert buf.pending() == 0


@pytest.mark.skipif(_fastcall is None, reason="the C extension is not built")
def test_c_buffer_refuses_bad_records_and_keeps_what_it_had() -> None:
    buf = _fastcall.Records()
    buf.extend((1, 2, 3, 4, 5, 6))
    with pytest.raises(ValueError, match="6 ints"):
        buf.extend((1, 2, 3))
    with pytest.raises(OverflowError):
        buf.extend((1, 2, 3, 4, 5, 1 << 70))
    with pytest.raises(TypeError):
        buf.extend((1, 2, 3, 4, 5, "x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="-1"):
        buf.take(-1)
    assert flat(buf.take(9)) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("make", buffers(), ids=lambda m: m.__name__)
def test_buffer_take_races_appends_without_losing_or_repeating(make: Any) -> None:
    """Four threads append numbered records while another takes and drops: each record is
    either taken or dropped, exactly once."""
    buf, writers, per = make(), 4, 20_000
    taken: list[int] = []
    dropped = 0
    done = threading.Event()

    def write(w: int) -> None:
        for i in range(per):
            n = w * per + i
            buf.extend((n, n, n, n, n, n))

    def take() -> None:
        nonlocal dropped
        k = 0
        while not done.is_set():
            k += 1
            if k % 7 == 0:
                dropped += buf.drop(3)
            else:
                taken.extend(flat(buf.take(1000))[::COMPACT_WIDTH])
        taken.extend(flat(buf.take(buf.pending()))[::COMPACT_WIDTH])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    taker = threading.Thread(target=take)
    taker.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    taker.join()
    assert len(taken) == len(set(taken))
    assert len(taken) + dropped == writers * per
    for w in range(writers):  # each writer's records keep their order
        mine = [n for n in taken if w * per <= n < (w + 1) * per]
        assert mine == sorted(mine)


# -- references and memory -----------------------------------------------------------------------
@needs_c
def test_no_reference_or_memory_leaks_over_100k_calls(store: Store) -> None:
    payload, key_value, result = object(), object(), object()
    fail = ValueError("expected")

    def target(arg: Any, *, key: Any = None, boom: bool = False) -> Any:
        if boom:
            raise fail
        return result

    captured = kronicler.capture(target)
    assert type(captured) is _fastcall.Wrapper
    watched = [payload, key_value, result, fail, target, captured, current.DONE]

    def run(n: int) -> None:
        for i in range(n):
            captured(payload, key=key_value)
            if i % 100 == 0:
                try:
                    captured(payload, boom=True)
                except ValueError:
                    pass

    run(1000)
    fail.__traceback__ = None
    assert kronicler.flush(10.0)
    gc.collect()
    before = [sys.getrefcount(o) for o in watched]
    tracemalloc.start()
    try:
        run(50_000)
        assert kronicler.flush(10.0)
        first = tracemalloc.take_snapshot()
        run(50_000)
        fail.__traceback__ = None
        assert kronicler.flush(10.0)
        gc.collect()
        second = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(o) for o in watched] == before
    here = [tracemalloc.Filter(True, __file__)]
    grown = sum(
        s.size_diff
        for s in second.filter_traces(here).compare_to(first.filter_traces(here), "filename")
    )
    assert grown < 64 << 10, f"{grown} bytes more after 50k calls"
    assert kronicler.status().pending == 0


@needs_c
def test_one_seq_counter_for_both_paths_restarted_after_fork(store: Store) -> None:
    from kronicler.otel import ids

    f = kronicler.capture(lambda: None)
    before = tracer.next_seq()
    f()  # the C wrapper takes the next number of the same counter
    assert tracer.next_seq() == before + 2
    (row,) = store.rows()
    assert row["span_id"] == ids.span_id(before + 1)
    script = (
        "import os\nfrom kronicler.otel import tracer\n"
        "a = tracer.next_seq()\npid = os.fork()\n"
        "if pid == 0:\n    print(tracer.next_seq() - a, flush=True)\n    os._exit(0)\n"
        "os.waitpid(pid, 0)\nprint(tracer.next_seq() - a)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONICLER_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    child, parent = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                                   text=True, timeout=60, check=True).stdout.split()  # fmt: skip
    assert int(parent) == 1
    assert int(child) != 1  # the child continues from a fresh random start
