"""Maintenance in the shapes deployments make: real processes, started at the same moment.

Many short writer processes leave many small segments (some killed, leaving unsealed log tails);
then several ``kronicler compact`` and ``kronicler retain`` processes (forked from the test, which
is cheap, running the CLI's entry point; or ``python -m kronicler``) wait on one barrier file and
start together, round after round, sometimes beside a writer that is still running, sometimes
killed while they hold the maintenance lock. After every round the rows in the database must be
exactly the rows written, minus exactly the rows retention was asked to delete: never duplicated,
never resurrected, never lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

from kronicler import cli
from kronicler.db import Database
from kronicler.db.lock import MaintenanceLock
from kronicler.db.schema import SpanBatch
from kronicler.db.writer import SegmentWriter

ROOT = Path(__file__).resolve().parents[2]
OLD_BASE = 1_700_000_000_000_000_000  # Nov 2023: long past any --max-age below
NONE: frozenset[int] = frozenset()
_WAIT = 120.0  # bound on every wait for a process or a file (never reached when things work)


def segment_rows(
    p: int, s: int, base: int, n: int | None = None
) -> tuple[list, np.ndarray, np.ndarray]:
    """The rows of segment ``s`` of writer process ``p``: names, starts, durations."""
    n = 150 + 37 * ((p * 5 + s) % 7) if n is None else n
    i = np.arange(n, dtype=np.int64)
    start = base + (p * 100 + s) * 10**9 + i * 1000  # writers' segments within an hour
    duration = (p * 7919 + s * 104729 + i * 13) % 10**7 + 1
    names = [f"job.p{p}.{k}" for k in (i % 3).tolist()]
    return names, start, duration


# -- processes: forked from the test (cheap: kronicler is imported already) -------------------------
def _fork(job, *args: object, stderr: Path | None = None) -> int:
    """Run ``job(*args)`` in a forked child; returns its pid. The child's exit code is the job's."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        if stderr is not None:
            os.dup2(os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        code = job(*args) or 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _reap(pid: int) -> int:
    """The exit code of child ``pid`` (negative: killed by that signal), waiting boundedly."""
    deadline = time.monotonic() + _WAIT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"process {pid} did not finish")


def _writer(path: Path, p: int, segments: int, base: int, kill: bool) -> None:
    for s in range(segments):
        db = Database.open(path, chunk_rows=64)
        names, start, duration = segment_rows(p, s, base)
        db.append(names, start, duration, attributes=[{"s": s}] * len(names))
        if kill and s == segments - 1:
            assert db.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # a writer that dies: an unsealed tail is left
        db.close()


def _write(path: Path, writers: list[tuple[int, int]], base: int, kill: frozenset[int] = NONE):
    """Run the writer processes (process number, segments) at once; ``kill``: die after the last."""
    pids = [_fork(_writer, path, p, n, base, p in kill) for p, n in writers]
    for (p, _), pid in zip(writers, pids, strict=True):
        code = _reap(pid)
        assert code == (-signal.SIGKILL if p in kill else 0), (p, code)


def _live_writer(path: Path, base: int, stop: Path, count: Path) -> None:
    # Rotates every 500 rows, so closed segments of a live writer are there to merge.
    db = Database.open(path, chunk_rows=64, segment_rows=500, flush_interval=0.05)
    s = 0
    while not stop.exists() and s < 2000:
        names, start, duration = segment_rows(99, s, base, n=100)
        db.append(names, start, duration)
        if s % 5 == 4:
            db.flush()
        s += 1
        time.sleep(0.005)
    db.close()
    count.write_text(str(s))


def _maintain(ready: Path, go: Path, args: list[str]) -> int:
    """One maintenance command through the CLI's entry point, released by the barrier file."""
    ready.touch()
    deadline = time.monotonic() + _WAIT
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    return cli.main(args)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _expected(writers: list[tuple[int, int]], base: int) -> Counter:
    """(name, start, duration) of every row the writers (process, segments) wrote."""
    out: Counter = Counter()
    for p, segments in writers:
        for s in range(segments):
            names, start, duration = segment_rows(p, s, base)
            out.update(zip(names, start.tolist(), duration.tolist(), strict=True))
    return out


def _stored(path: Path) -> Counter:
    with Database.open(path) as db:
        scan = db.scan(("name", "start", "duration"))
    names = np.array(scan.names, dtype=object)[scan.columns["name"]].tolist()
    starts, durations = scan.columns["start"].tolist(), scan.columns["duration"].tolist()
    return Counter(zip(names, starts, durations, strict=True))


def _together(path: Path, commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Run the maintenance commands in processes released at one moment; their results."""
    go = path.parent / f"go-{time.monotonic_ns()}"
    pids, ready, errors = [], [], []
    for i, args in enumerate(commands):
        ready.append(path.parent / f"{go.name}-ready{i}")
        errors.append(path.parent / f"{go.name}-stderr{i}")
        pids.append(_fork(_maintain, ready[-1], go, args, stderr=errors[-1]))
    deadline = time.monotonic() + _WAIT
    while not all(f.exists() for f in ready) and time.monotonic() < deadline:
        time.sleep(0.001)
    go.touch()
    codes = [_reap(pid) for pid in pids]
    return [
        subprocess.CompletedProcess(args, code, "", err.read_text())
        for args, code, err in zip(commands, codes, errors, strict=True)
    ]


def _busy(result: subprocess.CompletedProcess) -> bool:
    return result.returncode == 1 and "another compaction or retention" in result.stderr


def _segments(path: Path) -> list[str]:
    return sorted(p.stem for p in (path / "segments").glob("*.kseg"))


def _files_without_data(path: Path) -> list[str]:
    seg = path / "segments"
    stems = {p.stem for p in seg.glob("*.kseg")}
    return sorted(p.name for p in seg.iterdir() if p.suffix in (".meta", ".wal")
                  and p.stem not in stems)  # fmt: skip


def test_concurrent_compactions_never_duplicate_rows(tmp_path):
    path = tmp_path / "db"
    writers: list[tuple[int, int]] = []
    for round_ in range(3):
        new = [(round_ * 4 + i, 3) for i in range(4)]
        _write(path, new, OLD_BASE, kill=frozenset({round_ * 4}))
        writers += new
        expected = _expected(writers, OLD_BASE)
        assert _stored(path) == expected
        results = _together(path, [["compact", "--path", str(path)]] * 3)
        done = [r for r in results if r.returncode == 0]
        assert len(done) >= 1 and all(r.returncode == 0 or _busy(r) for r in results), results
        assert _stored(path) == expected, f"round {round_}"
        # Every small segment was merged (older outputs too), and nothing is left behind.
        assert len(_segments(path)) == 1
        assert _files_without_data(path) == []


def test_retention_and_compaction_at_once_delete_exactly_the_old_rows(tmp_path):
    path = tmp_path / "db"
    recent = time.time_ns() - 3600 * 10**9  # within the last day, whatever the round
    kept: list[tuple[int, int]] = []
    for round_ in range(3):
        old = [(round_ * 6 + i, 3) for i in range(3)]
        new = [(round_ * 6 + 3 + i, 3) for i in range(3)]
        _write(path, old, OLD_BASE, kill=frozenset({old[0][0]}))
        _write(path, new, recent, kill=frozenset({new[0][0]}))
        kept += new
        commands = [
            ["compact", "--path", str(path)],
            ["retain", "--path", str(path), "--max-age", "1d"],
            ["compact", "--path", str(path)],
        ]
        if round_ == 1:
            commands.reverse()
        results = _together(path, commands)
        retain = results[1]
        assert retain.returncode == 0, retain.stderr  # retention waits for the lock
        assert all(r.returncode == 0 or _busy(r) for r in results), results
        assert _stored(path) == _expected(kept, recent), f"round {round_}"
        assert _files_without_data(path) == []


def test_maintenance_beside_a_live_writer_keeps_every_row(tmp_path):
    path = tmp_path / "db"
    recent = time.time_ns() - 3600 * 10**9
    writers = [(i, 2) for i in range(4)]
    _write(path, writers, OLD_BASE)
    _write(path, [(10, 2)], recent)
    stop, count = tmp_path / "stop", tmp_path / "count"
    live = _fork(_live_writer, path, recent, stop, count)
    try:
        for round_ in range(3):
            _write(path, [(20 + round_, 2)], recent)
            writers.append((20 + round_, 2))
            results = _together(path, [
                ["compact", "--path", str(path)], ["compact", "--path", str(path)],
                ["retain", "--path", str(path), "--max-age", "1d"],
            ])  # fmt: skip
            assert results[2].returncode == 0, results[2].stderr
            assert all(r.returncode == 0 or _busy(r) for r in results), results
            stored = _stored(path)
            # Apart from the live writer's rows (still coming), exactly the recent rows.
            others = Counter({k: v for k, v in stored.items() if not k[0].startswith("job.p99.")})
            assert others == _expected([(10, 2)] + writers[4:], recent), f"round {round_}"
            assert all(v == 1 for k, v in stored.items() if k[0].startswith("job.p99."))
    finally:
        stop.touch()
        assert _reap(live) == 0
    segments_written = int(count.read_text())
    live_rows: Counter[tuple[str, int, int]] = Counter()
    for s in range(segments_written):
        names, start, duration = segment_rows(99, s, recent, n=100)
        live_rows.update(zip(names, start.tolist(), duration.tolist(), strict=True))
    expected = _expected([(10, 2)] + writers[4:], recent) + live_rows
    assert _stored(path) == expected
    results = _together(path, [["compact", "--path", str(path)]] * 2)
    assert all(r.returncode == 0 or _busy(r) for r in results), results
    assert _stored(path) == expected
    assert _files_without_data(path) == []


def _die_holding_the_lock(path: Path) -> None:
    seg = path / "segments"
    MaintenanceLock(seg).acquire()
    old = [p.stem for p in seg.glob("*.kseg")]
    w = SegmentWriter(seg, chunk_rows=100, replaces=tuple(old))
    w.add(SpanBatch.build(["ghost"] * 500, np.arange(500), np.ones(500, int)))
    w.seal_full()
    w.commit()
    os.kill(os.getpid(), signal.SIGKILL)  # mid-compaction, holding the lock


def test_a_compaction_killed_holding_the_lock_frees_it_and_is_cleaned_up(tmp_path):
    path = tmp_path / "db"
    writers = [(i, 3) for i in range(3)]
    _write(path, writers, OLD_BASE, kill=frozenset({0}))
    expected = _expected(writers, OLD_BASE)
    assert _reap(_fork(_die_holding_the_lock, path)) == -signal.SIGKILL
    assert _stored(path) == expected  # the half-written output is invisible
    results = _together(path, [["compact", "--path", str(path)]])
    assert results[0].returncode == 0, results[0].stderr  # the lock died with its holder
    assert _stored(path) == expected
    assert len(_segments(path)) == 1
    assert _files_without_data(path) == []


def _compaction_outputs(path: Path) -> list[str]:
    out = []
    for meta in (path / "segments").glob("*.meta"):
        try:
            doc = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("replaces"):
            out.append(meta.stem)
    return out


def test_a_real_compaction_killed_at_any_moment_loses_and_duplicates_nothing(tmp_path):
    path = tmp_path / "db"
    writers: list[tuple[int, int]] = []
    # Killed once its output exists, then a little later each round: before, while and after
    # it publishes; the next round's compaction (itself killed) must clean up and stay exact.
    for round_, delay in enumerate([0.0, 0.01, 0.05, 0.2]):
        new = [(round_ * 4 + i, 5) for i in range(4)]
        _write(path, new, OLD_BASE, kill=frozenset({round_ * 4}))
        writers += new
        expected = _expected(writers, OLD_BASE)
        proc = subprocess.Popen(
            [sys.executable, "-m", "kronicler", "compact", "--path", str(path)], env=_env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + _WAIT
        while not _compaction_outputs(path) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=_WAIT)
        assert proc.returncode in (0, -signal.SIGKILL), stderr
        assert _stored(path) == expected, f"round {round_}"
    results = _together(path, [["compact", "--path", str(path)]] * 2)
    assert all(r.returncode == 0 or _busy(r) for r in results), results
    assert _stored(path) == expected
    assert len(_segments(path)) == 1
    assert _files_without_data(path) == []
