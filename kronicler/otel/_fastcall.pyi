"""Types of the optional C fast path (kronicler/otel/_fastcall.c)."""

from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

CLOCK: str
WIDTH: int

class Counter(Iterator[int]):
    def __init__(self, start: int = 1) -> None: ...
    def __next__(self) -> int: ...
    def restart(self, start: int, /) -> None: ...

class Records:
    lost: int
    def extend(self, values: Sequence[int], /) -> None: ...
    def take(self, n: int, /) -> bytes: ...
    def drop(self, n: int, /) -> int: ...
    def clear(self) -> None: ...
    def pending(self) -> int: ...

class Wrapper:
    _kronicler_target: Callable[..., Any]
    def __init__(self, fn: Callable[..., Any], index: int, site: object) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, obj: object, objtype: type | None = None) -> Any: ...

def install(
    *,
    var: ContextVar[Any],
    trace_dict: dict[str, Any],
    tracer_dict: dict[str, Any],
    resolve: Callable[[], Any],
    plain: object,
    sdk_call: Callable[..., Any],
    start: Callable[[Any, int], tuple[list[Any], int]],
    finish: Callable[..., None],
    internal_error: Callable[[str, BaseException], None],
    done: object,
    records: Records,
    counter: Counter,
) -> None: ...
def now() -> int: ...
