"""The maintenance lock: one compaction or retention at a time per database, across processes.

Writers never take it (each owns its segment) and readers never take it (they see published
segments only); it orders the operations that delete or replace other processes' segments.

It is ``fcntl.flock`` on ``segments/maintenance.lock``. The kernel frees a flock when the last
descriptor of its open file goes away, so a holder killed with SIGKILL releases it at once and no
stale lock ever needs breaking (a lock made of a file that exists, or of a pid written down, would
need that, and breaking it races). The file itself is never deleted (deleting a lock file while
another process waits on it would let two hold "the" lock), and it holds the holder's pid, only to
name it in the busy message. Two threads of one process exclude each other too: each acquisition
opens the file afresh. A child forked while the lock is held closes its copy of the descriptor, so
the lock stays with the parent and ends with it.

The trade-off: flock is advisory and local. It works for processes on one machine (the shape
Kronicler's embedded database has); on a network file system it may not exclude across hosts,
so run maintenance from one host.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from kronicler.errors import DatabaseError, MaintenanceBusyError

LOCK_FILE = "maintenance.lock"
_POLL_SECONDS = 0.05

#: Descriptors of locks held by this process: a forked child closes them (see the docstring).
_held: set[int] = set()


def _close_in_child() -> None:
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


class MaintenanceLock:
    """Exclusive, cross-process lock of the segments in ``directory``; a context manager."""

    def __init__(self, directory: Path, *, wait: float = 0.0) -> None:
        if not isinstance(wait, (int, float)) or isinstance(wait, bool) or not wait >= 0:
            raise ValueError(f"wait must be a number of seconds >= 0, got {wait!r}")
        self.path = Path(directory) / LOCK_FILE
        self._wait = float(wait)
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def acquire(self) -> None:
        """Take the lock, polling for up to ``wait`` seconds; MaintenanceBusyError if not."""
        if self._fd >= 0:
            raise RuntimeError(f"{self.path} is already held by this lock object")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DatabaseError(f"cannot open the maintenance lock {self.path}: {exc}") from exc
        deadline = time.monotonic() + self._wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(fd)
                    os.close(fd)
                    raise MaintenanceBusyError(
                        f"another compaction or retention is running on {self.path.parent.parent}"
                        f"{f' (pid {holder})' if holder else ''}; try again later"
                    ) from None
                time.sleep(min(_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            except OSError as exc:
                os.close(fd)
                raise DatabaseError(f"cannot lock {self.path}: {exc}") from exc
        self._fd = fd
        _held.add(fd)
        with contextlib.suppress(OSError):  # the pid is only a courtesy for the busy message
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        _held.discard(fd)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> MaintenanceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
