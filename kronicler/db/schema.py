"""The span table: its columns, and the validated columnar batch that every writer hands over.

Every road into the database (the decorator's pipeline, the OTel exporter, the OTLP receiver,
``Database.append``) produces one :class:`SpanBatch`: plain numpy arrays of equal length, checked
once here. Validation is all-or-nothing, so a bad batch stores nothing and a good one needs no
further checks downstream.

Ids follow OpenTelemetry: a trace id is a 128-bit integer (kept as two uint64 halves), a span id
a 64-bit integer, and 0 means "no id" (a root span has parent span id 0). Every id column takes
either form: integers (a sequence, or for span ids a 1-D integer array), or bytes (a sequence of
``bytes``, or an ``(n, 16)`` / ``(n, 8)`` uint8 array), bytes read big-endian as OTel and OTLP do.

Resource attributes (``service.version``, ``host.name``, ...) are stored per row as the code of
the row's canonical resource attribute set, like span attributes: a process or an OTLP request
has one resource, so the column costs about nothing. Columns added after the first schema version
(:data:`LATER_COLUMNS`) may be missing from older segments; they read as code 0, which every
segment's dictionary defines as ``""`` (no resource).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kronicler._record import record

#: Version 2 added the ``resource`` column; version 1 databases are read (the column reads as
#: "no resource") and upgraded when opened for writing.
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)

# Status codes and span kinds are stored as the OpenTelemetry Python API enum values. Every API
# that returns a kind gives OTLP's numbering (0 unspecified, 1 internal, 2 server, ...):
# :func:`otlp_kind` converts at that edge.
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = 0, 1, 2, 3, 4
#: Span kind names by stored value (OTLP's names without the ``SPAN_KIND_`` prefix).
KIND_NAMES = ("INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")

#: Physical columns in storage order, with their numpy dtype.
#: ``name``, ``service``, ``attributes`` and ``resource`` hold dictionary codes. New columns go
#: at the end (a column's id is its position) and into :data:`LATER_COLUMNS`.
COLUMNS: dict[str, np.dtype[Any]] = {
    "name": np.dtype(np.uint32),
    "start": np.dtype(np.int64),
    "duration": np.dtype(np.int64),
    "status": np.dtype(np.uint8),
    "kind": np.dtype(np.uint8),
    "service": np.dtype(np.uint32),
    "trace_hi": np.dtype(np.uint64),
    "trace_lo": np.dtype(np.uint64),
    "span_id": np.dtype(np.uint64),
    "parent_span_id": np.dtype(np.uint64),
    "attributes": np.dtype(np.uint32),
    "resource": np.dtype(np.uint32),
}
COLUMN_IDS: dict[str, int] = {name: i for i, name in enumerate(COLUMNS)}
#: The columns of dictionary codes, each with its own dictionary per segment.
TEXT_COLUMNS = ("name", "service", "attributes", "resource")
#: Columns that segments (chunks, log records) written by an older schema lack: they read as
#: code 0, which each segment's dictionary of that column defines as the empty text.
LATER_COLUMNS = ("resource",)

#: Names accepted as optional keyword columns by ``Database.append``.
OPTIONAL_COLUMNS = (
    "status",
    "kind",
    "service",
    "trace_id",
    "span_id",
    "parent_span_id",
    "attributes",
    "resource",
)

_U64_MASK = (1 << 64) - 1


def canonical_attributes(attrs: Mapping[str, Any] | None) -> str:
    """A stable text form of an attribute set; equal sets give equal text (the dictionary key)."""
    if not attrs:
        return ""
    items = {}
    for key, value in attrs.items():
        if not isinstance(key, str):
            raise ValueError(f"attribute key must be text, got {key!r}")
        if isinstance(value, (tuple, list)):
            value = list(value)
        elif not isinstance(value, (str, bool, int, float)) and value is not None:
            value = str(value)
        items[key] = value
    return json.dumps(items, sort_keys=True, separators=(",", ":"), default=str)


def parse_attributes(text: str) -> dict[str, Any]:
    """Inverse of :func:`canonical_attributes` (also of a resource's canonical text)."""
    return json.loads(text) if text else {}


def otlp_kind(kind: int) -> int:
    """A stored (OTel Python) span kind in OTLP's numbering, which every API returns."""
    return int(kind) + 1


def stored_kind(otlp: np.ndarray) -> np.ndarray:
    """OTLP span kinds as stored (uint8; ``SPAN_KIND_UNSPECIFIED`` counts as internal)."""
    return np.maximum(np.asarray(otlp, dtype=np.int64) - 1, 0).astype(np.uint8)


@record
class SpanBatch:
    """A validated batch of span rows, column by column.

    Fields:
        names: span/function name per row (text).
        start: start time, Unix epoch nanoseconds (int64).
        duration: duration in nanoseconds (int64, >= 0).
        status: OTel status code per row (uint8: 0 unset, 1 ok, 2 error).
        kind: OTel span kind per row (uint8).
        services: service name per row (text); ``""`` when unknown.
        trace_hi, trace_lo: high and low 64 bits of the 128-bit trace id (0, 0 = none).
        span_id, parent_span_id: 64-bit ids (0 = none).
        attributes: canonical attribute-set text per row (``""`` = no attributes).
        resources: canonical resource attribute-set text per row (``""`` = none known).
    """

    names: list[str]
    start: np.ndarray
    duration: np.ndarray
    status: np.ndarray
    kind: np.ndarray
    services: list[str]
    trace_hi: np.ndarray
    trace_lo: np.ndarray
    span_id: np.ndarray
    parent_span_id: np.ndarray
    attributes: list[str]
    resources: list[str]

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def build(
        cls,
        names: Sequence[str] | np.ndarray,
        start_unix_nano: Sequence[int] | np.ndarray,
        duration_ns: Sequence[int] | np.ndarray,
        *,
        status: Sequence[int] | np.ndarray | int | None = None,
        kind: Sequence[int] | np.ndarray | int | None = None,
        service: Sequence[str] | str | None = None,
        trace_id: Sequence[int | bytes] | np.ndarray | None = None,
        span_id: Sequence[int | bytes] | np.ndarray | None = None,
        parent_span_id: Sequence[int | bytes | None] | np.ndarray | None = None,
        attributes: Sequence[Mapping[str, Any] | str | None] | Mapping[str, Any] | None = None,
        resource: Sequence[Mapping[str, Any] | str | None] | Mapping[str, Any] | None = None,
    ) -> SpanBatch:
        """Check and normalise one batch; raises ``ValueError`` naming the first problem."""
        name_list = _text_column("names", names)
        n = len(name_list)
        start = _int_column("start_unix_nano", start_unix_nano, n)
        duration = _int_column("duration_ns", duration_ns, n)
        if n and int(duration.min()) < 0:
            bad = int(duration[np.argmin(duration)])
            raise ValueError(f"duration_ns must be >= 0, got {bad}")
        status_arr = _small_column("status", status, n, STATUS_UNSET, 2)
        kind_arr = _small_column("kind", kind, n, KIND_INTERNAL, 4)
        if service is None or isinstance(service, str):
            services = [service or ""] * n
        else:
            services = _text_column("service", service)
            _check_len("service", len(services), n)
        trace_hi, trace_lo = _trace_column(trace_id, n)
        span = _id64_column("span_id", span_id, n)
        parent = _id64_column("parent_span_id", parent_span_id, n)
        attrs = _attributes_column("attributes", attributes, n)
        resources = _attributes_column("resource", resource, n)
        return cls(
            name_list, start, duration, status_arr, kind_arr, services,
            trace_hi, trace_lo, span, parent, attrs, resources,
        )  # fmt: skip


def _constant(value: int, n: int, dtype: type) -> np.ndarray:
    """A read-only length-n array of one value that takes no memory per row (zero stride)."""
    return np.broadcast_to(np.array(value, dtype=dtype), (n,))


def _check_len(what: str, got: int, n: int) -> None:
    if got != n:
        raise ValueError(f"{what} has {got} values but names has {n}")


def _text_column(what: str, values: Sequence[str] | np.ndarray | str) -> list[str]:
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of text, got a single value {values!r}")
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "U":
            return list(values.tolist())
        if values.dtype.kind != "O":
            raise ValueError(f"{what} must hold text, got an array of dtype {values.dtype}")
        values = values.tolist()
    try:
        out = list(values)
    except TypeError:
        raise ValueError(f"{what} must be a sequence of text, got {values!r}") from None
    for v in out:
        if type(v) is not str:  # the common case costs one identity test per row
            if isinstance(v, str):
                continue
            raise ValueError(f"{what} must hold text, got {v!r}")
    return out


def _int_column(what: str, values: Any, n: int) -> np.ndarray:
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iu":
            raise ValueError(f"{what} must be integers, got an array of dtype {values.dtype}")
        arr = values
    else:
        try:
            arr = np.asarray(values)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{what} must be integers: {exc}") from None
        if arr.size and arr.dtype.kind not in "iu":
            raise ValueError(f"{what} must be integers, got values of dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    _check_len(what, len(arr), n)
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{what} value {int(arr.max())} does not fit in int64")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _small_column(what: str, values: Any, n: int, default: int, top: int) -> np.ndarray:
    if values is None:
        return _constant(default, n, np.uint8)
    if isinstance(values, (int, np.integer)) and not isinstance(values, (bool, np.bool_)):
        values = np.full(n, int(values))
    elif isinstance(values, (str, bytes, float, bool)) or not hasattr(values, "__len__"):
        raise ValueError(f"{what} must be an int or a sequence of ints, got {values!r}")
    arr = _int_column(what, values, n)
    if n and (int(arr.min()) < 0 or int(arr.max()) > top):
        bad = arr[(arr < 0) | (arr > top)][0]
        raise ValueError(f"{what} must be between 0 and {top}, got {int(bad)}")
    return arr.astype(np.uint8)


def _as_int_id(what: str, v: Any, bits: int) -> int:
    if v is None:
        return 0
    if isinstance(v, (bytes, bytearray)):
        if len(v) != bits // 8:
            raise ValueError(f"{what} must be {bits // 8} bytes, got {len(v)} bytes")
        return int.from_bytes(v, "big")
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        iv = int(v)
        if iv < 0 or iv >> bits:
            raise ValueError(f"{what} must fit in {bits} unsigned bits, got {iv}")
        return iv
    raise ValueError(f"{what} must be an int or {bits // 8} bytes, got {v!r}")


def _id64_column(what: str, values: Any, n: int) -> np.ndarray:
    if values is None:
        return _constant(0, n, np.uint64)
    if isinstance(values, np.ndarray) and values.dtype == np.uint8 and values.ndim == 2:
        if values.shape[1] != 8:
            raise ValueError(f"{what} must be 8 bytes per row, got shape {values.shape}")
        _check_len(what, len(values), n)
        # Big-endian, like the (n, 16) form of trace_id and OTel's byte ids.
        return np.ascontiguousarray(values).view(">u8")[:, 0].astype(np.uint64)
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu" and values.ndim == 1:
        _check_len(what, len(values), n)
        if values.dtype.kind == "i" and values.size and int(values.min()) < 0:
            raise ValueError(f"{what} must be non-negative, got {int(values.min())}")
        return np.ascontiguousarray(values, dtype=np.uint64)
    ids = [_as_int_id(what, v, 64) for v in values]
    _check_len(what, len(ids), n)
    return np.array(ids, dtype=np.uint64)


def _trace_column(values: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    if values is None:
        return _constant(0, n, np.uint64), _constant(0, n, np.uint64)
    if isinstance(values, np.ndarray) and values.dtype == np.uint8 and values.ndim == 2:
        if values.shape[1] != 16:
            raise ValueError(f"trace_id must be 16 bytes per row, got shape {values.shape}")
        _check_len("trace_id", len(values), n)
        halves = np.ascontiguousarray(values).view(">u8").astype(np.uint64)
        return np.ascontiguousarray(halves[:, 0]), np.ascontiguousarray(halves[:, 1])
    ids = [_as_int_id("trace_id", v, 128) for v in values]
    _check_len("trace_id", len(ids), n)
    hi = np.array([i >> 64 for i in ids], dtype=np.uint64)
    lo = np.array([i & _U64_MASK for i in ids], dtype=np.uint64)
    return hi, lo


def _attributes_from_json(what: str, text: str) -> str:
    if not text:
        return ""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(f"{what} given as text must be a JSON object, got {text!r}")
    return canonical_attributes(parsed)


def _attributes_column(what: str, values: Any, n: int) -> list[str]:
    """Canonical attribute-set text per row (span attributes, or a resource's attributes)."""
    if values is None:
        return [""] * n
    if isinstance(values, Mapping):
        return [canonical_attributes(values)] * n
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{what} must be a mapping or a sequence of mappings, got {values!r}")
    out: list[str] = []
    cache: dict[int, str] = {}
    texts: dict[str, str] = {}
    for v in values:
        if v is None:
            out.append("")
        elif isinstance(v, str):  # JSON text of an object, e.g. read back from elsewhere
            text = texts.get(v)
            if text is None:
                text = texts[v] = _attributes_from_json(what, v)
            out.append(text)
        elif isinstance(v, Mapping):
            key = id(v)  # the same dict object is often reused across rows
            text = cache.get(key)
            if text is None:
                text = cache[key] = canonical_attributes(v)
            out.append(text)
        else:
            raise ValueError(f"{what} must be mappings, got {v!r}")
    _check_len(what, len(out), n)
    return out
