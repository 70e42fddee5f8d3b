"""Whole-process behaviour, each in a real subprocess: exit, switches, broken storage, fork, threads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kronicler.db import Database
from kronicler.db.reader import SegmentReader
from tests.otel.helpers import read_rows

ROOT = Path(__file__).resolve().parents[1]

#: The two capture paths: the C wrapper where it is built, and the pure-Python one. Tests of
#: the record buffer, fork, threads and drop counting run on both.
PATHS = pytest.mark.parametrize("pure", ["0", "1"], ids=["c-if-built", "pure-python"])


def run(script: str, cwd: Path, *, env: dict[str, str] | None = None,
        prefix: list[str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONICLER_", "OTEL_"))}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.run(
        [*(prefix or []), sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_normal_exit_stores_everything(tmp_path: Path) -> None:
    # A long flush interval: only the exit hook can have stored these rows.
    proc = run(
        """
        import kronicler

        @kronicler.capture
        def work(i):
            return i * 2

        print(sum(work(i) for i in range(5000)))
        """,
        tmp_path,
        env={"KRONICLER_FLUSH_INTERVAL": "600", "OTEL_SERVICE_NAME": "exit-test"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(sum(i * 2 for i in range(5000)))
    rows = read_rows(tmp_path / ".kronicler")
    assert len(rows) == 5000
    assert {r["name"] for r in rows} == {"__main__.work"}
    assert {r["service"] for r in rows} == {"exit-test"}


def test_the_decorator_stores_the_process_resource_once(tmp_path: Path) -> None:
    """OTEL_RESOURCE_ATTRIBUTES and the SDK's own keys reach every row; the resource text is
    coded once per pipeline (one dictionary entry), and a forked child is another instance."""
    proc = run(
        """
        import os
        import kronicler

        @kronicler.capture
        def work(i):
            return i

        for i in range(3000):
            work(i)
        kronicler.flush()
        pid = os.fork()
        if pid == 0:
            work(-1)
            kronicler.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        """,
        tmp_path,
        env={"OTEL_SERVICE_NAME": "shop",
             "OTEL_RESOURCE_ATTRIBUTES": "service.version=2.1,deployment.environment.name=ci"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / ".kronicler")
    assert len(rows) == 3001
    parent = [r["resource"] for r in rows if r["name"].endswith("work")][:3000]
    first = parent[0]
    assert all(r == first for r in parent)
    assert {k: first[k] for k in ("service.name", "service.version",
                                  "deployment.environment.name", "telemetry.sdk.language")} == {
        "service.name": "shop", "service.version": "2.1", "deployment.environment.name": "ci",
        "telemetry.sdk.language": "python"}  # fmt: skip
    instances = {r["resource"]["service.instance.id"] for r in rows}
    assert len(instances) == 2  # the forked child is another service instance
    segdir = tmp_path / ".kronicler" / "segments"
    for kseg in segdir.glob("*.kseg"):  # one per process: "" (code 0) and its one resource
        reader = SegmentReader(segdir, kseg.stem)
        reader.refresh()
        assert len(reader.view().resources) == 2
        reader.close()


def test_kronicler_path_variable_moves_the_database(tmp_path: Path) -> None:
    proc = run(
        """
        import kronicler
        kronicler.capture(len)("abc")
        """,
        tmp_path,
        env={"KRONICLER_PATH": str(tmp_path / "elsewhere")},
    )
    assert proc.returncode == 0, proc.stderr
    assert len(read_rows(tmp_path / "elsewhere")) == 1
    assert not (tmp_path / ".kronicler").exists()


def test_disabled_by_environment_is_a_plain_call(tmp_path: Path) -> None:
    proc = run(
        """
        import kronicler

        def work(i):
            return i + 1

        captured = kronicler.capture(work)
        assert captured is work, "disabled capture returns the function itself"
        print(sum(captured(i) for i in range(100)))
        kronicler.flush()
        """,
        tmp_path,
        env={"KRONICLER_ENABLED": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "5050"
    assert not (tmp_path / ".kronicler").exists()


@pytest.fixture
def read_only_dir() -> Iterator[tuple[Path, list[str]]]:
    """A database directory nobody may write to, and the command prefix that makes it so."""
    base = Path(tempfile.mkdtemp(prefix="kronicler-ro-"))
    os.chmod(base, 0o755)
    db_dir = base / "db"
    Database.open(db_dir).close()  # a valid, empty database
    for path in [db_dir, *db_dir.rglob("*")]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    prefix: list[str] = []
    if os.geteuid() == 0:  # root ignores permissions unless it gives up the capability
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a directory read-only")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    try:
        yield db_dir, prefix
    finally:
        for path in [db_dir, *db_dir.rglob("*")]:
            os.chmod(path, 0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_read_only_database_directory_never_disturbs_the_app(
    tmp_path: Path, read_only_dir: tuple[Path, list[str]]
) -> None:
    db_dir, prefix = read_only_dir
    proc = run(
        """
        import kronicler

        @kronicler.capture
        def work(i):
            return i + 1

        total = 0
        for i in range(3000):
            total += work(i)
        print(total)
        print("flushed", kronicler.flush())
        status = kronicler.status()
        print("stored", status.stored, "dropped", status.dropped)
        print("error", status.error)
        """,
        tmp_path,
        env={"KRONICLER_PATH": str(db_dir)},
        prefix=prefix,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(sum(range(1, 3001)))
    assert lines[1] == "flushed False"
    assert lines[2] == "stored 0 dropped 3000"
    assert lines[3].startswith("error ") and lines[3] != "error None"
    assert "Permission denied" in proc.stderr
    # Told once, as one warning line (no traceback), however many calls were affected.
    assert proc.stderr.count("DataLossWarning") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(read_rows(db_dir)) == 0


def test_corrupt_database_never_disturbs_the_app(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    Database.open(db_dir).close()
    for catalog in db_dir.glob("*.json"):
        catalog.write_bytes(b"\x00garbage\xff")
    proc = run(
        """
        import kronicler
        work = kronicler.capture(lambda i: i)
        print(sum(work(i) for i in range(100)), kronicler.status().dropped)
        print(kronicler.flush(), kronicler.status().dropped)
        """,
        tmp_path,
        env={"KRONICLER_PATH": str(db_dir)},
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.startswith("4950 ")
    assert second == "False 100"
    assert proc.stderr.count("captured calls are not stored") == 1  # one line, no traceback
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


@PATHS
def test_fork_worker_pool_stores_every_workers_calls(tmp_path: Path, pure: str) -> None:
    proc = run(
        """
        import multiprocessing, os
        import kronicler
        from opentelemetry import trace

        @kronicler.capture
        def work(i):
            trace.get_current_span().set_attribute("pid", os.getpid())
            return i

        def job(n):
            for i in range(n):
                work(i)
            return os.getpid()

        if __name__ == "__main__":
            job(10)                     # the parent captures too, before forking
            pool = multiprocessing.get_context("fork").Pool(3)
            pids = pool.map(job, [1000] * 6)
            pool.close()
            pool.join()
            print(" ".join(map(str, sorted(set(pids)))))
            print(os.getpid())
        """,
        tmp_path,
        env={"KRONICLER_PURE_PYTHON": pure},
    )
    assert proc.returncode == 0, proc.stderr
    worker_line, parent_line = proc.stdout.splitlines()
    worker_pids = {int(p) for p in worker_line.split()}
    rows = read_rows(tmp_path / ".kronicler")
    by_pid: dict[int, int] = {}
    for r in rows:
        by_pid[r["attributes"]["pid"]] = by_pid.get(r["attributes"]["pid"], 0) + 1
    assert by_pid.pop(int(parent_line)) == 10
    assert set(by_pid) == worker_pids
    assert sum(by_pid.values()) == 6000
    assert len({r["span_id"] for r in rows}) == len(rows) == 6010


@PATHS
def test_spawned_workers_store_their_calls_under_the_same_name(tmp_path: Path, pure: str) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(
        """
        import multiprocessing
        import kronicler

        @kronicler.capture
        def work(i):
            return i

        def job(n):
            for i in range(n):
                work(i)
            return n

        if __name__ == "__main__":
            work(-1)
            pool = multiprocessing.get_context("spawn").Pool(2)
            print(sum(pool.map(job, [100] * 4)))
            pool.close()
            pool.join()
        """
    ))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONICLER_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["KRONICLER_PURE_PYTHON"] = pure  # spawned workers pickle the wrapper by name
    proc = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "400"
    with Database.open(tmp_path / ".kronicler") as db:
        assert db.functions() == ["__main__.work"]
        assert db.stats("__main__.work").count == 401


@PATHS
def test_eight_threads_every_call_stored_nothing_dropped(tmp_path: Path, pure: str) -> None:
    proc = run(
        """
        import threading
        import kronicler

        @kronicler.capture
        def work(i):
            return i

        def loop():
            for i in range(100_000):
                work(i)

        threads = [threading.Thread(target=loop) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(kronicler.flush(), kronicler.status().dropped, kronicler.status().stored)
        """,
        tmp_path,
        env={"KRONICLER_PURE_PYTHON": pure},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "0", "800000"]
    with Database.open(tmp_path / ".kronicler") as db:
        assert db.stats("__main__.work").count == 800_000


def test_flush_reports_rows_lost_in_the_background_before_it_was_called(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database should be")
    proc = run(
        """
        import time
        import kronicler

        @kronicler.capture
        def work(i):
            return i

        for i in range(500):
            work(i)
        time.sleep(1.0)  # the background thread tries, and fails, to store them
        print("first", kronicler.flush(), kronicler.status().dropped)
        print("second", kronicler.flush())
        """,
        tmp_path,
        env={"KRONICLER_PATH": str(blocker / "db")},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["first False 500", "second True"]


@PATHS
def test_flooding_a_tiny_buffer_counts_every_call_stored_or_dropped(
    tmp_path: Path, pure: str
) -> None:
    # The database lags: another source on the same writer takes 0.3 s each time it is asked, so
    # the capture buffer is taken at most about three times a second while four threads call far
    # faster than a 500-row buffer can hold. Most calls are dropped; every call must still be
    # counted exactly once, as stored or as dropped, and the stored count must be the rows the
    # database holds.
    proc = run(
        """
        import threading
        import time
        import kronicler

        db = kronicler.open(".kronicler")

        def slow_disk():
            time.sleep(0.3)
            return []

        db.attach_source(slow_disk, interval=0.01)
        kronicler.configure(max_pending=500, flush_interval=0.05, database=db)

        @kronicler.capture
        def work(i):
            return i

        def loop():
            for i in range(50_000):
                work(i)

        threads = [threading.Thread(target=loop) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        kronicler.flush()
        db.detach_source(slow_disk)
        status = kronicler.status()
        print(status.stored, status.dropped, status.pending)
        db.close()
        """,
        tmp_path,
        env={"KRONICLER_PURE_PYTHON": pure},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    stored, dropped, pending = map(int, proc.stdout.split())
    assert pending == 0
    assert dropped > 0, "the flood did not overflow the buffer"
    assert stored + dropped == 200_000
    with Database.open(tmp_path / ".kronicler") as db:
        assert db.stats("__main__.work").count == stored
