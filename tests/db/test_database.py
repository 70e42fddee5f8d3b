"""The Database's public contract, exercised on real files in temporary directories."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kronicler.db import Database, Stats
from kronicler.errors import (
    ClosedError,
    DatabaseError,
    ReadOnlyError,
    SchemaVersionError,
    WriteTimeoutError,
)

from .conftest import BASE_NS, make_rows


def exact_lower(values: np.ndarray, q: float) -> float:
    return float(np.sort(values)[int(np.floor(q * (len(values) - 1)))])


def open_db(path, **kw) -> Database:
    kw.setdefault("chunk_rows", 2048)
    return Database.open(path, **kw)


def test_open_creates_directory_and_is_empty(tmp_path):
    path = tmp_path / "nested" / "db"
    with open_db(path) as db:
        assert path.is_dir()
        assert db.functions() == []
        assert db.stats() == {}
        assert db.stats("missing").count == 0
        assert db.slowest() == []
        assert db.time_range() is None


def test_stats_agree_with_exact_values(tmp_path):
    batch = make_rows(20_000, seed=1)
    with open_db(tmp_path) as db:
        db.append(**batch)
        assert db.flush(10)
        names = np.array(batch["names"])
        durations = batch["duration_ns"]
        stats = db.stats()
        assert sorted(stats) == db.functions() == sorted(set(batch["names"]))
        for name, st in stats.items():
            mine = durations[names == name]
            assert st.count == len(mine)
            assert st.errors == int((batch["status"][names == name] == 2).sum())
            assert st.min == mine.min() and st.max == mine.max()
            assert st.mean == pytest.approx(mine.mean(), rel=1e-9)
            assert st.stddev == pytest.approx(mine.std(ddof=1), rel=1e-6)
            assert st.stderr == pytest.approx(mine.std(ddof=1) / np.sqrt(len(mine)), rel=1e-6)
            for field, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
                exact = exact_lower(mine, q)
                assert abs(getattr(st, field) - exact) <= 0.01 * exact, (name, field)
            q75 = st.quantile(0.75)
            assert q75 is not None
            assert abs(q75 - exact_lower(mine, 0.75)) <= 0.01 * exact_lower(mine, 0.75)
        exact_stats = db.stats(exact=True)
        for name, st in exact_stats.items():
            mine = durations[names == name]
            assert st.exact and st.count == len(mine)
            assert st.p99 == exact_lower(mine, 0.99)
            assert st.quantile(0.5) == exact_lower(mine, 0.5)


def test_time_range_queries_match_a_filter_of_the_rows(tmp_path):
    batch = make_rows(30_000, seed=2)
    with open_db(tmp_path) as db:
        db.append(**batch)
        db.flush()
        start = batch["start_unix_nano"]
        since, until = int(start[3333]), int(start[21111])
        names = np.array(batch["names"])
        mask = (start >= since) & (start < until)
        for name in set(batch["names"]):
            want = batch["duration_ns"][mask & (names == name)]
            got = db.stats(name, since=since, until=until)
            assert got.count == len(want)
            assert got.max == want.max() and got.min == want.min()
            assert abs(got.p90 - exact_lower(want, 0.9)) <= 0.01 * exact_lower(want, 0.9)
            exact = db.stats(name, since=since, until=until, exact=True)
            assert exact.p90 == exact_lower(want, 0.9)
        fs = db.summaries(since=since, until=until)
        assert sum(f.summary.count for f in fs.values()) == int(mask.sum())
        assert min(f.first_start for f in fs.values()) == int(start[mask].min())


def test_slowest_returns_the_k_largest_with_ids_and_attributes(tmp_path):
    batch = make_rows(10_000, seed=3)
    with open_db(tmp_path) as db:
        db.append(**batch)
        db.flush()
        calls = db.slowest(k=5)
        order = np.argsort(-batch["duration_ns"], kind="stable")[:5]
        assert [c.duration for c in calls] == batch["duration_ns"][order].tolist()
        top = calls[0]
        i = int(order[0])
        assert top.function == batch["names"][i]
        assert top.start == int(batch["start_unix_nano"][i])
        assert top.span_id == int(batch["span_id"][i])
        assert top.parent_span_id == int(batch["parent_span_id"][i])
        assert top.trace_id == batch["trace_id"][i]
        assert top.attributes == batch["attributes"][i]
        assert top.service == "checkout"
        name = batch["names"][0]
        mine = np.sort(batch["duration_ns"][np.array(batch["names"]) == name])[::-1][:3]
        assert [c.duration for c in db.slowest(name, k=3)] == mine.tolist()
        since = int(batch["start_unix_nano"][5000])
        late = db.slowest(k=4, since=since)
        want = np.sort(batch["duration_ns"][batch["start_unix_nano"] >= since])[::-1][:4]
        assert [c.duration for c in late] == want.tolist()


def test_scan_returns_filtered_rows_with_text_tables(tmp_path):
    batch = make_rows(6_000, seed=4)
    with open_db(tmp_path) as db:
        db.append(**batch)
        db.flush()
        scan = db.scan(["name", "duration", "attributes", "service"], names=["app.f1"])
        names = np.array(batch["names"])
        assert len(scan) == int((names == "app.f1").sum())
        assert {scan.names[c] for c in np.unique(scan.columns["name"])} == {"app.f1"}
        assert sorted(scan.columns["duration"]) == sorted(batch["duration_ns"][names == "app.f1"])
        assert set(scan.services) == {"checkout"}
        assert len(scan.attributes) == 3


def test_bad_input_raises_value_error_and_stores_nothing(tmp_path):
    with open_db(tmp_path) as db:
        db.append(["ok"], [BASE_NS], [5])
        db.flush()
        bad_batches: list[tuple[Any, Any, Any]] = [  # deliberately ill-typed rows
            (["a", "b"], [1], [1, 2]),  # length mismatch
            (["a"], [1], [-5]),  # negative duration
            (["a"], [1.5], [3]),  # wrong dtype
            ([3], [1], [3]),  # name not text
            (["a"], np.array([1.0]), [3]),
        ]
        for names, start, dur in bad_batches:
            with pytest.raises(ValueError):
                db.append(names, start, dur)
        with pytest.raises(ValueError, match="status"):
            db.append(["a"], [1], [1], status=[7])
        with pytest.raises(ValueError, match="trace_id"):
            db.append(["a"], [1], [1], trace_id=[b"short"])
        with pytest.raises(ValueError, match="unknown column"):
            db.append(["a"], [1], [1], colour=["red"])
        for bad in ({"status": [None]}, {"status": 2.0}, {"status": [1.7]}, {"status": ["2"]},
                    {"kind": True}, {"service": 3}, {"attributes": "x"},
                    {"attributes": ["not json"]}, {"attributes": ["[1, 2]"]}):  # fmt: skip
            with pytest.raises(ValueError):
                db.append(["a"], [1], [1], **bad)
        with pytest.raises(ValueError, match="names"):
            db.append(None, [1], [1])  # type: ignore[arg-type]  # a wrong type on purpose
        with pytest.raises(ValueError, match="chunk_rows"):
            Database.open(tmp_path / "other", chunk_rows=0)
        assert not (tmp_path / "other").exists()  # options are checked before anything is made
        with pytest.raises(ValueError, match="since"):
            db.stats(since=10, until=5)
        with pytest.raises(ValueError, match="k must"):
            db.slowest(k=0)
        with pytest.raises(ValueError, match="quantile"):
            db.stats("ok").quantile(1.5)
        db.flush()
        assert db.functions() == ["ok"]
        assert db.stats("ok").count == 1


def test_restart_sees_everything_flushed(tmp_path):
    batch = make_rows(9_000, seed=5)
    with open_db(tmp_path) as db:
        db.append(**batch)
        db.flush()
        before = db.stats()
    with open_db(tmp_path) as db:
        after = db.stats()
    assert {k: (v.count, v.p99, v.max) for k, v in before.items()} == {
        k: (v.count, v.p99, v.max) for k, v in after.items()
    }


def test_two_databases_on_one_directory_write_separate_segments(tmp_path):
    a, b = open_db(tmp_path), open_db(tmp_path)
    a.append(["x"] * 10, np.arange(10) + BASE_NS, np.arange(10))
    b.append(["y"] * 20, np.arange(20) + BASE_NS, np.arange(20))
    a.flush(), b.flush()
    assert a.functions() == b.functions() == ["x", "y"]
    assert b.stats("x").count == 10 and a.stats("y").count == 20
    a.close()
    b.close()
    assert len(list((tmp_path / "segments").glob("*.kseg"))) == 2


def test_an_append_loop_faster_than_the_writer_stores_every_row(tmp_path):
    # A plain loop against a tiny write queue: append waits for room rather than dropping.
    db = Database.open(tmp_path, queue_rows=100, chunk_rows=512)
    accepted = sum(
        db.append(["f"] * 60, np.arange(60) + BASE_NS + i * 60, np.full(60, i)) for i in range(200)
    )
    assert accepted == 12_000
    assert db.flush()
    assert db.stats("f").count == 12_000 and db.dropped == 0
    db.close()


def test_append_with_a_timeout_raises_and_stores_nothing_of_a_refused_batch(tmp_path):
    db = Database.open(tmp_path, queue_rows=100, chunk_rows=512)
    stored = refused = 0
    for i in range(2000):  # the writer drains between appends now and then; a refusal comes soon
        try:
            stored += db.append(["f"] * 60, np.arange(60) + BASE_NS, np.full(60, i), timeout=0)
        except WriteTimeoutError as exc:
            assert "none of the 60 rows were stored" in str(exc)
            refused += 1
            if refused == 3:
                break
    assert refused == 3
    assert db.flush()
    assert db.stats("f").count == stored and db.dropped == 0  # refusals are not losses
    with pytest.raises(ValueError, match="timeout"):
        db.append(["f"], [1], [1], timeout=-1)
    db.close()


def test_append_batch_without_blocking_refuses_whole_and_counts_nothing(tmp_path):
    from kronicler.db import SpanBatch

    db = Database.open(tmp_path, queue_rows=100, chunk_rows=512)
    batch = SpanBatch.build(["f"] * 60, np.arange(60) + BASE_NS, np.ones(60, int))
    taken = [db.append_batch(batch, block=False) for _ in range(500)]
    assert set(taken) <= {0, 60} and 0 in taken  # all or nothing, and some refused
    assert db.flush()
    assert db.stats("f").count == sum(taken) and db.dropped == 0
    db.close()


def test_closed_database_refuses_work(tmp_path):
    db = open_db(tmp_path)
    db.close()
    db.close()  # idempotent
    with pytest.raises(ClosedError):
        db.append(["f"], [1], [1])
    with pytest.raises(ClosedError):
        db.stats()


def test_schema_version_mismatch_is_reported(tmp_path):
    open_db(tmp_path).close()
    (tmp_path / "catalog.json").write_text('{"format": "kronicler", "schema_version": 999}')
    with pytest.raises(SchemaVersionError, match="999"):
        Database.open(tmp_path)


def test_retention_deletes_old_closed_segments_only(tmp_path):
    old = open_db(tmp_path)
    old.append(["old"] * 5, np.full(5, BASE_NS), np.ones(5, int))
    old.close()
    live = open_db(tmp_path)
    live.append(["new"] * 5, np.full(5, BASE_NS), np.ones(5, int))
    live.flush()
    assert live.functions() == ["new", "old"]
    assert live.retain(max_age_ns=10**9) == 1  # BASE_NS is long ago; the live segment stays
    assert live.functions() == ["new"]
    live.close()
    reader = open_db(tmp_path)
    assert reader.retain(max_bytes=0) == 1
    assert reader.functions() == []
    reader.close()


def test_stats_value_type_is_frozen(tmp_path):
    st = Stats.from_values(np.array([1, 2, 3]))
    with pytest.raises(AttributeError):
        st.count = 5  # type: ignore[misc]  # writing a frozen field on purpose
    assert st.to_dict()["p50_ns"] == 2.0


def test_bufferpool_keeps_decoded_pages_within_its_budget(tmp_path):
    batch = make_rows(40_000, seed=9)
    with open_db(tmp_path, bufferpool_bytes=256 << 10) as db:
        db.append(**batch)
        db.flush()
        start = batch["start_unix_nano"]
        for i in range(0, 40_000, 3000):
            db.stats(since=int(start[i]) + 1, until=int(start[min(i + 5000, 39_999)]))
            db.slowest(k=3, since=int(start[i]))
        db.scan(["duration", "span_id", "parent_span_id"])
        stats = db._reads.pool.stats
        assert stats.bytes_in_use <= 256 << 10
        assert stats.evictions > 0


def test_long_running_writer_rotates_segments_and_retention_can_drop_old_ones(tmp_path):
    db = Database.open(tmp_path, chunk_rows=500, segment_rows=2000)
    for i in range(10):
        db.append([f"f{i % 2}"] * 700, np.arange(700) + i * 700, np.full(700, i))
        db.flush()
    assert len(list((tmp_path / "segments").glob("*.kseg"))) >= 3
    assert sum(s.count for s in db.stats().values()) == 7000
    removed = db.retain(max_age_ns=10**9)  # starts near 1970: every closed segment is old
    assert removed >= 2
    left = sum(s.count for s in db.stats().values())
    assert 0 < left < 7000  # the live segment stays
    db.close()


def test_attribute_sets_are_loaded_only_when_a_query_needs_them(tmp_path, monkeypatch):
    import kronicler.db.database as database_module

    monkeypatch.setattr(database_module, "_MAX_ATTRIBUTE_SETS", 3000)  # rotate early
    n = 10_000
    with open_db(tmp_path, chunk_rows=1000) as db:
        for lo in range(0, n, 1000):  # every row has its own attribute set (a request id)
            db.append(["api.get"] * 1000, BASE_NS + np.arange(lo, lo + 1000),
                      np.arange(lo, lo + 1000), attributes=[{"request": i} for i in range(lo, lo + 1000)])  # fmt: skip
            db.flush()
    assert len(list((tmp_path / "segments").glob("*.kseg"))) >= 3  # the writer rotated
    with open_db(tmp_path) as db:
        assert db.stats("api.get").count == n
        readers = list(db._reads.readers.values())
        assert all(len(r.dicts["attributes"]) == 0 for r in readers)  # not loaded for stats
        top = db.slowest("api.get", k=2)
        assert [c.attributes for c in top] == [{"request": n - 1}, {"request": n - 2}]


def _files(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_a_read_only_open_answers_queries_and_never_writes(tmp_path):
    with open_db(tmp_path) as db:
        db.append(**make_rows(3000, seed=3))
        db.flush()
        expected = db.stats()
    before = _files(tmp_path)
    with Database.open(tmp_path, readonly=True) as ro:
        assert ro.stats() == expected and ro.functions() == sorted(expected)
        assert len(ro.slowest(k=3)) == 3
        for write in (lambda: ro.append(["f"], [1], [1]), lambda: ro.compact(),
                      lambda: ro.retain(max_age_ns=1)):  # fmt: skip
            with pytest.raises(ReadOnlyError, match="read-only"):
                write()
        assert ro.flush()  # nothing to flush
    assert _files(tmp_path) == before


def test_a_read_only_open_of_a_directory_without_a_database_creates_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("mine")
    for path in (empty, tmp_path / "missing", empty / "notes.txt"):
        with pytest.raises(DatabaseError, match=f"not a Kronicler database: {path}"):
            Database.open(path, readonly=True)
        with pytest.raises(DatabaseError, match=f"not a Kronicler database: {path}"):
            Database.open(path, create=False)
    assert _files(empty) == ["notes.txt"] and not (tmp_path / "missing").exists()


def test_span_and_parent_ids_accept_big_endian_byte_arrays_like_trace_ids(tmp_path):
    rng = np.random.default_rng(4)
    n = 50
    span = [int(x) for x in rng.integers(1, 2**63, n, dtype=np.uint64)] + [2**64 - 1] * 2
    parent = [0, 2**63] + [int(x) for x in rng.integers(1, 2**63, n, dtype=np.uint64)]
    trace = [(a << 64) | b for a, b in zip(span, parent, strict=True)]
    n += 2

    def as_bytes(ids, width):
        raw = b"".join(i.to_bytes(width, "big") for i in ids)
        return np.frombuffer(raw, np.uint8).reshape(n, width)

    start = np.arange(n) + BASE_NS
    with open_db(tmp_path / "ints") as a, open_db(tmp_path / "bytes") as b:
        a.append(["f"] * n, start, np.ones(n, int), trace_id=trace, span_id=span,
                 parent_span_id=parent)  # fmt: skip
        b.append(["f"] * n, start, np.ones(n, int), trace_id=as_bytes(trace, 16),
                 span_id=as_bytes(span, 8), parent_span_id=as_bytes(parent, 8))  # fmt: skip
        a.flush(), b.flush()
        cols = ["start", "trace_hi", "trace_lo", "span_id", "parent_span_id"]
        got_a, got_b = a.scan(cols).columns, b.scan(cols).columns
        for c in cols:
            assert got_a[c].tolist() == got_b[c].tolist(), c
        order = np.argsort(got_b["start"])
        assert got_b["span_id"][order].tolist() == span
        assert got_b["parent_span_id"][order].tolist() == parent
        hi, lo = got_b["trace_hi"][order], got_b["trace_lo"][order]
        assert [(int(h) << 64) | int(lo_) for h, lo_ in zip(hi, lo, strict=True)] == trace
        with pytest.raises(ValueError, match="span_id must be 8 bytes per row"):
            b.append(["f"] * n, start, np.ones(n, int), span_id=as_bytes(trace, 16))
        with pytest.raises(ValueError, match="parent_span_id has 3 values"):
            b.append(["f"] * n, start, np.ones(n, int), parent_span_id=as_bytes(parent, 8)[:3])


def test_a_chunk_defines_only_the_dictionary_entries_its_own_rows_use(tmp_path):
    from kronicler.db.chunk import decode_entries
    from kronicler.db.reader import SegmentReader

    n = 250  # one batch: two full chunks of 100 and a tail, every row its own attribute set
    with open_db(tmp_path, chunk_rows=100) as db:
        db.append(["f"] * n, np.arange(n) + BASE_NS, np.ones(n, int),
                  attributes=[{"row": i} for i in range(n)])  # fmt: skip
    (seg,) = [p.stem for p in (tmp_path / "segments").glob("*.kseg")]
    reader = SegmentReader(tmp_path / "segments", seg)
    reader.refresh()
    defined = []
    for chunk in reader.chunks:
        entries = decode_entries(reader.read_page(chunk, "dictionary"))
        codes = reader.decode_page(chunk, "attributes")
        defined.append([code for code, _ in entries.get("attributes", [])])
        assert set(defined[-1]) == set(np.unique(codes).tolist())  # its own rows' values only
    reader.close()
    assert [len(d) for d in defined] == [100, 100, 50]


def test_huge_attribute_values_rotate_the_segment_so_writer_memory_stays_bounded(tmp_path):
    """Distinct megabyte-sized attribute values (a hostile or careless client) cannot grow one
    segment's in-memory attribute dictionary without bound: its text size rotates the segment."""
    import kronicler.db.database as database_module

    limit = 4 << 20
    big = 1 << 20
    with open_db(tmp_path, chunk_rows=1000) as db:
        database_module_limit = database_module._MAX_ATTRIBUTE_CHARS
        try:  # a small limit (the default is 32M characters) keeps the test small
            database_module._MAX_ATTRIBUTE_CHARS = limit
            for i in range(20):
                db.append(
                    ["ingest"],
                    [BASE_NS + i],
                    [i + 1],
                    attributes=[{"blob": f"{i:04d}" * (big // 4)}],
                )
                db.flush()
                writer = db._writer  # None right after a rotation, until the next append
                assert writer is None or writer.dicts["attributes"].chars <= limit + big
        finally:
            database_module._MAX_ATTRIBUTE_CHARS = database_module_limit
    assert len(list((tmp_path / "segments").glob("*.kseg"))) >= 4
    with open_db(tmp_path) as db:
        assert db.stats("ingest").count == 20
        (call,) = db.slowest("ingest", k=1)
        assert call.attributes == {"blob": "0019" * (big // 4)}


def test_distinct_resources_rotate_the_segment_so_reader_memory_stays_bounded(tmp_path):
    """Every reader holds a segment's resource texts in memory, so a sender that varies its
    resource on every request (a random instance id per batch) costs segments, not memory."""
    n, per = 5001, 500
    with open_db(tmp_path, chunk_rows=1000) as db:
        for lo in range(0, n, per):
            hi = min(lo + per, n)
            db.append(["ingest"] * (hi - lo), BASE_NS + np.arange(lo, hi), np.arange(lo, hi),
                      resource=[{"service.instance.id": f"i-{i}"} for i in range(lo, hi)])  # fmt: skip
            assert db.flush()
        writer = db._writer
        assert writer is not None and len(writer.dicts["resource"]) < 4096
    assert len(list((tmp_path / "segments").glob("*.kseg"))) == 2  # rotated at 4096 resources
    with open_db(tmp_path) as db:
        db.stats("ingest")
        readers = list(db._reads.readers.values())
        assert len(readers) == 2 and max(len(r.dicts["resource"]) for r in readers) <= 4096 + per
        scan = db.scan(["duration", "resource"])
        got = {int(d): scan.resources[r] for d, r in zip(*scan.columns.values(), strict=True)}
        assert got == {i: f'{{"service.instance.id":"i-{i}"}}' for i in range(n)}
