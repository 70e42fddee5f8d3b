"""Malformed request bytes answered with INVALID_ARGUMENT, for every unary method of the server.

grpcio deserialises a request before the servicer runs; when that fails (truncated or garbage
protobuf, invalid UTF-8 in a string field, nesting deeper than protobuf's recursion limit) it
answers ``INTERNAL`` ("Exception deserializing request!"), the code the gRPC conventions reserve
for server bugs. This interceptor wraps each unary-unary handler's deserialiser so that a failure
becomes a marker value, and the handler then refuses the call with ``INVALID_ARGUMENT`` and a
short reason, before any servicer code runs. Streaming handlers (reflection, health watch) pass
through unchanged. Its base, :class:`UnaryInterceptor`, serves any interceptor that rewraps
unary handlers (the warmer's, :mod:`kronicler.server.warm`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import grpc

from kronicler.errors import shorten


class _Malformed:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class UnaryInterceptor(grpc.ServerInterceptor):
    """An interceptor that rewraps unary-unary handlers (:meth:`wrap`) and passes the rest."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if (
            handler is None
            or handler.request_streaming
            or handler.response_streaming
            or handler.unary_unary is None
            or handler.request_deserializer is None
        ):
            return handler
        return self.wrap(handler, handler_call_details.method or "")

    @abc.abstractmethod
    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """The handler to run for a unary-unary call of ``method`` instead of ``handler``."""


class DecodeGuardInterceptor(UnaryInterceptor):
    """Turns undecodable unary requests into ``INVALID_ARGUMENT``."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        decode = handler.request_deserializer
        behaviour = handler.unary_unary

        def safe_decode(data: bytes) -> Any:
            try:
                return decode(data)
            except Exception as exc:  # DecodeError, RecursionError, UnicodeDecodeError...
                return _Malformed(f"{type(exc).__name__}: {shorten(str(exc), 200)}")

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, _Malformed):
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"malformed request message ({request.reason})",
                )
            return behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=safe_decode,
            response_serializer=handler.response_serializer,
        )
