"""The capture pipeline's counters on a full disk: every captured call is stored or counted, and
the loss is told to an application that never configured logging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from kronicler.db import Database

ROOT = Path(__file__).resolve().parents[2]

FULL_DISK_CAPTURE = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    # Files of this process may not grow past 300 KB: writes beyond fail like a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
    import kronicler
    from opentelemetry import trace
    kronicler.configure(path=sys.argv[1])

    @kronicler.capture
    def work(i):
        # its own attribute set per call, hard to compress: the tail log soon fills up
        trace.get_current_span().set_attribute("user", os.urandom(48).hex())

    for i in range(20_000):
        work(i)
        if i % 500 == 499:
            kronicler.flush()
    kronicler.shutdown()  # the last seal fails: the rows held in memory are lost here
    status = kronicler.status()
    print(json.dumps({"stored": status.stored, "dropped": status.dropped,
                      "pending": status.pending}))
    """
)


def test_status_after_a_full_disk_matches_what_the_database_holds(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CAPTURE, str(tmp_path)], capture_output=True,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert "could not close segment" in out.stderr
    with Database.open(tmp_path, readonly=True) as db:
        held = len(db.scan(["duration"]).columns["duration"])
    assert status["pending"] == 0
    assert status["stored"] == held  # what status() calls stored is in the database
    assert status["stored"] + status["dropped"] == 20_000
    assert status["dropped"] > 0


UNUSABLE_PATH = textwrap.dedent(
    """
    import json, logging, sys
    import kronicler
    handlers = logging.getLogger("kronicler").handlers
    kronicler.configure(path=sys.argv[1])

    @kronicler.capture
    def work(i):
        return i

    for i in range(50):
        work(i)
    ok = kronicler.flush()
    print(json.dumps({"flushed": ok, "dropped": kronicler.status().dropped,
                      "null_handler": any(isinstance(h, logging.NullHandler) for h in handlers),
                      "root_handlers": len(logging.getLogger().handlers)}))
    """
)


def test_lost_calls_reach_stderr_in_an_app_without_logging_setup(tmp_path: Path) -> None:
    """The package's logger has a NullHandler, so logging's last-resort handler stays silent;
    the loss still reaches stderr, once, as a DataLossWarning."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = subprocess.run(
        [sys.executable, "-c", UNUSABLE_PATH, str(blocker / "db")], capture_output=True,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report == {"flushed": False, "dropped": 50, "null_handler": True, "root_handlers": 0}
    assert out.stderr.count("DataLossWarning") == 1, out.stderr
    assert "cannot be used" in out.stderr and "captured calls are not stored" in out.stderr


def test_data_loss_warnings_made_errors_never_raise_into_the_app(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    script = "import warnings\nfrom kronicler.errors import DataLossWarning\n" \
             "warnings.simplefilter('error', DataLossWarning)\n" + UNUSABLE_PATH  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", script, str(blocker / "db")], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["dropped"] == 50


SHARED_FULL_DISK = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    import kronicler
    from opentelemetry import trace

    # Small chunks: the writer gives up its tail after a few of them while the disk is full.
    db = kronicler.open(sys.argv[1], chunk_rows=64)
    kronicler.configure(database=db, flush_interval=0.05)

    @kronicler.capture
    def work(i):
        trace.get_current_span().set_attribute("user", os.urandom(48).hex())

    appended = 0
    for i in range(3_000):
        if i == 600:  # from here on, files may not grow: writes fail like a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        work(i)
        if i % 3 == 0:  # another producer on the same database, its rows between ours
            appended += db.append(["other"], [i], [1], attributes=[{"u": os.urandom(48).hex()}])
        if i % 100 == 99:
            kronicler.flush()
    kronicler.flush()
    db.close()  # the last seal fails too: what the writer still holds in memory is lost
    status = kronicler.status()
    print(json.dumps({"stored": status.stored, "dropped": status.dropped,
                      "pending": status.pending, "appended": appended,
                      "db_dropped": db.dropped}))
    """
)


def run_script(script: str, tmp_path: Path) -> dict[str, int]:
    """Run ``script`` in a fresh interpreter over ``tmp_path``; its JSON report."""
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report: dict[str, int] = json.loads(out.stdout)
    return report


def test_the_writer_reports_each_producers_losses_to_that_producer(tmp_path: Path) -> None:
    """The database loses rows of the capture pipeline and of another producer, interleaved:
    the pipeline counts exactly its own (stored is what the database holds of its calls), and
    the database's total is the sum of both producers' losses."""
    report = run_script(SHARED_FULL_DISK, tmp_path)
    with Database.open(tmp_path, readonly=True) as db:
        work = db.stats("__main__.work")
        other = db.stats("other")
    held_work = work.count if work is not None else 0
    held_other = other.count if other is not None else 0
    assert report["pending"] == 0
    assert report["stored"] + report["dropped"] == 3_000
    assert report["stored"] == held_work
    other_lost = report["appended"] - held_other
    assert report["dropped"] > 0 and other_lost > 0, report  # both lost rows: the case at hand
    assert report["db_dropped"] == report["dropped"] + other_lost


FAILING_WRITER = textwrap.dedent(
    """
    import json, sys
    import kronicler
    from kronicler.db import database
    from kronicler.db.writer import SegmentWriter

    class NoMemoryEveryThirdBatch(SegmentWriter):
        # Not a full disk: the writer runs out of memory coding every third batch it is given.
        adds = 0

        def add(self, batch):
            NoMemoryEveryThirdBatch.adds += 1
            if NoMemoryEveryThirdBatch.adds % 3 == 0:
                raise MemoryError
            super().add(batch)

    database.SegmentWriter = NoMemoryEveryThirdBatch
    db = kronicler.open(sys.argv[1], chunk_rows=64)
    kronicler.configure(database=db, flush_interval=0.05)

    @kronicler.capture
    def work(i):
        return i

    for i in range(3_000):
        work(i)
        if i % 100 == 99:
            kronicler.flush()
    kronicler.flush()
    db.close()
    status = kronicler.status()
    print(json.dumps({"stored": status.stored, "dropped": status.dropped,
                      "pending": status.pending, "db_dropped": db.dropped,
                      "failed_adds": NoMemoryEveryThirdBatch.adds // 3}))
    """
)


def test_a_writer_failing_with_no_memory_tells_the_pipeline_each_lost_call(tmp_path: Path) -> None:
    """Not an OSError: the batches the writer could not code are lost, each counted once by the
    pipeline (not only in the database's total), so stored is exactly what the database holds."""
    report = run_script(FAILING_WRITER, tmp_path)
    with Database.open(tmp_path, readonly=True) as db:
        work = db.stats("__main__.work")
    assert report["failed_adds"] > 0 and report["dropped"] > 0, report  # the case at hand
    assert report["pending"] == 0
    assert report["stored"] + report["dropped"] == 3_000
    assert report["stored"] == (work.count if work is not None else 0)
    assert report["db_dropped"] == report["dropped"]
