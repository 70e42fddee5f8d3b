"""OTLP ``ResourceSpans`` (protobuf) -> :class:`kronicler.db.schema.SpanBatch`, as a pure function.

:func:`convert_request` takes a serialized ``ExportTraceServiceRequest`` (what the ingest
workers receive); :func:`convert_resource_spans` takes decoded stock messages. Reading a field
of a upb message from Python costs a Python object, and a span has ten fields to read, so no
field is read that way on the usual path:

1. upb parses the whole request once, in C, in a *lean* copy of the OTLP schema (a span's
   attributes, events and status are ``bytes`` fields: same wire format, no ``KeyValue`` or
   ``AnyValue`` objects). This checks everything (structure, UTF-8, nesting) and builds
   nothing in Python (~0.15 us a span).
2. A second lean schema, in which ``ScopeSpans.spans`` is ``repeated bytes``, hands over each
   span as its wire bytes. They are joined into one buffer and every field of every span is
   found: by the C loop of :mod:`kronicler.otel._fastrows` where it is built (span by span,
   ~15 us a request of 1,000 spans), else by :mod:`kronicler.otel.otlp_wire` with numpy, a
   round per field (~0.4 ms; the reference, and the same tables).
3. Ids, start/end (fixed64) and kind are gathered from the buffer with numpy; names and
   attribute sets are sliced out as bytes and looked up by those bytes (a name decoded once per
   request, an attribute set's text memoised across requests); a status is read with numpy when
   it is just a code. Validation is one boolean mask over all spans.
4. Spans with events or a status message take an extra step (their events are parsed); spans
   the scan cannot vouch for (unusual layouts, see :mod:`~kronicler.otel.otlp_wire`) are parsed
   whole by upb, one by one, with its exact semantics.

Measured side by side on the benchmark's requests (1,000 spans, three attributes each; CPU
time, a loaded machine): reading the lean schema's fields per span in list comprehensions cost
5.3-5.8 us a span; this path 2.3-2.7 us with the numpy scan, 1.2-1.5 us with the C loop (which
also gathers the ids and times and slices the names and attribute sets: 1.7-2.4 us without). Trade-off: a malformed attribute, event or status
surfaces as ``DecodeError`` from the conversion rather than from the parse (the caller rejects
the request whole either way), and stock messages handed to :func:`convert_resource_spans` are
re-serialized first (C, cheap).

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
each distinct set is turned into canonical text once, keyed by its wire bytes, in a memo shared
by all requests and bounded in bytes (:class:`AttributeTexts`). A hit is one dict lookup, in a
``map`` over the spans of a request. The key is exact: the wire bytes tell
``true`` from ``1`` from ``1.0`` and ``-0.0`` from ``0.0``; equal sets sent in other byte forms
only miss the memo.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress
from typing import Any

import numpy as np
from opentelemetry.proto.trace.v1 import trace_pb2

from kronicler.db.schema import SpanBatch, stored_kind
from kronicler.otel import otlp_wire
from kronicler.otel.contract import (
    DEFAULT_SERVICE,
    attributes_text,
    exception_info,
    resource_text,
    row_attributes,
    service_text,
)
from kronicler.otel.otlp_wire import END, NAME, OTHER, PAD, START, STATUS, SpanFields
from kronicler.otel.rows import _fastrows


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


def _lean_schema(spans_as_bytes: bool) -> tuple[Any, Any]:
    """``(request class, Span class)`` of a lean OTLP schema (see the module docstring).

    The stock ``trace.proto`` and ``trace_service.proto`` descriptors are copied into a private
    descriptor pool with three ``Span`` fields retyped from message to ``bytes``: attributes
    (9), events (11) and status (15); with ``spans_as_bytes``, ``ScopeSpans.spans`` (2) too. The
    wire format of a message field and a bytes field is the same, so any request the stock
    schema reads, this one reads, and upb still checks every other field (names are valid
    UTF-8, and so on).
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2

    retype = {"Span": _LEAN_FIELDS, "ScopeSpans": (2,) if spans_as_bytes else ()}
    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2, trace_pb2, trace_service_pb2):
        proto = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        for message in proto.message_type if module is trace_pb2 else ():
            for field in message.field:
                if field.number in retype.get(message.name, ()):
                    field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    field.ClearField("type_name")
        pool.Add(proto)
    make = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if make is None:  # older protobuf: the factory's prototype is the class
        make = message_factory.MessageFactory(pool).GetPrototype
    return (
        make(
            pool.FindMessageTypeByName(
                trace_service_pb2.ExportTraceServiceRequest.DESCRIPTOR.full_name
            )
        ),
        make(pool.FindMessageTypeByName(trace_pb2.Span.DESCRIPTOR.full_name)),
    )


_LEAN_FIELDS = (9, 11, 15)  # Span.attributes, Span.events, Span.status
_LeanRequest, _LeanSpan = _lean_schema(spans_as_bytes=False)
_SplitRequest, _ = _lean_schema(spans_as_bytes=True)  # each span left as its wire bytes


def _parse_key_value(raw: bytes) -> Any:
    from opentelemetry.proto.common.v1 import common_pb2

    return common_pb2.KeyValue.FromString(raw)


def parse_request(data: bytes | memoryview) -> Any:
    """An OTLP ``ExportTraceServiceRequest`` (serialized) in the lean schema; raises
    ``google.protobuf.message.DecodeError`` when malformed. upb checks the whole request in C
    (structure, UTF-8, nesting) without making a Python object per field."""
    return _LeanRequest.FromString(data)


class AttributeTexts:
    """Canonical attribute-set text keyed by the set's wire bytes (a span's ``attributes``
    records, tags included: a serialized ``Span`` holding only its attributes), shared across
    requests and bounded in bytes (when full it starts again, like the contract's memo): the
    same few sets arrive in every request, and a hit costs one dict lookup."""

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self._texts: dict[bytes, str] = {b"": ""}
        self._bytes = 0

    def of(self, keys: list[bytes]) -> list[str]:
        """The attribute text of each key, in order."""
        out: list[str | None] = list(map(self._texts.get, keys))  # one C loop when all hit
        for i in [i for i, text in enumerate(out) if text is None]:
            out[i] = self._add(keys[i])
        return out  # type: ignore[return-value]  # no None is left

    def _add(self, key: bytes) -> str:
        values = _LeanSpan.FromString(key).attributes
        text = attributes_text(_key_values(values))
        size = len(key) + len(text) + 200 + 40 * len(values)  # with object overheads
        if self._bytes + size > self.max_bytes:
            self._texts = {b"": ""}  # start again (a new dict: other threads may be reading)
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
    status = trace_pb2.Status.FromString(raw)
    return status.code, status.message


def _row_text(attrs: dict[str, Any], events: Iterable[Any], code: int, message: str) -> str:
    """Attribute text of a span with events or a status message (OTLP ``Event`` messages),
    by the contract's rules."""
    exception = None
    for event in events:
        if event.name == "exception":
            exception = exception_info(plain_attributes(event.attributes))
    added = row_attributes(attrs, exception=exception, status=code, description=message)
    return attributes_text(attrs if added is None else added)


def convert_request(
    data: bytes | memoryview, *, default_service: str = DEFAULT_SERVICE
) -> Converted:
    """Convert a serialized ``ExportTraceServiceRequest``; raises ``DecodeError`` (or
    ``RecursionError``) when it, or any attribute, event or status in it, is malformed."""
    parse_request(data)  # checks everything; the scan below trusts the structure
    return _convert(_SplitRequest.FromString(data).resource_spans, default_service)


def convert_resource_spans(
    resource_spans: Iterable[Any], *, default_service: str = DEFAULT_SERVICE
) -> Converted:
    """Convert every span of ``resource_spans`` (stock ``ResourceSpans`` messages); malformed
    spans are counted, not raised.

    ``default_service`` is stored for spans whose resource has no ``service.name``.
    """
    split = _SplitRequest()
    for rs in resource_spans:  # the same wire bytes, read in the lean schema (upb: C speed)
        split.resource_spans.add().MergeFromString(rs.SerializeToString())
    return _convert(split.resource_spans, default_service)


def _convert(resource_spans: Iterable[Any], default_service: str) -> Converted:
    spans: list[bytes] = []
    services: list[str] = []
    resources: list[str] = []
    for rs in resource_spans:
        service, resource = resource_of(rs.resource, default_service)
        for ss in rs.scope_spans:
            before = len(spans)
            spans.extend(ss.spans)
            services.extend([service] * (len(spans) - before))
            resources.extend([resource] * (len(spans) - before))
    n = len(spans)
    if n == 0:
        return Converted(SpanBatch.build([], [], []), 0, ())
    end = np.cumsum(np.fromiter(map(len, spans), dtype=np.int64, count=n))
    start = np.concatenate(([0], end[:-1]))
    buf = b"".join(spans) + bytes(PAD)
    data = np.frombuffer(buf, dtype=np.uint8)
    f = scan_spans(data, start, end)
    off, size = f.offset, f.size
    col = _Columns(
        names=_texts_at(buf, off[NAME], size[NAME]),
        nlen=size[NAME].copy(),
        tlen=size[1].copy(), slen=size[2].copy(), plen=size[4].copy(),
        trace=_id_words(data, off[1], size[1] == 16, 2),
        span=_id_words(data, off[2], size[2] == 8, 1)[:, 0],
        parent=_id_words(data, off[4], size[4] == 8, 1)[:, 0],
        start=_fixed64(data, off[START], size[START] > 0),
        end=_fixed64(data, off[END], size[END] > 0),
        # an enum is an int32: upb keeps the low 32 bits of the varint
        kind=(f.kind & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32).astype(np.int64),
        code=np.zeros(n, dtype=np.int64),
        attrs=_TEXTS.of(_slices(buf, f.attrs_start, f.attrs_end)),
    )  # fmt: skip
    messages = _statuses(buf, data, off[STATUS], size[STATUS], col.code)
    extra = set(messages) | set(np.flatnonzero(f.events).tolist())  # never slow ones
    for i in sorted(extra):
        lean = _LeanSpan.FromString(spans[i])
        events = [trace_pb2.Span.Event.FromString(raw) for raw in lean.events]
        col.attrs[i] = _row_text(_key_values(lean.attributes), events, int(col.code[i]),
                                 messages.get(i, ""))  # fmt: skip
    for i in np.flatnonzero(f.slow).tolist():  # parsed whole by upb (see otlp_wire)
        col.fill(i, trace_pb2.Span.FromString(spans[i]))
    return col.build(services, resources)


def scan_spans(data: np.ndarray, start: np.ndarray, end: np.ndarray) -> SpanFields:
    """:func:`kronicler.otel.otlp_wire.scan_spans`, by the C loop where it is built (the same
    tables, ~25 times faster; it sends fewer spans to the per-span parser, see ``_fastrows.c``)."""
    if _fastrows is None:
        return otlp_wire.scan_spans(data, start, end)
    n = len(start)
    f = SpanFields(
        offset=np.empty((OTHER + 1, n), dtype=np.int64),
        size=np.empty((OTHER + 1, n), dtype=np.int64),
        kind=np.empty(n, dtype=np.uint64),
        events=np.empty(n, dtype=bool),
        attrs_start=np.empty(n, dtype=np.int64),
        attrs_end=np.empty(n, dtype=np.int64),
        slow=np.empty(n, dtype=bool),
    )
    _fastrows.scan_spans(data, np.ascontiguousarray(start, dtype=np.int64),
                         np.ascontiguousarray(end, dtype=np.int64), n, otlp_wire.MAX_ROUNDS,
                         f.offset, f.size, f.kind, f.events, f.attrs_start, f.attrs_end,
                         f.slow)  # fmt: skip
    return f


def gather(data: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """:func:`kronicler.otel.otlp_wire.gather`, by the C loop where it is built."""
    if _fastrows is None:
        return otlp_wire.gather(data, at, width)
    out = np.empty((len(at), width), dtype=np.uint8)
    _fastrows.gather(data, np.ascontiguousarray(at, dtype=np.int64), len(at), width, out)
    return out


def _slices(buf: bytes, start: np.ndarray, end: np.ndarray) -> list[bytes]:
    if _fastrows is not None:
        at, to = (np.ascontiguousarray(x, dtype=np.int64) for x in (start, end))
        out: list[bytes] = _fastrows.slices(buf, at, to, len(start))
        return out
    return [buf[a:b] for a, b in zip(start.tolist(), end.tolist(), strict=True)]


def _texts_at(buf: bytes, at: np.ndarray, size: np.ndarray) -> list[str]:
    """UTF-8 strings at the given places (upb has checked them), each distinct one decoded once."""
    raw = _slices(buf, at, at + size)
    decoded = {b: b.decode() for b in set(raw)}
    return list(map(decoded.__getitem__, raw))


def _id_words(data: np.ndarray, at: np.ndarray, good: np.ndarray, words: int) -> np.ndarray:
    """Big-endian ids of ``8 * words`` bytes -> uint64 array (n, words); 0 where not ``good``."""
    ids = gather(data, at, 8 * words).view(">u8").astype(np.uint64)
    ids[~good] = 0
    return ids


def _fixed64(data: np.ndarray, at: np.ndarray, present: np.ndarray) -> np.ndarray:
    return np.where(present, gather(data, at, 8).view("<u8")[:, 0], 0).astype(np.uint64)


def _statuses(
    buf: bytes, data: np.ndarray, at: np.ndarray, size: np.ndarray, code: np.ndarray
) -> dict[int, str]:
    """Fill ``code`` from each span's serialized ``Status``; the status messages by span index.
    Nearly every status is absent or just a small code (two bytes, tag 0x18): read with numpy."""
    tag, small = data[at], data[at + 1]
    plain = (size == 0) | ((size == 2) & (tag == 0x18) & (small < 0x80))
    code[:] = np.where(size == 0, 0, small)
    other = np.flatnonzero(~plain)
    if not other.size:
        return {}
    raw = _slices(buf, at[other], at[other] + size[other])
    parsed = {r: _status(r) for r in set(raw)}
    messages = {}
    for i, r in zip(other.tolist(), raw, strict=True):
        code[i], message = parsed[r]
        if message:
            messages[i] = message
    return messages


def _words(raw: bytes, words: int) -> list[int]:
    if len(raw) != 8 * words:
        return [0] * words
    return [int.from_bytes(raw[8 * k : 8 * k + 8], "big") for k in range(words)]


@dataclass(slots=True)
class _Columns:
    """The spans of one request, column by column, before the malformed ones are left out."""

    names: list[str]
    nlen: np.ndarray
    tlen: np.ndarray
    slen: np.ndarray
    plen: np.ndarray
    trace: np.ndarray
    span: np.ndarray
    parent: np.ndarray
    start: np.ndarray
    end: np.ndarray
    kind: np.ndarray
    code: np.ndarray
    attrs: list[str]

    def fill(self, i: int, span: Any) -> None:
        """Row ``i`` from a stock ``Span`` message."""
        self.names[i] = span.name
        self.nlen[i] = len(span.name)
        self.tlen[i], self.slen[i], self.plen[i] = map(len, (span.trace_id, span.span_id,
                                                            span.parent_span_id))  # fmt: skip
        self.trace[i] = _words(span.trace_id, 2)
        (self.span[i],) = _words(span.span_id, 1)
        (self.parent[i],) = _words(span.parent_span_id, 1)
        self.start[i], self.end[i] = span.start_time_unix_nano, span.end_time_unix_nano
        self.kind[i] = span.kind
        self.code[i] = span.status.code
        self.attrs[i] = _row_text(plain_attributes(span.attributes), span.events,
                                  span.status.code, span.status.message)  # fmt: skip

    def build(self, services: list[str], resources: list[str]) -> Converted:
        names, attrs = self.names, self.attrs
        start, end, kind, code = self.start, self.end, self.kind, self.code
        trace, span, parent = self.trace, self.span, self.parent
        n = len(names)
        with np.errstate(over="ignore"):
            gap = end - start  # wraps when end < start; such spans are rejected below
        checks = {
            "trace_id is not 16 non-zero bytes": (self.tlen == 16)
            & ((trace[:, 0] | trace[:, 1]) != 0),
            "span_id is not 8 non-zero bytes": (self.slen == 8) & (span != 0),
            "parent_span_id is neither empty nor 8 bytes": (self.plen == 0) | (self.plen == 8),
            "name is empty": self.nlen > 0,
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
        rejected = int(n - np.count_nonzero(ok))
        reasons: tuple[str, ...] = ()
        if rejected:
            reasons = tuple(
                f"{int((~m).sum())} with {label}" for label, m in checks.items() if not m.all()
            )
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
