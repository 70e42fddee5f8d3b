"""Refreshing and summarising the ingest workers' new rows between queries, not inside them.

Under ingest every worker commits tens of times a second, so a query nearly always finds each
live segment changed since the one before: before it can merge anything it re-reads the new
tail-log records, and summarises the new tail rows (~1 ms a live segment); when a worker has just
sealed a chunk, it also walks and checks the chunk (up to ~7 ms). That work depends on what is
stored, not on the question, so the server does it in a thread of its own once a worker
acknowledges rows (:meth:`Warmer.stored`):

1. *walk ahead* (:meth:`~kronicler.db.reader.SegmentReader.prewalk`): each live segment's next
   chunk, if sealed since, is read and checked without the segment set's lock;
2. *refresh* (``db.snapshot()``, under the lock): the walked chunks are taken as they are, the new
   log records are read;
3. *summarise* (:meth:`~kronicler.db.view.ReadView.warm`): each segment's tail summary is made
   from the snapshot's immutable tail rows without the lock, then kept by the segment's views;
4. *merge*: the whole-history merges are made (``ReadView.merge_whole``, under the lock). After a
   seal this makes the sealed segment's roll-up block and the kept merge of every segment's
   (``SegmentSet._whole``) that queries read until the next seal; after every warm, the kept
   merge of that entry with the tails' new summaries (``SegmentSet._with_tails``), so a query
   merges one entry plus the rows committed since. A query that comes meanwhile waits for that
   merge, which it would otherwise do itself. Measured before the step after a seal: the 3% of
   queries that came first after a seal (one seal every ~0.7 s at 100k spans/s into 2 workers)
   were the p99 under ingest, ~2-3x the p50.

The next query's snapshot finds those views unchanged (their summaries made), or, if a worker
committed again meanwhile, summarises only the rows since. Answers do not change: every query
still refreshes, so it reads everything stored before it began. A query waits for the warmer only
while it refreshes (step 2): a lock held for the rows of one commit, not for a chunk's walk or a
tail's summary.

The trade-off is CPU spent on refreshes and summaries that no query may read. So a warm starts
only when rows were stored since the last, never while a query runs (a query that begins stops a
warm at its next step: it would take the interpreter lock from it), and at most once every
``every`` seconds (:data:`WARM_EVERY`) while queries come (sooner when a worker sealed a chunk:
the warmer looks for one every :data:`SEAL_POLL` seconds between queries, an open and a stat
of each live segment; before, the walk ahead was taken for only 2-3 of the 5-7 seals of a
``bench_server.py`` run, queries reaching the others first), or every ``every_quiet`` seconds
(:data:`WARM_EVERY_QUIET`) once none came for :data:`QUIET_AFTER` seconds. Under ~100k spans/s
into 2 workers a warm costs ~2-4 ms of CPU. Warming every 50 ms with no query at all added
0.4-0.9 ms of the server process's CPU per 1,000 spans stored to its 1.2-1.5 ms (measured side by
side with ``bench_server.py --only otlp``), hence the slower pace when nobody asks. In return,
the first query after a quiet spell finds at most ``every_quiet`` seconds of new rows to
summarise, where before this, warms ran only after a query ended, so that query paid for
everything stored since the last (~60 ms). With no ingest it does nothing; queries asked of the
database in-process are not waited for.

Sharing the interpreter. A query that arrives while a warm is under way still shares the
interpreter lock with it until the warm's next step, and so does each of gRPC's threads that
receive the query and send its reply: each time one of them lets the lock go (a system call, a
numpy loop) the warm takes it, and CPython hands it back only after its switch interval (5 ms):
a convoy. Measured per GetStats in the server process under 100k spans/s (wall time less CPU,
run-queue and lock waits), the slowest queries of one run waited so for up to 26 ms; and a
reply took 8-11 ms at p99 to leave the handler and reach the client, against 4-5 ms idle. So
while a warmer runs, the process's switch interval is :data:`SWITCH_INTERVAL` (set by
:meth:`Warmer.start`, put back by the last :meth:`Warmer.stop`), and a warm starts
:data:`AFTER_QUERY` seconds after a query's handler returned at the soonest, once its reply
has left. The price is more hand-overs of the lock while a warm and a query overlap.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import grpc

from kronicler.server.decoding import UnaryInterceptor

if TYPE_CHECKING:
    from kronicler.db import Database
    from kronicler.db.reader import SegmentReader

log = logging.getLogger(__name__)


#: Seconds between the starts of two warms, at least, while queries come (see the module
#: docstring); and once no query came for QUIET_AFTER seconds.
WARM_EVERY = 0.05
WARM_EVERY_QUIET = 0.5
QUIET_AFTER = 5.0
#: Seconds between two looks for a sealed chunk while the fast pace waits (see ``_pause``).
SEAL_POLL = 0.005
#: Seconds a warm waits after a query's handler returned: gRPC still serialises and sends its
#: reply in this process (see "Sharing the interpreter" in the module docstring).
AFTER_QUERY = 0.002
#: The interpreter's thread switch interval while a warmer runs (seconds; CPython's is 0.005).
SWITCH_INTERVAL = 0.0005


class Warmer:
    """A thread refreshing a database and summarising its new tail rows between queries.

    Tell it of rows stored (:meth:`stored`, from any thread) and bracket each query with
    :meth:`asking` (or serve through :meth:`interceptor`). ``every``, ``every_quiet``: seconds
    between the starts of two warms, at least, while queries come and once none came for
    ``quiet_after`` seconds. ``warms``: how many it has finished; ``stopped``: how many a query
    interrupted; ``merges``: how many merged after a seal.
    """

    def __init__(
        self,
        db: Database,
        *,
        every: float = WARM_EVERY,
        every_quiet: float = WARM_EVERY_QUIET,
        quiet_after: float = QUIET_AFTER,
    ) -> None:
        for label, value in (("every", every), ("every_quiet", every_quiet),
                             ("quiet_after", quiet_after)):  # fmt: skip
            if not value >= 0:
                raise ValueError(f"{label} must be >= 0 seconds, got {value!r}")
        self._db = db
        self._every, self._every_quiet, self._quiet_after = every, every_quiet, quiet_after
        self._cond = threading.Condition()  # guards everything below
        self._last_query = -float("inf")  # monotonic time the last query ended
        self._stored = False  # rows acknowledged since the last warm began
        self._running = 0  # queries in progress
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.warms = 0
        self.stopped = 0
        self.merges = 0  # warms that merged after a seal (step 4)
        self.sealed = 0  # pauses a sealed chunk cut short
        # The readers of the last warm's snapshot (whose next chunks are walked ahead); only the
        # warming thread uses them.
        self._readers: list[SegmentReader] = []

    def start(self) -> Warmer:
        with self._cond:
            if self._thread is None:
                self._stopping = False
                _switching.enter()
                self._thread = threading.Thread(
                    target=self._run, name="kronicler-warm", daemon=True
                )
                self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        with self._cond:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
            _switching.leave()

    def stored(self) -> None:
        """Rows were acknowledged (they are in a segment's files): warm soon."""
        with self._cond:
            self._stored = True
            self._cond.notify_all()

    @contextmanager
    def asking(self) -> Iterator[None]:
        """Bracket one query: no warm starts (or goes on past its current step) meanwhile."""
        with self._cond:
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._last_query = time.monotonic()
                self._cond.notify_all()

    def interceptor(self, service: str) -> grpc.ServerInterceptor:
        """A server interceptor bracketing every unary call of ``service`` with :meth:`asking`."""
        return _AskingInterceptor(self, f"/{service}/")

    def _due(self) -> bool:
        return self._stopping or (self._stored and not self._running)

    def _replied(self, now: float) -> float:
        """Seconds from ``now`` (monotonic) until the last query's reply has surely left (0
        when it has; see :data:`AFTER_QUERY`); read with ``_cond`` held."""
        return max(self._last_query + AFTER_QUERY - now, 0.0)

    def _asked(self) -> bool:
        """Whether a query runs (read without the lock: a stale answer costs one step)."""
        return self._running > 0 or self._stopping

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    self._cond.wait_for(self._due)
                    if (wait := self._replied(time.monotonic())) == 0.0:
                        break
                    self._cond.wait(wait)  # a query may begin meanwhile: _due again
                if self._stopping:
                    return
                self._stored = False
            try:
                finished = self._warm()
            except Exception:  # the database closing, a damaged page: the query will say
                log.debug("warming failed", exc_info=True)
                finished = False
            else:
                self.warms += finished
                self.stopped += not finished
            with self._cond:
                if not finished:
                    self._stored = True  # what it left is still to do
            self._pause()

    def _pause(self) -> None:
        """Wait before the next warm: a bounded rate (see the module docstring). The slow pace
        ends early when a query ends; the fast one when a worker has sealed a chunk (looked for
        every :data:`SEAL_POLL` seconds between queries), so that its walk and the merge after
        it are done before the next query (step 4 of the module docstring)."""
        began = time.monotonic()
        with self._cond:
            if began - self._last_query > self._quiet_after:
                self._cond.wait_for(lambda: self._stopping or self._last_query > began,
                                    timeout=self._every_quiet)  # fmt: skip
                return
        end = began + self._every
        while (left := end - time.monotonic()) > 0:
            with self._cond:
                if self._cond.wait_for(lambda: self._stopping, timeout=min(left, SEAL_POLL)):
                    return
            # a walk ahead finds a sealed chunk (an open and a stat when there is none)
            if not self._asked() and any(reader.prewalk() for reader in self._readers):
                self.sealed += 1
                return

    def _warm(self) -> bool:
        """One warm (see the module docstring); False when a query began and stopped it."""
        for reader in self._readers:  # 1. without the lock
            if self._asked():
                return False
            reader.prewalk()
        if self._asked():
            return False
        with self._db.snapshot() as view:  # 2. under the lock
            self._readers = [seg.reader for seg in view.segments if not seg.closed]
            if not view.warm(stop=self._asked):  # 3. without the lock, but to keep the blocks
                return False
            # 4. the whole-history merge the next query would redo (step 4 of the module
            # docstring): after a seal, and with the tails' new summaries after every warm
            if self._asked():
                return False
            sealed = not all(seg.made("rollup_block") for seg in view.segments)
            view.merge_whole()
            self.merges += sealed
            return True


class _Switching:
    """The process's thread switch interval while warmers run (see the module docstring):
    :data:`SWITCH_INTERVAL` from the first :meth:`enter`, the one before back at the last
    :meth:`leave` (unless something else changed it meanwhile)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _users and _before
        self._users = 0
        self._before = 0.0

    def enter(self) -> None:
        with self._lock:
            if not self._users:
                self._before = sys.getswitchinterval()
                sys.setswitchinterval(min(self._before, SWITCH_INTERVAL))
            self._users += 1

    def leave(self) -> None:
        with self._lock:
            self._users -= 1
            if not self._users and sys.getswitchinterval() == min(self._before, SWITCH_INTERVAL):
                sys.setswitchinterval(self._before)


_switching = _Switching()


class _AskingInterceptor(UnaryInterceptor):
    def __init__(self, warmer: Warmer, prefix: str) -> None:
        self._warmer = warmer
        self._prefix = prefix

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if not method.startswith(self._prefix):
            return handler
        behaviour = handler.unary_unary
        asking = self._warmer.asking

        def bracketed(request: Any, context: grpc.ServicerContext) -> Any:
            with asking():
                return behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            bracketed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
