"""OpenTelemetry SDK spans (``ReadableSpan``) -> one :class:`SpanBatch` (pure).

What a span becomes:

* name, start (``start_time``), duration (``end_time - start_time``, never negative);
* status: the ``StatusCode`` value (0 unset, 1 ok, 2 error); kind: the ``SpanKind`` value;
* service: the ``service.name`` of the span's ``Resource`` (``default_service`` if absent);
* trace id, span id, parent span id (0 for a root);
* attributes: the span's attributes, plus ``exception.type`` and ``exception.message`` of its
  last ``exception`` event (message cut at 1,024 characters). Other events, links and the
  stack trace are not stored: the table is for timing, not for logs.

The per-span work is attribute reads into plain lists; everything else is done once per batch
with numpy. Attribute sets repeat (a decorated function sends the same set on every call), so
their canonical text is cached by content, which turns the costliest step (``json.dumps``) into
a dictionary lookup for all but the first span of each set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from opentelemetry.sdk.trace import ReadableSpan

from kronicler.db.schema import SpanBatch, canonical_attributes
from kronicler.otel.records import EXCEPTION_MESSAGE, EXCEPTION_TYPE, error_attributes

_M64 = (1 << 64) - 1
_MAX_MESSAGE = 1024
_CACHE_LIMIT = 4096
_DEFAULT_SERVICE = "unknown_service"

_text_cache: dict[Any, str] = {}


def attributes_text(attrs: Mapping[str, Any] | None) -> str:
    """Canonical text of an attribute set, memoised by content when the values are hashable."""
    if not attrs:
        return ""
    try:
        key: Any = tuple(attrs.items())
        text = _text_cache.get(key)
    except TypeError:  # an unhashable value: no memo
        return canonical_attributes(attrs)
    if text is None:
        if len(_text_cache) >= _CACHE_LIMIT:
            _text_cache.clear()
        text = _text_cache[key] = canonical_attributes(attrs)
    return text


def _exception_of(events: Sequence[Any]) -> tuple[str, str] | None:
    for event in reversed(events):
        if event.name == "exception":
            attrs = event.attributes or {}
            return (
                str(attrs.get(EXCEPTION_TYPE, "")),
                str(attrs.get(EXCEPTION_MESSAGE, ""))[:_MAX_MESSAGE],
            )
    return None


def spans_to_batch(
    spans: Sequence[ReadableSpan], *, default_service: str = _DEFAULT_SERVICE
) -> SpanBatch:
    """Rows for ``spans`` in order. Raises ``ValueError`` only for spans the schema rejects."""
    n = len(spans)
    names: list[str] = [""] * n
    start = [0] * n
    end = [0] * n
    status = [0] * n
    kind = [0] * n
    services: list[str] = [""] * n
    trace_hi = [0] * n
    trace_lo = [0] * n
    span_id = [0] * n
    parent_id = [0] * n
    attributes: list[str] = [""] * n
    service_of: dict[int, str] = {}  # id(resource) -> service name, for this batch

    for i, span in enumerate(spans):
        names[i] = span.name
        s = span.start_time or 0
        start[i] = s
        end[i] = span.end_time or s
        status[i] = span.status.status_code.value
        kind[i] = span.kind.value
        resource = span.resource
        service = service_of.get(id(resource))
        if service is None:
            found = resource.attributes.get("service.name") if resource is not None else None
            service = service_of[id(resource)] = str(found) if found else default_service
        services[i] = service
        ctx = span.context
        if ctx is not None:
            tid = ctx.trace_id
            trace_hi[i] = tid >> 64
            trace_lo[i] = tid & _M64
            span_id[i] = ctx.span_id
        parent = span.parent
        if parent is not None:
            parent_id[i] = parent.span_id
        attrs = span.attributes
        events = span.events
        error = _exception_of(events) if events else None
        if error is None:
            attributes[i] = attributes_text(attrs)
        else:
            attributes[i] = canonical_attributes(error_attributes(attrs, *error))

    start_arr = np.array(start, dtype=np.int64)
    duration = np.maximum(np.array(end, dtype=np.int64) - start_arr, 0)
    return SpanBatch.build(
        names,
        start_arr,
        duration,
        status=np.array(status, dtype=np.uint8),
        kind=np.array(kind, dtype=np.uint8),
        service=services,
        trace_id=_trace_bytes(trace_hi, trace_lo),
        span_id=np.array(span_id, dtype=np.uint64),
        parent_span_id=np.array(parent_id, dtype=np.uint64),
        attributes=attributes,
    )


def _trace_bytes(hi: list[int], lo: list[int]) -> np.ndarray:
    """128-bit trace ids as an (n, 16) big-endian byte array (the schema's vectorised form)."""
    halves = np.empty((len(hi), 2), dtype=">u8")
    halves[:, 0] = hi
    halves[:, 1] = lo
    return halves.view(np.uint8).reshape(len(hi), 16)
