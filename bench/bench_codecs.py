"""Codec comparison per column: bytes/row and encode/decode speed on one 65,536-row chunk.

Run by hand:  python bench/bench_codecs.py

Uses the workload of bench_db.py. For each column it tries every integer codec (and zlib as the
baseline general-purpose compressor on the raw little-endian bytes) and marks the one chosen in
``kronicler.db.codec.COLUMN_CODECS``. Columns marked ``*`` hold ids made as the capture path
makes them (see ``kronicler.otel.ids``) instead of the workload's random ids.
"""

from __future__ import annotations

import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_db import workload  # noqa: E402

from kronicler.db import codec  # noqa: E402
from kronicler.otel import ids  # noqa: E402

ROWS = 65_536
NAMES = {
    codec.CODEC_RAW: "raw",
    codec.CODEC_NARROW: "narrow+shuffle+zstd",
    codec.CODEC_DELTA: "delta+zigzag+shuffle+zstd",
    codec.CODEC_TABLE: "distinct table+index",
    codec.CODEC_SEQ: "unmix+xor steps+shuffle+zstd",
    codec.CODEC_IDS: "ids: best of seq/table/raw",
}


def best_of(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def main() -> None:
    data = workload(ROWS)
    columns = {
        "name": data["codes"].astype(np.uint32),
        "start": data["start"],
        "duration": data["duration"],
        "status": data["status"],
        "trace_hi": data["trace"][:, :8].copy().view(">u8").reshape(-1).astype(np.uint64),
        "span_id": data["span"],
    }
    # Kronicler's own ids (a counter, mixed), in a chunk ordered by function then start.
    order = np.argsort(columns["name"], kind="stable")
    seqs = np.arange(1, ROWS + 1, dtype=np.uint64)[order]
    columns["span_id*"] = ids.span_ids(seqs)
    columns["trace_hi*"] = ids.trace_halves(seqs)[0]
    print(f"{'column':10s} {'codec':28s} {'B/row':>7s} {'enc ms':>7s} {'dec ms':>7s}")
    for name, values in columns.items():
        for cid, label in NAMES.items():
            encoded = codec.encode(values, cid)
            enc = best_of(lambda v=values, c=cid: codec.encode(v, c))
            dec = best_of(lambda e=encoded, d=values.dtype: codec.decode(e, d))
            chosen = " <- chosen" if codec.COLUMN_CODECS[name.rstrip("*")] == cid else ""
            print(
                f"{name:10s} {label:28s} {len(encoded) / ROWS:7.3f} {enc:7.2f} {dec:7.2f}{chosen}"
            )
        raw = values.astype(values.dtype.newbyteorder("<")).tobytes()
        packed = zlib.compress(raw, 6)
        enc = best_of(lambda r=raw: zlib.compress(r, 6))
        dec = best_of(lambda p=packed: zlib.decompress(p))
        print(f"{name:10s} {'zlib-6 on raw bytes (baseline)':28s} {len(packed) / ROWS:7.3f} "
              f"{enc:7.2f} {dec:7.2f}")  # fmt: skip
    parents = data["parent"]
    encoded = codec.encode_parents(parents, data["span"])
    enc = best_of(lambda: codec.encode_parents(parents, data["span"]))
    dec = best_of(lambda: codec.decode_parents(encoded, data["span"]))
    print(f"{'parent':10s} {'row references':28s} {len(encoded) / ROWS:7.3f} {enc:7.2f} {dec:7.2f}"
          " <- chosen")  # fmt: skip
    raw = codec.encode(parents, codec.CODEC_NARROW)
    print(f"{'parent':10s} {'narrow+shuffle+zstd':28s} {len(raw) / ROWS:7.3f}")


if __name__ == "__main__":
    main()
