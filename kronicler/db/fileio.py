"""Whole writes to raw file descriptors.

``os.write`` may write less than asked (a full disk, a signal); the storage files are append-only
chains that readers walk until the first damaged page or record, so a torn append would hide
everything appended after it. ``append_all`` therefore either writes everything or cuts the file
back to where it was.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def write_all(fd: int, data: bytes | bytearray) -> None:
    """Write every byte of ``data`` or raise OSError."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "no progress writing")
        view = view[written:]


def append_all(fd: int, data: bytes | bytearray, restore_to: int) -> None:
    """Append all of ``data``; on failure truncate the file back to ``restore_to`` and raise."""
    try:
        write_all(fd, data)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, restore_to)
        raise


class SideFile:
    """An append-only side file of a segment (``.kkey``, ``.kdur``), opened on first append.

    Best-effort: a failed append is cut back whole and logged, and the caller's readers then read
    those rows the slow way; ``abandon`` (a forked child) drops the descriptor without writing.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self._what = what  # for the log: what the file holds
        self._fd = -1
        self._offset = 0
        self.abandoned = False

    def append(self, data: bytes) -> bool:
        """Append ``data`` whole; False (logged) when it could not be written."""
        if self.abandoned:
            return False
        try:
            if self._fd < 0:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            append_all(self._fd, data, self._offset)
        except OSError as exc:
            log.warning("%s: %s not written: %s", self.path, self._what, exc)
            return False
        self._offset += len(data)
        return True

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                log.warning("%s: not synced: %s", self.path, exc)
            os.close(self._fd)
            self._fd = -1

    def abandon(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        self.abandoned = True
