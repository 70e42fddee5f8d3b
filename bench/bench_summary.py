"""Benchmark of kronicler.db.summary on the storage issue's workload (run by hand).

    PYTHONPATH=. python bench/bench_summary.py [--pages 150] [--seed 1]

Workload: pages of 65,536 rows, 100 functions with Zipf-like frequencies (p_i ~ 1/i), lognormal
durations with median 1 ms and sigma 1. Prints, per page: bytes/row of the encoded summary block
(and of the alternative layouts it was chosen against), encode/decode time per block and
summarize_groups time; for the whole run: merge_all time over pages x functions summaries, against
the named baseline of exact quantiles from the raw durations (numpy sort per function), and the
largest relative quantile error seen.
"""

from __future__ import annotations

import argparse
import math
import sys  # noqa: E402
import time
import zlib
from collections.abc import Callable
from pathlib import Path as _Path  # noqa: E402

import numpy as np
import zstandard

sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout

from kronicler.db import summary_codec
from kronicler.db.summary import Summary, summarize_groups
from kronicler.db.summary_codec import decode_summaries, encode_summaries

ROWS_PER_PAGE = 65_536
FUNCTIONS = 100
QS = [0.5, 0.9, 0.95, 0.99, 0.999]


def make_page(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    p = 1.0 / np.arange(1, FUNCTIONS + 1)
    codes = rng.choice(FUNCTIONS, size=ROWS_PER_PAGE, p=p / p.sum())
    durations = rng.lognormal(math.log(1e6), 1.0, ROWS_PER_PAGE).astype(np.int64)
    return codes, durations


def best_time(fn: Callable[[], object], repeat: int = 20) -> float:
    """Best wall time of ``repeat`` calls, in milliseconds."""
    fn()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


# -- alternative layouts the chosen one is compared with -------------------------------------------


def _scalars(entries: list[tuple[int, Summary]]) -> bytes:
    rows = [(g, s.count, s.zero_count, s.min or 0, s.max or 0, s.sum, s.m2) for g, s in entries]
    return np.array(rows, dtype="<u8,<u8,<u8,<u8,<u8,<f8,<f8").tobytes()


def _u8_escaped(a: np.ndarray) -> list[bytes]:
    return [np.minimum(a, 255).astype(np.uint8).tobytes(), a[a >= 255].astype("<u4").tobytes()]


def layout_raw(entries: list[tuple[int, Summary]]) -> list[bytes]:
    """Naive: scalars as u8/f8 records, keys int32, counts int64, no compression."""
    keys = np.concatenate([s.keys for _, s in entries]).astype("<i4")
    counts = np.concatenate([s.counts for _, s in entries]).astype("<i8")
    return [_scalars(entries), keys.tobytes(), counts.tobytes()]


def layout_sparse(entries: list[tuple[int, Summary]]) -> list[bytes]:
    """Key deltas and counts as escaped bytes, one stream each."""
    deltas = np.concatenate([np.diff(s.keys, prepend=s.keys[:1]) for _, s in entries])
    counts = np.concatenate([s.counts for _, s in entries])
    return [_scalars(entries), *_u8_escaped(deltas), *_u8_escaped(counts)]


def layout_bitmap(entries: list[tuple[int, Summary]]) -> list[bytes]:
    """Presence bitmap over each summary's key range plus (count - 1) as escaped bytes."""
    dense = np.concatenate(
        [np.bincount(s.keys - s.keys[0], weights=s.counts) for _, s in entries if s.keys.size]
    ).astype(np.int64)
    present = dense > 0
    return [_scalars(entries), np.packbits(present).tobytes(), *_u8_escaped(dense[present] - 1)]


def compressed_size(streams: list[bytes], compress: Callable[[bytes], bytes]) -> int:
    return sum(len(compress(s)) for s in streams if s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    pages = [make_page(rng) for _ in range(args.pages)]
    codes, durations = pages[0]
    groups = summarize_groups(codes, durations, FUNCTIONS)
    entries = [(g, s) for g, s in enumerate(groups) if s is not None]
    block = encode_summaries(entries)
    n_buckets = sum(s.keys.size for _, s in entries)
    print(f"page: {ROWS_PER_PAGE} rows, {len(entries)} functions, {n_buckets} non-empty buckets")

    print("\n== summary block size per page (bytes, bytes/row) ==")
    zstd3 = zstandard.ZstdCompressor(level=3).compress
    rows = ROWS_PER_PAGE
    for name, layout in [("raw", layout_raw), ("sparse", layout_sparse), ("bitmap", layout_bitmap)]:
        streams = layout(entries)
        raw = sum(map(len, streams))
        z = compressed_size(streams, zstd3)
        print(f"  {name:28s} raw {raw:7d} ({raw / rows:.3f})   zstd-3 {z:6d} ({z / rows:.3f})")
    for level in (1, 3, 9, 19):
        summary_codec._ZSTD_LEVEL = level
        size = len(encode_summaries(entries))
        enc = best_time(lambda: encode_summaries(entries))
        print(
            f"  {'chosen, zstd-' + str(level):28s} {size:7d} ({size / rows:.3f})   enc {enc:.3f} ms"
        )
    summary_codec._ZSTD_LEVEL = 3
    h = summary_codec.HEADER.unpack_from(block, 0)
    print(f"  chosen frames: scalars {h[-3]}, nibbles {h[-2]}, overflow {h[-1]} (+32 header)")
    plain = zstandard.ZstdDecompressor().decompress
    streams = [plain(block[32 : 32 + h[-3]]), plain(block[32 + h[-3] : 32 + h[-3] + h[-2]])]
    z9 = [zlib.compress(b, 9) for b in streams]
    zs = [zstandard.ZstdCompressor(level=3).compress(b) for b in streams]
    t_zlib = best_time(lambda: [zlib.decompress(b) for b in z9])
    t_zstd = best_time(lambda: [plain(b) for b in zs])
    print(
        f"  same scalars+nibbles streams: zlib-9 {sum(map(len, z9))} B, decompress {t_zlib:.3f} ms;"
        f" zstd-3 {sum(map(len, zs))} B, decompress {t_zstd:.3f} ms"
    )

    sizes = []
    for c, d in pages[: min(20, len(pages))]:
        gs = summarize_groups(c, d, FUNCTIONS)
        sizes.append(len(encode_summaries([(g, s) for g, s in enumerate(gs) if s is not None])))
    print(
        f"  chosen over {len(sizes)} pages: mean {np.mean(sizes):.0f} B = "
        f"{np.mean(sizes) / rows:.4f} B/row (max {max(sizes) / rows:.4f})"
    )

    print("\n== time per page / block ==")
    t_groups = best_time(lambda: summarize_groups(codes, durations, FUNCTIONS))
    t_loop = best_time(
        lambda: [Summary.from_values(durations[codes == g]) for g in range(FUNCTIONS)]
    )
    print(
        f"  summarize_groups      {t_groups:.3f} ms  (baseline, from_values per group {t_loop:.3f})"
    )
    print(f"  encode_summaries      {best_time(lambda: encode_summaries(entries)):.3f} ms")
    print(f"  decode_summaries      {best_time(lambda: decode_summaries(block)):.3f} ms")

    print(f"\n== query: {args.pages} pages x {FUNCTIONS} functions ==")
    t0 = time.perf_counter()
    per_page = [summarize_groups(c, d, FUNCTIONS) for c, d in pages]
    build = time.perf_counter() - t0
    flat = [s for page in per_page for s in page if s is not None]
    by_function = [[page[g] for page in per_page] for g in range(FUNCTIONS)]
    print(f"  building {len(flat)} summaries took {build * 1e3:.0f} ms")
    t_all = best_time(lambda: Summary.merge_all(flat), 5)
    print(f"  merge_all of all {len(flat)} summaries at once: {t_all:.1f} ms")
    t_each = best_time(lambda: [Summary.merge_all(fs) for fs in by_function], 5)
    t_q = best_time(lambda: [Summary.merge_all(fs).quantiles(QS) for fs in by_function], 5)
    print(
        f"  merge_all per function, all {FUNCTIONS} functions: {t_each:.1f} ms "
        f"(with 5 quantiles each: {t_q:.1f} ms)"
    )

    all_codes = np.concatenate([c for c, _ in pages])
    all_durations = np.concatenate([d for _, d in pages])

    def exact_all() -> list[np.ndarray]:
        order = np.argsort(all_codes, kind="stable")
        bounds = np.searchsorted(all_codes[order], np.arange(FUNCTIONS + 1))
        d = all_durations[order]
        return [
            np.quantile(d[bounds[g] : bounds[g + 1]], QS, method="lower") for g in range(FUNCTIONS)
        ]

    t_exact = best_time(exact_all, 2)
    print(
        f"  baseline exact quantiles from {all_durations.size} raw rows: {t_exact:.0f} ms "
        f"({t_exact / t_q:.0f}x slower)"
    )

    worst = 0.0
    for g, exact in enumerate(exact_all()):
        est = np.array(Summary.merge_all(by_function[g]).quantiles(QS), dtype=np.float64)
        worst = max(worst, float(np.max(np.abs(est - exact) / exact)))
    print(f"  largest relative quantile error over {FUNCTIONS} functions x {QS}: {worst:.7f}")


if __name__ == "__main__":
    main()
