"""The capture pipeline's counters on a full disk: every captured call is stored or counted."""

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
