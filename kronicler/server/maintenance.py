"""Compaction in the background of ``serve``: scheduled, exclusive, stoppable, crash-safe.

Short-lived writers (scripts, cron jobs, restarted or recycled workers, ingest workers) each leave
a segment, and every query pays a little for each one; writers that run at the same time leave
segments that cover the same hours, and a time range cuts every one of them. ``serve
--compact-every SECONDS`` rewrites finished segments whose times overlap (and small ones that
follow each other) as large sorted segments that cover disjoint times
(:mod:`kronicler.db.disjoint`) while it serves, so that cost stays flat.

Where it runs. Each run is a fresh Python process (a new interpreter, not a fork: gRPC's threads
do not survive ``fork``, and unlike ``multiprocessing``'s spawn it needs no ``__main__`` guard in
an embedding program) that calls :func:`kronicler.db.disjoint.compact` on the database's
segment directory (``time_disjoint=False``: :func:`kronicler.db.compaction.compact`, which merges
small segments of similar age into one). Merging decodes and re-encodes millions of rows; in a thread of the server it
would hold the interpreter lock that queries and in-process ingest need, so it gets a process of
its own, at the ingest workers' priority (``nice 19``: queries get the CPU first), and its memory
(a slice of about half a million rows and the rows carried between slices, ~70 B each) goes back to the system when the run ends.
The price is the process start (~0.3-1 s of imports) per run, small beside the interval. A
thread of the server schedules runs, one at a time, and logs what each merged.

Exclusive and safe while others write. The run takes the maintenance lock without waiting: when
a retention or another compaction (``kronicler compact``, another server) holds it, the run is
skipped and logged, and the next one tries again. Only finished segments are merged (closed, or
their writer process gone), so live writers, the server's own writer and ingest workers'
segments are left alone; queries see either the old segments or the published output, never
both (see ``compaction.py`` for the publishing rules).

Stopping. ``stop()`` (on server shutdown or SIGTERM) writes a line to the run's stdin; the run
asks for it between groups and between the slices of about half a million rows it merges, then
deletes its unpublished outputs and exits, so shutdown leaves no partial files and waits for at
most one slice's merging (about a second), bounded
by ``stop_timeout`` (after which the run is killed: a killed run's leftover is deleted by the
next run, which finds its writer process gone). The run also stops when its stdin closes, which
happens when the server dies however it dies. It runs in a session of its own and ignores SIGINT
and SIGTERM, so that a signal sent to the server's whole process group (Ctrl-C, ``timeout``, a
service manager) lets the server stop it in order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kronicler.db import compaction, disjoint
from kronicler.db.database import SEGMENTS
from kronicler.errors import MaintenanceBusyError

log = logging.getLogger("kronicler.server.maintenance")

DEFAULT_COMPACT_EVERY = 300.0
DEFAULT_STOP_TIMEOUT = 30.0
_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding this ``kronicler``
# ``-c``, not ``-m``: this module is imported by its package first, which ``-m`` warns about.
_CHILD = "import sys; from kronicler.server.maintenance import main; sys.exit(main(sys.argv[1:]))"


@dataclass(frozen=True, slots=True)
class CompactionRun:
    """What one background run did.

    Fields:
        outcome: ``"merged"`` (outputs published, maybe none), ``"busy"`` (the maintenance lock
            was held: skipped), ``"stopped"`` (asked to stop; merged so far stays) or
            ``"failed"`` (``error`` says why).
        merges: the published outputs, in order.
        seconds: how long the run took, process start included.
        error: the failure's text, when ``outcome`` is ``"failed"``.
    """

    outcome: str
    merges: tuple[compaction.Merge, ...] = ()
    seconds: float = 0.0
    error: str = ""

    def describe(self) -> str:
        """One line for the log."""
        if self.outcome == "failed":
            return f"compaction failed: {self.error}"
        if self.outcome == "busy":
            return "compaction skipped: another compaction or retention holds the lock"
        sources = sum(len(m.sources) for m in self.merges)
        outputs = sum(1 + len(m.parts) for m in self.merges)
        rows = sum(m.rows for m in self.merges)
        merged = (f"merged {sources} segment(s) into {outputs} ({rows:,} rows)"
                  if self.merges else "found nothing to merge")  # fmt: skip
        stopped = "stopped; " if self.outcome == "stopped" else ""
        return f"compaction {stopped}{merged} in {self.seconds:.1f} s"


def _to_json(run: CompactionRun) -> str:
    return json.dumps({"outcome": run.outcome, "error": run.error,
                       "merges": [[m.output, list(m.sources), m.rows, list(m.parts)]
                                  for m in run.merges]})  # fmt: skip


def _from_json(text: str, seconds: float) -> CompactionRun:
    doc = json.loads(text)
    merges = tuple(compaction.Merge(o, tuple(s), r, tuple(p)) for o, s, r, p in doc["merges"])
    return CompactionRun(doc["outcome"], merges, seconds, doc["error"])


def main(argv: list[str]) -> int:
    """One run (arguments: SEGMENTS OPTIONS, the latter JSON); prints what it did as JSON.

    It stops when a line arrives on stdin or stdin closes (the server stopping, or gone).
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the server stops us through stdin
    with contextlib.suppress(OSError):
        os.nice(19)  # background work, as ingest workers: queries get the CPU first
    segments, options = Path(argv[0]), json.loads(argv[1])
    run_compaction = disjoint.compact if options.pop("time_disjoint", True) else compaction.compact
    stop = threading.Event()

    def watch() -> None:
        sys.stdin.readline()  # a line, or EOF when the server closes the pipe or dies
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    merges: list[compaction.Merge] = []
    try:
        run_compaction(segments, stop=stop.is_set, report=merges.append, **options)
        run = CompactionRun("stopped" if stop.is_set() else "merged", tuple(merges))
    except MaintenanceBusyError:
        run = CompactionRun("busy")
    except Exception as exc:  # reported to the server's log; the next run tries again
        run = CompactionRun("failed", tuple(merges), error=f"{type(exc).__name__}: {exc}")
    print(_to_json(run), flush=True)
    return 0


class CompactionScheduler:
    """Runs compaction of the database at ``path`` every ``every`` seconds, in a background process.

    ``on_run`` (if given) is called with each :class:`CompactionRun`, in the scheduler's thread,
    besides the log line. ``small_rows``, ``output_rows`` and ``chunk_rows`` are passed to
    :func:`kronicler.db.disjoint.compact`; with ``time_disjoint=False``, ``small_rows``,
    ``group_rows`` and ``chunk_rows`` to :func:`kronicler.db.compaction.compact` instead.
    """

    def __init__(
        self,
        path: Path,
        every: float = DEFAULT_COMPACT_EVERY,
        *,
        small_rows: int = compaction.DEFAULT_SMALL_ROWS,
        group_rows: int = compaction.DEFAULT_GROUP_ROWS,
        output_rows: int = disjoint.DEFAULT_OUTPUT_ROWS,
        chunk_rows: int | None = None,
        time_disjoint: bool = True,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        on_run: Callable[[CompactionRun], None] | None = None,
    ) -> None:
        check_every(every)
        if every == 0:
            raise ValueError("every must be > 0 for a scheduler (0 means: do not schedule)")
        self.segments = Path(path) / SEGMENTS
        self.every = float(every)
        self._options: dict[str, Any] = {"small_rows": small_rows, "time_disjoint": time_disjoint}
        self._options.update({"output_rows": output_rows} if time_disjoint
                             else {"group_rows": group_rows})  # fmt: skip
        if chunk_rows is not None:
            self._options["chunk_rows"] = chunk_rows
        self._stop_timeout = stop_timeout
        self._on_run = on_run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kronicler-compaction", daemon=True)
        self.runs = 0  # runs finished, whatever their outcome

    def start(self) -> CompactionScheduler:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the schedule and any run in progress (its unpublished output deleted); waits."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._stop_timeout + 5.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            run = self.run_once()
            self.runs += 1
            # A run that found nothing to do is not news: only at debug level.
            level = (logging.WARNING if run.outcome == "failed"
                     else logging.INFO if run.merges or run.outcome != "merged"
                     else logging.DEBUG)  # fmt: skip
            log.log(level, "%s", run.describe())
            if self._on_run is not None:
                try:
                    self._on_run(run)
                except Exception:  # a reporting problem must not end the schedule
                    log.exception("compaction report failed")

    def run_once(self) -> CompactionRun:
        """One compaction in a new process, waited for; stopped early by :meth:`stop`."""
        t0 = time.monotonic()
        env = dict(os.environ)
        # The run uses this very copy of Kronicler, whatever the server's sys.path was.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_ROOT, env.get("PYTHONPATH"))))
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(self.segments), json.dumps(self._options)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            start_new_session=True,  # a signal to the server's group is the server's to handle
        )  # fmt: skip
        assert proc.stdin is not None
        while proc.poll() is None:
            if self._stop.wait(0.1):
                with contextlib.suppress(OSError):
                    proc.stdin.write("stop\n")
                    proc.stdin.flush()
                break
        try:
            out, _ = proc.communicate(timeout=self._stop_timeout)
        except subprocess.TimeoutExpired:
            log.error("compaction did not stop within %.0f s: killed (the next run deletes its "
                      "leftover)", self._stop_timeout)  # fmt: skip
            proc.kill()
            out, _ = proc.communicate()
        seconds = time.monotonic() - t0
        lines = out.strip().splitlines()
        if proc.returncode != 0 or not lines:
            return CompactionRun(
                "failed",
                seconds=seconds,
                error=f"the compaction process ended with code {proc.returncode}",
            )
        return _from_json(lines[-1], seconds)


def check_every(every: float) -> None:
    """``ValueError`` naming ``every`` unless it is a number of seconds >= 0 (0: never)."""
    if (
        not isinstance(every, (int, float))
        or isinstance(every, bool)
        or not every >= 0
        or every == float("inf")
    ):
        raise ValueError(f"compact_every must be a number of seconds >= 0 (0: off), got {every!r}")
