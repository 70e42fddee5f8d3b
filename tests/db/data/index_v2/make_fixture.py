"""How this fixture was written: by the build whose segment index is of format 2 (main at
826eb0b), run from this folder's parent with that checkout first on the path:

    PYTHONPATH=/path/to/that/checkout python index_v2/make_fixture.py

Two closed segments of ``make_rows`` rows (seeds 31 and 32), chunks of 150 rows; the test
(tests/db/test_index_lazy.py) writes the same rows to compare against.
"""

from __future__ import annotations

from kronicler.db import Database, index
from tests.db.conftest import make_rows

BASE = 1_700_000_000_000_000_000

if __name__ == "__main__":
    assert index.VERSION == 2, index.VERSION
    for seed, n, fns in ((31, 1400, 5), (32, 900, 4)):
        rows = make_rows(n, seed=seed, functions=fns, base=BASE + seed * 10**10)
        with Database.open("index_v2", chunk_rows=150, flush_interval=3600) as db:
            db.append(**rows)
            assert db.flush()
