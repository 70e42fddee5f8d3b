"""A per-request time budget that long loops check, so an expired or cancelled call stops early.

The gRPC and HTTP front ends run each query synchronously in one worker thread. Before they call
the query layer they open :func:`deadline` with the caller's remaining time (and, for gRPC, a test
of whether the client is still there); loops that may run long (chunk scans, per-group and
per-attribute-set work) call :func:`check` every so often. A context variable carries the budget,
so neither the query layer nor the database takes a deadline argument, and code run outside any
budget (the Python API, the CLI on a local database) never pays more than one lookup per check.

Trade-off: checks are cooperative: a single numpy call or page decode is never interrupted, so an
expired call overruns by at most one step (a chunk of 65,536 rows, a few milliseconds).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kronicler._record import record
from kronicler.errors import DeadlineExceededError


@record
class _Budget:
    """The time a caller gives a request, and how to tell it has gone."""

    ends: float  # time.monotonic() at which the caller gives up; inf when unbounded
    gone: Callable[[], bool] | None  # True once the caller cancelled or disconnected


_current: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "kronicler_budget", default=None
)


@contextmanager
def deadline(
    seconds: float | None, *, cancelled: Callable[[], bool] | None = None
) -> Iterator[None]:
    """Run the body with ``seconds`` left (None: no time limit) and an optional cancel test."""
    ends = float("inf") if seconds is None else time.monotonic() + max(seconds, 0.0)
    token = _current.set(_Budget(ends, cancelled))
    try:
        check()
        yield
    finally:
        _current.reset(token)


def check() -> None:
    """Raise :class:`DeadlineExceededError` when the current request's budget is spent."""
    budget = _current.get()
    if budget is None:
        return
    if time.monotonic() >= budget.ends:
        raise DeadlineExceededError("deadline exceeded; the query was stopped")
    if budget.gone is not None and budget.gone():
        raise DeadlineExceededError("the caller cancelled; the query was stopped")


def remaining() -> float | None:
    """Seconds left in the current budget (None when there is none or it is unbounded)."""
    budget = _current.get()
    if budget is None or budget.ends == float("inf"):
        return None
    return max(budget.ends - time.monotonic(), 0.0)
