"""NARROW and DELTA pages with each byte plane compressed alone (``codec._squeeze_planes``).

Stories: every width, sign and size (around the threshold where planes start) round-trips
exactly; on durations and function-ordered start times the plane form is smaller than one
frame over all planes; damaged plane pages raise only CorruptPageError; pages of the older
single-frame form still decode.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kronicler.db import codec
from kronicler.errors import CorruptPageError

from .conftest import damage_outcomes

PLANE_FORMS = {codec.CODEC_NARROW: codec.CODEC_NARROW_PLANES,
               codec.CODEC_DELTA: codec.CODEC_DELTA_PLANES}  # fmt: skip


def form(data: bytes) -> int:
    return int(data[0])


def one_frame(values: np.ndarray, which: int) -> bytes:
    """The page as the build before plane pages wrote it (one zstd frame over all planes)."""
    u = values.astype(np.int64).view(np.uint64)
    head = struct.Struct("<BBxxI")
    if which == codec.CODEC_NARROW:
        width, raw = codec._pack_uint(u)
        flag, body = codec._squeeze(raw)
        return head.pack(which, flag | width << 4, u.size) + body
    width, raw = codec._pack_uint(codec.zigzag(np.diff(u.view(np.int64))))
    flag, body = codec._squeeze(raw)
    first = struct.pack("<Q", int(u[0]))
    return head.pack(which, flag | width << 4, u.size) + first + body


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3000),
    bits=st.sampled_from([7, 9, 16, 17, 31, 33, 48, 62]),
    which=st.sampled_from(list(PLANE_FORMS)),
    signed=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_width_and_size_round_trips(n, bits, which, signed, seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 1 << bits, n, dtype=np.int64)
    if signed:
        values -= 1 << (bits - 1)
    data = codec.encode(values, which)
    assert np.array_equal(codec.decode(data, np.dtype(np.int64), rows=n), values)


def test_extreme_values_and_the_threshold_round_trip():
    edge = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, 0, -1, 1], dtype=np.int64)
    for which in PLANE_FORMS:
        for n in (127, 128, 129, 511, 512, 513, 4096):  # 8-byte values: planes from 128 rows
            values = np.resize(edge, n)
            data = codec.encode(values, which)
            assert np.array_equal(codec.decode(data, np.dtype(np.int64), rows=n), values)
        first = 128 if which == codec.CODEC_NARROW else 129  # 1,024 bytes of values or steps
        assert form(codec.encode(np.resize(edge, first - 1), which)) == which
        assert form(codec.encode(np.resize(edge, first), which)) == PLANE_FORMS[which]


def test_planes_take_fewer_bytes_than_one_frame_on_durations_and_ordered_starts():
    # A block of an ordered chunk's page: all planes fall in one zstd block of one frame.
    rng = np.random.default_rng(3)
    n = 4096
    durations = rng.lognormal(np.log(2e5), 0.6, n).astype(np.int64)
    functions = np.sort(rng.zipf(1.5, n) % 100)
    start = np.sort(rng.integers(0, 10**14, n))
    ordered = start[np.argsort(functions, kind="stable")]  # runs of each function's starts
    for values, which in ((durations, codec.CODEC_NARROW), (ordered, codec.CODEC_DELTA)):
        data = codec.encode(values, which)
        assert form(data) == PLANE_FORMS[which]
        assert len(data) < 0.97 * len(one_frame(values, which)), (which, len(data))
        assert np.array_equal(codec.decode(data, np.dtype(np.int64), rows=n), values)


def test_pages_of_the_single_frame_form_still_decode():
    rng = np.random.default_rng(4)
    values = rng.integers(-(10**12), 10**12, 5000)
    for which in PLANE_FORMS:
        old = one_frame(values, which)
        assert form(old) == which
        assert np.array_equal(codec.decode(old, np.dtype(np.int64), rows=5000), values)


@pytest.mark.parametrize("which", list(PLANE_FORMS))
def test_damaged_plane_pages_raise_only_corrupt_page_errors(which):
    rng = np.random.default_rng(5)
    values = rng.lognormal(12, 1, 3000).astype(np.int64)
    data = codec.encode(values, which)
    assert form(data) == PLANE_FORMS[which]
    outcomes = damage_outcomes(data, lambda b: codec.decode(b, np.dtype(np.int64), rows=3000), 5)
    assert outcomes["corrupt"] > 0
    with pytest.raises(CorruptPageError):  # a page cut short
        codec.decode(data[:-1], np.dtype(np.int64), rows=3000)
