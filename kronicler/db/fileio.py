"""Whole writes to raw file descriptors.

``os.write`` may write less than asked (a full disk, a signal); the storage files are append-only
chains that readers walk until the first damaged page or record, so a torn append would hide
everything appended after it. ``append_all`` therefore either writes everything or cuts the file
back to where it was.
"""

from __future__ import annotations

import contextlib
import errno
import os


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
