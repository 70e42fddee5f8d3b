"""The default pipeline's back half: in-memory records -> the database's writer, in one hand-off.

Captured calls append one 6-int record to a shared buffer (:class:`~kronicler.otel.records.
RecordBuffer`: a flat list of ints, or C int64s where the optional C fast path is built; each
append is atomic under the GIL). That buffer is the capture path's one buffer: the database's
writer thread takes from it itself (:meth:`Database.attach_source`) every ``flush_interval``
(0.1 s) and on every flush: it takes what has accumulated (each take is atomic, so concurrent
appends are never lost nor taken twice), converts it with
:func:`records_to_site_batch` (rows point into the call-site table; no text per row, the writer
dictionary-codes each site once) and writes it into its segment. There is no queue between the
two to fill up, refuse, split or retry. The application thread never waits on the database,
never sees its errors and never opens a file.

A small ``kronicler-flush`` thread only looks after the buffer: it opens the database once
something was recorded (again every few seconds while that fails), drops and counts what cannot
be stored (no usable database), and drops the oldest records beyond ``max_pending`` when the
writer falls behind, so memory stays bounded.

Trade-offs:

* Records wait in memory for up to one interval (plus the writer's commit interval), so a crash
  can lose that much; a normal exit flushes everything (``atexit``), and so do the stop
  signals SIGTERM, SIGINT and SIGQUIT (:mod:`kronicler.otel.shutdown`), which end servers such
  as uvicorn without running ``atexit``. Closing the database also takes what is buffered.
* One drop counter, exact: ``stored + dropped`` equals the calls recorded (once nothing is
  pending). Losses happen in two places, here (no usable database, ``max_pending`` exceeded)
  and in the writer (writes that kept failing after it took our rows); the writer tells us of
  its losses of our rows through the ``on_loss`` callback we attach with
  (:mod:`kronicler.db.origins`), and rows it took are counted stored until it does.
* ``fork``: the child forgets the parent's pending records and database handle (the parent
  stores those) and lazily opens its own segment when it next has something to store.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass

from kronicler._config import Settings
from kronicler._log import LogOnce
from kronicler.db.sink import CaptureSink
from kronicler.db.site_batch import SiteBatch
from kronicler.errors import ClosedError, DatabaseError
from kronicler.otel import shutdown as stop_signals
from kronicler.otel.contract import process_resource, resource_text
from kronicler.otel.records import (
    FullRecord,
    ListRecords,
    RecordBuffer,
    Site,
    records_to_site_batch,
)

_log = logging.getLogger(__name__)

_JOIN_TIMEOUT = 5.0  # seconds shutdown waits for the background thread
BATCH_ROWS = 32_768  # rows per batch the writer takes (bounds each conversion's GIL hold)
_REOPEN_DELAY = 5.0  # seconds between attempts to open an unusable database


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    """Counters of the default pipeline (since process start, or since the last fork).

    Fields:
        stored: rows handed to the database and accepted by it.
        dropped: rows lost (database unusable, ``max_pending`` exceeded, or lost by the
            database's writer after it took them, as it reports through ``on_loss``).
            Once nothing is pending, ``stored + dropped`` is every call recorded.
        pending: rows waiting in memory right now.
        path: the database directory in use.
        error: text of the last problem, or None.
    """

    stored: int
    dropped: int
    pending: int
    path: str
    error: str | None


class Pipeline:
    """Owns the record buffers, the call-site table, the looking-after thread and the database."""

    def __init__(self, settings: Settings, records: RecordBuffer | None = None) -> None:
        # Appended to by application threads without a lock; taken from only under _take_lock.
        # The same object for the process's life: wrappers hold its bound ``extend``.
        self.rows: RecordBuffer = ListRecords() if records is None else records
        self.full: list[FullRecord] = []
        self.settings = settings
        self._lost_at_last_flush = 0
        self._sites: list[Site] = []
        self._site_ids: dict[tuple[str, int, str], int] = {}
        self._sites_lock = threading.Lock()  # protects _sites/_site_ids growth
        # _drain_lock serialises database open/close/switch and settings changes; never taken
        # on the capture path nor by the writer's take (so holding it while the database
        # flushes or closes is safe). Order: _drain_lock before _take_lock.
        self._drain_lock = threading.Lock()
        # _take_lock serialises removing records from the buffers and the counters it moves
        # (the writer's take, dropping, trimming).
        self._take_lock = threading.Lock()
        self._take_fn = self._take  # one bound method: the database knows the source by it
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db: CaptureSink | None = None
        self._owns_db = False
        self._db_failed_at = 0.0
        self._stored = 0
        self._dropped = 0
        self._on_loss = self._writer_lost  # one bound method, as for _take_fn
        self._error: str | None = None
        self._log_once = LogOnce(_log)
        self._resource: tuple[str, str] | None = None  # (service name, its resource's text)
        self._atexit_registered = False
        self._closed = False

    # -- call sites --------------------------------------------------------------------------
    def register_site(self, site: Site) -> int:
        """Index of ``site`` in the call-site table (equal sites share one index)."""
        key = (site.name, site.kind, site.attributes_text)
        with self._sites_lock:
            idx = self._site_ids.get(key)
            if idx is None:
                idx = self._site_ids[key] = len(self._sites)
                self._sites.append(site)
            return idx

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background thread if it is not running (idempotent, cheap when running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        with self._sites_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._closed = False
            self._stop.clear()
            thread = threading.Thread(target=self._run, name="kronicler-flush", daemon=True)
            thread.start()
            self._thread = thread
        if not self._atexit_registered:
            atexit.register(self._at_exit)
            self._atexit_registered = True
        self.arm_stop_signals()

    def arm_stop_signals(self) -> bool:
        """Flush on SIGTERM/SIGINT/SIGQUIT; install the handlers where missing (main thread).

        Called when a function is decorated (usually at import, before a server installs its
        own handlers, which then restore ours when they finish) and when capture starts (for
        servers that imported the application after installing theirs).
        """
        stop_signals.set_timeout(self.settings.stop_timeout)
        return stop_signals.on_stop_signal(self, self._flush_on_stop)

    def _flush_on_stop(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        # Rows appended by anything else in this process (an exporter, the application).
        stop_signals.flush_databases(max(0.0, deadline - time.monotonic()))

    def flush(self, timeout: float | None = None) -> bool:
        """Have the writer take everything recorded so far and wait until it is durable.

        False when something recorded since the previous flush could not be stored (dropped),
        or ``timeout`` passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._drain_lock:
            lost_before = self._lost_at_last_flush
            db = self._attach()
        ok = True
        if db is not None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ok = bool(db.flush(remaining))
            except Exception as exc:  # noqa: BLE001 - flushing must never raise into the app
                self._problem("flush", exc)
                ok = False
        # Rows may have been lost in the background since the last flush: compare counters.
        lost_now = self._lost()
        self._lost_at_last_flush = lost_now
        return ok and lost_now == lost_before

    def shutdown(self, timeout: float | None = _JOIN_TIMEOUT) -> bool:
        """Stop the thread, store what is pending, close the database (idempotent)."""
        thread = self._thread
        self._stop.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._drain_lock:
            self._attach()
            ok = self._close_db()
            self._closed = True
            self._thread = None
        return ok

    def reconfigure(self, settings: Settings) -> None:
        """Store pending records under the old settings, then switch (reopen if path moved)."""
        with self._drain_lock:
            self._store_pending()
            if settings.path != self.settings.path:
                self._close_db()
                self._db_failed_at = 0.0
            self.settings = settings
            if self._db is not None:  # the writer takes at the new interval
                self._attach_to(self._db)

    def use_database(self, db: CaptureSink) -> None:
        """Store into an already-open ``Database`` (the caller keeps ownership)."""
        with self._drain_lock:
            self._store_pending()
            self._close_db()
            self._db, self._owns_db = db, False
            self._attach_to(db)

    def status(self) -> PipelineStatus:
        with self._take_lock:  # the two counters of one moment
            stored, dropped = self._stored, self._lost()
        return PipelineStatus(
            stored=stored,
            dropped=dropped,
            pending=self._pending(),
            path=self.settings.path,
            error=self._error,
        )

    def after_fork_in_child(self) -> None:
        """Forget the parent's records, thread and database; locks are made afresh."""
        self.rows.clear()
        del self.full[:]
        self._drain_lock = threading.Lock()
        self._take_lock = threading.Lock()
        self._sites_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._db = None  # the parent's handle: its writer thread does not exist here
        self._owns_db = False
        self._db_failed_at = 0.0
        self._stored = self._dropped = self._lost_at_last_flush = 0
        self._resource = None  # the child is another service instance

    def before_fork(self) -> None:
        # A fork while a thread is mid-take would leave the child's copy of a lock held
        # forever; waiting for the take to end makes the child's state consistent.
        self._drain_lock.acquire()
        self._take_lock.acquire()

    def after_fork_in_parent(self) -> None:
        self._take_lock.release()
        self._drain_lock.release()

    # -- the writer's side -------------------------------------------------------------------
    def _take(self) -> list[SiteBatch]:
        """Everything recorded now, as batches of at most ``BATCH_ROWS`` rows (writer thread).

        Never raises: records that cannot be converted are dropped and counted.
        """
        with self._take_lock:
            out: list[SiteBatch] = []
            # Only what is here now: appends that race with the take wait for the next one.
            left_rows, left_full = self.rows.pending(), len(self.full)
            while left_rows or left_full:
                n, m = min(left_rows, BATCH_ROWS), min(left_full, BATCH_ROWS)
                left_rows, left_full = left_rows - n, left_full - m
                rows = self.rows.take(n)
                full = self.full[:m]
                del self.full[:m]
                try:
                    with self._sites_lock:
                        sites = list(self._sites)
                    offset = time.time_ns() - time.perf_counter_ns()
                    batch = records_to_site_batch(
                        rows, full, sites, service=self.settings.service_name,
                        clock_offset=offset, resource=self._resource_text(),
                    )  # fmt: skip
                except Exception as exc:  # noqa: BLE001
                    self._dropped += n + m
                    self._problem("convert", exc)
                    continue
                self._stored += len(batch)
                out.append(batch)
            return out

    def _resource_text(self) -> str:
        """The pipeline's resource, made once per service name (not per call, not per row)."""
        service = self.settings.service_name
        made = self._resource
        if made is None or made[0] != service:
            made = self._resource = (service, resource_text(process_resource(service)))
        return made[1]

    # -- background work ---------------------------------------------------------------------
    def _run(self) -> None:
        stop, wake = self._stop, self._wake
        while not stop.is_set():
            wake.wait(self.settings.flush_interval)
            wake.clear()
            try:
                with self._drain_lock:
                    self._attach()
                self._trim()
            except Exception as exc:  # noqa: BLE001 - the thread must survive anything
                self._problem("background", exc)

    def _at_exit(self) -> None:
        try:
            self.shutdown()
        except Exception as exc:  # noqa: BLE001
            self._problem("exit", exc)

    def _lost(self) -> int:
        return self._dropped + self.rows.lost

    def _writer_lost(self, rows: int) -> None:
        """The database's writer lost ``rows`` of ours that it had taken (writer thread)."""
        with self._take_lock:
            self._stored -= rows
            self._dropped += rows
        self._error = f"the database could not store {rows} rows (its log says why)"

    def _pending(self) -> int:
        return self.rows.pending() + len(self.full)

    def _attach(self) -> CaptureSink | None:
        """The database the writer takes our records into, opened when records wait for one.

        Caller holds ``_drain_lock``. With no usable database, what is pending is dropped and
        counted (memory must stay bounded, and nothing would take it).
        """
        if not self.rows.pending() and not self.full:
            return self._db  # nothing to store: do not open (and so create) the database
        db = self._database()
        if db is not None and not self._takes_from(db):
            # Closed under us (by its owner): nothing takes our records any more.
            self._problem("append", ClosedError(f"{db!r} is closed"))
            db = None
        if db is None:
            self._drop_pending()
        return db

    def _takes_from(self, db: CaptureSink) -> bool:
        try:
            return bool(db.takes_from(self._take_fn))
        except Exception:  # noqa: BLE001
            return False

    def _attach_to(self, db: CaptureSink) -> None:
        try:
            db.attach_source(
                self._take_fn, interval=self.settings.flush_interval, on_loss=self._on_loss
            )
        except Exception as exc:  # noqa: BLE001 - found out (and counted) by _attach
            self._problem("append", exc)

    def _store_pending(self) -> None:
        """Store what is recorded now into the current database (caller holds _drain_lock)."""
        db = self._attach()
        if db is not None:
            try:
                db.flush(_JOIN_TIMEOUT)
            except Exception as exc:  # noqa: BLE001
                self._problem("flush", exc)

    def _drop_pending(self) -> None:
        with self._take_lock:
            m = len(self.full)
            n = self.rows.drop(self.rows.pending())
            del self.full[:m]
            self._dropped += n + m

    def _trim(self) -> None:
        """Drop the oldest records beyond ``max_pending`` (memory must stay bounded)."""
        if self._pending() <= self.settings.max_pending:
            return
        with self._take_lock:
            excess = self._pending() - self.settings.max_pending
            take = self.rows.drop(max(excess, 0))
            excess -= take
            if excess > 0:
                del self.full[:excess]
            self._dropped += take + max(excess, 0)
        self._problem("overflow", RuntimeError("the database is not keeping up"))

    def _database(self) -> CaptureSink | None:
        if self._db is not None:
            return self._db
        if self._db_failed_at and time.monotonic() - self._db_failed_at < _REOPEN_DELAY:
            return None
        try:
            from kronicler.db import Database

            db = Database.open(self.settings.path)
            if self._atexit_registered:
                # Run before any exit hook the database registered while opening (atexit is
                # last-in, first-out), so pending records are stored before it closes.
                atexit.unregister(self._at_exit)
                atexit.register(self._at_exit)
            try:
                db.attach_source(
                    self._take_fn, interval=self.settings.flush_interval, on_loss=self._on_loss
                )
            except Exception:
                db.close()  # opened for us and unusable: do not leave it open
                raise
            self._db, self._owns_db = db, True
            self._db_failed_at = 0.0
        except Exception as exc:  # noqa: BLE001 - an unusable directory must not stop the app
            self._db_failed_at = time.monotonic()
            self._problem("open", exc)
            return None
        return self._db

    def _close_db(self) -> bool:
        db, owned = self._db, self._owns_db
        self._db, self._owns_db = None, False
        if db is None:
            return True
        try:
            if owned:
                db.close()  # its writer takes what we hold a last time, then closes
            else:
                db.flush()
            return True
        except Exception as exc:  # noqa: BLE001
            self._problem("close", exc)
            return False
        finally:
            # Rows the database loses later (a full disk failing a seal after a flush) are
            # still reported to our callback, which outlives the detach.
            try:
                db.detach_source(self._take_fn)
            except Exception:  # noqa: BLE001
                pass

    def _problem(self, where: str, exc: BaseException) -> None:
        self._error = f"{where}: {type(exc).__name__}: {exc}"
        if where == "open" and isinstance(exc, (DatabaseError, OSError)):
            # A user's mistake (a file, an unwritable place), not ours: one line, no trace.
            self._log_once(
                where, logging.WARNING,
                "kronicler: %s; captured calls are not stored (the application continues; "
                "kronicler.status() counts them)", unusable_path(self.settings.path, exc),
                loss=True,
            )  # fmt: skip
            return
        self._log_once(
            where, logging.WARNING,
            "kronicler: %s failed (%s: %s); the application continues, affected calls "
            "are counted as dropped (kronicler.status())",
            where, type(exc).__name__, exc, exc_info=exc, loss=True,
        )  # fmt: skip


def unusable_path(path: str, exc: BaseException) -> str:
    """Why the database directory ``path`` cannot be used, in one line, naming where it came from."""
    from_env = os.environ.get("KRONICLER_PATH", "").strip() == path
    label = f"KRONICLER_PATH {path}" if from_env else f"the database path {path}"
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{label} is a file, not a directory"
    if os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK):
        return f"{label} is a directory this process cannot write to"
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
    return f"{label} cannot be used: {reason}"
