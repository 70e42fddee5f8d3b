"""A writer process for the oracle's layouts: ``python -m tests.oracle.writer --rows F --path DIR``.

It appends the rows saved in ``F`` (an ``.npz`` from :meth:`Rows.save`) the way an application's
processes would, then ends as told:

- ``--mode inline``: this process writes everything;
- ``--mode fork``: this process opens the database, writes a share, then forks ``--workers``
  children (``multiprocessing`` fork context) that write their shares through the inherited
  ``Database`` object (the after-fork hook gives each its own segment);
- ``--mode spawn``: spawned children open the database themselves and write their shares;
- ``--then close`` (a normal exit), ``kill`` (flush, then SIGKILL itself: an unsealed tail) or
  ``hold`` (flush, print ``ready`` and wait, writer still open, until stdin closes or a signal).

Every append must accept its whole batch: the oracle's ground truth is the rows *written*, so a
refused batch ends the process with an error instead of silently changing the truth.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

from kronicler.db import Database
from tests.oracle.truth import Rows


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {"flush_interval": 0.05}
    if args.chunk_rows:
        opts["chunk_rows"] = args.chunk_rows
    if args.segment_rows:
        opts["segment_rows"] = args.segment_rows
    return opts


def append_all(db: Database, rows: Rows, batches: int) -> None:
    """Append ``rows`` in ``batches`` pieces, flushing after each (so chunks seal mid-stream)."""
    for part in np.array_split(np.arange(len(rows)), max(1, min(batches, len(rows)))):
        if not len(part):
            continue
        piece = rows.take(part)
        got = db.append(**piece.append_kwargs())
        if got != len(piece):
            raise SystemExit(f"append accepted {got} of {len(piece)} rows")
        if not db.flush(timeout=60):
            raise SystemExit("flush failed")


def _finish(db: Database, then: str) -> None:
    if then == "close":
        db.close()
        return
    if not db.flush(timeout=60):
        raise SystemExit("flush failed")
    if then == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    print("ready", flush=True)
    sys.stdin.read()  # held open until the test closes our stdin (or kills us)
    os._exit(0)  # without closing: the segment stays unsealed


def _spawned(path: str, rows_file: str, index: int, parts: int, opts: dict[str, Any],
             batches: int) -> None:  # fmt: skip
    rows = Rows.load(Path(rows_file))
    share = np.array_split(np.arange(len(rows)), parts)[index]
    db = Database.open(path, **opts)
    append_all(db, rows.take(share), batches)
    db.close()


def _forked(db: Database, rows: Rows, batches: int) -> None:
    append_all(db, rows, batches)
    db.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--path", required=True)
    p.add_argument("--rows", required=True)
    p.add_argument("--mode", choices=("inline", "fork", "spawn"), default="inline")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk-rows", type=int, default=0)
    p.add_argument("--segment-rows", type=int, default=0)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--then", choices=("close", "kill", "hold"), default="close")
    args = p.parse_args(argv)
    rows = Rows.load(Path(args.rows))
    opts = _options(args)
    if args.mode == "inline":
        db = Database.open(args.path, **opts)
        append_all(db, rows, args.batches)
        _finish(db, args.then)
        return 0
    if args.mode == "spawn":
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(
                target=_spawned, args=(args.path, args.rows, i, args.workers, opts, args.batches)
            )  # fmt: skip
            for i in range(args.workers)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
            if proc.exitcode != 0:
                raise SystemExit(f"spawned writer exited with {proc.exitcode}")
        return 0
    # fork: the parent writes the first share, then each child writes one through the same object
    shares = np.array_split(np.arange(len(rows)), args.workers + 1)
    db = Database.open(args.path, **opts)
    append_all(db, rows.take(shares[0]), args.batches)
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=_forked, args=(db, rows.take(s), args.batches))
                for s in shares[1:]]  # fmt: skip
    for child in children:
        child.start()
    for child in children:
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"forked writer exited with {child.exitcode}")
    _finish(db, args.then)
    return 0


if __name__ == "__main__":
    sys.exit(main())
