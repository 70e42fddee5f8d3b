"""The row contract: what one span becomes, whichever of the three roads it took.

A span reaches the database through one of three converters: the decorator's fast path
(:mod:`kronicler.otel.records`), an SDK ``ReadableSpan`` given to ``KroniclerSpanExporter``
(:mod:`kronicler.otel.rows`), or an OTLP ``Span`` received over gRPC
(:mod:`kronicler.otel.otlp_rows`). The same span must give the same row on every road, so the
rules live here once and the three converters call them:

* **name**: the span's name (after ``update_name``).
* **start**: Unix epoch nanoseconds; **duration**: ``end - start`` in nanoseconds.
* **status**: the status code (0 unset, 1 ok, 2 error), with the SDK's rules on a live span:
  OK is final, setting UNSET is ignored, an escaping ``Exception`` makes it ERROR.
* **kind**: stored as the OTel Python ``SpanKind`` value (0 internal ... 4 consumer); OTLP's
  ``SPAN_KIND_UNSPECIFIED`` counts as internal. (Every API returns OTLP's numbering,
  :func:`kronicler.db.schema.otlp_kind`.)
* **service**: the resource's ``service.name`` as text; when the resource has none (or an
  empty one) :data:`DEFAULT_SERVICE`, ``unknown_service``, as the OTel specification says. The
  fast path has no resource: it stores the configured service name, which by default is what
  the SDK's ``Resource.create()`` would say (``unknown_service:<executable>``).
* **resource**: every attribute of the span's resource (``service.name``, ``service.version``,
  ``deployment.environment.name``, ``host.name``, ``service.instance.id``...), values rendered
  as attribute values are, stored as canonical text (:func:`resource_text`, ``""`` for an empty
  resource). The fast path has no SDK resource: it stores, once per pipeline, the resource the
  SDK's ``Resource.create()`` gives in that process (``OTEL_RESOURCE_ATTRIBUTES``,
  ``OTEL_SERVICE_NAME``, the ``telemetry.sdk.*`` keys, a ``service.instance.id``) with
  ``service.name`` set to the configured service (left out when that is empty):
  :func:`process_resource`.
* **trace id / span id / parent span id**: as in the span; 0 for "none" (a root's parent).
* **attributes**: the span's own attributes, plus, in this order (later keys win):

  - ``exception.type`` and ``exception.message`` of the span's *last* ``exception`` event (as
    text, ``""`` when the event lacks one; the message cut at :data:`MAX_MESSAGE` characters).
    The stack trace and ``exception.escaped`` are not stored.
  - ``otel.status_description``: the status description, when the status is ERROR and the
    description is not empty and is not the one the SDK derives from the recorded exception
    (``"<type name>: <message>"``, which would only repeat the two keys above). Cut at
    :data:`MAX_MESSAGE` characters. The key is the one OTel uses for formats without a status
    description field.

  Other events, links, instrumentation scope, trace state and flags are not stored: the table
  is for timing, not for logs.
* **attribute values** (:func:`render_value`): text, bool, int, float and null stay as they
  are; arrays (tuples, lists, OTLP ``array_value``) become JSON arrays; maps (OTLP
  ``kvlist_value``, SDK mappings) become JSON objects; bytes become base64 text (as in OTLP/JSON);
  anything else its ``str``. Values are rendered recursively. An attribute set is stored as the
  canonical JSON text of the rendered values with sorted keys (:func:`attributes_text`), which is
  what :func:`kronicler.db.schema.canonical_attributes` gives for flat values.

One difference is deliberate: the OTLP receiver rejects malformed spans (bad ids, an end before
the start...) and reports them through ``partial_success``, while an SDK span always has valid
ids and an unfinished or backwards one is stored with duration 0 (an exporter cannot report a
partial failure).

Attribute sets repeat (a function sends the same set on every call), so their text is memoised.
The memo key is type-exact: ``{"flag": True}``, ``{"flag": 1}`` and ``{"flag": 1.0}`` compare
equal in Python but render differently.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from kronicler._config import DEFAULT_SERVICE

__all__ = [
    "DEFAULT_SERVICE",
    "EXCEPTION_MESSAGE",
    "EXCEPTION_TYPE",
    "MAX_MESSAGE",
    "STATUS_DESCRIPTION",
    "attributes_text",
    "exception_info",
    "exception_type_name",
    "process_resource",
    "render_value",
    "resource_text",
    "row_attributes",
    "service_text",
]

MAX_MESSAGE = 1024  # exception messages and status descriptions longer than this are cut
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
STATUS_DESCRIPTION = "otel.status_description"
_STATUS_ERROR = 2
_CACHE_LIMIT = 4096
_SCALARS = (str, int, float, bool, type(None))


def service_text(value: Any, default: str = DEFAULT_SERVICE) -> str:
    """The stored service for a resource's ``service.name`` value (None when absent)."""
    if value is None:
        return default
    text = value if isinstance(value, str) else str(value)
    return text or default


def exception_type_name(exc: BaseException) -> str:
    """``exception.type`` exactly as the OpenTelemetry SDK writes it."""
    module = type(exc).__module__
    qualname = type(exc).__qualname__
    return f"{module}.{qualname}" if module and module != "builtins" else qualname


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def exception_info(event_attributes: Mapping[str, Any] | None) -> tuple[str, str]:
    """``(type, message)`` stored for an ``exception`` event with these attributes."""
    attrs = event_attributes or {}
    return _text(attrs.get(EXCEPTION_TYPE)), _text(attrs.get(EXCEPTION_MESSAGE))[:MAX_MESSAGE]


def _derived_description(exception: tuple[str, str]) -> str:
    """The description the SDK sets when an exception escapes: ``f"{type.__name__}: {exc}"``."""
    exc_type, message = exception
    return f"{exc_type.rsplit('.', 1)[-1]}: {message}"[:MAX_MESSAGE]


def row_attributes(
    base: Mapping[str, Any] | None,
    *,
    exception: tuple[str, str] | None = None,
    status: int = 0,
    description: str | None = None,
) -> dict[str, Any] | None:
    """The attributes a row stores beyond the span's own, merged over ``base``.

    ``exception`` is ``(type, message)`` of the span's last exception (:func:`exception_info`),
    ``status`` the status code and ``description`` its description. Returns None when nothing
    is added (the row stores ``base`` as it is): the one place where exception and status
    become attributes, for all three converters.
    """
    kept = None
    if status == _STATUS_ERROR and description:
        kept = description[:MAX_MESSAGE]
        if exception is not None and kept == _derived_description(exception):
            kept = None
    if exception is None and kept is None:
        return None
    out = dict(base or {})
    if exception is not None:
        out[EXCEPTION_TYPE] = exception[0]
        out[EXCEPTION_MESSAGE] = exception[1][:MAX_MESSAGE]
    if kept is not None:
        out[STATUS_DESCRIPTION] = kept
    return out


def render_value(value: Any) -> Any:
    """An attribute value as a JSON value, by the rules in the module docstring."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): render_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render_value(v) for v in value]
    return str(value)


def _render_text(attrs: Mapping[str, Any]) -> str:
    items = {}
    for key, value in attrs.items():
        if not isinstance(key, str):
            raise ValueError(f"attribute key must be text, got {key!r}")
        items[key] = render_value(value)
    return json.dumps(items, sort_keys=True, separators=(",", ":"))


def _exact(value: Any) -> Any:
    """A hashable stand-in for ``value`` that also tells ``True``, ``1`` and ``1.0`` apart."""
    if isinstance(value, tuple):
        return (tuple, tuple(map(_exact, value)))
    if isinstance(value, float):  # -0.0 == 0.0, yet they render differently
        return (float, value.hex())
    hash(value)  # unhashable (a dict, a list): raises TypeError, and no memo is used
    return (type(value), value)


_text_cache: dict[Any, str] = {}


def attributes_text(attrs: Mapping[str, Any] | None) -> str:
    """Canonical text of an attribute set (``""`` when empty), memoised by exact content."""
    if not attrs:
        return ""
    try:
        key: Any = tuple((k, _exact(v)) for k, v in attrs.items())
    except TypeError:
        return _render_text(attrs)
    text = _text_cache.get(key)
    if text is None:
        if len(_text_cache) >= _CACHE_LIMIT:
            _text_cache.clear()
        text = _text_cache[key] = _render_text(attrs)
    return text


def resource_text(attrs: Mapping[str, Any] | None) -> str:
    """Canonical text of a resource's attributes (``""`` when it has none)."""
    return attributes_text(attrs)


def process_resource(service_name: str) -> dict[str, Any]:
    """The resource of this process as the SDK's ``Resource.create()`` makes it, with
    ``service.name`` the configured ``service_name`` (left out when empty).

    Made once per pipeline (in its background thread), not per call: the SDK reads the
    environment and runs its resource detectors here.
    """
    try:
        from opentelemetry.sdk.resources import Resource

        attrs = dict(Resource.create().attributes)
    except Exception:  # noqa: BLE001 - a broken detector must not cost the rows
        attrs = {}
    attrs.pop("service.name", None)
    if service_name:
        attrs["service.name"] = service_name
    return attrs
