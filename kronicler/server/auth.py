"""Who may connect: the bearer-token check for every RPC except health (one server interceptor,
one token rule), and the listening port with its TLS settings.

Clients send the metadata ``authorization: Bearer <token>`` (the HTTP API takes the same
header); the scheme is case-insensitive as HTTP says (``bearer`` works too), the token is not. Health stays open so that load
balancers and orchestrators can probe without the secret; reflection and OTLP need the token
like queries do. Tokens are compared in constant time. A token only makes sense over TLS or
loopback: on a plain network connection it travels in clear text.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"
_DENIED = "missing or wrong bearer token (send metadata 'authorization: Bearer <token>')"


def bearer_matches(authorization: str | bytes | None, token: str) -> bool:
    """Does an ``Authorization`` value carry ``token`` (``Bearer <token>``, any case of Bearer)?"""
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    # compare_digest on bytes: constant time whatever the text holds
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8"))


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``*.localhost``, 127.0.0.0/8 and ``::1`` (brackets allowed)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without the right token with ``UNAUTHENTICATED``."""

    def __init__(self, token: str, *, exempt: tuple[str, ...] = (HEALTH_PREFIX,)) -> None:
        if not token:
            raise ValueError("token must not be empty")
        self._token = token
        self._exempt = exempt

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method or ""
        if method.startswith(self._exempt):
            return continuation(handler_call_details)
        got: str | bytes = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                got = value
                break
        if bearer_matches(got, self._token):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        return None if handler is None else _denying(handler)


def _deny(request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)


def _denying(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that refuses the call before reading it."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_deny, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(_deny, **kwargs)


def add_port(
    server: grpc.Server,
    address: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
) -> int:
    """Listen on ``address`` (TLS when given a certificate and key; client certificates
    required when given a CA); the port bound, 0 when it could not be."""
    if tls_cert is None or tls_key is None:
        return int(server.add_insecure_port(address))
    creds = grpc.ssl_server_credentials(
        [(Path(tls_key).read_bytes(), Path(tls_cert).read_bytes())],
        root_certificates=None if tls_client_ca is None else Path(tls_client_ca).read_bytes(),
        require_client_auth=tls_client_ca is not None,
    )
    return int(server.add_secure_port(address, creds))
