"""The catalog: small JSON documents saved atomically.

The database directory holds ``catalog.json`` (format name and schema version, written once) and,
per segment, ``<segment>.meta`` (its chunk directory). Both are replaced whole: write a temporary
file, fsync it, ``os.replace`` it over the old one, fsync the directory. A reader therefore sees the
old document or the new one, never half of either. The chunk directory is only a shortcut: the
segment file is self-describing, so pages written after the last catalog save are still found by
scanning, and a lost catalog costs a scan, not data.

A save that fails (a full disk) removes its temporary file at once; temporary files left by a
process that died mid-save are removed by the next writable open (:func:`remove_stale_temporaries`).
Temporary names carry the writer's pid, so a file another live process is saving right now is kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kronicler.db.fileio import write_all
from kronicler.db.schema import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION
from kronicler.errors import DatabaseError, SchemaVersionError

log = logging.getLogger(__name__)

CATALOG = "catalog.json"
FORMAT_NAME = "kronicler"
#: ``.<name>.<pid>.<token>.tmp`` (atomic_write) and ``<segment id>.wal.tmp`` (the tail log's
#: rewrite; a segment id is ``<time>-<pid>-<tag>``): the pid of the process writing it.
#: Compiled (``re``'s cache) by the first writable open, not at import: readers never need it.
_TEMPORARY = r"^\..+\.(\d+)\.[0-9a-f]+\.tmp$|^[0-9a-f]+-(\d+)-[0-9a-f]+\.wal\.tmp$"
_STALE_SECONDS = 600.0  # a temporary file this old is stale even if its pid runs (pid reuse)


def atomic_write(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Replace ``path`` with ``data`` (or its pieces, made one at a time: a big file is never
    held whole) so that readers never see a partial file.

    On failure (disk full, or an error making a piece) the temporary file is removed and the
    old ``path`` left as it was.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for piece in [data] if isinstance(data, bytes) else data:
                write_all(fd, piece)  # os.write alone may write part of it on a full disk
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_json(path: Path, doc: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(doc, separators=(",", ":")).encode())


def load_json(path: Path) -> dict[str, Any] | None:
    """The document, or None when it is missing or unreadable (a reader then falls back to a scan)."""
    try:
        doc = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def ensure_catalog(root: Path) -> dict[str, Any]:
    """Create the database's catalog if missing; check the format and schema version if present."""
    path = root / CATALOG
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        # Several processes may create it at once: each replaces it atomically with an
        # equivalent document, so any of them may win.
        new = {"format": FORMAT_NAME, "schema_version": SCHEMA_VERSION, "created": time.time_ns()}
        save_json(path, new)
        return new
    doc = _check_catalog(root, path, raw)
    if doc.get("schema_version") != SCHEMA_VERSION:
        # An older (readable) version: this process is about to write segments of the current
        # one, which older Kroniclers cannot read; the catalog says so, and they refuse to open.
        doc = {**doc, "schema_version": SCHEMA_VERSION}
        save_json(path, doc)
    return doc


def load_catalog(root: Path) -> dict[str, Any]:
    """Check an existing database's catalog without creating anything (a read-only open).

    A missing directory or catalog raises ``DatabaseError("not a Kronicler database: DIR")``.
    """
    path = root / CATALOG
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise DatabaseError(f"not a Kronicler database: {root}") from None
    except OSError as exc:
        raise DatabaseError(f"cannot read {path}: {exc}") from exc
    return _check_catalog(root, path, raw)


def _check_catalog(root: Path, path: Path, raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise DatabaseError(f"{path} is not a Kronicler catalog")
    if doc.get("format") != FORMAT_NAME:
        raise DatabaseError(f"{path} is not a Kronicler catalog (format {doc.get('format')!r})")
    version = doc.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
        raise SchemaVersionError(
            f"{root} has schema version {version!r}; this Kronicler reads versions {readable}"
        )
    return doc


def remove_stale_temporaries(directory: Path, *, now: float | None = None) -> int:
    """Remove temporary files that a failed or interrupted save left in ``directory``.

    A temporary file is stale when the process named in it no longer runs, or when it is older
    than any save takes (its pid may have been reused). Returns how many were removed.
    """
    now = time.time() if now is None else now
    removed = 0
    temporary = re.compile(_TEMPORARY)
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        m = temporary.match(name)
        if m is None:
            continue
        path = directory / name
        try:
            age = now - path.stat().st_mtime
        except OSError:
            continue  # renamed or removed by its writer meanwhile
        if age < _STALE_SECONDS and _alive(int(m.group(1) or m.group(2))):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    if removed:
        log.info("removed %d stale temporary file(s) from %s", removed, directory)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # ours: a save may be under way in another thread
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # runs, as another user
    return True
