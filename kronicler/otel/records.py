"""Fast-pipeline call records -> one :class:`SpanBatch` (pure, vectorised).

The decorator leaves two kinds of record in memory:

* a *compact* record: six integers ``site, t0, t1, seq, root, parent_seq`` appended to one
  flat list of ints (``list.extend`` of a 6-tuple, atomic under the GIL), for the common call:
  nothing changed on its span and its trace began in this process. ``t0`` and ``t1`` are
  ``perf_counter_ns`` readings at the start and the end (the duration is one numpy subtraction
  here rather than one Python subtraction per call); ids are ``seq`` numbers (see
  :mod:`kronicler.otel.ids`). A flat
  list of ints costs the garbage collector nothing (a list of tuples would be scanned), and
  converts to numpy at ~85 ns a record;
* a *full* record :class:`FullRecord` for everything else (errors, attributes set during the
  call, a renamed span, a trace that began elsewhere), with explicit ids.

The flat list is a :class:`ListRecords`; where the optional C fast path is built
(:mod:`kronicler.otel._fastcall`) the buffer is its ``Records`` instead: the same six integers per
record kept as C int64s, taken as ``bytes`` and read with ``np.frombuffer`` (no Python int per
record is ever made: ``np.fromiter`` costs ~230 instructions an int, ~1,400 a record). Both offer
the same few methods (:class:`RecordBuffer`).

Compact records are turned into columns in one pass (``np.fromiter`` over the flat list, or
``np.frombuffer`` over taken bytes) and the ids are derived with vectorised arithmetic. Text is
not spelt out per row: the result is a :class:`~kronicler.db.site_batch.SiteBatch` whose rows
point into the call-site table, and the segment writer dictionary-codes each site once. Full records are rare and converted one by one.

Both kinds store exactly what :func:`kronicler.otel.rows.spans_to_batch` stores for the same
call made through the OpenTelemetry SDK: the row contract of :mod:`kronicler.otel.contract`.
The decorator applies its exception and status rules when it ends a span (a full record carries
the resulting attribute set); an empty service name is stored as ``unknown_service``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from kronicler.db.schema import SpanBatch
from kronicler.db.site_batch import SiteBatch
from kronicler.otel import ids
from kronicler.otel.contract import DEFAULT_SERVICE, attributes_text

_M64 = (1 << 64) - 1
COMPACT_WIDTH = 6  # ints per compact record


class RecordBuffer(Protocol):
    """The compact-record buffer: appended to by application threads, taken from by the writer.

    Each method is one atomic step under the GIL, so a take never loses or repeats a record
    appended concurrently.
    """

    @property
    def lost(self) -> int:
        """Records that could not be kept (no memory); counted as dropped."""

    def extend(self, values: Sequence[int], /) -> None:
        """Append records given as a flat sequence, ``COMPACT_WIDTH`` ints each."""

    def take(self, n: int, /) -> Sequence[int] | bytes:
        """Remove and return the oldest ``n`` records (flat ints, or native int64 bytes)."""

    def drop(self, n: int, /) -> int:
        """Remove the oldest ``n`` records; how many were removed."""

    def clear(self) -> None:
        """Remove every record."""

    def pending(self) -> int:
        """Records held now."""


class ListRecords(list[int]):
    """The pure-Python buffer: a flat list of ints (``extend`` is ``list.extend``, ~50 ns)."""

    __slots__ = ()
    lost = 0  # a list either takes the record or raises MemoryError in the caller's try

    def take(self, n: int, /) -> list[int]:
        k = n * COMPACT_WIDTH
        out = self[:k]
        del self[:k]  # rows[:k] then del rows[:k]: appends racing with this are kept
        return out

    def drop(self, n: int, /) -> int:
        n = min(n, len(self) // COMPACT_WIDTH)
        del self[: n * COMPACT_WIDTH]
        return n

    def pending(self) -> int:
        return len(self) // COMPACT_WIDTH


@dataclass(frozen=True, slots=True)
class Site:
    """One decorated function as stored: span name, kind, attributes and their canonical text."""

    name: str
    kind: int
    attributes: Mapping[str, Any]
    attributes_text: str


class FullRecord(NamedTuple):
    """A call stored with explicit ids and its own attribute set."""

    site: int
    t0: int  # perf_counter_ns at the start
    duration: int
    trace_id: int
    span_id: int
    parent_span_id: int
    status: int
    attributes: Mapping[str, Any] | None  # merged attributes; None = the site's own
    name: str | None  # None = the site's own name


def records_to_site_batch(
    compact: Sequence[int] | bytes,
    full: Sequence[FullRecord],
    sites: Sequence[Site],
    *,
    service: str,
    clock_offset: int,
    resource: str = "",
) -> SiteBatch:
    """Columns for ``compact`` (flat, 6 ints a record, or their native int64 bytes) then
    ``full`` records, text by site.

    ``start = t0 + clock_offset``.
    ``clock_offset`` is ``time_ns() - perf_counter_ns()`` taken when the batch is made, so
    starts are wall-clock Unix nanoseconds while durations stay monotonic. ``service`` is stored
    on every row (``unknown_service`` when empty), and so is ``resource`` (the canonical text of
    the pipeline's resource, :func:`kronicler.otel.contract.process_resource`). Rows refer to the call-site table by index;
    a full record with its own name or attribute set gets a table entry of its own, so no text
    is made per row (the writer codes each entry once).
    """
    service = service or DEFAULT_SERVICE
    if isinstance(compact, bytes):
        if len(compact) % (8 * COMPACT_WIDTH):
            raise ValueError(f"compact records must hold 6 int64s each, got {len(compact)} bytes")
        flat = np.frombuffer(compact, dtype=np.int64)
    else:
        if len(compact) % COMPACT_WIDTH:
            raise ValueError(f"compact records must hold 6 ints each, got {len(compact)} ints")
        flat = np.fromiter(compact, dtype=np.int64, count=len(compact))
    n = len(flat) // COMPACT_WIDTH
    table = flat.reshape(n, COMPACT_WIDTH)
    site_idx = table[:, 0]
    seqs = table[:, 3].astype(np.uint64)
    trace_hi, trace_lo = ids.trace_halves(table[:, 4].astype(np.uint64))
    names: list[str] = [s.name for s in sites]
    texts: list[str] = [s.attributes_text for s in sites]
    kinds_of = np.array([s.kind for s in sites], dtype=np.uint8)

    start = table[:, 1] + np.int64(clock_offset)
    duration = table[:, 2] - table[:, 1]
    status = np.zeros(n, dtype=np.uint8)
    kind = kinds_of[site_idx]
    span_id = ids.span_ids(seqs)
    parent_seqs = table[:, 5].astype(np.uint64)
    # Top-level calls have no parent (0 stays 0): a batch of them skips the id mix.
    parent = ids.span_ids(parent_seqs) if parent_seqs.any() else parent_seqs

    if full:
        m = len(full)
        f_site = np.fromiter((r.site for r in full), dtype=np.int64, count=m)
        f_entry = f_site.copy()
        for j, r in enumerate(full):
            if r.name is not None or r.attributes is not None:
                site = sites[r.site]
                f_entry[j] = len(names)
                names.append(site.name if r.name is None else r.name)
                texts.append(
                    site.attributes_text if r.attributes is None
                    else attributes_text(r.attributes)
                )  # fmt: skip
        site_idx = np.concatenate([site_idx, f_entry])
        start = np.concatenate([start, _ints([r.t0 + clock_offset for r in full])])
        duration = np.concatenate([duration, _ints([r.duration for r in full])])
        status = np.concatenate([status, np.array([r.status for r in full], dtype=np.uint8)])
        kind = np.concatenate([kind, kinds_of[f_site]])
        trace_hi = np.concatenate([trace_hi, _u64([r.trace_id >> 64 for r in full])])
        trace_lo = np.concatenate([trace_lo, _u64([r.trace_id & _M64 for r in full])])
        span_id = np.concatenate([span_id, _u64([r.span_id for r in full])])
        parent = np.concatenate([parent, _u64([r.parent_span_id for r in full])])

    # Every column above is already of the storage dtype and checked by construction.
    return SiteBatch(
        site=np.ascontiguousarray(site_idx, dtype=np.int64),
        names=names,
        attributes=texts,
        service=service,
        resource=resource,
        start=np.ascontiguousarray(start, dtype=np.int64),
        duration=np.ascontiguousarray(duration, dtype=np.int64),
        status=status,
        kind=np.ascontiguousarray(kind, dtype=np.uint8),
        trace_hi=np.ascontiguousarray(trace_hi, dtype=np.uint64),
        trace_lo=np.ascontiguousarray(trace_lo, dtype=np.uint64),
        span_id=np.ascontiguousarray(span_id, dtype=np.uint64),
        parent_span_id=np.ascontiguousarray(parent, dtype=np.uint64),
    )


def records_to_batch(
    compact: Sequence[int] | bytes,
    full: Sequence[FullRecord],
    sites: Sequence[Site],
    *,
    service: str,
    clock_offset: int,
    resource: str = "",
) -> SpanBatch:
    """:func:`records_to_site_batch` with the text spelt out per row (the row contract's form)."""
    return records_to_site_batch(
        compact, full, sites, service=service, clock_offset=clock_offset, resource=resource
    ).to_span_batch()


def _ints(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _u64(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)
