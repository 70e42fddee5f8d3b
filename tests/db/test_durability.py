"""Durability under real process death, concurrency across processes, forks and memory bounds."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from kronicler.db import Database

ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from kronicler.db import Database
    path, run, batch, chunk_rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    db = Database.open(path, chunk_rows=chunk_rows, flush_interval=0.05)
    print("open", flush=True)
    i = 0
    while True:
        n = batch
        db.append([run] * n, np.arange(i, i + n) + 1_700_000_000_000_000_000, np.arange(i, i + n))
        i += n
        if i % (batch * 4) == 0:
            db.flush()
            print(i, flush=True)
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_sigkill_at_random_moments_leaves_an_intact_prefix(tmp_path):
    rng = random.Random(7)
    acknowledged: dict[str, int] = {}
    for attempt in range(20):
        run = f"run{attempt}"
        batch = rng.choice([100, 700, 3000])
        # Large chunks keep many rows in the tail log, in records of up to 12,000 rows (from
        # wal.NARROW_FROM rows a record's columns are stored narrowed).
        chunk_rows = 4096 if attempt % 2 else 1 << 16
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), run, str(batch), str(chunk_rows)],
            stdout=subprocess.PIPE, text=True, env=_env(),
        )  # fmt: skip
        # The random moment counts from the open database, not from interpreter start-up, which
        # on a loaded machine can take longer than the whole window.
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "open"
        time.sleep(rng.uniform(0.3, 1.2))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        lines = out.split()
        acknowledged[run] = int(lines[-1]) if lines else 0
    with Database.open(tmp_path) as db:
        stats = db.stats()
        for run, acked in acknowledged.items():
            scan = db.scan(["duration"], names=[run])
            stored = np.sort(scan.columns["duration"])
            # Everything acknowledged survived, and what survived is exactly rows 0..m-1.
            assert len(stored) >= acked, run
            assert np.array_equal(stored, np.arange(len(stored))), run
            if len(stored):
                assert stats[run].count == len(stored)
                assert stats[run].max == len(stored) - 1
    assert sum(acknowledged.values()) > 0


PRODUCER = textwrap.dedent(
    """
    import sys, numpy as np
    from kronicler.db import Database
    path, name = sys.argv[1], sys.argv[2]
    db = Database.open(path)
    for i in range(50):
        db.append([name] * 1000, np.arange(1000) + i * 1000 + 1_700_000_000_000_000_000,
                  np.full(1000, i))
    db.close()
    """
)


def test_four_processes_write_one_directory_and_all_rows_are_readable(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", PRODUCER, str(tmp_path), f"worker{i}"], env=_env())
        for i in range(4)
    ]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    with Database.open(tmp_path) as db:
        stats = db.stats()
        assert {k: v.count for k, v in stats.items()} == {f"worker{i}": 50_000 for i in range(4)}
        assert sum(v.count for v in stats.values()) == 200_000


def test_forked_child_writes_its_own_segment(tmp_path):
    db = Database.open(tmp_path)
    db.append(["parent"] * 10, np.arange(10), np.ones(10, int))
    db.flush()
    pid = os.fork()
    if pid == 0:  # child: must not touch the parent's writer or files
        try:
            db.append(["child"] * 7, np.arange(7), np.ones(7, int))
            db.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    db.append(["parent"] * 5, np.arange(5), np.ones(5, int))
    db.flush()
    assert {k: v.count for k, v in db.stats().items()} == {"parent": 15, "child": 7}
    db.close()


def _pool_task(args: tuple[str, int]) -> int:
    path, i = args
    db = _POOL_DB[0]
    db.append([f"task{i % 3}"] * 100, np.arange(100), np.full(100, i))
    return os.getpid()


_POOL_DB: list[Database] = []


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_fork_after_open_worker_pool_flushes_on_worker_exit(tmp_path):
    _POOL_DB[:] = [Database.open(tmp_path)]
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(2)
    pids = pool.map(_pool_task, [(str(tmp_path), i) for i in range(30)])
    pool.close()
    pool.join()
    assert len(set(pids)) >= 1
    with Database.open(tmp_path) as reader:
        assert sum(s.count for s in reader.stats().values()) == 3000
    _POOL_DB[0].close()


MEMORY = textwrap.dedent(
    """
    import sys, numpy as np
    from kronicler.db import Database

    def hwm_kb():
        # VmHWM is this process image's peak; ru_maxrss would include the parent's (pytest's) peak.
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(100)]
    routes = [{"http.route": f"/r{i}", "http.method": "GET"} for i in range(20)]
    batches = int(sys.argv[2])
    base = hwm_kb()
    db = Database.open(sys.argv[1], bufferpool_bytes=8 << 20)
    for i in range(batches):
        n = 10_000
        while not db.append(
            [names[j] for j in rng.integers(0, 100, n)], np.arange(n) + i * n,
            rng.lognormal(13, 1, n).astype(np.int64), service="shop",
            trace_id=rng.integers(0, 256, (n, 16), dtype=np.uint8),
            span_id=rng.integers(1, 2**63, n), parent_span_id=rng.integers(0, 2**63, n),
            attributes=[routes[j] for j in rng.integers(0, 20, n)],
        ):
            db.flush()  # the writer is behind: wait rather than drop
    db.flush()
    for name in names[:20]:
        db.slowest(name, k=3); db.stats(name, since=5, until=2_000_000)
    db.close()
    print((hwm_kb() - base) // 1024)
    """
)


def _peak_growth_mb(path: Path, batches: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY, str(path), str(batches)], capture_output=True, text=True,
        env=_env(), check=True, timeout=300,
    )  # fmt: skip
    return int(out.stdout.split()[-1])


def test_memory_stays_bounded_while_writing_and_reading(tmp_path):
    # Every column set (ids, service, attributes); 0.5M rows, then 3M rows.
    small = _peak_growth_mb(tmp_path / "small", 50)
    large = _peak_growth_mb(tmp_path / "large", 300)
    print("peak RSS growth (MB): 0.5M rows", small, "3M rows", large)
    # Six times the rows: memory must not follow (3M rows hold ~190 MB of raw column data).
    assert large - small < 40, (small, large)
    assert large < 150, large


STATS_CHILD = textwrap.dedent(
    """
    import json, sys
    from kronicler.db import Database
    with Database.open(sys.argv[1]) as db:
        print(json.dumps({k: v.to_dict() for k, v in db.stats().items()}))
    """
)


def test_a_new_process_sees_the_same_stats_after_restart(tmp_path):
    import json

    from .conftest import make_rows

    with Database.open(tmp_path) as db:
        db.append(**make_rows(70_000, seed=11))  # one sealed chunk and a tail
        db.flush()
        here = {k: v.to_dict() for k, v in db.stats().items()}
        out = subprocess.run(
            [sys.executable, "-c", STATS_CHILD, str(tmp_path)], capture_output=True, text=True,
            env=_env(), check=True, timeout=60,
        )  # fmt: skip
        assert json.loads(out.stdout) == here  # a reader while the writer is still open
    out = subprocess.run(
        [sys.executable, "-c", STATS_CHILD, str(tmp_path)], capture_output=True, text=True,
        env=_env(), check=True, timeout=60,
    )  # fmt: skip
    assert json.loads(out.stdout) == here  # and after the writer closed


FULL_DISK = textwrap.dedent(
    """
    import json, resource, signal, sys, numpy as np
    from kronicler.db import Database
    # Files of this process may not grow past 300 KB: writes beyond fail like a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
    db = Database.open(sys.argv[1], chunk_rows=2000, flush_interval=0.05)
    rng = np.random.default_rng(0)
    flushes, appended = [], 0
    for i in range(60):
        n = 1000
        appended += db.append(["f%d" % (i % 7)] * n, np.arange(appended, appended + n),
                              np.arange(appended, appended + n), span_id=rng.integers(1, 2**63, n))
        flushes.append(db.flush())
    dropped = db.dropped
    db.close()
    print(json.dumps({"appended": appended, "dropped": db.dropped, "flushes": flushes}))
    """
)


def test_a_full_disk_loses_only_what_it_must_and_says_so(tmp_path):
    import json

    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True,
        env=_env(), timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert False in report["flushes"]  # failures were reported by flush
    assert "could not write" in out.stderr and out.stderr.count("could not write") == 1
    with Database.open(tmp_path) as db:
        scan = db.scan(["duration"])
        stored = scan.columns["duration"]
        assert len(np.unique(stored)) == len(stored)  # nothing stored twice
        assert len(stored) + report["dropped"] == report["appended"]  # every row accounted for
        assert len(stored) > 0 and report["dropped"] > 0
        assert sum(s.count for s in db.stats().values()) == len(stored)


FULL_DISK_ATTRIBUTES = textwrap.dedent(
    """
    import json, resource, signal, sys, numpy as np
    from kronicler.db import Database
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
    db = Database.open(sys.argv[1], chunk_rows=2000, flush_interval=0.05)
    rng = np.random.default_rng(0)
    appended = 0
    def append(n):
        global appended
        # Every row its own attribute set, hard to compress: dictionary pages and log records
        # are large, so the tail log fills up as well as the segment file.
        attrs = [{"user": rng.bytes(48).hex()} for _ in range(n)]
        appended += db.append(["f"] * n, np.arange(appended, appended + n),
                              np.arange(appended, appended + n), attributes=attrs)
    ok = True
    while ok:  # until the segment file is full
        append(2000)
        ok = db.flush()
    append(6000)  # more than the log can take, less than the writer holds before giving up
    db.close()  # sealing the held rows fails: they are lost, and must be counted
    print(json.dumps({"appended": appended, "dropped": db.dropped}))
    """
)


def test_a_full_disk_with_attribute_heavy_rows_counts_every_row_it_loses(tmp_path):
    import json

    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK_ATTRIBUTES, str(tmp_path)], capture_output=True,
        text=True, env=_env(), timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert "could not close segment" in out.stderr
    with Database.open(tmp_path, readonly=True) as db:
        stored = db.scan(["duration"]).columns["duration"]
        assert len(np.unique(stored)) == len(stored)
        assert len(stored) + report["dropped"] == report["appended"]  # stored or counted
        assert len(stored) > 0 and report["dropped"] > 0
    assert not [p.name for p in (tmp_path / "segments").iterdir() if p.name.endswith(".tmp")]


FULL_DISK_ROTATION = textwrap.dedent(
    """
    import json, resource, signal, sys, numpy as np
    from pathlib import Path
    from kronicler.db import Database
    # A segment due to rotate after two chunks, and a file limit that fits exactly those two:
    # sealing the short last chunk when the segment closes for rotation fails.
    n = 5900
    attrs = [{"user": "u%d" % i} for i in range(n)]
    def write(path):
        db = Database.open(path, chunk_rows=2000, segment_rows=4000)
        db.append(["f"] * n, np.arange(n), np.arange(n), attributes=attrs)
        db.close()
        return db
    write(sys.argv[2])  # unlimited: measure where the second chunk ends
    first = min(Path(sys.argv[2], "segments").glob("*.meta"))
    offset, length = json.loads(first.read_text())["chunks"][1][:2]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (offset + length + 16, resource.RLIM_INFINITY))
    db = write(sys.argv[1])
    print(json.dumps({"appended": n, "dropped": db.dropped}))
    """
)


def test_a_rotation_that_cannot_seal_keeps_its_rows_and_counts_nothing_twice(tmp_path):
    import json

    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK_ROTATION, str(tmp_path / "db"), str(tmp_path / "scratch")],
        capture_output=True, text=True, env=_env(), timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert "could not close" in out.stderr
    with Database.open(tmp_path / "db", readonly=True) as db:
        stored = db.scan(["duration"]).columns["duration"]
    assert len(np.unique(stored)) == len(stored)
    assert len(stored) + report["dropped"] == report["appended"]  # stored, or counted once
    assert len(stored) >= 4000  # the two sealed chunks stay
