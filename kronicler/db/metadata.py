"""The catalog: small JSON documents saved atomically.

The database directory holds ``catalog.json`` (format name and schema version, written once) and,
per segment, ``<segment>.meta`` (its chunk directory). Both are replaced whole: write a temporary
file, fsync it, ``os.replace`` it over the old one, fsync the directory. A reader therefore sees the
old document or the new one, never half of either. The chunk directory is only a shortcut: the
segment file is self-describing, so pages written after the last catalog save are still found by
scanning, and a lost catalog costs a scan, not data.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from kronicler.db.schema import SCHEMA_VERSION
from kronicler.errors import DatabaseError, SchemaVersionError

CATALOG = "catalog.json"
FORMAT_NAME = "kronicler"


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
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
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise DatabaseError(f"{path} is not a Kronicler catalog")
    if doc.get("format") != FORMAT_NAME:
        raise DatabaseError(f"{path} is not a Kronicler catalog (format {doc.get('format')!r})")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{root} has schema version {version!r}; this Kronicler reads version {SCHEMA_VERSION}"
        )
    return doc
