"""Coroutines, generators and async generators: what is timed, and where the span is current."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

import pytest
from opentelemetry import trace

import kronicler
from tests.otel.helpers import Store

pytest_plugins = ["tests.otel.fixtures"]

HERE = __name__
MS = 1_000_000


def ids_of(span: Any) -> tuple[int, int]:
    ctx = span.get_span_context()
    return ctx.trace_id, ctx.span_id


@kronicler.capture
async def fetch(delay: float) -> Any:
    await asyncio.sleep(delay)
    return trace.get_current_span()


@kronicler.capture
async def gather_two() -> Any:
    here = trace.get_current_span()
    kids = await asyncio.gather(fetch(0.01), fetch(0.02))
    return here, kids


@kronicler.capture
def count(n: int) -> Generator[int, None, int]:
    """Counts."""
    yield from range(n)
    return n


@kronicler.capture
async def acount(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


def test_kinds_of_function_are_kept() -> None:
    assert inspect.iscoroutinefunction(fetch)
    assert inspect.isgeneratorfunction(count)
    assert inspect.isasyncgenfunction(acount)
    assert count.__doc__ == "Counts."


def test_coroutine_time_covers_the_whole_await(store: Store) -> None:
    span = asyncio.run(fetch(0.05))
    [row] = store.rows()
    assert row["name"] == f"{HERE}.fetch"
    assert row["duration"] >= 50 * MS
    assert (row["trace_id"], row["span_id"]) == ids_of(span)


def test_concurrent_tasks_are_children_of_their_own_parent(store: Store) -> None:
    async def main() -> Any:
        return await asyncio.gather(gather_two(), gather_two())

    results = asyncio.run(main())
    rows = store.rows()
    assert len(rows) == 6
    by_span = {r["span_id"]: r for r in rows}
    for here, kids in results:
        trace_id, span_id = ids_of(here)
        for kid in kids:
            row = by_span[ids_of(kid)[1]]
            assert row["trace_id"] == trace_id and row["parent_span_id"] == span_id
    assert len({r["trace_id"] for r in rows}) == 2


def test_coroutine_exceptions_are_recorded_and_reraised(store: Store) -> None:
    @kronicler.capture
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("late")

    with pytest.raises(ValueError, match="late"):
        asyncio.run(fails())
    [row] = store.rows()
    assert row["status"] == 2 and row["attributes"]["exception.type"] == "ValueError"


def test_cancelled_coroutine_is_stored_without_error_status(store: Store) -> None:
    async def main() -> None:
        task = asyncio.create_task(fetch(10))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    [row] = store.rows()
    assert row["status"] == 0 and row["duration"] >= 10 * MS


def test_generator_is_timed_until_exhausted_and_returns_its_value(store: Store) -> None:
    gen = count(3)
    assert next(gen) == 0
    time.sleep(0.03)  # the consumer's time between items is inside the span
    rest = []
    with pytest.raises(StopIteration) as stop:
        while True:
            rest.append(next(gen))
    assert rest == [1, 2] and stop.value.value == 3
    [row] = store.rows()
    assert row["name"] == f"{HERE}.count" and row["duration"] >= 30 * MS


def test_generator_never_started_stores_nothing(store: Store) -> None:
    gen = count(3)
    del gen
    assert store.rows() == []


def test_generator_closed_early_is_stored_without_error(store: Store) -> None:
    gen = count(10)
    assert next(gen) == 0
    gen.close()
    [row] = store.rows()
    assert row["status"] == 0


def test_generator_send_and_throw_pass_through(store: Store) -> None:
    @kronicler.capture
    def echo() -> Generator[Any, Any, None]:
        got = None
        while True:
            try:
                got = yield got
            except KeyError:
                got = "caught"

    gen = echo()
    next(gen)
    assert gen.send("a") == "a"
    assert gen.throw(KeyError("k")) == "caught"
    with pytest.raises(ValueError):
        gen.throw(ValueError("boom"))
    [row] = store.rows()
    assert row["status"] == 2 and row["attributes"]["exception.type"] == "ValueError"


def test_span_is_current_only_inside_the_generator(store: Store) -> None:
    @kronicler.capture
    def spans() -> Iterator[Any]:
        yield trace.get_current_span()
        yield trace.get_current_span()

    @kronicler.capture
    def consumer() -> Any:
        mine = trace.get_current_span()
        inside = list(spans())
        return mine, inside, trace.get_current_span()

    mine, inside, after = consumer()
    assert after is mine  # the generator's span did not leak into the consumer
    assert inside[0] is inside[1] and inside[0] is not mine
    rows = store.rows()
    gen_row = next(r for r in rows if r["span_id"] == ids_of(inside[0])[1])
    assert gen_row["parent_span_id"] == ids_of(mine)[1]


def test_async_generator_is_timed_and_passes_values(store: Store) -> None:
    async def main() -> list[int]:
        return [i async for i in acount(3)]

    assert asyncio.run(main()) == [0, 1, 2]
    [row] = store.rows()
    assert row["name"] == f"{HERE}.acount" and row["status"] == 0


def test_async_generator_asend_athrow_aclose(store: Store) -> None:
    @kronicler.capture
    async def echo() -> AsyncGenerator[Any, Any]:
        got = None
        while True:
            try:
                got = yield (got, trace.get_current_span())
            except KeyError:
                got = "caught"

    async def main() -> Any:
        agen = echo()
        _, span = await agen.asend(None)
        assert trace.get_current_span() is trace.INVALID_SPAN  # not leaked into the consumer
        assert (await agen.asend("a"))[0] == "a"
        assert (await agen.athrow(KeyError("k")))[0] == "caught"
        await agen.aclose()
        return span

    span = asyncio.run(main())
    [row] = store.rows()
    assert row["span_id"] == ids_of(span)[1] and row["status"] == 0


def test_async_generator_errors_are_recorded(store: Store) -> None:
    @kronicler.capture
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("mid-stream")

    async def main() -> None:
        async for _ in broken():
            pass

    with pytest.raises(RuntimeError, match="mid-stream"):
        asyncio.run(main())
    [row] = store.rows()
    assert row["status"] == 2 and row["attributes"]["exception.message"] == "mid-stream"


def test_disabled_generators_still_pass_everything_through(store: Store) -> None:
    kronicler.configure(enabled=False)
    try:
        gen = count(2)
        assert list(gen) == [0, 1]

        async def main() -> list[int]:
            return [i async for i in acount(2)]

        assert asyncio.run(main()) == [0, 1]
    finally:
        kronicler.configure(enabled=True)
    assert store.rows() == []
