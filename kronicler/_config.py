"""Settings of the zero-configuration capture pipeline, the one place environment is read, and
the defaults several parts share (the database directory, the server address, message sizes).

Precedence, highest first: ``kronicler.configure(...)`` arguments, ``KRONICLER_*`` variables, the
standard OpenTelemetry variables (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), defaults.
A malformed variable is logged and ignored rather than raised: a typo in the environment must not
stop the application from starting.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import replace

from kronicler._record import record

_log = logging.getLogger(__name__)

#: The embedded database's directory, for capture, ``kronicler.open``, the exporter and the CLI.
DEFAULT_PATH = ".kronicler"
#: Where ``kronicler serve`` listens and the client connects (loopback, OTLP's standard port).
DEFAULT_ADDRESS = "127.0.0.1:4317"
DEFAULT_MAX_RECEIVE_BYTES = 16 << 20  # gRPC messages the server accepts
DEFAULT_MAX_SEND_BYTES = 64 << 20  # gRPC answers the server sends and the client accepts
#: The service of a span whose resource names none (the OpenTelemetry specification's default).
DEFAULT_SERVICE = "unknown_service"
_DEFAULT_FLUSH_INTERVAL = 0.1  # seconds between background hand-offs to the database
_DEFAULT_MAX_PENDING = 2_000_000  # rows held in memory before new rows are dropped
_DEFAULT_STOP_TIMEOUT = 5.0  # seconds a stop signal waits for captured calls to be stored

_FALSE = {"0", "false", "no", "off"}
_TRUE = {"1", "true", "yes", "on"}


def default_service_name(environ: Mapping[str, str] | None = None) -> str:
    """The service name the OpenTelemetry SDK would put in its default ``Resource``."""
    env = os.environ if environ is None else environ
    name = env.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        return name
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip() == "service.name" and value.strip():
            return value.strip()
    base = DEFAULT_SERVICE
    return f"{base}:{os.path.basename(sys.executable)}" if sys.executable else base


@record
class Settings:
    """How the default pipeline behaves.

    Fields:
        enabled: when False, captured functions run as plain calls and nothing is stored.
        path: directory of the embedded database.
        service_name: service recorded on every row of this process.
        flush_interval: seconds between hand-offs of buffered rows to the database (> 0).
        max_pending: rows held in memory while the database cannot take them; beyond this new
            rows are dropped and counted (>= 1).
        stop_timeout: seconds a stop signal (SIGTERM, SIGINT, SIGQUIT) waits for captured calls
            to be stored before it goes on (> 0).
    """

    enabled: bool = True
    path: str = DEFAULT_PATH
    service_name: str = ""
    flush_interval: float = _DEFAULT_FLUSH_INTERVAL
    max_pending: int = _DEFAULT_MAX_PENDING
    stop_timeout: float = _DEFAULT_STOP_TIMEOUT

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"path must be a non-empty directory name, got {self.path!r}")
        if not isinstance(self.service_name, str):
            raise ValueError(f"service_name must be text, got {self.service_name!r}")
        if not self.flush_interval > 0:
            raise ValueError(f"flush_interval must be > 0 seconds, got {self.flush_interval!r}")
        if not isinstance(self.max_pending, int) or self.max_pending < 1:
            raise ValueError(f"max_pending must be an int >= 1, got {self.max_pending!r}")
        if not self.stop_timeout > 0:
            raise ValueError(f"stop_timeout must be > 0 seconds, got {self.stop_timeout!r}")

    def updated(self, **changes: object) -> Settings:
        """A copy with the given fields replaced (``None`` values mean "leave as is")."""
        given = {k: v for k, v in changes.items() if v is not None}
        if "path" in given:
            given["path"] = os.fspath(given["path"])  # type: ignore[call-overload]
        return replace(self, **given)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``KRONICLER_*`` and OpenTelemetry variables; bad values are logged."""
        env = os.environ if environ is None else environ
        # OTEL_SDK_DISABLED=true turns every part of OpenTelemetry off, the decorator included
        enabled = _parse_bool(env, "KRONICLER_ENABLED", True) and not _parse_bool(
            env, "OTEL_SDK_DISABLED", False
        )
        path = env.get("KRONICLER_PATH", "").strip() or DEFAULT_PATH
        service = env.get("KRONICLER_SERVICE_NAME", "").strip() or default_service_name(env)
        interval = _parse_number(env, "KRONICLER_FLUSH_INTERVAL", _DEFAULT_FLUSH_INTERVAL, float)
        pending = int(_parse_number(env, "KRONICLER_MAX_PENDING", _DEFAULT_MAX_PENDING, int))
        stop = _parse_number(env, "KRONICLER_STOP_TIMEOUT", _DEFAULT_STOP_TIMEOUT, float)
        return cls(enabled, path, service, interval, pending, stop)


def pure_python(environ: Mapping[str, str] | None = None) -> bool:
    """``KRONICLER_PURE_PYTHON=1``: the pure-Python roads even where the optional C extensions
    are built: the capture wrapper and the exporter's span conversion (read once, at import)."""
    return _parse_bool(os.environ if environ is None else environ, "KRONICLER_PURE_PYTHON", False)


def _parse_bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw in _FALSE:
        return False
    if raw in _TRUE:
        return True
    _log.warning("kronicler: ignoring %s=%r (expected 0/1, true/false)", key, raw)
    return default


def _parse_number(env: Mapping[str, str], key: str, default: float, kind: type) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not value > 0:
        _log.warning("kronicler: ignoring %s=%r (expected a positive number)", key, raw)
        return default
    return float(value) if kind is float else int(value)
