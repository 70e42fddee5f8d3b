"""The database facade: one object to append spans and to ask for statistics.

Writes: ``append`` validates a batch in the caller's thread (so bad input fails loudly and stores
nothing), then hands it to the write queue; one background thread per process owns this process's
segment. ``append`` is a database API, so it never loses a row to a fast caller: when the queue is
full it waits for room (backpressure), at most ``timeout`` seconds if given, after which it raises
``WriteTimeoutError`` with nothing of the batch stored. Only the capture pipeline and the receivers,
which must never stall their callers, use ``append_batch(block=False)`` and handle a refusal
themselves. ``dropped`` counts rows lost after they were accepted (writes that kept failing), only.

Reads go to the segment set (``reads.py``): every segment of the directory, refreshed per read,
with a bounded bufferpool of decoded pages. A question needing several reads takes one
``snapshot()`` (``view.py``): a view with the same read methods, all answered from one refresh.
``readonly=True`` opens an existing database for queries only: it creates no file or directory,
and any write raises ``ReadOnlyError``.

Many processes may open the same directory: each writes its own segment and reads everybody's.
After ``fork`` the child gets a fresh writer (its own segment) on first append; an ``atexit`` hook,
and a multiprocessing finaliser in forked children, flush what is queued on a normal exit.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kronicler._config import DEFAULT_PATH
from kronicler._log import LogOnce
from kronicler.db.metadata import ensure_catalog, load_catalog, remove_stale_temporaries
from kronicler.db.queue import DEFAULT_CAPACITY_ROWS, DEFAULT_FLUSH_INTERVAL, WriteQueue
from kronicler.db.reads import SegmentSet
from kronicler.db.scan import FunctionSummary, Scan
from kronicler.db.schema import OPTIONAL_COLUMNS, SpanBatch
from kronicler.db.snapshot import Damage
from kronicler.db.stats import Call
from kronicler.db.view import ReadAPI, ReadView
from kronicler.errors import (
    ClosedError,
    DatabaseError,
    ReadOnlyError,
    WriteTimeoutError,
    warn_data_loss,
)

if TYPE_CHECKING:
    # The writer, its bookkeeping of whose rows it holds (origins) and maintenance (compaction,
    # retention) load on first use: a process that only reads (a cold query, the CLI) never
    # pays for their imports. The writer class is then this module's ``SegmentWriter`` (tests
    # swap it): see ``_writer_class``.
    from kronicler.db.origins import LossCallback, Tagged, TailOrigins
    from kronicler.db.site_batch import SiteBatch
    from kronicler.db.writer import SegmentWriter

log = logging.getLogger(__name__)

# Bytes of decoded pages, summaries and roll-ups a reader keeps (a cap, filled only by reads, so a
# process that only writes never uses it). At a billion rows, ranges asked again need the roll-up
# nodes and merged blocks of every segment to stay: with 64 MB they were evicted between queries
# and a warm 57% range cost ~0.6 s of CPU, with 256 MB ~50 ms.
DEFAULT_BUFFERPOOL_BYTES = 256 << 20
_MAX_TAIL_CHUNKS = 4  # unwritten rows held while writes fail, in chunks
# ~33.5M rows, ~180-560 MB; then the writer starts a new segment. The size of a time-disjoint
# compaction's output too (disjoint.DEFAULT_OUTPUT_ROWS). A segment's sorted-duration record
# (merged by maintenance, see durations_merge) costs ~1 bit/row less each time it doubles:
# bench_index.py at 100M rows, 6.09 B/row with 16.8M-row segments, see the README.
DEFAULT_SEGMENT_ROWS = 1 << 25
DEFAULT_SEGMENT_SECONDS = 3600.0  # ...or after an hour, so retention by age can reach it
_MAX_ATTRIBUTE_SETS = 200_000  # ...or when this many distinct attribute sets are held in memory
_MAX_ATTRIBUTE_CHARS = 32 << 20  # ...or when their text passes this size (a few huge values)
# Resource sets are few (one per process or OTLP request), and every reader holds a segment's
# resource texts in memory, so their bound is tighter: a sender that varies its resource on
# every request costs segments, not reader memory.
_MAX_RESOURCE_SETS = 4096
_MAX_RESOURCE_CHARS = 4 << 20
SEGMENTS = "segments"

_open_databases: weakref.WeakSet[Database] = weakref.WeakSet()


class Database(ReadAPI):
    """A Kronicler span database in a directory. Thread-safe."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        bufferpool_bytes: int = DEFAULT_BUFFERPOOL_BYTES,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        queue_rows: int = DEFAULT_CAPACITY_ROWS,
        chunk_rows: int | None = None,
        segment_rows: int = DEFAULT_SEGMENT_ROWS,
        segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
        readonly: bool = False,
        create: bool = True,
    ) -> None:
        for what, value in (("bufferpool_bytes", bufferpool_bytes), ("queue_rows", queue_rows),
                            ("segment_rows", segment_rows), ("chunk_rows", chunk_rows)):  # fmt: skip
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value <= 0):  # fmt: skip
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        if not isinstance(segment_seconds, (int, float)) or not segment_seconds > 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds!r}")
        if not isinstance(flush_interval, (int, float)) or not flush_interval > 0:
            raise ValueError(
                f"flush_interval must be a positive number of seconds, got {flush_interval!r}"
            )
        self.path = Path(path)
        self.readonly = bool(readonly)
        self._segdir = self.path / SEGMENTS
        if self.readonly or not create:
            load_catalog(self.path)  # "not a Kronicler database: DIR"; creates nothing
        if not self.readonly:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                self._segdir.mkdir(exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot create database directory {self.path}: {exc}") from exc
            ensure_catalog(self.path)
            for directory in (self.path, self._segdir):
                remove_stale_temporaries(directory)
            _arm_fork_hook()
        self._flush_interval = flush_interval
        self._queue_rows = queue_rows
        self._chunk_rows = chunk_rows
        self._segment_rows = segment_rows
        self._segment_seconds = float(segment_seconds)
        self._bufferpool_bytes = bufferpool_bytes
        self._reads = SegmentSet(self._segdir, bufferpool_bytes)
        self._writer: SegmentWriter | None = None
        self._failures = 0  # failed writes and commits (see flush)
        self._failures_seen = 0
        self._lost_rows = 0  # rows given up after writes kept failing
        # Whose rows the writer's tail holds (writer thread only), made by the first write.
        self._origins: TailOrigins | None = None
        self._sources: dict[Callable[[], Sequence[SiteBatch]], _TaggingSource] = {}
        self._log_once = LogOnce(log)
        self._queue = self._new_queue()
        self._closed = False
        _open_databases.add(self)

    @classmethod
    def open(cls, path: str | os.PathLike[str] = DEFAULT_PATH, **options: Any) -> Database:
        """Open the database at ``path``, creating it if missing.

        ``readonly=True`` opens an existing database for queries only; ``create=False`` opens an
        existing one for writing. Either raises ``DatabaseError("not a Kronicler database: DIR")``
        when ``path`` holds none, and creates nothing.
        """
        return cls(path, **options)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r}{', readonly=True' if self.readonly else ''})"

    # -- writing -------------------------------------------------------------------------------
    def _new_queue(self) -> WriteQueue[SpanBatch | SiteBatch | Tagged[SiteBatch]]:
        return WriteQueue(
            self._consume, self._commit, capacity_rows=self._queue_rows,
            flush_interval=self._flush_interval,
        )  # fmt: skip

    def append(
        self,
        names: Sequence[str] | np.ndarray,
        start_unix_nano: Sequence[int] | np.ndarray,
        duration_ns: Sequence[int] | np.ndarray,
        *,
        timeout: float | None = None,
        **columns: Any,
    ) -> int:
        """Validate one batch (ValueError, nothing stored) and queue it; returns its row count.

        Waits while the write queue is full (backpressure); with ``timeout`` (seconds) it waits
        at most that long, then raises ``WriteTimeoutError`` having stored nothing of the batch.
        ``flush`` makes the rows durable and visible.
        """
        unknown = set(columns) - set(OPTIONAL_COLUMNS)
        if unknown:
            raise ValueError(f"unknown column(s) {sorted(unknown)}")
        batch = SpanBatch.build(names, start_unix_nano, duration_ns, **columns)
        return self.append_batch(batch, timeout=timeout)

    def append_batch(
        self, batch: SpanBatch | SiteBatch, *, block: bool = True, timeout: float | None = None
    ) -> int:
        """Queue an already validated batch whole; returns its row count.

        A :class:`SiteBatch` (the capture path's) carries its text as per-site tables, which
        the writer codes once per site instead of once per row.

        Blocking (the default) behaves like :meth:`append`. ``block=False`` never waits: a full
        queue refuses the batch and 0 is returned; nothing is stored or counted, the caller still
        holds the rows (the capture pipeline offers them again, a receiver answers "retry later").
        """
        if timeout is not None and (
            not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0
        ):
            raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
        self._check_writable()
        if len(batch) == 0:
            return 0
        if self._queue.put(batch, block=block, timeout=timeout):
            return len(batch)
        if self._closed:
            raise ClosedError(f"{self!r} is closed")
        if not block:
            return 0
        raise WriteTimeoutError(
            f"the write queue of {self.path} stayed full for {timeout} s; "
            f"none of the {len(batch)} rows were stored"
        )

    def attach_source(
        self,
        source: Callable[[], Sequence[SiteBatch]],
        *,
        interval: float,
        on_loss: LossCallback | None = None,
    ) -> None:
        """Have this database's writer thread take batches from ``source()`` itself.

        The writer calls ``source`` every ``interval`` seconds and on every flush and close, so
        its records reach the segment in one hand-off (see :mod:`kronicler.db.queue`); the
        source keeps its own buffer bounded and counts its own drops. Rows of ``source`` the
        writer then fails to store are counted in :attr:`dropped` and told to ``on_loss(rows)``
        (on the writer thread; it must not block), also after a detach while they were still
        held, so the source's own count of stored and dropped calls stays exact
        (:mod:`kronicler.db.origins`). Attaching again changes the interval and the callback.
        """
        self._check_writable()
        tagging = self._sources.get(source)
        if tagging is None:
            tagging = self._sources[source] = _TaggingSource(source, on_loss)
        tagging.on_loss = on_loss
        if not self._queue.attach(tagging, interval=interval):
            raise ClosedError(f"{self!r} is closed")

    def detach_source(self, source: Callable[[], Sequence[SiteBatch]]) -> None:
        """Stop taking from ``source``."""
        tagging = self._sources.pop(source, None)
        if tagging is not None:
            self._queue.detach(tagging)

    def takes_from(self, source: Callable[[], Sequence[SiteBatch]]) -> bool:
        """True while the writer takes from ``source`` (False once this database closed)."""
        tagging = self._sources.get(source)
        return tagging is not None and self._queue.attached(tagging)

    def _check_writable(self) -> None:
        if self._closed:
            raise ClosedError(f"{self!r} is closed")
        if self.readonly:
            raise ReadOnlyError(f"database {self.path} was opened read-only")

    def _consume(self, batches: list[SpanBatch | SiteBatch | Tagged[SiteBatch]]) -> None:
        # Never raises: whatever fails (a full disk, a batch that cannot be coded, a bug, no
        # memory) is counted here, each lost row told once to the source it came from. An
        # exception left to the queue would be counted there, with no source to tell.
        from kronicler.db.origins import Tagged

        if self._writer is None:
            try:
                self._writer = _writer_class()(self._segdir, **self._writer_options())
            except Exception as exc:  # the directory went away, no space for a new segment
                self._failed("write", exc)
                for item in batches:
                    self._lose(item.on_loss if isinstance(item, Tagged) else None, len(item))
                return
        origins = self._tail_origins()
        for item in batches:
            batch, on_loss = (
                (item.batch, item.on_loss) if isinstance(item, Tagged) else (item, None)
            )
            try:
                self._writer.add(batch)  # all or nothing
            except Exception as exc:  # rows that cannot be coded: that batch alone is lost
                self._failed("write a batch", exc)
                self._lose(on_loss, len(batch))
                continue
            origins.add(on_loss, len(batch))
        try:
            self._writer.seal_full()
        except Exception as exc:  # disk full, I/O error, a bug: the rows stay in the tail
            self._failed("write", exc)
            self._shed_if_stuck()
            return
        finally:
            if self._writer is not None:
                origins.keep_newest(self._writer.tail_rows)
        writer = self._writer
        if (
            writer.rows_sealed >= self._segment_rows
            or len(writer.dicts["attributes"]) >= _MAX_ATTRIBUTE_SETS
            or writer.dicts["attributes"].chars >= _MAX_ATTRIBUTE_CHARS
            or len(writer.dicts["resource"]) >= _MAX_RESOURCE_SETS
            or writer.dicts["resource"].chars >= _MAX_RESOURCE_CHARS
            or time.monotonic() - writer.opened >= self._segment_seconds
        ):
            # Rotate: the old segment seals its tail and closes, so retention can delete it
            # whole, and the writer's dictionaries (held in memory) start afresh.
            try:
                writer.close()
            except Exception as exc:  # the tail is still held: keep writing this segment
                self._failed("close", exc)
                self._shed_if_stuck()
                return
            self._writer = None
            origins.clear()  # sealed

    def _writer_options(self) -> dict[str, Any]:
        return {} if self._chunk_rows is None else {"chunk_rows": self._chunk_rows}

    def _commit(self) -> None:
        if self._writer is not None:
            try:
                self._writer.commit()
            except Exception as exc:  # the rows stay in the tail: the next commit retries
                self._failed("commit", exc)
                self._shed_if_stuck()

    def _failed(self, what: str, exc: Exception) -> None:
        """Count a failed step (``flush`` then says False) and log it once per kind of step."""
        self._failures += 1
        # An OSError explains itself (disk full, permissions); anything else is a bug or bad
        # data, whose traceback is what finds it.
        self._log_once(what, logging.ERROR, "kronicler could not %s to %s: %s", what, self._segdir,
                       exc, exc_info=None if isinstance(exc, OSError) else exc,
                       loss=True)  # fmt: skip

    def _shed_if_stuck(self) -> None:
        """While writes fail, give up the segment once its unwritten tail grows too large.

        What the segment already holds on disk stays readable; the rows only in memory are
        counted as dropped; the next batch starts a new segment (which may find space again).
        """
        writer = self._writer
        if writer is None or writer.tail_rows <= _MAX_TAIL_CHUNKS * writer.chunk_rows:
            return
        self._abandon(writer)

    def _tail_origins(self) -> TailOrigins:
        if self._origins is None:
            from kronicler.db.origins import TailOrigins

            self._origins = TailOrigins()
        return self._origins

    def _abandon(self, writer: SegmentWriter) -> None:
        """Give up ``writer``: its rows in the tail log stay readable, the rest are lost."""
        origins = self._tail_origins()
        origins.keep_newest(writer.tail_rows)
        for on_loss, rows in origins.take_newest(writer.tail_rows - writer.tail_in_wal):
            self._lose(on_loss, rows)
        origins.clear()
        writer.abandon()
        self._writer = None

    def _lose(self, on_loss: LossCallback | None, rows: int) -> None:
        """Count ``rows`` lost, and tell the source they came from."""
        self._lost_rows += rows
        if on_loss is not None:
            try:
                on_loss(rows)
            except Exception as exc:  # noqa: BLE001 - a source's bug must not stop the writer
                self._log_once("on_loss", logging.ERROR, "kronicler: a loss callback failed: %s",
                               exc, exc_info=exc)  # fmt: skip

    def flush(self, timeout: float | None = None) -> bool:
        """Make everything appended so far durable and visible (read-only: nothing to do).

        False if ``timeout`` passed, or if a write failed (disk full, I/O error) since the
        previous flush: then some rows may be missing or not yet durable.
        """
        ok = self._queue.flush(timeout)
        failures = self._failures + self._queue.lost
        clean = failures == self._failures_seen
        self._failures_seen = failures
        return ok and clean

    def close(self, timeout: float | None = None) -> None:
        """Flush, seal this process's segment and release files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.close(timeout)
        writer = self._writer
        if self._queue.running:
            # The writer thread is still busy past ``timeout`` and owns the writer: leave both.
            warn_data_loss(f"kronicler: {self} closed while {self._queue.pending_rows} queued "
                           "rows were still being written", log)  # fmt: skip
        elif writer is not None:
            try:
                writer.close()
            except Exception as exc:
                # Rows in the tail log stay readable; the rest existed only in memory.
                self._abandon(writer)
                warn_data_loss(f"kronicler could not close segment {writer.id}: {exc}", log)
            self._writer = None
            if self._origins is not None:
                self._origins.clear()
        self._reads.close()
        _open_databases.discard(self)

    @property
    def dropped(self) -> int:
        """Rows accepted but then lost: writes that kept failing (a full disk, an I/O error).

        A batch refused by a full queue is not counted: it was never accepted, and its caller
        was told (``WriteTimeoutError``, or 0 from ``append_batch(block=False)``).
        """
        return self._queue.lost + self._lost_rows

    @property
    def damaged(self) -> Damage:
        """Rows lost to damaged bytes in the stored segments, counted (and logged once each)."""
        return self._open_reads().damage()

    def _after_fork_in_child(self) -> None:
        # The parent's queue, thread and segment belong to the parent; start afresh, lazily.
        if self._writer is not None:
            self._writer.abandon()
            self._writer = None
        self._origins = None
        self._sources = {}
        self._queue = self._new_queue()
        self._reads = SegmentSet(self._segdir, self._bufferpool_bytes)

    # -- reading -------------------------------------------------------------------------------
    def _open_reads(self) -> SegmentSet:
        if self._closed:
            raise ClosedError(f"{self!r} is closed")
        return self._reads

    def snapshot(self) -> ReadView:
        """A view answering every read from one snapshot of the database, taken now.

        The view has this object's read methods; each call reads the same data, whatever is
        appended, sealed or deleted meanwhile. Use it for one question and close it
        (``with db.snapshot() as view: ...``): it holds its segments' files open.
        """
        return ReadView(self._open_reads(), self._open_reads)

    def functions(self) -> list[str]:
        """Names of every function with at least one stored call, sorted."""
        return self._open_reads().functions()

    def services(self) -> list[str]:
        """Service names seen, sorted."""
        return self._open_reads().services()

    def time_range(self) -> tuple[int, int] | None:
        """(earliest, latest) start time over every stored call, or None when empty."""
        return self._open_reads().time_range()

    def summaries(
        self,
        names: Sequence[str] | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
    ) -> dict[str, FunctionSummary]:
        """Merged summary per function over ``since <= start < until`` (exact at the edges)."""
        return self._open_reads().summaries(names, since=since, until=until)

    def scan(
        self,
        columns: Sequence[str],
        *,
        names: Sequence[str] | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> Scan:
        """Decoded rows (``since <= start < until``, name in ``names``) of the given columns."""
        return self._open_reads().scan(columns, names=names, since=since, until=until)

    def slowest(
        self,
        name: str | None = None,
        *,
        k: int = 10,
        since: int | None = None,
        until: int | None = None,
    ) -> list[Call]:
        """The ``k`` slowest calls (of ``name``, or of any function), slowest first."""
        return self._open_reads().slowest(name, k=k, since=since, until=until)

    # -- maintenance -----------------------------------------------------------------------------
    def retain(
        self,
        *,
        max_age_ns: int | None = None,
        max_bytes: int | None = None,
        wait: float | None = None,
    ) -> int:
        """Delete closed segments older than ``max_age_ns`` or beyond ``max_bytes``; returns count.

        Waits up to ``wait`` seconds for a running compaction (MaintenanceBusyError after that;
        None: ``retention.DEFAULT_WAIT_SECONDS``).
        """
        from kronicler.db import retention

        if wait is None:
            wait = retention.DEFAULT_WAIT_SECONDS
        self._check_writable()
        self._open_reads()
        own = None if self._writer is None else self._writer.id
        removed = retention.retain(self._segdir, own, max_age_ns, max_bytes, wait=wait)
        return len(removed)

    def compact(
        self,
        *,
        small_rows: int | None = None,
        group_rows: int | None = None,
        wait: float = 0.0,
        time_disjoint: bool = False,
        output_rows: int | None = None,
    ) -> int:
        """Merge small finished segments into larger ones; returns how many were replaced.

        With ``time_disjoint``, finished segments whose time ranges overlap (and small ones
        that follow each other) are rewritten instead as segments of about ``output_rows``
        rows that cover disjoint times (see disjoint.py; None: ``disjoint.DEFAULT_OUTPUT_ROWS``),
        as ``serve`` does in the background.
        Safe to run while other processes write and read the directory, and exclusive with
        other compactions and retention: when one runs, waits up to ``wait`` seconds, then
        raises MaintenanceBusyError (see compaction.py). ``small_rows`` and ``group_rows``
        (None: ``compaction.DEFAULT_SMALL_ROWS``, ``DEFAULT_GROUP_ROWS``) are as in
        :func:`kronicler.db.compaction.compact`.
        """
        from kronicler.db import compaction

        if small_rows is None:
            small_rows = compaction.DEFAULT_SMALL_ROWS
        if group_rows is None:
            group_rows = compaction.DEFAULT_GROUP_ROWS
        if small_rows <= 0 or group_rows <= 0:
            raise ValueError(
                f"small_rows and group_rows must be positive, got {small_rows}, {group_rows}"
            )
        self._check_writable()
        self._open_reads()
        own = None if self._writer is None else self._writer.id
        if time_disjoint:
            from kronicler.db import disjoint

            if output_rows is None:
                output_rows = disjoint.DEFAULT_OUTPUT_ROWS
            return disjoint.compact(
                self._segdir, own, output_rows=output_rows, small_rows=small_rows,
                chunk_rows=self._chunk_rows, wait=wait,
            )  # fmt: skip
        return compaction.compact(
            self._segdir, own, small_rows=small_rows, group_rows=group_rows,
            chunk_rows=self._chunk_rows, wait=wait,
        )  # fmt: skip

    def size_bytes(self) -> int:
        """Bytes taken by every file of the database directory."""
        total = 0
        for root, _, files in os.walk(self.path):
            for f in files:
                try:
                    total += os.stat(os.path.join(root, f)).st_size
                except FileNotFoundError:
                    pass
        return total


class _TaggingSource:
    """An attached source as the write queue sees it: its batches come tagged with ``on_loss``."""

    __slots__ = ("on_loss", "source", "tagged")

    def __init__(self, source: Callable[[], Sequence[SiteBatch]], on_loss: LossCallback | None):
        from kronicler.db.origins import Tagged

        self.source = source
        self.on_loss = on_loss
        self.tagged = Tagged

    def __call__(self) -> list[Tagged[SiteBatch]]:
        on_loss, tagged = self.on_loss, self.tagged
        return [tagged(batch, on_loss) for batch in self.source()]

    def __repr__(self) -> str:
        return repr(self.source)


def _writer_class() -> type[SegmentWriter]:
    """The segment writer class, imported on the first write; this module's ``SegmentWriter``
    from then on, so that a test can put another in its place."""
    cls: type[SegmentWriter] | None = globals().get("SegmentWriter")
    if cls is None:
        from kronicler.db import writer

        cls = globals()["SegmentWriter"] = writer.SegmentWriter
    return cls


def __getattr__(name: str) -> Any:
    if name == "SegmentWriter":  # still importable from here, though loaded on first use
        return _writer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def close_all() -> None:
    """Close every database open in this process (at exit: see ``kronicler.db``)."""
    for db in list(_open_databases):
        try:
            db.close(timeout=10.0)
        except Exception as exc:  # exiting: report, never raise
            warn_data_loss(f"kronicler could not close {db!r} at exit: {exc}", log)


def flush_all(timeout: float | None = None) -> bool:
    """Flush every database open in this process; True when all are durable within ``timeout``.

    For exits that skip ``atexit`` (a stop signal whose default action ends the process).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for db in list(_open_databases):
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            ok = db.flush(remaining) and ok
        except Exception as exc:  # a stop must go on: report, never raise
            warn_data_loss(f"kronicler could not flush {db!r} on a stop signal: {exc}", log)
            ok = False
    return ok


def _after_fork_in_child() -> None:
    for db in list(_open_databases):
        db._after_fork_in_child()


class _ForkHook:
    """Registered with multiprocessing so its worker processes flush on their (os._exit) exit."""

    def __call__(self, _: object) -> None:
        from multiprocessing import util

        util.Finalize(None, close_all, exitpriority=10)


_FORK_HOOK = _ForkHook()
_fork_hook_armed = False


def _arm_fork_hook() -> None:
    """Make multiprocessing workers close this process's databases on their exit; called when a
    database first opens for writing, not at import: multiprocessing costs a read-only process
    ~10 ms of imports (a cold time range at a billion rows has 200 ms), and a reader has nothing
    to flush.

    A worker forked after this call runs the hook (multiprocessing clears its finalisers in a new
    child after os-level fork hooks have run, then calls its own after-fork hooks: registered
    there, the finaliser survives). A database first opened for writing inside a worker (forked
    or spawned before any was) registers the finaliser in that worker at once."""
    global _fork_hook_armed
    if _fork_hook_armed:
        return
    _fork_hook_armed = True
    from multiprocessing import process, util

    util.register_after_fork(_FORK_HOOK, _FORK_HOOK)
    if process.parent_process() is not None:  # this is a worker: its exit skips atexit
        _FORK_HOOK(None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
