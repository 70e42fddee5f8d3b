"""Fast-pipeline records -> SpanBatch: the directly built batch equals a validated one."""

from __future__ import annotations

import dataclasses

import numpy as np

from kronicler.db.schema import SpanBatch, canonical_attributes
from kronicler.otel import ids
from kronicler.otel.contract import row_attributes
from kronicler.otel.records import FullRecord, Site, records_to_batch, records_to_site_batch

SITES = [
    Site(
        "app.a",
        0,
        {"code.function.name": "app.a"},
        canonical_attributes({"code.function.name": "app.a"}),
    ),
    Site("app.b", 2, {}, ""),
]


def _fields(batch: SpanBatch) -> dict:
    return {
        name: (value.tolist() if isinstance(value, np.ndarray) else list(value))
        for name, value in (
            (f, getattr(batch, f)) for f in (x.name for x in dataclasses.fields(SpanBatch))
        )
    }


def test_compact_and_full_records_match_a_validated_batch() -> None:
    root, child = 1000, 1001
    compact = [0, 50, 57, root, root, 0, 1, 60, 63, child, root, root]  # (site, t0, t1, ...)
    exc = row_attributes(SITES[1].attributes, exception=("ValueError", "bad"))
    full = [
        FullRecord(1, 70, 9, (5 << 64) | 6, 77, 88, 2, exc, None),
        FullRecord(0, 80, 1, 1, 2, 0, 0, None, "renamed"),
    ]
    batch = records_to_batch(compact, full, SITES, service="svc", clock_offset=1_000)
    expected = SpanBatch.build(
        ["app.a", "app.b", "app.b", "renamed"],
        [1050, 1060, 1070, 1080],
        [7, 3, 9, 1],
        status=[0, 0, 2, 0],
        kind=[0, 2, 2, 0],
        service="svc",
        trace_id=[ids.trace_id(root), ids.trace_id(root), (5 << 64) | 6, 1],
        span_id=[ids.span_id(root), ids.span_id(child), 77, 2],
        parent_span_id=[0, ids.span_id(root), 88, 0],
        attributes=[SITES[0].attributes, None, exc, SITES[0].attributes],
    )
    assert _fields(batch) == _fields(expected)
    for name in ("start", "duration", "status", "kind", "trace_hi", "trace_lo", "span_id",
                 "parent_span_id"):  # fmt: skip
        assert getattr(batch, name).dtype == getattr(expected, name).dtype, name


def test_empty_input_gives_an_empty_batch() -> None:
    batch = records_to_batch([], [], SITES, service="svc", clock_offset=0)
    assert len(batch) == 0


def test_site_batch_points_rows_at_sites_and_gives_own_text_its_own_entry() -> None:
    root = 1000
    compact = [1, 50, 57, root, root, 0, 0, 60, 63, root + 1, root, root]
    full = [
        FullRecord(1, 70, 9, 1, 2, 0, 2, None, None),  # the site's own text: no new entry
        FullRecord(0, 80, 1, 1, 3, 0, 0, None, "renamed"),
        FullRecord(1, 90, 1, 1, 4, 0, 0, {"x": 1}, None),
    ]
    batch = records_to_site_batch(compact, full, SITES, service="", clock_offset=0)
    assert batch.site.tolist() == [1, 0, 1, 2, 3]
    assert list(batch.names) == ["app.a", "app.b", "renamed", "app.b"]
    assert list(batch.attributes)[2:] == [SITES[0].attributes_text, canonical_attributes({"x": 1})]
    assert batch.service == "unknown_service"
    assert batch.kind.tolist() == [2, 0, 2, 0, 2]
