"""Codec round trips (property tests) and torn/corrupt page and log detection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kronicler.db import codec, idmix, wal
from kronicler.db.page import HEADER_SIZE, build_page, parse_header, verified_payload
from kronicler.db.schema import COLUMNS
from kronicler.errors import CorruptPageError
from kronicler.otel import ids

from .conftest import damage_outcomes

int64s = hnp.arrays(np.int64, st.integers(0, 3000), elements=st.integers(-(2**63), 2**63 - 1))
uint64s = hnp.arrays(np.uint64, st.integers(0, 3000), elements=st.integers(0, 2**64 - 1))
#: Every codec that encodes a page whole (IDS picks one of SEQ, TABLE and RAW).
WHOLE_PAGE_CODECS = [codec.CODEC_RAW, codec.CODEC_NARROW, codec.CODEC_DELTA, codec.CODEC_TABLE,
                     codec.CODEC_IDS, codec.CODEC_SEQ]  # fmt: skip
small = hnp.arrays(np.uint32, st.integers(0, 3000), elements=st.integers(0, 300))


@settings(max_examples=60, deadline=None)
@given(
    values=int64s,
    which=st.sampled_from(WHOLE_PAGE_CODECS),
)
def test_int64_round_trip(values, which):
    out = codec.decode(codec.encode(values, which), np.dtype(np.int64))
    assert out.dtype == np.int64 and np.array_equal(out, values)


@settings(max_examples=60, deadline=None)
@given(
    values=uint64s,
    which=st.sampled_from(WHOLE_PAGE_CODECS),
)
def test_uint64_round_trip(values, which):
    assert np.array_equal(codec.decode(codec.encode(values, which), np.dtype(np.uint64)), values)


@settings(max_examples=60, deadline=None)
@given(values=small)
def test_dictionary_codes_round_trip_and_shrink(values):
    data = codec.encode(values, codec.CODEC_NARROW)
    assert np.array_equal(codec.decode(data, np.dtype(np.uint32)), values)
    if values.size > 1000:
        assert len(data) < values.size * 2


@settings(max_examples=60, deadline=None)
@given(
    span_ids=hnp.arrays(
        np.uint64, st.integers(1, 500), elements=st.integers(1, 2**64 - 1), unique=True
    ),
    data=st.data(),
)
def test_parent_references_round_trip(span_ids, data):
    n = span_ids.size
    # parents: none, a row of the same page, or an id from elsewhere
    choice = data.draw(hnp.arrays(np.int8, n, elements=st.integers(0, 2)))
    rows = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, n - 1)))
    outside = data.draw(hnp.arrays(np.uint64, n, elements=st.integers(1, 2**64 - 1)))
    parents = np.where(choice == 0, 0, np.where(choice == 1, span_ids[rows], outside)).astype(
        np.uint64
    )
    encoded = codec.encode_parents(parents, span_ids)
    assert np.array_equal(codec.decode_parents(encoded, span_ids), parents)


def test_typical_columns_compress():
    rng = np.random.default_rng(0)
    start = 1_700_000_000_000_000_000 + np.arange(65536) * 1000 + rng.integers(0, 1000, 65536)
    assert len(codec.encode(start, codec.CODEC_DELTA)) < 65536 * 2
    zeros = np.zeros(65536, np.uint64)
    assert len(codec.encode(zeros, codec.CODEC_RAW)) < 32  # constant pages cost nothing


def test_page_checksum_detects_any_flipped_byte():
    page = build_page(2, 7, 100, b"payload bytes" * 10, 1, 99)
    header, payload = verified_payload(page, "test")
    assert header.chunk == 7 and header.rows == 100 and header.min == 1 and header.max == 99
    for i in range(0, len(page), 7):
        damaged = bytearray(page)
        damaged[i] ^= 0x40
        try:
            verified_payload(bytes(damaged), "test")
        except CorruptPageError:
            continue
        raise AssertionError(f"flip at byte {i} went unnoticed")
    assert parse_header(page[: HEADER_SIZE - 1]) is None


def _columns(n: int, first: int) -> dict[str, np.ndarray]:
    cols = {c: np.zeros(n, d) for c, d in COLUMNS.items()}
    cols["start"] = np.arange(first, first + n, dtype=np.int64)
    return cols


def test_log_reader_ignores_a_torn_record_and_steps_over_a_damaged_one(tmp_path):
    path = tmp_path / "seg.wal"
    writer = wal.WalWriter(path)
    writer.append(wal.encode_record(0, _columns(10, 0), {"name": [(0, "f")]}))
    writer.append(wal.encode_record(10, _columns(5, 10), {}))
    whole = path.read_bytes()
    records = list(wal.read_records(path))
    assert [len(r) for r in records] == [10, 5] and records[0].entries == {"name": [(0, "f")]}
    for cut in range(len(whole) - 1, len(whole) - 60, -9):
        path.write_bytes(whole[:cut])
        assert [len(r) for r in wal.read_records(path)] == [10]
        assert wal.read_log(path).damaged == 0  # cut short by a crash: never durable, no damage
    damaged = bytearray(whole)
    damaged[30] ^= 1
    path.write_bytes(bytes(damaged))
    found = wal.read_log(path)
    # The damaged first record is skipped; the next one is found and its row numbers say
    # what is missing before it.
    assert [r.first_row for r in found.records] == [10] and found.damaged == 1
    damaged = bytearray(whole)
    damaged[-3] ^= 1  # the last record
    path.write_bytes(bytes(damaged))
    found = wal.read_log(path)
    assert [len(r) for r in found.records] == [10]
    assert (found.damaged, found.trailing_rows) == (1, 5)


@settings(max_examples=40, deadline=None)
@given(
    values=int64s,
    cuts=st.lists(st.integers(1, 3000), max_size=6),
    which=st.sampled_from([codec.CODEC_NARROW, codec.CODEC_DELTA, codec.CODEC_TABLE]),
)
def test_blocks_round_trip_whole_and_one_block_at_a_time(values, cuts, which):
    n = values.size
    ends = np.array(sorted({c for c in cuts if c < n} | {n}), dtype=np.int64) if n else ends_none()
    data = codec.encode_blocks(values, which, ends)
    dtype = np.dtype(np.int64)
    assert np.array_equal(codec.decode(data, dtype, rows=n), values)
    lo = 0
    for hi in ends.tolist():
        assert np.array_equal(codec.decode_block(data, dtype, lo, hi, rows=n), values[lo:hi])
        lo = hi
    constant = n > 0 and bool((values == values[0]).all())
    if constant:  # one constant page, not blocks: every range of it is a slice of one value
        assert data[0] == codec.CODEC_CONST
    elif ends.size > 1:  # a block that is not one of the page's
        with pytest.raises(CorruptPageError):
            codec.decode_block(data, dtype, 0, int(ends[1]), rows=n)


def ends_none() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


def test_damaged_blocks_pages_raise_only_corrupt_page_errors():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 10**9, 5000)
    data = codec.encode_blocks(values, codec.CODEC_NARROW, np.array([1000, 3000, 5000]))
    outcomes = {"decoded": 0, "corrupt": 0}
    for _ in range(400):
        bad = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            bad[int(rng.integers(0, 40))] ^= int(rng.integers(1, 256))  # the head and table
        try:
            codec.decode(bytes(bad), np.dtype(np.int64), rows=5000)
            codec.decode_block(bytes(bad), np.dtype(np.int64), 1000, 3000, rows=5000)
            outcomes["decoded"] += 1
        except CorruptPageError:
            outcomes["corrupt"] += 1
    assert outcomes["corrupt"] > 300


@settings(max_examples=60, deadline=None)
@given(values=uint64s)
def test_unmix_inverts_the_id_mix(values):
    assert np.array_equal(idmix.mix64(idmix.unmix64(values)), values)
    assert np.array_equal(idmix.unmix64(ids.mix_array(values)), values)


def _page_codec(data: bytes) -> int:
    return data[0]


def test_counter_ids_in_function_order_take_about_a_byte_a_row():
    # Capture ids of 65,536 calls of 100 functions, one chunk ordered by function then start:
    # neighbouring rows are calls of one function, ~100 counter values apart.
    rng = np.random.default_rng(5)
    n = 65536
    seqs = np.arange(n, dtype=np.uint64) + np.uint64(1 + (int(rng.integers(0, 2**62))))
    functions = rng.zipf(1.3, n) % 100
    order = np.argsort(functions, kind="stable")
    roots = seqs.copy()
    roots[1::3] = seqs[:-1:3]  # a third of the calls are children of the call before them
    hi, lo = ids.trace_halves(roots[order])
    for column in (ids.span_ids(seqs[order]), hi, lo):
        data = codec.encode(column, codec.COLUMN_CODECS["span_id"])
        assert _page_codec(data) == codec.CODEC_SEQ
        assert len(data) < 1.5 * n, len(data) / n
        assert np.array_equal(codec.decode(data, np.dtype(np.uint64), rows=n), column)


def test_random_ids_stay_raw_and_shared_random_ids_take_a_table():
    rng = np.random.default_rng(6)
    n = 20000
    distinct = rng.integers(1, 2**64 - 1, n, dtype=np.uint64)
    adjacent = np.repeat(distinct[: n // 4], 4)  # a trace's spans in arrival order
    scattered = adjacent[rng.permutation(n)]  # ... or spread over the functions of a chunk
    for values, form in ((distinct, codec.CODEC_RAW), (adjacent, codec.CODEC_TABLE),
                         (scattered, codec.CODEC_TABLE)):  # fmt: skip
        data = codec.encode(values, codec.CODEC_IDS)
        assert _page_codec(data) == form
        assert np.array_equal(codec.decode(data, np.dtype(np.uint64), rows=n), values)
    # A few foreign (random) ids among counter ids keep the compact form, and round-trip.
    mixed = ids.span_ids(np.arange(1, n + 1, dtype=np.uint64))
    mixed[:: n // 100] = distinct[:: n // 100]
    data = codec.encode(mixed, codec.CODEC_IDS)
    assert _page_codec(data) == codec.CODEC_SEQ and len(data) < 3 * n
    assert np.array_equal(codec.decode(data, np.dtype(np.uint64)), mixed)


def test_root_spans_only_make_a_constant_parent_page():
    span_ids = ids.span_ids(np.arange(1, 5001, dtype=np.uint64))
    parents = np.zeros(5000, dtype=np.uint64)
    data = codec.encode_parents(parents, span_ids)
    assert _page_codec(data) == codec.CODEC_CONST and len(data) < 32
    assert np.array_equal(codec.decode_parents(data, span_ids, rows=5000), parents)


def test_damaged_counter_id_pages_raise_only_corrupt_page_errors():
    values = ids.span_ids(np.arange(1, 3001, dtype=np.uint64))
    data = codec.encode(values, codec.CODEC_IDS)
    assert _page_codec(data) == codec.CODEC_SEQ
    outcomes = damage_outcomes(data, lambda b: codec.decode(b, np.dtype(np.uint64), rows=3000), 8)
    assert outcomes["corrupt"] > 0


@pytest.mark.parametrize("road", ["c", "python"])
def test_pages_decode_side_by_side_into_one_array(
    road: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if road == "c" and not codec.ACCELERATED:
        pytest.skip("the C decoding loop is not built")
    if road == "python":
        monkeypatch.setattr(codec, "_fast", None)
    rng = np.random.default_rng(8)
    parts = [np.sort(rng.lognormal(13, 2, n).astype(np.int64)) for n in (1, 5000, 3, 20000)]
    parts.append(np.full(7, 2**63 - 1, dtype=np.int64))  # a constant page
    pages = [codec.encode(p, codec.CODEC_DELTA) for p in parts]
    out = np.full(sum(p.size for p in parts) + 2, -1, dtype=np.int64)
    pos = 0
    for page, part in zip(pages, parts, strict=True):
        codec.decode_into(page, out[pos : pos + part.size])
        pos += part.size
    assert np.array_equal(out[:pos], np.concatenate(parts))
    assert (out[pos:] == -1).all()  # nothing written past the pages
    with pytest.raises(CorruptPageError):  # a slice of another length than the page's
        codec.decode_into(pages[1], out[:4999])
    with pytest.raises(CorruptPageError):
        codec.decode_into(pages[1][:-3], out[:5000])
