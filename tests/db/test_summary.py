"""Mergeable summaries: the 1% quantile guarantee, exact merging, grouping and the block codec."""

from __future__ import annotations

import math
from functools import reduce

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kronicler.db.summary import (
    GAMMA,
    MAX_KEY,
    RELATIVE_ACCURACY,
    Summary,
    bucket_keys,
    bucket_representatives,
    summarize_groups,
    summarize_runs,
)
from kronicler.db.summary_codec import decode_columns, decode_summaries, encode_summaries
from kronicler.errors import CorruptPageError, SchemaVersionError

QS = [0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0]
settings.register_profile("kronicler", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("kronicler")


@st.composite
def durations(draw: st.DrawFn, min_size: int = 1, max_size: int = 400) -> np.ndarray:
    """Durations from the shapes that matter: lognormal, uniform, with zeros, constant, huge."""
    kind = draw(st.sampled_from(["lognormal", "uniform", "zeros", "constant", "huge", "listed"]))
    n = draw(st.integers(min_size, max_size))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "lognormal":
        sigma = draw(st.floats(0.05, 3.0))
        v = rng.lognormal(math.log(1e6), sigma, n).astype(np.int64)
    elif kind == "uniform":
        hi = draw(st.integers(1, 2**40))
        v = rng.integers(0, hi, n, dtype=np.int64, endpoint=True)
    elif kind == "zeros":
        v = rng.integers(0, 1000, n, dtype=np.int64)
        v[rng.random(n) < draw(st.floats(0.0, 1.0))] = 0
    elif kind == "constant":
        v = np.full(n, draw(st.integers(0, 2**62)), dtype=np.int64)
    elif kind == "huge":
        v = rng.integers(2**50, 2**62, n, dtype=np.int64, endpoint=True)
    else:
        v = np.array(draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n)), dtype=np.int64)
    return v


def assert_same_buckets(a: Summary, b: Summary) -> None:
    """Everything that merges exactly is equal; float moments agree to rounding."""
    assert (a.count, a.min, a.max, a.zero_count) == (b.count, b.min, b.max, b.zero_count)
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert math.isclose(a.sum, b.sum, rel_tol=1e-12)
    scale = max(1.0, a.sum * (a.max or 0))  # m2's rounding scales with the values
    assert math.isclose(a.m2, b.m2, rel_tol=1e-9, abs_tol=1e-12 * scale)


# -- the mapping ---------------------------------------------------------------------------------


def test_every_integer_up_to_a_million_is_within_one_percent_of_its_bucket_representative() -> None:
    v = np.arange(1, 1_000_001, dtype=np.int64)
    rep = bucket_representatives(bucket_keys(v))
    assert np.all(np.abs(rep - v) <= RELATIVE_ACCURACY * v)


def test_values_at_bucket_boundaries_stay_within_one_percent_despite_float_rounding() -> None:
    from kronicler.db.summary import GAMMA

    bounds = GAMMA ** np.arange(1, MAX_KEY, dtype=np.float64)
    near = np.concatenate([np.floor(bounds) + d for d in (-1, 0, 1, 2)])
    near = near[(near >= 1) & (near < 2.0**62)].astype(np.int64)
    rep = bucket_representatives(bucket_keys(near))
    exact = [int(x) for x in near]
    assert all(abs(float(r) - x) <= 0.01 * x for r, x in zip(rep, exact, strict=True))


def test_keys_of_int64_durations_lie_in_zero_to_max_key() -> None:
    keys = bucket_keys(np.array([1, 2, 2**62, 2**63 - 1], dtype=np.int64))
    assert keys.min() == 0 and keys.max() <= MAX_KEY


# -- quantiles -----------------------------------------------------------------------------------


@given(durations(), st.lists(st.floats(0.0, 1.0), max_size=5))
def test_quantiles_are_within_one_percent_of_the_exact_lower_quantile(
    values: np.ndarray, extra_qs: list[float]
) -> None:
    s = Summary.from_values(values)
    qs = QS + extra_qs
    exact = np.quantile(values, qs, method="lower")
    for q, est, x in zip(qs, s.quantiles(qs), exact, strict=True):
        assert est is not None
        assert abs(est - int(x)) <= RELATIVE_ACCURACY * int(x), (q, est, int(x))
        assert est == s.quantile(q)


@given(durations())
def test_extreme_quantiles_are_min_and_max_exactly(values: np.ndarray) -> None:
    s = Summary.from_values(values)
    # Quantiles are floats, so past 2**53 "exactly" means the nearest float.
    assert s.min == int(values.min()) and s.quantile(0) == float(s.min)
    assert s.max == int(values.max()) and s.quantile(1) == float(s.max)


def test_a_single_duration_is_every_quantile() -> None:
    s = Summary.from_values([1234567])
    assert s.quantiles([0, 0.3, 0.5, 0.99, 1]) == [1234567.0] * 5
    assert s.stddev == 0.0 and s.stderr == 0.0 and s.variance == 0.0


def test_zero_durations_are_counted_apart_and_answer_zero() -> None:
    s = Summary.from_values([0, 0, 0, 5, 1000])
    assert s.zero_count == 3 and int(s.counts.sum()) == 2
    assert s.quantile(0.5) == 0.0
    lower, upper, counts = s.buckets()
    assert (lower[0], upper[0], counts[0]) == (0.0, 0.0, 3)


@pytest.mark.parametrize("q", [-0.01, 1.0001, float("nan"), "half", None])
def test_a_quantile_outside_zero_to_one_raises_value_error_naming_it(q: object) -> None:
    s = Summary.from_values([1, 2, 3])
    # "half" and None are wrong types on purpose: the runtime check is what is tested
    with pytest.raises(ValueError, match="quantile q"):
        s.quantile(q)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quantile q"):
        s.quantiles([0.5, q])  # type: ignore[list-item]


def test_an_empty_summary_answers_none() -> None:
    s = Summary.from_values([])
    assert s == Summary.empty()
    assert (s.count, s.min, s.max, s.mean, s.variance, s.stddev, s.stderr) == (
        0,
        None,
        None,
        None,
        None,
        None,
        None,
    )
    assert s.quantile(0.5) is None and s.quantiles([0.1, 0.9]) == [None, None]
    assert [b.size for b in s.buckets()] == [0, 0, 0]


# -- moments and histogram -----------------------------------------------------------------------


@given(durations(min_size=2))
def test_mean_and_sample_variance_match_numpy(values: np.ndarray) -> None:
    s = Summary.from_values(values)
    vf = values.astype(np.float64)
    assert s.mean is not None and s.variance is not None and s.stderr is not None
    assert math.isclose(s.mean, vf.mean(), rel_tol=1e-9)
    var = vf.var(ddof=1)
    assert math.isclose(s.variance, var, rel_tol=1e-6, abs_tol=1e-9 * vf.max() ** 2)
    assert math.isclose(s.stderr, math.sqrt(s.variance) / math.sqrt(len(values)))


@given(durations())
def test_histogram_buckets_hold_their_values(values: np.ndarray) -> None:
    lower, upper, counts = Summary.from_values(values).buckets()
    assert int(counts.sum()) == len(values)
    for lo, hi, c in zip(lower, upper, counts, strict=True):
        inside = (values > lo) & (values <= hi) if hi > 0 else values == 0
        assert int(inside.sum()) == c


def test_bad_values_raise_value_error_naming_the_problem() -> None:
    with pytest.raises(ValueError, match=">= 0, got -5"):
        Summary.from_values([3, -5])
    with pytest.raises(ValueError, match="integer nanoseconds"):
        Summary.from_values([1.5, 2.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        Summary.from_values([[1, 2]])
    with pytest.raises(ValueError, match="int64 maximum"):
        Summary.from_values(np.array([2**64 - 1], dtype=np.uint64))


def test_summaries_are_immutable() -> None:
    s = Summary.from_values([1, 2, 3])
    with pytest.raises(AttributeError):
        s.count = 4  # type: ignore[misc]  # writing a frozen field on purpose
    with pytest.raises(ValueError):
        s.counts[0] = 9


# -- merging -------------------------------------------------------------------------------------


@given(durations(min_size=0), durations(min_size=0), durations(min_size=0))
def test_merge_is_associative_and_commutative(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    sa, sb, sc = (Summary.from_values(x) for x in (a, b, c))
    assert_same_buckets(sa.merge(sb), sb.merge(sa))
    assert_same_buckets(sa.merge(sb).merge(sc), sa.merge(sb.merge(sc)))


@given(durations(min_size=1, max_size=600), st.lists(st.floats(0, 1), max_size=6))
def test_merging_pieces_equals_the_summary_of_the_whole(
    values: np.ndarray, cut_fractions: list[float]
) -> None:
    cuts = sorted({int(f * len(values)) for f in cut_fractions})
    pieces = [Summary.from_values(p) for p in np.split(values, cuts)]
    whole = Summary.from_values(values)
    assert_same_buckets(Summary.merge_all(pieces), whole)
    assert_same_buckets(reduce(Summary.merge, pieces), whole)


@given(st.lists(durations(min_size=0, max_size=50), max_size=12))
def test_merge_all_equals_pairwise_merging(parts: list[np.ndarray]) -> None:
    summaries = [Summary.from_values(p) for p in parts]
    pairwise = reduce(Summary.merge, summaries, Summary.empty())
    assert_same_buckets(Summary.merge_all(summaries), pairwise)


def test_merge_all_skips_none_and_empties() -> None:
    s = Summary.from_values([10, 20])
    assert Summary.merge_all([None, Summary.empty(), s, None]) == s
    assert Summary.merge_all([]) == Summary.empty()


def test_merged_counts_stay_exact_beyond_float_precision() -> None:
    big = Summary.from_dict(
        {
            "count": 2**60,
            "sum": 2.0**70,
            "m2": 0.0,
            "min": 1024,
            "max": 1024,
            "zero_count": 0,
            "keys": bucket_keys(np.array([1024])).tolist(),
            "counts": [2**60],
        }
    )
    merged = Summary.merge_all([big, big, Summary.from_values([1024])])
    assert merged.count == 2**61 + 1 and merged.counts.tolist() == [2**61 + 1]


def test_m2_merges_stably_for_long_tightly_spread_durations() -> None:
    # 10 s calls varying by a few ns: sum of squares minus squared sum loses every digit here.
    values = 10**10 + np.arange(1000, dtype=np.int64) % 7
    pieces = [Summary.from_values(p) for p in np.array_split(values, 10)]
    exact = values.astype(float).var(ddof=1)
    variance = Summary.merge_all(pieces).variance
    assert variance is not None and math.isclose(variance, exact, rel_tol=1e-6)
    vf = values.astype(float)
    naive = (np.square(vf).sum() - vf.sum() ** 2 / len(vf)) / (len(vf) - 1)
    assert not math.isclose(naive, exact, rel_tol=1e-3)


# -- grouping ------------------------------------------------------------------------------------


@given(
    st.integers(1, 30),
    durations(min_size=0, max_size=500),
    st.integers(0, 2**32 - 1),
)
def test_summarize_groups_equals_per_group_summaries(
    n_groups: int, values: np.ndarray, seed: int
) -> None:
    codes = np.random.default_rng(seed).integers(0, n_groups, len(values))
    grouped = summarize_groups(codes, values, n_groups)
    assert len(grouped) == n_groups
    for g in range(n_groups):
        mine = values[codes == g]
        if mine.size == 0:
            assert grouped[g] is None
        else:
            got = grouped[g]
            assert got is not None
            assert_same_buckets(got, Summary.from_values(mine))


@given(durations(min_size=0, max_size=500), st.lists(st.integers(0, 80), max_size=12))
def test_summarize_runs_equals_each_runs_summary(values: np.ndarray, cuts: list[int]) -> None:
    """Consecutive runs (some empty, some all zeros, the last taking what is left) summarised
    at once give each run's own summary: buckets, zeros, min and max exactly."""
    sizes = [0 if sum(cuts[:i]) >= values.size else c for i, c in enumerate(cuts)]
    sizes = [*sizes, max(0, values.size - sum(sizes))]
    if sum(sizes) != values.size:  # the cuts ran past the values: one run of them all
        sizes = [values.size]
    runs = summarize_runs(values, np.array(sizes))
    present = [i for i, k in enumerate(sizes) if k]
    assert runs.present.tolist() == present
    at = np.concatenate(([0], np.cumsum(sizes)))
    for row, i in enumerate(present):
        a, b = int(runs.bounds[row]), int(runs.bounds[row + 1])
        got = Summary(int(runs.rows[row]), float(runs.sum[row]), float(runs.m2[row]),
                      int(runs.min[row]), int(runs.max[row]), int(runs.zero_count[row]),
                      runs.keys[a:b], runs.counts[a:b])  # fmt: skip
        assert_same_buckets(got, Summary.from_values(values[at[i] : at[i + 1]]))


def test_summarize_runs_keys_are_bucket_keys_at_the_extremes() -> None:
    """1 ns, the largest int64 and values at bucket boundaries, beside zeros, in one run."""
    edges = np.ceil(GAMMA ** np.arange(0, 40, dtype=np.float64)).astype(np.int64)
    values = np.concatenate(([0, 1, 2, 2**63 - 1, 0], edges, edges - 1, edges + 1))
    values = values[values >= 0]
    runs = summarize_runs(values, np.array([values.size]))
    want = Summary.from_values(values)
    np.testing.assert_array_equal(runs.keys, want.keys)
    np.testing.assert_array_equal(runs.counts, want.counts)
    assert int(runs.zero_count[0]) == want.zero_count == int((values == 0).sum())


def test_summarize_groups_handles_many_groups_without_a_dense_table() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 200_000, 5000)
    values = rng.integers(0, 2**62, 5000, dtype=np.int64)
    grouped = summarize_groups(codes, values, 200_000)
    for g in np.unique(codes)[:50]:
        got = grouped[g]
        assert got is not None
        assert_same_buckets(got, Summary.from_values(values[codes == g]))


def test_summarize_groups_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="group_codes must be in"):
        summarize_groups(np.array([0, 3]), np.array([1, 2]), 3)
    with pytest.raises(ValueError, match="must match"):
        summarize_groups(np.array([0]), np.array([1, 2]), 3)
    with pytest.raises(ValueError, match="n_groups"):
        summarize_groups(np.array([0]), np.array([1]), -1)
    with pytest.raises(ValueError, match=">= 0"):
        summarize_groups(np.array([0]), np.array([-1]), 1)


# -- the block codec -----------------------------------------------------------------------------


@given(st.lists(st.tuples(st.integers(0, 2**40), durations(min_size=0, max_size=200)), max_size=20))
def test_encoded_blocks_decode_to_the_same_summaries(groups: list[tuple[int, np.ndarray]]) -> None:
    entries = [(g, Summary.from_values(v)) for g, v in groups]
    decoded = decode_summaries(encode_summaries(entries))
    assert decoded == entries


def test_blocks_round_trip_merged_summaries_with_huge_counts() -> None:
    s = Summary.from_values(np.random.default_rng(0).lognormal(10, 2, 5000).astype(np.int64))
    huge = Summary.merge_all([s] * 300)
    giant = Summary.from_dict(
        {
            **s.to_dict(),
            "counts": (s.counts * 2**40).tolist(),
            "count": s.zero_count + int(s.counts.sum()) * 2**40,
        }
    )
    entries = [(0, huge), (1, Summary.empty()), (7, giant), (9, Summary.from_values([0, 0]))]
    assert decode_summaries(encode_summaries(entries)) == entries
    assert decode_summaries(encode_summaries([])) == []


def test_to_dict_round_trips() -> None:
    s = Summary.from_values([0, 3, 99, 10**9])
    assert Summary.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="strictly"):
        Summary.from_dict({**s.to_dict(), "keys": s.keys.tolist()[::-1]})
    with pytest.raises(ValueError, match="count"):
        Summary.from_dict({**s.to_dict(), "count": 99})


def test_damaged_blocks_raise_corrupt_page_error() -> None:
    block = encode_summaries([(1, Summary.from_values([5, 6, 7000]))])
    with pytest.raises(CorruptPageError):
        decode_summaries(block[:10])
    with pytest.raises(CorruptPageError):
        decode_summaries(b"XXXX" + block[4:])
    with pytest.raises(CorruptPageError):
        decode_summaries(block[:-3])
    damaged = bytearray(block)
    damaged[-5] ^= 0xFF
    with pytest.raises(CorruptPageError):
        decode_summaries(bytes(damaged))
    future = bytearray(block)
    future[4] = 99
    with pytest.raises(SchemaVersionError):
        decode_summaries(bytes(future))


def test_a_page_of_the_reference_workload_costs_well_under_half_a_byte_per_row() -> None:
    rng = np.random.default_rng(7)
    p = 1.0 / np.arange(1, 101)
    codes = rng.choice(100, size=65_536, p=p / p.sum())
    values = rng.lognormal(math.log(1e6), 1.0, 65_536).astype(np.int64)
    entries = [(g, s) for g, s in enumerate(summarize_groups(codes, values, 100)) if s is not None]
    block = encode_summaries(entries)
    assert len(block) / 65_536 < 0.25
    assert decode_summaries(block) == entries


@st.composite
def nibble_edges(draw: st.DrawFn) -> list[tuple[int, Summary]]:
    """Summaries whose bucket counts sit around the nibble's limit (14, 15, 16 and far past it),
    with gaps between keys, interleaved with summaries that have no bucket (zeros only, empty)."""
    out: list[tuple[int, Summary]] = []
    for g in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["buckets", "zeros", "empty"]))
        if kind == "empty":
            out.append((g, Summary.empty()))
            continue
        if kind == "zeros":
            out.append((g, Summary.from_values(np.zeros(draw(st.integers(1, 40)), np.int64))))
            continue
        keys = sorted(draw(st.sets(st.integers(1, 600), min_size=1, max_size=30)))
        reps = [draw(st.sampled_from([1, 2, 14, 15, 16, 17, 30, 255, 70_000])) for _ in keys]
        values = np.repeat(np.ceil(1.0201 ** np.array(keys, dtype=np.float64)), reps)
        zeros = np.zeros(draw(st.integers(0, 3)), np.int64)
        out.append((g, Summary.from_values(np.concatenate((values.astype(np.int64), zeros)))))
    return out


@given(nibble_edges())
def test_block_columns_decode_counts_at_the_nibble_limit_and_entries_without_buckets(
    entries: list[tuple[int, Summary]],
) -> None:
    c = decode_columns(encode_summaries(entries))
    assert c.groups.tolist() == [g for g, _ in entries]
    assert c.bounds.tolist() == np.cumsum([0] + [s.keys.size for _, s in entries]).tolist()
    assert c.keys.dtype == np.int32 and c.counts.dtype == np.int64
    for i, (_, s) in enumerate(entries):
        a, b = int(c.bounds[i]), int(c.bounds[i + 1])
        np.testing.assert_array_equal(c.keys[a:b], s.keys)
        np.testing.assert_array_equal(c.counts[a:b], s.counts)
        assert (int(c.count[i]), int(c.zero_count[i])) == (s.count, s.zero_count)
    assert not c.keys.flags.writeable and not c.counts.flags.writeable


@pytest.mark.parametrize("key", [MAX_KEY + 1, 2**31 + 5])
def test_a_block_with_bucket_keys_no_duration_maps_to_is_refused(key: int) -> None:
    """Keys past MAX_KEY come only from damage that passed the checksums (or a foreign
    writer); read as int32 they would wrap to other buckets, so the block is refused."""
    s = Summary(3, 3e18, 0.0, 10**18, 10**18, 0, np.array([key], np.int32 if key < 2**31
                else np.int64), np.array([3], np.int64))  # fmt: skip
    with pytest.raises(CorruptPageError, match="out of range"):
        decode_columns(encode_summaries([(0, Summary.from_values([5, 6])), (1, s)]))
