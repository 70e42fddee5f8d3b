"""Transport only: the gRPC server (queries, OTLP, health, reflection) and its typed client.

Business logic lives in :mod:`kronicler.query`; this package converts messages and maps errors.
"""

from __future__ import annotations

from kronicler._config import DEFAULT_ADDRESS
from kronicler.server.app import KroniclerServer, ServerOptions
from kronicler.server.client import Client

__all__ = ["DEFAULT_ADDRESS", "Client", "KroniclerServer", "ServerOptions"]
