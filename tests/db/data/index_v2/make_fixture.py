import sys
sys.path.insert(0, "/work/main")
from kronicler.db import Database, index
assert index.VERSION == 2, index.VERSION
from tests.db.conftest import make_rows
BASE = 1_700_000_000_000_000_000
for seed, n, fns in ((31, 1400, 5), (32, 900, 4)):
    rows = make_rows(n, seed=seed, functions=fns, base=BASE + seed * 10**10)
    with Database.open("index_v2", chunk_rows=150, flush_interval=3600) as db:
        db.append(**rows)
        assert db.flush()
print("ok")
