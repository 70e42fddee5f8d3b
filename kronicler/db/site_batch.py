"""Rows whose text columns come from a small table of call sites: coded once per site, not per row.

The capture path knows, for every call, which decorated function (call site) made it. Turning that
index into a name and an attribute text per row, only for the segment writer to turn each text back
into a dictionary code, cost two Python-level passes per row. A :class:`SiteBatch` keeps the index
instead: row ``i`` has name ``names[site[i]]``, attribute set ``attributes[site[i]]`` and the
batch's one ``service`` and ``resource``. The writer codes each table entry used by the batch once
(:meth:`kronicler.db.dictionary.Dictionary.encode_indexed`) and gathers the row codes with one
numpy fancy index, so text costs O(sites) per batch and nothing per row.

Trade-off: the tables travel with every batch (a few hundred short strings, shared by reference,
not copied), and a call with its own name or attribute set (an error, an attribute set during the
call) takes a table entry of its own; such calls are rare on the capture path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kronicler._record import record
from kronicler.db.schema import SpanBatch

_ROW_COLUMNS = ("site", "start", "duration", "status", "kind", "trace_hi", "trace_lo", "span_id",
                "parent_span_id")  # fmt: skip


@record
class SiteBatch:
    """Columns of rows plus per-site text tables (see the module docstring).

    Fields:
        site: int64 index of each row's entry in ``names`` / ``attributes``.
        names: span name per table entry.
        attributes: canonical attribute text per table entry (same length as ``names``).
        service: the service name of every row.
        resource: the canonical resource attribute text of every row (the pipeline's resource).
        start, duration, status, kind, trace_hi, trace_lo, span_id, parent_span_id: one value
            per row, of the storage dtypes of :class:`kronicler.db.schema.SpanBatch`.
    """

    site: np.ndarray
    names: Sequence[str]
    attributes: Sequence[str]
    service: str
    resource: str
    start: np.ndarray
    duration: np.ndarray
    status: np.ndarray
    kind: np.ndarray
    trace_hi: np.ndarray
    trace_lo: np.ndarray
    span_id: np.ndarray
    parent_span_id: np.ndarray

    def __post_init__(self) -> None:
        if len(self.names) != len(self.attributes):
            raise ValueError(
                f"names and attributes tables differ in length: "
                f"{len(self.names)} != {len(self.attributes)}"
            )
        n = len(self.site)
        for column in _ROW_COLUMNS[1:]:
            if len(getattr(self, column)) != n:
                raise ValueError(f"column {column} has {len(getattr(self, column))} rows, not {n}")
        if n and (int(self.site.min()) < 0 or int(self.site.max()) >= len(self.names)):
            raise ValueError(f"site indexes outside the table of {len(self.names)} entries")

    def __len__(self) -> int:
        return len(self.site)

    def split(self, at: int) -> tuple[SiteBatch, SiteBatch]:
        """Rows ``[:at]`` and ``[at:]``, sharing the text tables."""
        head = {c: getattr(self, c)[:at] for c in _ROW_COLUMNS}
        tail = {c: getattr(self, c)[at:] for c in _ROW_COLUMNS}
        return self._with(head), self._with(tail)

    def _with(self, rows: dict[str, np.ndarray]) -> SiteBatch:
        return SiteBatch(names=self.names, attributes=self.attributes, service=self.service,
                         resource=self.resource, **rows)  # fmt: skip

    def to_span_batch(self) -> SpanBatch:
        """The same rows with their text spelt out per row (for comparison and other writers)."""
        idx = self.site
        names = np.array(list(self.names) or [""], dtype=object)[idx].tolist()
        attributes = np.array(list(self.attributes) or [""], dtype=object)[idx].tolist()
        return SpanBatch(
            names=names,
            start=self.start,
            duration=self.duration,
            status=self.status,
            kind=self.kind,
            services=[self.service] * len(self),
            trace_hi=self.trace_hi,
            trace_lo=self.trace_lo,
            span_id=self.span_id,
            parent_span_id=self.parent_span_id,
            attributes=attributes,
            resources=[self.resource] * len(self),
        )
