"""The frontend's batched merges equal the one-summary-at-a-time definitions they batch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kronicler.db.stats import Stats
from kronicler.db.summary import Summary
from kronicler.errors import CorruptPageError
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.query import summary_table
from kronicler.query.partials import (
    PARTIAL_VERSION,
    SUMMARY_PACKED,
    Cells,
    cell_stats,
    merge_cells,
)
from kronicler.query.summary_table import SummaryTable
from kronicler.server import convert

QS = (0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0)


def _values(rng: np.random.Generator, n: int) -> np.ndarray:
    v = (rng.lognormal(12, 1.5, n)).astype(np.int64)
    v[rng.random(n) < 0.1] = 0  # zeros have no bucket
    v[rng.random(n) < 0.05] = 7  # ties
    return v


@pytest.mark.parametrize("table", [0, 10**6], ids=["sorted", "dense"])
@pytest.mark.parametrize("seed", range(5))
def test_merged_cells_equal_merging_each_cell(
    seed: int, table: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both ways of adding bucket counts: sorting the (cell, key) pairs, and a dense table.
    monkeypatch.setattr(summary_table, "_DENSE_PER_ENTRY", table)
    rng = np.random.default_rng(seed)
    parts: list[Cells] = []
    raw: dict[tuple[str, int], tuple[np.ndarray, int]] = {}
    for _ in range(3):
        keys = tuple(
            sorted(rng.choice(["a", "b", "c", "d"], int(rng.integers(1, 5)), replace=False))
        )
        per_key = 3
        entries = []
        for c in sorted(rng.choice(len(keys) * per_key, int(rng.integers(1, len(keys) * per_key + 1)),
                                   replace=False).tolist()):  # fmt: skip
            v = _values(rng, int(rng.integers(1, 300)))
            if rng.random() < 0.1:
                v[:] = 0  # a cell of only zeros: no buckets at all
            errors = int(rng.integers(0, 5))
            entries.append((c, Summary.from_values(v), errors))
            gid = (keys[c // per_key], c % per_key)
            old = raw.get(gid, (np.empty(0, np.int64), 0))
            raw[gid] = (np.concatenate([old[0], v]), old[1] + errors)
        part = Cells(keys, per_key, SummaryTable.of(entries))
        # Through the wire, alternately as packed columns and as a summary block.
        parts.append(convert.cells_from_proto(convert.cells_to_proto(part, packed=len(parts) != 1)))
    merged = merge_cells(parts)
    entries = _entries(merged.table)
    assert len(entries) == len(raw)
    for c, s, errors in entries:
        values, want_errors = raw[(merged.keys[c // 3], c % 3)]
        want = Summary.from_values(values)
        assert errors == want_errors
        assert (s.count, s.min, s.max, s.zero_count) == (want.count, want.min, want.max,
                                                         want.zero_count)  # fmt: skip
        assert s.keys.tolist() == want.keys.tolist() and s.counts.tolist() == want.counts.tolist()
        assert s.sum == pytest.approx(want.sum, rel=1e-12)
        assert s.m2 == pytest.approx(want.m2, rel=1e-9)
    # Stats rows: the batched quantiles are exactly each summary's own.
    rows = cell_stats(merged, QS, every_cell=True)
    by_id: dict[int, tuple[Summary | None, int]] = {c: (s, e) for c, s, e in entries}
    for c, row in enumerate(rows):
        summary, e = by_id.get(c, (None, 0))
        assert row == Stats.from_summary(summary, e, key=merged.keys[c // 3], quantiles=QS)
        # A quantile not asked for comes from the row's own merged summary.
        assert row.quantile(0.75) == (None if summary is None else summary.quantile(0.75))


def test_batch_quantiles_of_only_zeros_and_single_values() -> None:
    sums = [Summary.from_values([0, 0, 0]), Summary.from_values([5]), Summary.from_values([0, 9])]
    got = summary_table.quantiles(SummaryTable.of([(i, s, 0) for i, s in enumerate(sums)]), QS)
    assert got.tolist() == [s.quantiles(QS) for s in sums]


def _entries(table: SummaryTable) -> list[tuple[int, Summary, int]]:
    return [(c, table.summary(i), int(table.errors[i])) for i, c in enumerate(table.cell.tolist())]


def _packed(cells: Cells) -> pb.PartialCells:
    return convert.cells_to_proto(cells, packed=True)


def test_packed_columns_round_trip_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    big = Summary.from_values(np.full(300, 12_345))  # a count above one byte: wider counts
    sums = [Summary.from_values(_values(rng, 200)), Summary.from_values([0, 0]), big]
    cells = Cells(("a", "b"), 2, SummaryTable.of([(0, sums[0], 3), (1, sums[1], 0), (3, big, 1)]))
    msg = _packed(cells)
    assert msg.HasField("packed") and not msg.summaries and msg.packed.count_width == 2
    back = convert.cells_from_proto(pb.PartialCells.FromString(msg.SerializeToString()))
    got = _entries(back.table)
    assert [(c, e) for c, _, e in got] == [(0, 3), (1, 0), (3, 1)]
    for (_, s, _), want in zip(got, sums, strict=True):
        assert (s.count, s.sum, s.m2, s.min, s.max, s.zero_count) == (
            want.count, want.sum, want.m2, want.min, want.max, want.zero_count)  # fmt: skip
        assert s.keys.tolist() == want.keys.tolist() and s.counts.tolist() == want.counts.tolist()


def _damaged(msg: pb.PartialCells, field: str, raw: bytes) -> pb.PartialCells:
    bad = pb.PartialCells()
    bad.CopyFrom(msg)
    setattr(bad.packed, field, raw)
    return bad


def test_packed_columns_that_do_not_line_up_are_refused() -> None:
    s = Summary.from_values([5, 50, 500])
    msg = _packed(Cells(("a", "b"), 1, SummaryTable.of([(0, s, 0), (1, s, 0)])))
    p = msg.packed
    for field, raw in [
        ("cell", np.array([1, 0], "<u4").tobytes()),  # out of order
        ("cell", np.array([0, 2], "<u4").tobytes()),  # beyond the cells
        ("cell", p.cell[:5]),  # not whole entries
        ("count", np.array([3, 4], "<i8").tobytes()),  # disagrees with its buckets
        ("lengths", np.array([3, 2], "<u4").tobytes()),  # buckets do not add up
        ("keys", p.keys[2:4] + p.keys[:2] + p.keys[4:]),  # unsorted within a cell
        ("errors", p.errors[:8]),  # one entry short
    ]:
        with pytest.raises(CorruptPageError):
            convert.cells_from_proto(_damaged(msg, field, raw))


def test_a_node_answers_each_frontend_in_the_encoding_it_reads(tmp_path: Path) -> None:
    # A frontend of the previous release sends no summary_encoding and reads only the summary
    # block; the current one asks for packed columns. Both decode to the same cells.
    from kronicler.db import Database
    from kronicler.server import partial

    rng = np.random.default_rng(3)
    with Database.open(tmp_path / "db", chunk_rows=64) as db:
        n = 500
        db.append(names=rng.choice(["a", "b", "c"], n).tolist(),
                  start_unix_nano=1_000 + np.arange(n, dtype=np.int64), duration_ns=_values(rng, n),
                  status=rng.choice([0, 2], n).astype(np.uint8))  # fmt: skip
        assert db.flush(30)
        for group_by in ("function", "service"):
            stats = pb.GetStatsRequest(group_by=group_by)
            old = partial.answer(db, pb.PartialRequest(version=PARTIAL_VERSION, stats=stats))
            new = partial.answer(db, pb.PartialRequest(
                version=PARTIAL_VERSION, stats=stats, summary_encoding=SUMMARY_PACKED))  # fmt: skip
            assert old.cells.summaries and not old.cells.HasField("packed")
            assert new.cells.HasField("packed") and not new.cells.summaries
            a, b = (convert.cells_from_proto(r.cells) for r in (old, new))
            assert a.keys == b.keys and len(a.table) == len(b.table) > 0
            for (c1, s1, e1), (c2, s2, e2) in zip(
                _entries(a.table), _entries(b.table), strict=True
            ):
                assert (c1, e1, s1.count, s1.sum, s1.m2, s1.min, s1.max) == (
                    c2, e2, s2.count, s2.sum, s2.m2, s2.min, s2.max)  # fmt: skip
                assert s1.keys.tolist() == s2.keys.tolist()
                assert s1.counts.tolist() == s2.counts.tolist()


def test_the_stats_reply_is_the_one_built_field_by_field() -> None:
    """GetStats replies are built in one constructor call per group: the bytes equal setting
    each field in turn, for a full row, a single call's row and an empty row (absent figures)."""
    rows = [
        Stats.from_summary(Summary.from_values(np.array([5, 900, 70_000])), 1, key="a"),
        Stats.from_summary(Summary.from_values(np.array([1234])), 0, key="b", quantiles=QS),
        Stats.empty("c", QS, errors=2),
        Stats("d", 3, 0, 10.0, None, None, 1.0, 20.0, ((0.5, 9.0), (0.99, None))),
    ]
    for row in rows:
        want = pb.GroupStats(key=row.key, count=row.count, errors=row.errors)
        for name, value in (
            ("mean_ns", row.mean),
            ("stddev_ns", row.stddev),
            ("stderr_ns", row.stderr),
            ("min_ns", row.min),
            ("max_ns", row.max),
        ):
            if value is not None:
                setattr(want, name, value)
        for q, v in row.quantiles:
            qm = want.quantiles.add(q=q)
            if v is not None:
                qm.value_ns = v
        got = convert.group_to_proto(row)
        assert got.SerializeToString(deterministic=True) == want.SerializeToString(
            deterministic=True
        ), row.key
        assert convert.stats_from_proto(pb.GetStatsResponse(groups=[got])).rows[0] == replace(
            row, exact=False
        )
