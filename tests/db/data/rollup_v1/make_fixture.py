"""How this fixture was written: by the build whose roll-up files hold only the tree's nodes, no
prefix or suffix records (main at 0b664b9), run from the repository's root with that checkout
first on the path:

    PYTHONPATH=/path/to/that/checkout:. python tests/db/data/rollup_v1/make_fixture.py

Two closed segments of rows from ``rows()`` (700 and 520 rows in roughly increasing start
order, their time ranges overlapping), chunks of 16 rows: 44 and 33 chunks (the last one alone
in its level-1 node). The test (tests/db/test_edge_records.py) makes the same rows to compare
against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.oracle.truth import Rows, generate

HERE = Path(__file__).resolve().parent
BASE = 1_800_000_000_000_000_000
FUNCTIONS = ("a.one", "a.two", "b.three", "c.four")
CHUNK = 16


def rows() -> list[Rows]:
    """The fixture's rows, one Rows per segment."""
    rng = np.random.default_rng(41)
    out = []
    for lane, n in enumerate((700, 520)):
        part = generate(rng, n, FUNCTIONS, base=BASE, span=10**10, lane=lane)
        order = np.argsort(part.start, kind="stable")
        swap = np.flatnonzero(rng.random(n - 1) < 0.3)  # neighbours swapped: chunks overlap
        for i in swap.tolist():
            order[i], order[i + 1] = order[i + 1], order[i]
        out.append(part.take(order))
    return out


if __name__ == "__main__":
    from kronicler.db import Database, rollup

    assert not hasattr(rollup, "suffixes"), "run with the older build first on the path"
    for part in rows():
        with Database.open(HERE, chunk_rows=CHUNK, flush_interval=3600) as db:
            assert db.append(**part.append_kwargs()) == len(part)
            assert db.flush()
