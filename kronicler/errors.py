"""Every error Kronicler defines, in one place.

Bad arguments raise the built-in ``ValueError`` (naming the bad value) so callers need not import
anything; the classes here describe failures of Kronicler's own state: a database that cannot be
opened, a page that fails its checksum, a call on something already closed.
"""

from __future__ import annotations

import logging
import warnings


class KroniclerError(Exception):
    """Base class of Kronicler's own errors."""


class DatabaseError(KroniclerError):
    """The database directory cannot be used (missing permissions, incompatible format)."""


class CorruptPageError(DatabaseError):
    """A page's header or checksum does not match its bytes (torn or damaged write)."""


class IndexUnusableError(CorruptPageError):
    """A part of a segment index that is decoded on first use (its function lists, its
    roll-up) turned out inconsistent after the segment opened from the index. Its reader
    forgets the index and walks the segment from the next refresh on: asking again answers
    without it."""


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


class DeadlineExceededError(KroniclerError):
    """A query ran past its caller's deadline, or its caller went away; it was stopped."""


class LimitExceededError(KroniclerError, ValueError):
    """A request would cost more than a configured limit (rows read, points or bytes returned).

    A ``ValueError`` too, so the query layer's callers treat it as a bad argument; servers answer
    ``RESOURCE_EXHAUSTED`` with the limit named.
    """


class UnavailableError(KroniclerError):
    """Nothing could answer: every peer of a cluster frontend failed or timed out (each named)."""


class MaintenanceBusyError(KroniclerError):
    """Another compaction or retention holds the database's maintenance lock."""


class KroniclerWarning(UserWarning):
    """Base class of the warnings Kronicler issues."""


class DataLossWarning(KroniclerWarning):
    """Calls could not be stored: they are counted as dropped (``kronicler.status()``,
    ``Database.dropped``) and the application goes on."""


def warn_data_loss(
    message: str,
    log: logging.Logger,
    *,
    level: int = logging.ERROR,
    exc_info: BaseException | bool | None = None,
) -> None:
    """Tell the user that calls are being lost, however logging is set up: log ``message`` to
    ``log`` (with ``exc_info``), and issue it as a :class:`DataLossWarning`.

    The ``kronicler`` logger has a ``NullHandler`` (a library does not print through logging's
    last-resort handler), so in an application that never configures logging the log record
    alone would go unseen. The warning is shown on stderr by default (once per message), is
    collected by test runners, and ``logging.captureWarnings(True)`` routes it into logging.
    """
    log.log(level, "%s", message, exc_info=exc_info)
    try:
        # Attributed to "kronicler", not to a line of its code (often a background thread's):
        # shown as one line, and filterable by category or by module "kronicler".
        warnings.warn_explicit(message, DataLossWarning, "kronicler", 0, module="kronicler",
                               registry=_warned)  # fmt: skip
    except Exception:  # noqa: BLE001 - warnings made errors: still never raise into the app
        pass


# The warnings registry of warn_data_loss: each message once (the "default" action).
_warned: dict[str | tuple[str, type[Warning], int], int] = {}


def shorten(value: object, limit: int = 100) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how long it was.

    Error messages quote the bad value so users can find it, but a client-sent value can be
    megabytes long; echoing it whole would bloat logs and exceed clients' metadata limits.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, (str, bytes, list, tuple, dict)) else len(text)
    return f"{text[:limit]}... ({size} long)"
