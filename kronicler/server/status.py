"""Mapping Python errors to gRPC status codes, so no RPC ever ends in UNKNOWN with a traceback.

The query layer speaks in exceptions (``ValueError`` for a bad argument, ``NotFoundError`` for a
name never seen); transports translate them here, once. Anything unexpected is logged with its
traceback on the server and reaches the client only as ``INTERNAL`` with a short message.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from kronicler import budget
from kronicler.errors import (
    ClosedError,
    DeadlineExceededError,
    KroniclerError,
    LimitExceededError,
    NotFoundError,
    UnavailableError,
)

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def code_for(exc: BaseException) -> grpc.StatusCode:
    """The status code for an exception raised by the query layer or the database."""
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, LimitExceededError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, DeadlineExceededError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(exc, (ValueError, TypeError, OverflowError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, (ClosedError, UnavailableError)):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, KroniclerError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL


def message_for(exc: BaseException) -> str:
    if isinstance(exc, NotFoundError):
        return str(exc.args[0]) if exc.args else "not found"
    if code_for(exc) is grpc.StatusCode.INTERNAL:
        return "internal error (see the server log)"
    return str(exc)


def rpc_errors(method: F) -> F:
    """Wrap a unary servicer method: errors become ``context.abort(code, message)``.

    The method runs within the call's deadline (:mod:`kronicler.budget`): long query loops stop
    once the client's time is up or it cancelled, instead of computing an answer nobody reads.
    """

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            with budget.deadline(context.time_remaining(), cancelled=_gone(context)):
                return method(self, request, context)
        except Exception as exc:
            code = code_for(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method.__name__)
            context.abort(code, message_for(exc))

    return wrapper  # type: ignore[return-value]


def _gone(context: grpc.ServicerContext) -> Any:
    def gone() -> bool:
        return not context.is_active()

    return gone
