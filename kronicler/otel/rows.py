"""OpenTelemetry SDK spans (``ReadableSpan``) -> one :class:`SpanBatch` (pure).

What a span becomes is the row contract of :mod:`kronicler.otel.contract`, shared with the
fast path and the OTLP receiver: name, start, duration (``end_time - start_time``, never
negative; 0 for an unfinished span), status, kind, the resource's ``service.name``
(``default_service`` if absent) and all its attributes, ids, and the span's attributes plus the
exception and status description attributes.

The conversion works column by column: each field of every span is read with one ``map`` over
the batch (a C loop), ids and codes go straight into numpy arrays, and only attribute sets need
a Python step per span. Attribute sets repeat (a decorated function sends the same set on every
call): each span name remembers its last set and text, and one C-level pass of comparisons (of
the values and of their types, since ``True == 1 == 1.0``) finds the spans that repeat it, so
the costliest step (``json.dumps``) runs once per distinct set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import attrgetter, itemgetter, ne
from typing import Any

import numpy as np
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext, SpanKind

from kronicler.db.schema import SpanBatch
from kronicler.otel.contract import (
    DEFAULT_SERVICE,
    attributes_text,
    exception_info,
    resource_text,
    row_attributes,
    service_text,
)

_M64 = (1 << 64) - 1
_CACHE_LIMIT = 4096
_STATUS_ERROR = 2

# span name -> ((last attribute dict, the types of its values), its text)
_by_name: dict[str, tuple[tuple[Mapping[str, Any], tuple[type, ...]], str]] = {}
_UNSEEN: tuple[Any, str] = ((object(), None), "")  # unequal to every (attributes, types)
_KEY, _TEXT = itemgetter(0), itemgetter(1)
# Values whose equality is exact once their type is equal too (0.0 is not: -0.0 == 0.0).
_FLAT = frozenset({str, int, bool, bytes, type(None)})


def _rememberable(attrs: Mapping[str, Any]) -> bool:
    """True when ``==`` plus equal value types prove two sets render alike (no nested values,
    whose elements could be ``True`` in one and ``1`` in the other)."""
    for v in attrs.values():
        t = type(v)
        if t in _FLAT or (t is float and v != 0.0):
            continue
        if t is tuple and all(type(x) is str for x in v):
            continue
        return False
    return True


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
_SDK_SPAN = _Reader(
    *map(attrgetter, [f"_{f}" for f in _FIELDS[:8]] + ["_attributes._dict", "_events._dq"])
)
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


def _enum_codes(values: list[Any], members: Iterable[Any]) -> np.ndarray:
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


def _status_column(statuses: list[Any]) -> tuple[np.ndarray, dict[int, str]]:
    """Status codes, and span index -> description for the ERROR statuses that have one.

    Spans share a handful of Status objects (the SDK's default is one), so each distinct object
    is read once; only spans that raised (a Status each) make the per-span lists long.
    """
    n = len(statuses)
    if not n:
        return np.zeros(0, dtype=np.uint8), {}
    if statuses.count(statuses[0]) == n:
        unique = [statuses[0]]
    else:
        unique = list({id(s): s for s in statuses}.values())
    codes = {id(s): int(s.status_code.value) for s in unique}
    described = {
        id(s): s.description
        for s in unique
        if s.description and codes[id(s)] == _STATUS_ERROR
    }  # fmt: skip
    keys = None
    if len(unique) == 1:
        column = np.full(n, codes[id(unique[0])], dtype=np.uint8)
    else:
        keys = list(map(id, statuses))
        column = np.array(list(map(codes.__getitem__, keys)), dtype=np.uint8)
    if not described:
        return column, {}
    keys = keys if keys is not None else list(map(id, statuses))
    return column, {i: described[k] for i, k in enumerate(keys) if k in described}


def _resource_columns(resources: list[Any], default: str) -> tuple[list[str], list[str]]:
    """``service.name`` and the resource's text per span; usually every span of a batch has
    the same Resource, so each distinct one is read once."""
    names: dict[int, tuple[str, str]] = {}
    if resources and resources.count(resources[0]) == len(resources):
        unique = [resources[0]]
    else:
        unique = list({id(r): r for r in resources}.values())
    for resource in unique:
        attrs = resource.attributes if resource is not None else {}
        names[id(resource)] = (service_text(attrs.get("service.name"), default),
                               resource_text(attrs))  # fmt: skip
    if len(unique) == 1:
        service, text = names[id(unique[0])]
        return [service] * len(resources), [text] * len(resources)
    pairs = list(map(names.__getitem__, map(id, resources)))
    return [p[0] for p in pairs], [p[1] for p in pairs]


# SpanContext is a tuple (trace_id, span_id, ...) by its declared type; reading by index skips
# two Python property calls per span. Checked once at import against the properties.
_TRACE_ID: Callable[[Any], Any] = itemgetter(0)
_SPAN_ID: Callable[[Any], Any] = itemgetter(1)
_probe = SpanContext(trace_id=3, span_id=5, is_remote=False)
if (_TRACE_ID(_probe), _SPAN_ID(_probe)) != (_probe.trace_id, _probe.span_id):  # pragma: no cover
    _TRACE_ID, _SPAN_ID = attrgetter("trace_id"), attrgetter("span_id")


def spans_to_batch(
    spans: Sequence[ReadableSpan], *, default_service: str = DEFAULT_SERVICE
) -> SpanBatch:
    """Rows for ``spans`` in order. Raises ``ValueError`` only for spans the schema rejects.

    Works column by column: each field of every span is read in one ``map`` (a C loop), and
    only the attribute sets need a Python step per span.
    """
    n = len(spans)
    read = _reader_for(spans)
    names: list[str] = list(map(read.name, spans))
    starts = list(map(read.start, spans))
    ends = list(map(read.end, spans))
    if None in starts or None in ends:  # unfinished spans: no duration
        starts = [x or 0 for x in starts]
        ends = [e or s for s, e in zip(starts, ends, strict=True)]
    start = np.array(starts, dtype=np.int64)
    duration = np.maximum(np.array(ends, dtype=np.int64) - start, 0)
    statuses = list(map(read.status, spans))
    status, described = _status_column(statuses)
    kind = _enum_codes(list(map(read.kind, spans)), SpanKind)
    services, resources = _resource_columns(list(map(read.resource, spans)), default_service)

    contexts = list(map(read.context, spans))
    parents = list(map(read.parent, spans))
    if None in contexts:
        contexts = [c if c is not None else INVALID_SPAN_CONTEXT for c in contexts]
    trace_bytes = b"".join(t.to_bytes(16, "big") for t in map(_TRACE_ID, contexts))
    span_id = np.array(list(map(_SPAN_ID, contexts)), dtype=np.uint64)
    if None in parents:
        parent_id = np.zeros(n, dtype=np.uint64)
        present = [i for i, p in enumerate(parents) if p is not None]
        if present:
            parent_id[present] = [parents[i].span_id for i in present]
    else:
        parent_id = np.array(list(map(_SPAN_ID, parents)), dtype=np.uint64)

    raw_attrs: list[Any] | None = None
    raw_events: list[Any] | None = None
    if read is _PRIVATE:
        try:  # plain SDK spans: straight to the dict and deque inside the containers
            raw_attrs = list(map(_SDK_SPAN.attributes, spans))
            raw_events = list(map(_SDK_SPAN.events, spans))
        except AttributeError:
            raw_attrs = raw_events = None
    if raw_attrs is None or raw_events is None:
        raw_attrs = [_plain(a) for a in map(read.attributes, spans)]
        raw_events = [_sequence(e) for e in map(read.events, spans)]

    # Spans of one function usually repeat one attribute set. Each name remembers its last set,
    # the types of its values and its text; one C-level pass of comparisons finds the spans that
    # repeat it, and only the others take a Python step.
    types = list(map(tuple, map(map, repeat(type), map(dict.values, raw_attrs))))
    remembered = list(map(_by_name.get, names, repeat(_UNSEEN)))
    attributes: list[str] = list(map(_TEXT, remembered))
    stale = map(ne, zip(raw_attrs, types, strict=True), map(_KEY, remembered))
    for i in compress(range(n), stale):
        attrs = raw_attrs[i]
        text = attributes[i] = attributes_text(attrs)
        if _rememberable(attrs):
            if len(_by_name) >= _CACHE_LIMIT:
                _by_name.clear()
            _by_name[names[i]] = ((dict(attrs), types[i]), text)
        else:
            _by_name.pop(names[i], None)
    # Exceptions and status descriptions add attributes (the contract's one rule for both).
    for i in sorted(set(compress(range(n), raw_events)) | described.keys()):
        added = row_attributes(
            raw_attrs[i], exception=_exception_of(raw_events[i]), status=int(status[i]),
            description=described.get(i),
        )  # fmt: skip
        if added is not None:
            attributes[i] = attributes_text(added)

    if set(map(type, names)) == {str} and set(map(type, services)) == {str}:
        # Every column is of its storage dtype by construction and the text columns were just
        # checked, so the batch is assembled as is; SpanBatch.build would re-check each row.
        halves = np.frombuffer(trace_bytes, dtype=">u8").reshape(n, 2)
        return SpanBatch(
            names=names, start=start, duration=duration, status=status, kind=kind,
            services=services, trace_hi=halves[:, 0].astype(np.uint64),
            trace_lo=halves[:, 1].astype(np.uint64), span_id=span_id,
            parent_span_id=parent_id, attributes=attributes, resources=resources,
        )  # fmt: skip
    return SpanBatch.build(
        names,
        start,
        duration,
        status=status,
        kind=kind,
        service=services,
        trace_id=np.frombuffer(trace_bytes, dtype=np.uint8).reshape(n, 16),
        span_id=span_id,
        parent_span_id=parent_id,
        attributes=attributes,
        resource=resources,
    )
