"""Decoding the pages a cut chunk and an exact answer read, on both roads (C loop and Python).

Run by hand:  python bench/bench_decode.py [--db DIR]

Times, best and median of many runs in one process:

* one 65,536-row chunk ordered by function (bench_db.py's workload): its start, duration and
  status pages, each cut into ~16 blocks of byte planes, decoded whole: what a range whose edge
  cuts the chunk reads (``reads.SegmentSet._cut_rows``);
* the sorted durations of one function, ~20 runs of 5,000 values (DELTA pages of byte planes):
  what ``stats(name, exact=True)`` reads per segment (``durations.read_runs``), decoded into one
  array;
* with ``--db``, the same on the real pages of a database (its 4th segment's chunk 100 and the
  runs of its ~1% function), e.g. ``--db /work/scale-tmp/s6cold/b1/db``.

The road is switched in-process (``codec._fast``), so both columns see the same machine load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_db import workload  # noqa: E402

from kronicler.db import chunk, codec, durations  # noqa: E402
from kronicler.db.schema import COLUMNS  # noqa: E402

ROWS = 65_536
CUT = ("start", "duration", "status")


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(best, median) milliseconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3, statistics.median(times) * 1e3


def synthetic_pages() -> tuple[dict[str, bytes], list[tuple[bytes, int]]]:
    """A chunk's cut columns' pages, and one function's sorted runs, from bench_db's rows."""
    data = workload(ROWS)
    cols = {"name": data["codes"].astype(np.uint32), "start": data["start"],
            "duration": data["duration"], "status": data["status"]}  # fmt: skip
    cols = chunk.by_function(cols)
    ends = np.cumsum(np.bincount(cols["name"].astype(np.int64)))
    blocks = chunk.block_ends(ends[ends > np.r_[0, ends[:-1]]])
    pages = {c: codec.encode_blocks(cols[c], codec.COLUMN_CODECS[c], blocks) for c in CUT}
    rng = np.random.default_rng(7)
    runs = [np.sort(rng.lognormal(np.log(1e6), 1.0, 5000).astype(np.int64)) for _ in range(20)]
    return pages, [(codec.encode(r, codec.CODEC_DELTA), r.size) for r in runs]


def database_pages(db: Path) -> tuple[dict[str, bytes], list[tuple[bytes, int]]]:
    """The same from a database's files: a chunk of its 4th segment, the runs of code 18."""
    import os

    from kronicler.db.reader import SegmentReader

    segments = db / "segments"
    ids = sorted(p.name.split(".")[0] for p in segments.glob("*.kseg"))
    reader = SegmentReader(segments, ids[min(3, len(ids) - 1)])
    reader.refresh()
    info = reader.chunk(100) or reader.chunk(0)
    if info is None:
        raise SystemExit(f"{db}: no readable chunk in segment {reader.id}")
    pages = {c: bytes(reader.read_page(info, c)) for c in CUT}
    runs: list[tuple[bytes, int]] = []
    path = durations.path_of(segments, reader.id)
    fd = os.open(path, os.O_RDONLY)
    try:
        for g in durations.read_groups(path):
            k = int(np.searchsorted(g.codes, 18))
            if k < len(g.codes) and int(g.codes[k]) == 18:
                runs.append((os.pread(fd, int(g.lengths[k]), int(g.offsets[k])), int(g.counts[k])))
    finally:
        os.close(fd)
    reader.close()
    return pages, runs


def measure(pages: dict[str, bytes], runs: list[tuple[bytes, int]], repeat: int) -> None:
    roads = {"C loop": codec._fast, "Python": None}
    if codec._fast is None:
        print("(the C loop is not built, or KRONICLER_PURE_PYTHON is set: Python only)")
        roads = {"Python": None}
    saved = codec._fast
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    joined = np.empty(sum(n for _, n in runs), dtype=np.int64)

    def read_runs() -> None:
        pos = 0
        for data, n in runs:
            codec.decode_into(data, joined[pos : pos + n])
            pos += n

    try:
        for road, module in roads.items():
            codec._fast = module
            got = rows.setdefault(road, {})
            for c in CUT:
                got[c] = timed(lambda c=c: codec.decode(pages[c], COLUMNS[c]), repeat)
            got["chunk (3 pages)"] = timed(
                lambda: [codec.decode(pages[c], COLUMNS[c]) for c in CUT], repeat
            )
            got[f"{len(runs)} sorted runs"] = timed(read_runs, repeat)
    finally:
        codec._fast = saved
    names = list(next(iter(rows.values())))
    print(f"{'ms, best / median':32}" + "".join(f"{r:>22}" for r in rows))
    for name in names:
        print(f"{name:32}" + "".join(f"{b:12.3f} / {m:7.3f}" for b, m in
                                     (rows[r][name] for r in rows)))  # fmt: skip
    sizes = ", ".join(f"{c} {len(pages[c]) / ROWS:.2f} B/row" for c in CUT)
    print(f"pages: {sizes}; runs: {sum(n for _, n in runs):,} values")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="also decode this database's real pages")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print("== synthetic chunk (bench_db.py's rows) ==")
    measure(*synthetic_pages(), args.repeat)
    if args.db is not None:
        print(f"\n== {args.db} ==")
        measure(*database_pages(args.db), args.repeat)


if __name__ == "__main__":
    main()
