"""OTLP ``ResourceSpans`` (protobuf) -> :class:`kronicler.db.schema.SpanBatch`, as a pure function.

:func:`convert_request` takes a serialized ``ExportTraceServiceRequest`` (what the ingest
workers receive); :func:`convert_resource_spans` takes decoded stock messages. Python must touch
each span once to read its fields, and every field read on a upb message costs a Python object,
so the request is decoded (by upb, in C) in a *lean* copy of the OTLP schema in which a span's
attributes, events and status are ``bytes`` fields: same wire format, but a span's attributes
arrive as a few byte strings rather than a tree of ``KeyValue``/``AnyValue`` objects. They are
only decoded for an attribute set not seen before, and events only for the rare span that has
some. Trade-off: a malformed attribute, event or status surfaces as ``DecodeError`` from the
conversion rather than from the parse (the caller rejects the request whole either way), and
stock messages handed to :func:`convert_resource_spans` are re-serialized first (C, cheap).
This module
does exactly one pass of list comprehensions per scope and leaves everything else to numpy:
ids are joined into one byte string and viewed as big-endian uint64 columns, and validation is
one boolean mask over all spans, so a request of 10,000 spans costs 10,000 attribute reads, not
10,000 little validations.

What a span becomes is the row contract of :mod:`kronicler.otel.contract`, shared with the SDK
exporter and the fast path:
    name <- span.name; start <- start_time_unix_nano; duration <- end - start;
    status <- status.code (0 unset, 1 ok, 2 error); kind <- OTLP kind - 1 (unspecified -> internal,
    so the values match the OTel Python API); service <- resource attribute ``service.name``
    (``unknown_service`` when absent); resource <- every resource attribute, one text per
    ``ResourceSpans`` (not per span); trace/span/parent ids <- the raw bytes; attributes <- span
    attributes, plus the last ``exception`` event's type and message and the status message
    (``status.message``) by the contract's rules. Only spans with events or a status message
    take that extra step.

A span is *malformed*, and left out, when its trace id is not 16 non-zero bytes, its span id not
8 non-zero bytes, its parent id neither empty nor 8 bytes, its name empty, its start 0, its end
before its start, or its status/kind outside the OTLP enums. The others are stored; the count and
a summary of the reasons go back through OTLP ``partial_success``.

Attribute sets repeat (the same route, the same status code) within and across requests, so
each distinct set is turned into canonical text once, keyed by its serialized ``KeyValue`` bytes,
in a memo shared by all requests and bounded in bytes (:class:`AttributeTexts`). A hit is one
dict lookup, in a ``map`` over the spans of a scope. The key is exact: the wire bytes tell
``true`` from ``1`` from ``1.0`` and ``-0.0`` from ``0.0``; equal sets sent in other byte forms
only miss the memo.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress
from typing import Any

import numpy as np

from kronicler.db.schema import SpanBatch, stored_kind
from kronicler.otel.contract import (
    DEFAULT_SERVICE,
    attributes_text,
    exception_info,
    resource_text,
    row_attributes,
    service_text,
)

_ZERO8 = b"\x00" * 8
_ZERO16 = b"\x00" * 16


@dataclass(frozen=True, slots=True)
class Converted:
    """A batch of the well-formed spans, and what was left out and why."""

    batch: SpanBatch
    rejected: int
    reasons: tuple[str, ...]

    @property
    def error_message(self) -> str:
        if not self.rejected:
            return ""
        return f"{self.rejected} malformed spans rejected: " + "; ".join(self.reasons)


def any_value(v: Any) -> Any:
    """An OTLP ``AnyValue`` as the Python value an SDK span would hold (arrays as lists,
    kvlists as dicts, bytes as bytes); :func:`kronicler.otel.contract.render_value` renders it."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)


def plain_attributes(attrs: Any) -> dict[str, Any]:
    """Repeated OTLP ``KeyValue`` -> a dict of Python values (a later duplicate key wins)."""
    return {kv.key: any_value(kv.value) for kv in attrs}


def resource_of(resource: Any, default: str = DEFAULT_SERVICE) -> tuple[str, str]:
    """``(service, canonical resource text)`` of an OTLP ``Resource``."""
    attrs = plain_attributes(resource.attributes)
    return service_text(attrs.get("service.name"), default), resource_text(attrs)


def _lean_classes() -> tuple[Any, Any]:
    """``(request class, KeyValue parser)`` of the lean OTLP schema (see the module docstring).

    The stock ``trace.proto`` and ``trace_service.proto`` descriptors are copied into a private
    descriptor pool with three ``Span`` fields retyped from message to ``bytes``: attributes
    (9), events (11) and status (15). The wire format of a message field and a bytes field is
    the same, so any request the stock schema reads, this one reads, and upb still checks
    every other field (names are valid UTF-8, and so on).
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2, trace_pb2, trace_service_pb2):
        proto = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        if module is trace_pb2:
            (span,) = [m for m in proto.message_type if m.name == "Span"]
            for field in span.field:
                if field.number in _LEAN_FIELDS:
                    field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    field.ClearField("type_name")
        pool.Add(proto)
    request = pool.FindMessageTypeByName(
        trace_service_pb2.ExportTraceServiceRequest.DESCRIPTOR.full_name
    )
    make = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if make is None:  # older protobuf: the factory's prototype is the class
        make = message_factory.MessageFactory(pool).GetPrototype
    return make(request), common_pb2.KeyValue.FromString


_LEAN_FIELDS = (9, 11, 15)  # Span.attributes, Span.events, Span.status
_LeanRequest, _parse_key_value = _lean_classes()


def parse_request(data: bytes | memoryview) -> Any:
    """An OTLP ``ExportTraceServiceRequest`` (serialized) in the lean schema, for
    :func:`convert_request`; raises ``google.protobuf.message.DecodeError`` when malformed."""
    return _LeanRequest.FromString(data)


class AttributeTexts:
    """Canonical attribute-set text keyed by the set's serialized ``KeyValue`` bytes, shared
    across requests and bounded in bytes (when full it starts again, like the contract's
    memo): the same few sets arrive in every request, and a hit costs one dict lookup."""

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self._texts: dict[tuple[bytes, ...], str] = {(): ""}
        self._bytes = 0

    def of(self, spans: Any) -> list[str]:
        """The attribute text of each span (lean ``Span`` messages), in order."""
        keys = [tuple(s.attributes) for s in spans]
        out: list[str | None] = list(map(self._texts.get, keys))  # one C loop when all hit
        for i in [i for i, text in enumerate(out) if text is None]:
            out[i] = self._add(keys[i])
        return out  # type: ignore[return-value]  # no None is left

    def _add(self, key: tuple[bytes, ...]) -> str:
        text = attributes_text(_key_values(key))
        size = sum(map(len, key)) + len(text) + 200 + 40 * len(key)  # with object overheads
        if self._bytes + size > self.max_bytes:
            self._texts = {(): ""}  # start again (a new dict: other threads may be reading)
            self._bytes = 0
        if size <= self.max_bytes:
            self._texts[key] = text
            self._bytes += size
        return text


_TEXTS = AttributeTexts()


def _key_values(raw: Iterable[bytes]) -> dict[str, Any]:
    """Serialized OTLP ``KeyValue``s -> a dict of Python values (a later duplicate key wins)."""
    return plain_attributes([_parse_key_value(b) for b in raw])


def _status(raw: bytes) -> tuple[int, str]:
    """``(code, message)`` of a serialized OTLP ``Status``."""
    from opentelemetry.proto.trace.v1 import trace_pb2

    status = trace_pb2.Status.FromString(raw)
    return status.code, status.message


def _extra_attributes(span: Any, code: int, message: str) -> str | None:
    """Text of a lean span whose events or status message add attributes; None when none do."""
    from opentelemetry.proto.trace.v1 import trace_pb2

    exception = None
    for raw in span.events:
        event = trace_pb2.Span.Event.FromString(raw)
        if event.name == "exception":
            exception = exception_info(plain_attributes(event.attributes))
    added = row_attributes(
        _key_values(span.attributes), exception=exception, status=code, description=message
    )
    return None if added is None else attributes_text(added)


def convert_request(
    data: bytes | memoryview, *, default_service: str = DEFAULT_SERVICE
) -> Converted:
    """Convert a serialized ``ExportTraceServiceRequest``; raises ``DecodeError`` (or
    ``RecursionError``) when it, or any attribute, event or status in it, is malformed."""
    return _convert(parse_request(data).resource_spans, default_service)


def convert_resource_spans(
    resource_spans: Iterable[Any], *, default_service: str = DEFAULT_SERVICE
) -> Converted:
    """Convert every span of ``resource_spans`` (stock ``ResourceSpans`` messages); malformed
    spans are counted, not raised.

    ``default_service`` is stored for spans whose resource has no ``service.name``.
    """
    lean = _LeanRequest()
    for rs in resource_spans:  # the same wire bytes, read in the lean schema (upb: C speed)
        lean.resource_spans.add().MergeFromString(rs.SerializeToString())
    return _convert(lean.resource_spans, default_service)


def _convert(resource_spans: Iterable[Any], default_service: str) -> Converted:
    names: list[str] = []
    services: list[str] = []
    resources: list[str] = []
    trace_ids: list[bytes] = []
    span_ids: list[bytes] = []
    parents: list[bytes] = []
    starts: list[int] = []
    ends: list[int] = []
    kinds: list[int] = []
    codes: list[int] = []
    attrs: list[str] = []
    texts = _TEXTS
    statuses: dict[bytes, tuple[int, str]] = {b"": (0, "")}
    for rs in resource_spans:
        service, resource = resource_of(rs.resource, default_service)
        for ss in rs.scope_spans:
            spans = ss.spans
            if not spans:
                continue
            names.extend([s.name for s in spans])
            services.extend([service] * len(spans))
            resources.extend([resource] * len(spans))
            trace_ids.extend([s.trace_id for s in spans])
            span_ids.extend([s.span_id for s in spans])
            parents.extend([s.parent_span_id for s in spans])
            starts.extend([s.start_time_unix_nano for s in spans])
            ends.extend([s.end_time_unix_nano for s in spans])
            kinds.extend([s.kind for s in spans])
            raw_status = [s.status for s in spans]
            for raw in set(raw_status).difference(statuses):
                statuses[raw] = _status(raw)
            status = list(map(statuses.__getitem__, raw_status))
            codes.extend([code for code, _ in status])
            first = len(attrs)
            attrs.extend(texts.of(spans))
            extra_at = [i for i, s in enumerate(spans) if s.events]
            if any(message for _, message in statuses.values()):
                extra_at = sorted({*extra_at, *(i for i, (_, m) in enumerate(status) if m)})
            for i in extra_at:
                extra = _extra_attributes(spans[i], *status[i])
                if extra is not None:
                    attrs[first + i] = extra
    return _build(names, services, trace_ids, span_ids, parents, starts, ends, kinds, codes, attrs,
                  resources)  # fmt: skip


def _build(
    names: list[str], services: list[str], trace_ids: list[bytes], span_ids: list[bytes],
    parents: list[bytes], starts: list[int], ends: list[int], kinds: list[int],
    codes: list[int], attrs: list[str], resources: list[str],
) -> Converted:  # fmt: skip
    n = len(names)
    if n == 0:
        return Converted(SpanBatch.build([], [], []), 0, ())
    start = np.array(starts, dtype=np.uint64)
    end = np.array(ends, dtype=np.uint64)
    with np.errstate(over="ignore"):
        gap = end - start  # wraps when end < start; such spans are rejected below
    kind = np.array(kinds, dtype=np.int64)
    code = np.array(codes, dtype=np.int64)
    tlen = np.fromiter(map(len, trace_ids), dtype=np.int64, count=n)
    slen = np.fromiter(map(len, span_ids), dtype=np.int64, count=n)
    plen = np.fromiter(map(len, parents), dtype=np.int64, count=n)
    nlen = np.fromiter(map(len, names), dtype=np.int64, count=n)
    trace = _ids(trace_ids, tlen == 16, _ZERO16, 2)
    span = _ids(span_ids, slen == 8, _ZERO8, 1)[:, 0]
    parent = _ids(parents, plen == 8, _ZERO8, 1)[:, 0]
    checks = {
        "trace_id is not 16 non-zero bytes": (tlen == 16) & ((trace[:, 0] | trace[:, 1]) != 0),
        "span_id is not 8 non-zero bytes": (slen == 8) & (span != 0),
        "parent_span_id is neither empty nor 8 bytes": (plen == 0) | (plen == 8),
        "name is empty": nlen > 0,
        "start time is 0": start > 0,
        "end time is before start time": end >= start,
        # (an end before the start wraps the unsigned gap: reported once, by the check above)
        "duration does not fit in int64": (end < start)
        | (gap <= np.uint64(np.iinfo(np.int64).max)),
        "start time does not fit in int64": start <= np.iinfo(np.int64).max,
        "kind is not an OTLP span kind": (kind >= 0) & (kind <= 5),
        "status code is not an OTLP status code": (code >= 0) & (code <= 2),
    }
    ok = np.logical_and.reduce(list(checks.values()))
    rejected = int(n - ok.sum())
    reasons = tuple(f"{int((~m).sum())} with {label}" for label, m in checks.items() if not m.all())
    if rejected:
        keep = ok.tolist()
        names = list(compress(names, keep))
        services = list(compress(services, keep))
        attrs = list(compress(attrs, keep))
        resources = list(compress(resources, keep))
        start, gap, kind, code = start[ok], gap[ok], kind[ok], code[ok]
        trace, span, parent = trace[ok], span[ok], parent[ok]
    batch = SpanBatch(
        names=names,
        start=start.astype(np.int64),
        duration=gap.astype(np.int64),
        status=code.astype(np.uint8),
        kind=stored_kind(kind),
        services=services,
        trace_hi=np.ascontiguousarray(trace[:, 0]),
        trace_lo=np.ascontiguousarray(trace[:, 1]),
        span_id=np.ascontiguousarray(span),
        parent_span_id=np.ascontiguousarray(parent),
        attributes=attrs,
        resources=resources,
    )
    return Converted(batch, rejected, reasons)


def _ids(values: list[bytes], good: np.ndarray, zero: bytes, words: int) -> np.ndarray:
    """Big-endian id bytes -> uint64 array of shape (n, words); wrong-length ids become 0."""
    if not good.all():
        values = [v if g else zero for v, g in zip(values, good.tolist(), strict=True)]
    raw = np.frombuffer(b"".join(values), dtype=">u8").astype(np.uint64)
    return raw.reshape(-1, words)
