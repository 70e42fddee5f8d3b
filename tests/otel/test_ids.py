"""Derived ids: the vectorised and the scalar form agree, and ids look like OTel ids."""

from __future__ import annotations

import numpy as np

from kronicler.otel import ids


def test_scalar_and_vector_ids_agree() -> None:
    counter = ids.new_counter()
    seqs = [next(counter) for _ in range(1000)]
    arr = np.array(seqs, dtype=np.uint64)
    assert ids.span_ids(arr).tolist() == [ids.span_id(s) for s in seqs]
    hi, lo = ids.trace_halves(arr)
    assert [int(h) << 64 | int(lo_) for h, lo_ in zip(hi, lo)] == [ids.trace_id(s) for s in seqs]


def test_ids_are_distinct_nonzero_and_spread() -> None:
    counter = ids.new_counter()
    seqs = np.array([next(counter) for _ in range(100_000)], dtype=np.uint64)
    span = ids.span_ids(seqs)
    assert len(np.unique(span)) == len(span)
    assert (span != 0).all()
    # consecutive seqs give unrelated ids: about half the bits differ
    flips = np.unpackbits((span[1:] ^ span[:-1]).view(np.uint8)).mean() * 64
    assert 28 < flips < 36


def test_zero_seq_means_no_span() -> None:
    assert ids.span_ids(np.array([0, 5], dtype=np.uint64))[0] == 0


def test_mix_is_a_bijection_on_a_sample() -> None:
    xs = np.arange(1 << 16, dtype=np.uint64) << np.uint64(40)
    assert len(np.unique(ids.mix_array(xs))) == len(xs)
