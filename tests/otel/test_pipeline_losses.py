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
