"""Site-coded batches: text coded once per call site, stored exactly as per-row text would be."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from kronicler.db import Database
from kronicler.db.dictionary import Dictionary
from kronicler.db.site_batch import SiteBatch
from kronicler.db.writer import SegmentWriter

BASE = 1_700_000_000_000_000_000
NAMES = ["app.a", "app.b", "app.a", "app.c"]  # two sites share a name, with other attributes
TEXTS = ['{"k":1}', "", '{"k":2}', '{"k":1}']


def site_batch(site: list[int], *, offset: int = 0, service: str = "svc") -> SiteBatch:
    n = len(site)
    seq = np.arange(offset, offset + n)
    return SiteBatch(
        site=np.array(site, dtype=np.int64),
        names=NAMES,
        attributes=TEXTS,
        service=service,
        resource='{"host.name":"web-1","service.version":"1.1"}',
        start=(BASE + seq * 1000).astype(np.int64),
        duration=(seq * 7 + 1).astype(np.int64),
        status=(seq % 3 == 0).astype(np.uint8) * 2,
        kind=(seq % 4).astype(np.uint8),
        trace_hi=seq.astype(np.uint64),
        trace_lo=(seq + 1).astype(np.uint64),
        span_id=(seq + 2).astype(np.uint64),
        parent_span_id=(seq % 2).astype(np.uint64),
    )


def test_encode_indexed_equals_encoding_the_spelt_out_texts() -> None:
    table = ["c", "a", "b", "a", "z"]
    rows = [[2, 2, 0, 3, 1], [4, 0, 1], [], [3, 3]]
    by_row, by_site = Dictionary(), Dictionary()
    for index in rows:
        expected = by_row.encode([table[i] for i in index])
        got = by_site.encode_indexed(table, np.array(index, dtype=np.int64))
        assert got.dtype == np.uint32
        assert got.tolist() == expected.tolist()
        # New texts get codes in order of first use by the rows, exactly as per-row coding does.
        assert by_site.values == by_row.values


def test_writer_stores_a_site_batch_as_it_stores_the_spelt_out_batch(tmp_path: Path) -> None:
    sites = [3, 1, 1, 0, 2, 3, 0, 0, 1, 2, 2, 3, 1]
    coded = SegmentWriter(tmp_path / "coded", chunk_rows=4)
    spelt = SegmentWriter(tmp_path / "spelt", chunk_rows=4)
    for part, offset in ((sites[:5], 0), (sites[5:], 5)):
        batch = site_batch(part, offset=offset)
        coded.add(batch)
        spelt.add(batch.to_span_batch())
        coded.seal_full()
        spelt.seal_full()
    for name in ("name", "service", "attributes", "resource"):
        assert coded.dicts[name].values == spelt.dicts[name].values, name
    assert coded.rows_sealed == spelt.rows_sealed == 12
    a, b = coded._tail_columns(), spelt._tail_columns()
    assert {c: v.tolist() for c, v in a.items()} == {c: v.tolist() for c, v in b.items()}
    coded.close()
    spelt.close()


def test_a_site_batch_reads_back_with_its_text_per_row(tmp_path: Path) -> None:
    sites = [3, 1, 1, 0, 2, 3, 0, 0, 1, 2]
    with Database.open(tmp_path / "db", chunk_rows=4) as db:
        assert db.append_batch(site_batch(sites[:6]), block=False) == 6
        assert db.append_batch(site_batch(sites[6:], offset=6, service="other"), block=False) == 4
        assert db.flush()
        scan = db.scan(["name", "service", "attributes", "resource", "start", "duration"])
    order = np.argsort(scan.columns["start"])
    names = [scan.names[c] for c in scan.columns["name"][order]]
    texts = [scan.attributes[c] for c in scan.columns["attributes"][order]]
    services = [scan.services[c] for c in scan.columns["service"][order]]
    assert names == [NAMES[s] for s in sites]
    assert texts == [TEXTS[s] for s in sites]
    assert services == ["svc"] * 6 + ["other"] * 4
    resources = {scan.resources[c] for c in scan.columns["resource"]}
    assert resources == {'{"host.name":"web-1","service.version":"1.1"}'}
    assert scan.columns["duration"][order].tolist() == [i * 7 + 1 for i in range(10)]


def test_split_keeps_the_tables_and_cuts_the_rows() -> None:
    batch = site_batch([0, 1, 2, 3, 0])
    head, tail = batch.split(2)
    assert len(head) == 2 and len(tail) == 3
    assert head.names is batch.names and tail.attributes is batch.attributes
    assert tail.start.tolist() == batch.start[2:].tolist()


def test_inconsistent_batches_are_refused() -> None:
    good = site_batch([0, 1])
    with pytest.raises(ValueError, match="outside the table"):
        SiteBatch(**{**_fields(good), "site": np.array([0, 4])})
    with pytest.raises(ValueError, match="column duration"):
        SiteBatch(**{**_fields(good), "duration": np.zeros(3, dtype=np.int64)})
    with pytest.raises(ValueError, match="differ in length"):
        SiteBatch(**{**_fields(good), "attributes": TEXTS[:2]})


def _fields(batch: SiteBatch) -> dict:
    return {name: getattr(batch, name) for name in (f.name for f in dataclasses.fields(SiteBatch))}
