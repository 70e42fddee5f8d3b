"""Where each field of many OTLP ``Span`` messages lies in their wire bytes, found with numpy.

Reading a field of a upb message from Python costs a Python object per field per span (about
0.5 us each, ten fields a span), which made OTLP conversion cost ~8 us a span. Here the spans of
a request are joined into one byte buffer and walked *in lockstep*: round ``r`` reads the
``r``-th field of every span at once (tag varint, then value: varint, fixed64, fixed32 or
length-delimited), so a request of 10,000 spans costs ~12 rounds of a few dozen numpy
operations over 10,000 positions instead of 120,000 Python reads. The caller then gathers the
fixed-size fields (ids, start/end fixed64, kind) with numpy and slices the few text fields.

Trade-offs and limits:
- The bytes must already have been parsed by upb (:func:`kronicler.otel.otlp_rows.parse_request`):
  the scan trusts the structure (tags, lengths and varints end where upb said they do) and does
  not validate anything itself.
- Only the layout every OTLP exporter writes is taken here. A span is sent to the caller's
  per-span parser (``slow``), which has upb's exact semantics, when it has a group or unknown
  wire type, a field number past 2047, a known field with an unexpected wire type, a second
  ``status`` (upb merges them), a tag rarer than the :data:`MAX_GROUPS` most common at its
  round, or more than :data:`MAX_ROUNDS` fields. That bounds the scan's cost at ``MAX_ROUNDS``
  rounds of at most ``MAX_GROUPS`` groups whatever the request holds. A later copy of a scalar
  or bytes field wins, as in upb.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ROUNDS = 48  # fields read per span by the scan; a span with more is parsed on its own
MAX_GROUPS = 8  # distinct tags read per round; spans at rarer tags are parsed on their own
OTHER = 17  # row of the field tables for field numbers beyond Span's
PAD = 16  # zero bytes the caller appends to the buffer, so fixed-width gathers stay in bounds
NAME, KIND, START, END, ATTRIBUTES, EVENTS, STATUS = 5, 6, 7, 8, 9, 11, 15

# wire type of each Span field (trace.proto); -1 = not a Span field
_WIRE = np.full(OTHER + 1, -1, dtype=np.int64)
_WIRE[1:17] = [2, 2, 2, 2, 2, 0, 1, 1, 2, 0, 2, 0, 2, 0, 2, 5]
_TEN = np.arange(10, dtype=np.int64)
_SHIFTS = (7 * _TEN).astype(np.uint64)


@dataclass(frozen=True, slots=True)
class SpanFields:
    """Per span (columns) and per field number (rows 0..OTHER) of one scan.

    Fields:
        offset: where the field's (last) value starts in the buffer (0 when absent).
        size: its length in bytes (0 when absent).
        kind: the ``kind`` varint (uint64; 0 when absent).
        events: whether the span has events.
        attrs_start, attrs_end: from the first ``attributes`` record (its tag) to the end of
            the last (``start == end`` when the span has none). Read as a ``Span``, these bytes
            hold the span's attributes in order, and maybe other whole fields between them.
        slow: spans the scan did not finish or cannot vouch for (see the module docstring).
    """

    offset: np.ndarray
    size: np.ndarray
    kind: np.ndarray
    events: np.ndarray
    attrs_start: np.ndarray
    attrs_end: np.ndarray
    slow: np.ndarray


def varints(data: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray | int]:
    """``(value, byte length)`` of the varint at each position of ``data`` (uint8, padded);
    the length is the int 1 when every varint is one byte (the usual case)."""
    first = data[at]
    if not len(at) or np.maximum.reduce(first) < 0x80:
        return first.astype(np.uint64), 1
    raw = data[at[:, None] + _TEN]
    length = np.argmin(raw >= 0x80, axis=1) + 1  # upb checked that each ends within 10 bytes
    parts = (raw & 0x7F).astype(np.uint64) << _SHIFTS
    parts[_TEN[None, :] >= length[:, None]] = 0
    return np.bitwise_or.reduce(parts, axis=1), length


def scan_spans(data: np.ndarray, start: np.ndarray, end: np.ndarray) -> SpanFields:
    """Scan the spans at ``data[start[i]:end[i]]`` (``data``: uint8 with :data:`PAD` zero bytes
    after the last span).

    Each round groups the spans by the tag they are at (one to three tags in practice: every
    span of an exporter writes its fields in the same order), so a group's wire type is known
    and its values are read with a few whole-array operations; spans in groups beyond
    :data:`MAX_GROUPS` of a round are left to the per-span parser, which bounds the cost.
    """
    n = len(start)
    f = _Scan(n)
    pos = np.array(start, dtype=np.int64)
    live = np.flatnonzero(pos < end)
    for _ in range(MAX_ROUNDS):
        if not live.size:
            break
        # while every span is live, whole columns are read and written (cheaper than indexing)
        spans: np.ndarray | slice = slice(None) if len(live) == n else live
        at = pos[spans].copy()
        tag: np.ndarray = data[at]
        tag_len: np.ndarray | int = 1
        if np.maximum.reduce(tag) >= 0x80:  # a two-byte tag (fields 16-2047; Span.flags is 16)
            wide = tag >= 0x80
            second = data[at + 1].astype(np.int64)
            tag = np.where(wide, (tag & 0x7F) | (second << 7), tag)
            tag_len = 1 + wide
            f.slow[live[wide & (second >= 0x80)]] = True  # a field number past 2047
        counts = np.bincount(tag)
        kinds = counts.nonzero()[0]
        if len(kinds) == 1:
            t = int(kinds[0])
            f.read(data, spans, at + tag_len, t >> 3, t & 7, pos)
        else:
            if len(kinds) > MAX_GROUPS:  # keep the biggest groups; the others go slow
                kinds = kinds[np.argsort(counts[kinds])[-MAX_GROUPS:]]
                f.slow[live[~np.isin(tag, kinds)]] = True
            value_at = at + tag_len
            for t in kinds.tolist():
                pick = (tag == t).nonzero()[0]
                f.read(data, live[pick], value_at[pick], t >> 3, t & 7, pos)
        going = pos[spans] < end[spans]
        if f.any_slow:
            going &= ~f.slow[spans]
        if not np.logical_and.reduce(going):
            live = live[going]
    f.slow[live] = True  # more fields than rounds
    return f.result()


class _Scan:
    """The field tables of :func:`scan_spans` while it runs."""

    def __init__(self, n: int) -> None:
        self.offset = np.zeros((OTHER + 1, n), dtype=np.int64)
        self.size = np.zeros((OTHER + 1, n), dtype=np.int64)
        self.kind = np.zeros(n, dtype=np.uint64)
        self.events = np.zeros(n, dtype=bool)
        self.attrs_start = np.full(n, -1, dtype=np.int64)
        self.attrs_end = np.zeros(n, dtype=np.int64)
        self.slow = np.zeros(n, dtype=bool)
        self.any_slow = False

    def read(
        self, data: np.ndarray, spans: np.ndarray | slice, at: np.ndarray, field: int,
        wire: int, pos: np.ndarray,
    ) -> None:  # fmt: skip
        """Record one field (number ``field``, wire type ``wire``) of ``spans``, whose values
        start at ``at``; move ``pos`` past it."""
        row = min(field, OTHER)
        if wire not in (0, 1, 2, 5) or _WIRE[row] not in (-1, wire):
            self.slow[spans] = self.any_slow = True  # a group, or a known field of another type
            return
        if row == STATUS:  # a second status: upb merges the two
            again = self.size[STATUS, spans] > 0
            if again.any():
                self.slow[spans] |= again
                self.any_slow = True
        if wire == 0:
            value, width = varints(data, at)
            if row == KIND:
                self.kind[spans] = value
            nxt = at + width
        elif wire == 2:
            length, width = varints(data, at)
            at = at + width
            nxt = at + length.astype(np.int64)
        else:
            nxt = at + (8 if wire == 1 else 4)
        if row == ATTRIBUTES:
            opened = self.attrs_start[spans]
            self.attrs_start[spans] = np.where(opened < 0, pos[spans], opened)
            self.attrs_end[spans] = nxt
        elif row == EVENTS:
            self.events[spans] = True
        self.offset[row, spans] = at
        self.size[row, spans] = nxt - at
        pos[spans] = nxt

    def result(self) -> SpanFields:
        slow = self.slow
        has_attrs = (self.attrs_start >= 0) & ~slow
        attrs_start = np.where(has_attrs, self.attrs_start, 0)
        attrs_end = np.where(has_attrs, self.attrs_end, 0)
        if slow.any():  # the per-span parser fills these in; nothing here is to be trusted
            self.offset[:, slow] = 0
            self.size[:, slow] = 0
            self.kind[slow] = 0
            self.events[slow] = False
        return SpanFields(self.offset, self.size, self.kind, self.events, attrs_start,
                          attrs_end, slow)  # fmt: skip


def gather(data: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes at each position, as a C-contiguous (n, width) uint8 array."""
    return data[at[:, None] + np.arange(width, dtype=np.int64)]
