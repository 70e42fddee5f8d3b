"""Every error Kronicler defines, in one place.

Bad arguments raise the built-in ``ValueError`` (naming the bad value) so callers need not import
anything; the classes here describe failures of Kronicler's own state: a database that cannot be
opened, a page that fails its checksum, a call on something already closed.
"""

from __future__ import annotations


class KroniclerError(Exception):
    """Base class of Kronicler's own errors."""


class DatabaseError(KroniclerError):
    """The database directory cannot be used (missing permissions, incompatible format)."""


class CorruptPageError(DatabaseError):
    """A page's header or checksum does not match its bytes (torn or damaged write)."""


class SchemaVersionError(DatabaseError):
    """The database was written by an incompatible version of the format."""


class ReadOnlyError(DatabaseError):
    """A write was attempted on a database opened read-only."""


class WriteTimeoutError(KroniclerError, TimeoutError):
    """``Database.append`` waited its whole ``timeout`` for room in the write queue; nothing of
    the batch was stored."""


class ClosedError(KroniclerError):
    """An operation was attempted on a closed database or exporter."""


class NotFoundError(KroniclerError, LookupError):
    """A named thing (function, segment) does not exist."""


class BufferPoolFullError(KroniclerError):
    """A page does not fit in the buffer pool because every cached page is pinned."""
