"""OpenTelemetry SDK spans (``ReadableSpan``) -> one :class:`SpanBatch` (pure).

What a span becomes is the row contract of :mod:`kronicler.otel.contract`, shared with the
fast path and the OTLP receiver: name, start, duration (``end_time - start_time``, never
negative; 0 for an unfinished span), status, kind, the resource's ``service.name``
(``default_service`` if absent) and all its attributes, ids, and the span's attributes plus the
exception and status description attributes.

The conversion works column by column: each field of every span is read with one ``map`` over
the batch (a C loop), ids and codes go straight into numpy arrays (128-bit trace ids split in an
object array, not one Python step per span), and statuses and resources, which spans share, are
read once per distinct object. Attribute sets repeat (a decorated function sends the same set on
every call): :class:`~kronicler.otel.attr_memo.AttributeMemo` finds the spans that repeat their
name's last set in one C-level pass of identity comparisons over the whole batch, so only the
spans with a new set take a Python step, and ``json.dumps`` runs once per distinct set.

Where the optional C extension :mod:`kronicler.otel._fastrows` is built (and
``KRONICLER_PURE_PYTHON`` is not set), a batch of plain SDK spans is read by its one loop instead:
every field of a span in one visit, the numbers written into one preallocated matrix, the memo's
first stage run per span against the same entries; Python then does only the memo's second stage,
the resources and the spans with events or an error description, with the same helpers as the
column-by-column road. Whatever that loop is not sure of, it declines, and the batch takes the
column-by-column road, which is the reference (``tests/otel/test_rows_fast.py`` holds them to
the same rows). Measured (callgrind, ``bench_capture.py``'s spans): ~18,500 instructions a span
by the Python road, ~4,300 through the loop, of which ~2,200 are ``PyObject_GetAttr``; what is
left is mostly cache misses on spans made moments before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import attrgetter, is_, is_not, itemgetter
from typing import Any

import numpy as np
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext, SpanKind, StatusCode

from kronicler._config import pure_python
from kronicler.db.schema import SpanBatch
from kronicler.otel.attr_memo import AttributeMemo
from kronicler.otel.contract import (
    DEFAULT_SERVICE,
    attributes_text,
    exception_info,
    resource_text,
    row_attributes,
    service_text,
)

_M64 = (1 << 64) - 1
_STATUS_ERROR = 2
_MEMO = AttributeMemo()  # shared by every exporter of the process: function sets repeat across


def _exception_of(events: Iterable[Any]) -> tuple[str, str] | None:
    found = None
    for event in events:
        if event.name == "exception":
            found = event
    return None if found is None else exception_info(found.attributes)


def _plain(mapping: Any) -> Mapping[str, Any]:
    """The dict behind an SDK attribute container, without its per-item Python methods."""
    if type(mapping) is dict:
        return mapping
    if isinstance(mapping, BoundedAttributes):
        inner = getattr(mapping, "_dict", None)
        if isinstance(inner, dict):
            return inner
    return dict(mapping) if mapping else {}


def _sequence(events: Any) -> Sequence[Any]:
    if isinstance(events, BoundedList):
        inner = getattr(events, "_dq", None)
        if inner is not None:
            return inner
    return events or ()


@dataclass(frozen=True, slots=True)
class _Reader:
    """How to read one field of every span of a batch in one C-level ``map``."""

    name: Callable[[Any], Any]
    start: Callable[[Any], Any]
    end: Callable[[Any], Any]
    status: Callable[[Any], Any]
    kind: Callable[[Any], Any]
    resource: Callable[[Any], Any]
    context: Callable[[Any], Any]
    parent: Callable[[Any], Any]
    attributes: Callable[[Any], Any]
    events: Callable[[Any], Any]


_FIELDS = ("name", "start_time", "end_time", "status", "kind", "resource", "context", "parent",
           "attributes", "events")  # fmt: skip
_PUBLIC = _Reader(*map(attrgetter, _FIELDS))
# A plain SDK span's own fields. Its public properties are Python descriptors, and two of them
# copy the attributes or events under a lock on every access (~1 us a span together).
_PRIVATE = _Reader(*map(attrgetter, [f"_{f}" for f in _FIELDS]))
# Every field of a plain SDK span in one call (the attributes' and events' inner dict and deque):
# one pass over the batch instead of ten, its tuples turned into columns by ``zip``.
_SDK_ROW = attrgetter(*[f"_{f}" for f in _FIELDS[:8]], "_attributes._dict", "_events._dq")
_private_ok: dict[type, bool] = {}  # span class -> has the SDK's own fields


def _reader_for(spans: Sequence[Any]) -> _Reader:
    for cls in set(map(type, spans)):
        ok = _private_ok.get(cls)
        if ok is None:
            sample = next(s for s in spans if type(s) is cls)
            ok = _private_ok[cls] = (
                issubclass(cls, ReadableSpan)
                and cls.name is ReadableSpan.name
                and all(hasattr(sample, f"_{f}") for f in _FIELDS)
            )
        if not ok:
            return _PUBLIC
    return _PRIVATE


def _enum_codes(values: Sequence[Any], members: Iterable[Any]) -> np.ndarray:
    """OTel enum members -> uint8 values. ``list.count``/``index`` compare by identity in C;
    hashing or comparing enum members would call Python code for every span."""
    n = len(values)
    out = np.zeros(n, dtype=np.uint8)
    seen = 0
    for member in members:
        c = values.count(member)
        if not c:
            continue
        if c == n:
            out[:] = member.value
            return out
        seen += c
        if member.value:
            i = -1
            for _ in range(c):
                i = values.index(member, i + 1)
                out[i] = member.value
    if seen != n:  # values that are not members of the enum: ask each one
        return np.array([int(getattr(v, "value", v)) for v in values], dtype=np.uint8)
    return out


def _status_column(statuses: Sequence[Any]) -> tuple[np.ndarray, dict[int, str]]:
    """Status codes, and span index -> description for the ERROR statuses that have one.

    Spans share a handful of Status objects (the SDK's default is one), so each distinct object
    is read once, found by identity in C-level passes; only spans that raised have their own.
    """
    n = len(statuses)
    if not n:
        return np.zeros(0, dtype=np.uint8), {}
    keys: list[int] | None = None
    if statuses.count(statuses[0]) == n:
        unique = {id(statuses[0]): statuses[0]}
    else:
        keys = list(map(id, statuses))
        unique = dict(zip(keys, statuses, strict=True))
    codes = {k: int(s.status_code.value) for k, s in unique.items()}
    described = {
        k: s.description
        for k, s in unique.items()
        if s.description and codes[k] == _STATUS_ERROR
    }  # fmt: skip
    if keys is None:
        column = np.full(n, codes[id(statuses[0])], dtype=np.uint8)
    else:
        column = np.fromiter(map(codes.__getitem__, keys), dtype=np.uint8, count=n)
    if not described:
        return column, {}
    keys = keys if keys is not None else list(map(id, statuses))
    at = compress(range(n), map(described.__contains__, keys))
    return column, {i: described[keys[i]] for i in at}


def _resource_texts(unique: Sequence[Any], default: str) -> tuple[list[str], list[str], bool]:
    """``service.name`` and the resource's text of each distinct resource, and whether every
    service is a plain ``str``."""
    service: list[str] = []
    text: list[str] = []
    for resource in unique:
        attrs = resource.attributes if resource is not None else {}
        service.append(service_text(attrs.get("service.name"), default))
        text.append(resource_text(attrs))
    return service, text, all(type(v) is str for v in service)


def _resource_columns(resources: Sequence[Any], default: str) -> tuple[list[str], list[str], bool]:
    """``service.name`` and the resource's text per span, and whether every service is a plain
    ``str``. Usually every span of a batch has the same Resource, so each distinct one is read
    once (found by identity in C-level passes)."""
    n = len(resources)
    if n and resources.count(resources[0]) == n:
        (service,), (text,), plain = _resource_texts(resources[:1], default)
        return [service] * n, [text] * n, plain
    keys = list(map(id, resources))
    unique = dict(zip(keys, resources, strict=True))
    services, texts, plain = _resource_texts(list(unique.values()), default)
    at = dict(zip(unique, range(len(unique)), strict=True))
    index = list(map(at.__getitem__, keys))
    return list(map(services.__getitem__, index)), list(map(texts.__getitem__, index)), plain


# SpanContext is a tuple (trace_id, span_id, ...) by its declared type; reading by index skips
# two Python property calls per span. Checked once at import against the properties.
_TRACE_ID: Callable[[Any], Any] = itemgetter(0)
_SPAN_ID: Callable[[Any], Any] = itemgetter(1)
_probe = SpanContext(trace_id=3, span_id=5, is_remote=False)
if (_TRACE_ID(_probe), _SPAN_ID(_probe)) != (_probe.trace_id, _probe.span_id):  # pragma: no cover
    _TRACE_ID, _SPAN_ID = attrgetter("trace_id"), attrgetter("span_id")


def _times(starts: Sequence[Any], ends: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Start and duration columns; an unfinished span (no start or end) lasts 0."""
    try:
        start = np.fromiter(starts, dtype=np.int64, count=len(starts))
        end = np.fromiter(ends, dtype=np.int64, count=len(ends))
    except TypeError:  # None among them
        fixed = [x or 0 for x in starts]
        start = np.array(fixed, dtype=np.int64)
        end = np.array([e or s for s, e in zip(fixed, ends, strict=True)], dtype=np.int64)
    return start, np.maximum(end - start, 0)


def _id_columns(
    contexts: Sequence[Any], parents: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Trace id halves, span id and parent span id (0 for a root), read in C-level passes.

    Absent contexts and parents are found with ``is`` (``None in`` or ``count(None)`` would
    call each SpanContext's ``==``)."""
    n = len(contexts)
    if any(map(is_, contexts, repeat(None))):
        contexts = [c if c is not None else INVALID_SPAN_CONTEXT for c in contexts]
    # 128-bit ints: split in an object array (two C loops of int operations) rather than one
    # Python-level to_bytes per span.
    trace = np.fromiter(map(_TRACE_ID, contexts), dtype=object, count=n)
    trace_hi = (trace >> 64).astype(np.uint64)
    trace_lo = (trace & _M64).astype(np.uint64)
    span_id = np.fromiter(map(_SPAN_ID, contexts), dtype=np.uint64, count=n)
    present = np.fromiter(map(is_not, parents, repeat(None)), dtype=bool, count=n)
    had = int(np.count_nonzero(present))
    if had == n:
        return trace_hi, trace_lo, span_id, np.fromiter(map(_SPAN_ID, parents), np.uint64, n)
    parent_id = np.zeros(n, dtype=np.uint64)
    if had:
        parent_id[present] = np.fromiter(
            map(_SPAN_ID, compress(parents, present.tolist())), dtype=np.uint64, count=had
        )
    return trace_hi, trace_lo, span_id, parent_id


_Fields = tuple[Sequence[Any], ...]


def _sdk_fields(spans: Sequence[Any]) -> _Fields | None:
    """The ten columns of a batch of plain SDK spans, read in one pass; None for other spans."""
    if _reader_for(spans) is not _PRIVATE:
        return None
    try:
        columns = tuple(zip(*map(_SDK_ROW, spans), strict=True))
    except AttributeError:  # a ReadableSpan made by hand: its attributes are a plain mapping
        return None
    if set(map(type, columns[8])) != {dict}:
        return None
    return columns


def _public_fields(spans: Sequence[Any]) -> _Fields:
    """The ten columns read field by field, through the public properties when needed."""
    read = _reader_for(spans)
    columns = [list(map(getter, spans)) for getter in (
        read.name, read.start, read.end, read.status, read.kind, read.resource, read.context,
        read.parent)]  # fmt: skip
    columns.append([_plain(a) for a in map(read.attributes, spans)])
    columns.append([_sequence(e) for e in map(read.events, spans)])
    return tuple(columns)


def spans_to_batch(
    spans: Sequence[ReadableSpan], *, default_service: str = DEFAULT_SERVICE
) -> SpanBatch:
    """Rows for ``spans`` in order. Raises ``ValueError`` only for spans the schema rejects.

    Plain SDK spans go through the C loop of :mod:`kronicler.otel._fastrows` where it is built;
    otherwise (or when that loop declines the batch) column by column: each field of every span
    is read in one ``map`` (a C loop), and only the attribute sets that differ from their name's
    last one need a Python step.
    """
    if spans and _fastrows is not None:
        batch = _c_batch(spans, default_service)
        if batch is not None:
            return batch
    n = len(spans)
    fields = _sdk_fields(spans) if n else None
    if fields is None:
        fields = _public_fields(spans)
    names = list(fields[0])
    starts, ends, statuses, kinds, resource_of, contexts, parents, raw_attrs, raw_events = fields[
        1:
    ]
    start, duration = _times(starts, ends)
    status, described = _status_column(statuses)
    kind = _enum_codes(kinds, SpanKind)
    services, resources, plain_services = _resource_columns(resource_of, default_service)
    trace_hi, trace_lo, span_id, parent_id = _id_columns(contexts, parents)
    attributes = _MEMO.texts(names, raw_attrs)
    _add_row_attributes(
        attributes, status, described, compress(range(n), raw_events),
        raw_attrs.__getitem__, raw_events.__getitem__,
    )  # fmt: skip
    return _assemble(
        names, start, duration, status, kind, services, resources, plain_services,
        (trace_hi, trace_lo, span_id, parent_id), attributes,
    )  # fmt: skip


def _add_row_attributes(
    attributes: list[str],
    status: np.ndarray,
    described: Mapping[int, str],
    evented: Iterable[int],
    attrs_of: Callable[[int], Mapping[str, Any]],
    events_of: Callable[[int], Iterable[Any]],
) -> None:
    """Exceptions and status descriptions add attributes (the contract's one rule for both)."""
    for i in sorted(set(evented) | described.keys()):
        added = row_attributes(
            attrs_of(i), exception=_exception_of(events_of(i)), status=int(status[i]),
            description=described.get(i),
        )  # fmt: skip
        if added is not None:
            attributes[i] = attributes_text(added)


def _assemble(
    names: list[str],
    start: np.ndarray,
    duration: np.ndarray,
    status: np.ndarray,
    kind: np.ndarray,
    services: list[str],
    resources: list[str],
    plain_services: bool,
    ids: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    attributes: list[str],
) -> SpanBatch:
    trace_hi, trace_lo, span_id, parent_id = ids
    if plain_services and set(map(type, names)) == {str}:
        # Every column is of its storage dtype by construction and the text columns were just
        # checked, so the batch is assembled as is; SpanBatch.build would re-check each row.
        return SpanBatch(
            names=names, start=start, duration=duration, status=status, kind=kind,
            services=services, trace_hi=trace_hi, trace_lo=trace_lo, span_id=span_id,
            parent_span_id=parent_id, attributes=attributes, resources=resources,
        )  # fmt: skip
    return SpanBatch.build(
        names,
        start,
        duration,
        status=status,
        kind=kind,
        service=services,
        trace_id=np.stack([trace_hi, trace_lo], axis=1).astype(">u8").view(np.uint8),
        span_id=span_id,
        parent_span_id=parent_id,
        attributes=attributes,
        resource=resources,
    )


def _load_fastrows() -> Any:
    """The C conversion loop's module, or None (not built, not wanted, or enums it cannot code)."""
    if pure_python():
        return None
    try:
        import kronicler.otel._fastrows as module
    except ImportError:
        return None
    # The loop codes a kind or status code as its index in these tuples.
    if [k.value for k in _KINDS] != list(range(5)) or [c.value for c in _CODES] != [0, 1, 2]:
        return None  # pragma: no cover - an SDK with other enum values
    return module


_KINDS = tuple(sorted(SpanKind, key=attrgetter("value")))
_CODES = tuple(sorted(StatusCode, key=attrgetter("value")))
_fastrows = _load_fastrows()
#: True when plain SDK spans are converted by the C loop.
ACCELERATED = _fastrows is not None


def _c_batch(spans: Sequence[Any], default_service: str) -> SpanBatch | None:
    """The batch read by the C loop, or None where it declines (the caller's road then runs)."""
    cls = type(spans[0])
    if _reader_for((spans[0],)) is not _PRIVATE:
        return None
    n = len(spans)
    out = np.empty((_fastrows.ROWS, n), dtype=np.uint64)
    got = _fastrows.read_spans(spans, cls, _MEMO.entries, _KINDS, _CODES, out)
    if got is None:
        return None
    names, texts, stale, unique, described, evented = got
    for i, attrs in stale:  # in span order: the memo's stage 2, as texts() does it
        texts[i] = _MEMO.text(names[i], attrs)
    service_of, text_of, plain_services = _resource_texts(unique, default_service)
    if len(unique) == 1:
        services, resources = service_of * n, text_of * n
    else:
        index = out[8].tolist()
        services = list(map(service_of.__getitem__, index))
        resources = list(map(text_of.__getitem__, index))
    status = out[6].astype(np.uint8)
    _add_row_attributes(
        texts, status, dict(described), evented,
        lambda i: _plain(spans[i]._attributes), lambda i: _sequence(spans[i]._events),
    )  # fmt: skip
    return _assemble(
        names, out[0].view(np.int64), out[1].view(np.int64), status, out[7].astype(np.uint8),
        services, resources, plain_services, (out[2], out[3], out[4], out[5]), texts,
    )  # fmt: skip
