"""The C decoding loop (``kronicler/db/_fastdecode.c``) against the Python decoder it stands in for.

Stories: every page form the loop takes (raw, constant, narrow and delta, whole or in byte
planes, and blocks of them), at every width, with empty, one-row, constant and extreme pages,
decodes to the Python decoder's array in every output type; forms it leaves to Python (id
tables, counter ids, parent references, blocks holding a table) are declined, not guessed; a
damaged page either raises CorruptPageError on both roads or decodes to the same values on
both; ``KRONICLER_PURE_PYTHON=1`` turns the loop off.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kronicler.db import codec, zstd
from kronicler.errors import CorruptPageError

needs_c = pytest.mark.skipif(not codec.ACCELERATED, reason="the C decoding loop is not built")
pytestmark = needs_c

#: The codecs an encoder asks for whose pages the loop decodes (CONST is chosen for constants).
TAKEN = [codec.CODEC_RAW, codec.CODEC_NARROW, codec.CODEC_DELTA]
#: Output types of the stored columns, plus the narrow ones a wrapping cast must get right.
DTYPES = [np.int64, np.uint64, np.uint32, np.int32, np.uint16, np.uint8, np.int8]
EXTREMES = [0, 1, 2**8 - 1, 2**16, 2**32 - 1, 2**32, 2**63 - 1, -(2**63), -1]


def _constant(n: int, v: int) -> np.ndarray:
    return np.full(n, v, np.int64)


def _ordered_starts(n: int, step: int, seed: int) -> np.ndarray:
    """Start times of one function's rows: small ascending steps (pages of byte planes)."""
    steps = np.random.default_rng(seed).integers(0, step, n)
    return np.cumsum(steps).astype(np.int64) + 10**18


values_st = st.one_of(
    hnp.arrays(np.int64, st.integers(0, 3000), elements=st.integers(-(2**63), 2**63 - 1)),
    hnp.arrays(np.int64, st.integers(0, 3000), elements=st.sampled_from(EXTREMES)),
    hnp.arrays(np.int64, st.integers(0, 3000), elements=st.integers(0, 300)),
    st.builds(_constant, st.integers(0, 50), st.sampled_from(EXTREMES)),
    st.builds(
        _ordered_starts,
        st.integers(1, 3000),
        st.sampled_from([2, 300, 70_000, 2**33]),
        st.integers(0, 99),
    ),
)


def c_decode(data: bytes, dtype: type) -> np.ndarray | None:
    """The loop's answer alone (None: declined)."""
    n = codec._HEAD.unpack_from(data, 0)[2]
    out = np.empty(n, dtype=dtype)
    got = codec._fast.decode(data, out, zstd.decompressor().decompress)
    return out if got else None


def py_decode(data: bytes, dtype: type) -> np.ndarray:
    return codec._decode_py(data, np.dtype(dtype))


def both_ways(data: bytes, dtype: type) -> tuple[object, object]:
    """Each road's outcome: the array, or "corrupt"."""
    outcomes: list[object] = []
    for road in (True, False):
        saved = codec._fast
        codec._fast = saved if road else None
        try:
            outcomes.append(codec.decode(data, np.dtype(dtype), rows=None))
        except CorruptPageError:
            outcomes.append("corrupt")
        finally:
            codec._fast = saved
    return outcomes[0], outcomes[1]


def ends_of(n: int, cuts: list[int]) -> np.ndarray:
    return np.array(sorted({c for c in cuts if 0 < c < n} | {n}), dtype=np.int64)


@settings(max_examples=150, deadline=None)
@given(
    values=values_st,
    which=st.sampled_from(TAKEN),
    dtype=st.sampled_from(DTYPES),
    cuts=st.lists(st.integers(1, 3000), max_size=6),
    blocked=st.booleans(),
)
def test_the_loop_decodes_what_python_decodes(
    values: np.ndarray, which: int, dtype: type, cuts: list[int], blocked: bool
) -> None:
    n = values.size
    if blocked and n:
        data = codec.encode_blocks(values, which, ends_of(n, cuts))
    else:
        data = codec.encode(values, which)
    want = py_decode(data, dtype)
    assert np.array_equal(want, values.astype(dtype))  # the reference is right to begin with
    got = c_decode(data, dtype)
    if n == 0:
        assert codec.decode(data, np.dtype(dtype), rows=0).size == 0
        return
    assert got is not None, f"declined a page of form {data[0]}"
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert np.array_equal(codec.decode(data, np.dtype(dtype), rows=n), want)  # the road taken
    lo = 0
    for hi in codec._block_table(data)[0] if data[0] == codec.CODEC_BLOCKS else [n]:
        block = codec.decode_block(data, np.dtype(dtype), lo, hi, rows=n)
        assert np.array_equal(block, want[lo:hi])
        lo = hi


def test_every_page_form_is_met() -> None:
    """The examples above reach each form the loop takes (else the property proves little)."""
    rng = np.random.default_rng(1)
    forms = {
        codec.CODEC_RAW: codec.encode(rng.integers(-(2**62), 2**62, 100), codec.CODEC_RAW),
        codec.CODEC_CONST: codec.encode(np.full(9, 2**63 - 1, np.int64), codec.CODEC_NARROW),
        codec.CODEC_NARROW: codec.encode(rng.integers(0, 9, 100), codec.CODEC_NARROW),
        codec.CODEC_NARROW_PLANES: codec.encode(rng.integers(0, 2**40, 900), codec.CODEC_NARROW),
        codec.CODEC_DELTA: codec.encode(rng.integers(0, 9, 100), codec.CODEC_DELTA),
        codec.CODEC_DELTA_PLANES: codec.encode(rng.integers(0, 2**40, 900), codec.CODEC_DELTA),
    }
    for form, data in forms.items():
        assert data[0] == form
        got = c_decode(data, np.int64)
        assert got is not None and np.array_equal(got, py_decode(data, np.int64))


@pytest.mark.parametrize(
    "data",
    [
        codec.encode(np.arange(50, dtype=np.uint64) * 7919, codec.CODEC_TABLE),
        codec.encode_ids(np.repeat(np.arange(1, 40, dtype=np.uint64) * 2**40, 3)),
        codec.encode_blocks(
            np.arange(200, dtype=np.int64) % 7, codec.CODEC_TABLE, np.array([100, 200])
        ),
    ],
    ids=["table", "ids", "blocks-of-tables"],
)
def test_forms_left_to_python_are_declined(data: bytes) -> None:
    assert c_decode(data, np.uint64) is None
    got = codec.decode(data, np.dtype(np.uint64))  # and still decoded, by Python
    assert np.array_equal(got, py_decode(data, np.uint64))


@settings(max_examples=200, deadline=None)
@given(
    which=st.sampled_from(TAKEN),
    wide=st.booleans(),
    blocked=st.booleans(),
    damage=st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=3),
    near_head=st.booleans(),
    cut=st.integers(0, 3),
)
def test_damaged_pages_fail_or_agree_on_both_roads(
    which: int, wide: bool, blocked: bool, damage: list[tuple[int, int]], near_head: bool,
    cut: int,
) -> None:  # fmt: skip
    rng = np.random.default_rng(len(damage))
    values = rng.integers(0, 2**40 if wide else 200, 3000)
    values[::7] = values[0]
    data = (codec.encode_blocks(values, which, np.array([700, 1900, 3000])) if blocked
            else codec.encode(values, which))  # fmt: skip
    bad = bytearray(data[: len(data) - cut])
    for at, byte in damage:  # the heads and tables, or anywhere
        bad[at % (min(64, len(bad)) if near_head else len(bad))] = byte
    got_c, got_py = both_ways(bytes(bad), np.int64)
    if isinstance(got_c, str) or isinstance(got_py, str):
        assert got_c == got_py == "corrupt"
    else:
        assert isinstance(got_c, np.ndarray) and isinstance(got_py, np.ndarray)
        assert np.array_equal(got_c, got_py)


def test_pure_python_setting_turns_the_loop_off() -> None:
    code = "from kronicler.db import codec; print(codec.ACCELERATED)"
    for value, expected in (("1", "False"), ("", "True")):
        env = {**os.environ, "KRONICLER_PURE_PYTHON": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
        assert out.stdout.strip() == expected
