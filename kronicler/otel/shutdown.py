"""Store what was captured when the process is stopped by a signal (SIGTERM, SIGINT, SIGQUIT).

Docker, Kubernetes and systemd stop a service with SIGTERM; a developer with Ctrl-C (SIGINT);
gunicorn's quick shutdown with SIGQUIT. ``atexit`` hooks run only when the interpreter exits
normally, and servers such as uvicorn end with the signal's *default* action: after their
graceful shutdown they restore the handlers they found and raise the signal again, so the
process dies without running any exit hook. Records still in memory (up to one flush interval)
and rows still in a database's write queue would be lost. So Kronicler flushes in a signal
handler, and then hands the signal on exactly as it would have gone without Kronicler:

* to the handler that was there before ours, if that is a Python callable (uvicorn's
  ``handle_exit``, gunicorn's worker handlers);
* if the previous disposition was ``SIG_DFL``: restore it and raise the signal again, so the
  process still dies of that signal, with the status a supervisor expects;
* nothing is installed over ``SIG_IGN`` (the process chose to ignore the signal) or over a
  handler set by C code before Python started (``signal.getsignal`` gives None: we could not
  hand the signal on to it).

SIGINT is handled only where its disposition is ``SIG_DFL`` (gunicorn's uvicorn workers set
that): elsewhere it is Python's ``KeyboardInterrupt``, asyncio's task cancellation or someone's
handler, all of which end in a normal exit that runs ``atexit``; and ``asyncio.run`` installs
its task-cancelling Ctrl-C handler only when it finds Python's own in place.

Handlers can only be set in the main thread; elsewhere :func:`on_stop_signal` only registers the
flush and returns False. Servers install their own handlers, and the order decides what we see:

* theirs after ours (``uvicorn app:app`` and gunicorn's uvicorn workers import the application,
  hence decorate, before uvicorn's ``capture_signals``): uvicorn restores ours when its graceful
  shutdown is over and re-raises, so ours runs last and nothing captured during the drain is
  lost;
* theirs before ours (``uvicorn --workers`` imports the application inside ``capture_signals``;
  or theirs replaced ours): :func:`on_stop_signal` runs again when capture starts and puts ours
  on top, chaining to theirs. Ours then runs first: what was captured until the signal is
  stored; the server drains and ends with the default action, with no handler of ours at the
  end. For that drain, handing the signal to a Python handler starts a loop that flushes every
  :data:`DRAIN_PERIOD` seconds: best effort, a call ending in the last milliseconds before the
  process dies can be missed (the application's lifespan shutdown is the exact place for a
  ``kronicler.flush()``).

The flush runs in a helper thread that the handler waits for, at most ``timeout`` seconds: the
handler interrupts the main thread wherever it is, possibly holding a lock the flush needs (a
flush or drain in progress). Waiting in another thread turns that deadlock into a bounded delay
after which the signal goes on. A second signal during the flush is handed on at once (an
impatient operator's second Ctrl-C must still work).

Trade-off: the flush adds up to ``timeout`` seconds to a stop, and it runs before the
previous handler. Orchestrators allow more (Docker 10 s, Kubernetes 30 s by default).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from kronicler.errors import warn_data_loss

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0  # seconds a stop signal waits for the flush before it goes on
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGQUIT") if hasattr(signal, name)
)

Flush = Callable[[float], object]
"""A flush: called with the seconds it may take; its result and exceptions are ignored."""

# _lock serialises registration and installation. The handler itself takes no lock: it runs on
# the main thread between two bytecodes, perhaps while that thread holds _lock.
_lock = threading.Lock()
_flushes: dict[object, Flush] = {}  # run in registration order
_timeout = DEFAULT_TIMEOUT
_flushing = False  # set while a handler's flush runs: a second signal goes on at once
_drainer: threading.Thread | None = None  # keeps flushing while another handler drains
DRAIN_PERIOD = 0.005  # seconds between flushes while another handler drains the process
DRAIN_FOR = 120.0  # seconds that goes on at most (a process that did not stop after all)


class _Handler:
    """Our handler for one signal: flush, then hand the signal to ``previous``."""

    __slots__ = ("previous", "signum")

    def __init__(self, signum: int, previous: Any) -> None:
        self.signum = signum
        self.previous = previous

    def __call__(self, signum: int, frame: FrameType | None) -> Any:
        global _flushing
        if not _flushing:
            _flushing = True
            try:
                run_flushes(_timeout)
            finally:
                _flushing = False
        return self._hand_on(signum, frame)

    def _hand_on(self, signum: int, frame: FrameType | None) -> Any:
        previous = self.previous
        if callable(previous):
            _keep_flushing()
            return previous(signum, frame)
        if previous == signal.SIG_DFL:
            # Die of the signal itself, as without us. raise_signal delivers it synchronously;
            # if the default action does not end the process (SIGINT with a blocked mask, a
            # non-fatal default) we are back here and put ourselves back in place.
            signal.signal(signum, signal.SIG_DFL)
            try:
                signal.raise_signal(signum)
            finally:
                if threading.current_thread() is threading.main_thread():
                    signal.signal(signum, self)
        return None

    def __repr__(self) -> str:
        return f"<kronicler flush-on-{signal.Signals(self.signum).name} handler>"


def _keep_flushing() -> None:
    """Flush every few milliseconds for a while: the process is draining under another handler.

    A handler installed before ours (uvicorn's in a ``--workers`` child, which imports the
    application inside its ``capture_signals``) gets the signal after our flush and drains the
    requests in flight; it then restores the disposition it found (``SIG_DFL``) and raises the
    signal again, so no handler of ours runs at the end. Calls ending during the drain are stored
    by this loop instead: best effort, since a call ending in the last milliseconds before the
    process dies can still be missed.
    """
    global _drainer
    # No lock (see _lock): handlers run only on the main thread, one bytecode at a time; at
    # worst a second signal arriving right here starts a second, harmless, loop.
    if _drainer is not None and _drainer.is_alive():
        return
    _drainer = threading.Thread(target=_drain_loop, name="kronicler-stop-drain", daemon=True)
    try:
        _drainer.start()
    except RuntimeError:  # the interpreter is finalising: nothing left to drain into
        pass


def _drain_loop() -> None:
    until = time.monotonic() + DRAIN_FOR
    while time.monotonic() < until:
        time.sleep(DRAIN_PERIOD)
        for flush in list(_flushes.values()):
            try:
                flush(_timeout)
            except Exception as exc:  # noqa: BLE001 - best effort, never raises
                _log.debug("kronicler: flush while draining failed: %s", exc)


def on_stop_signal(key: object, flush: Flush) -> bool:
    """Run ``flush`` when a stop signal arrives; install the handlers where they are missing.

    ``key`` identifies the flush (registering the same key again replaces it). Safe to call
    often and from any thread: True when our handler is in place for every stop signal that
    can be handled from Python, False when this is not the main thread.
    """
    with _lock:
        _flushes[key] = flush
    return install_handlers()


def set_timeout(seconds: float) -> None:
    """Seconds a stop signal waits for the flushes (> 0)."""
    global _timeout
    if not seconds > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {seconds!r}")
    _timeout = float(seconds)


def install_handlers() -> bool:
    """Put our handler on every stop signal whose current handler is not ours (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        for signum in STOP_SIGNALS:
            try:
                current = signal.getsignal(signum)
                if isinstance(current, _Handler) or current is None:
                    continue  # ours already, or set outside Python: leave it
                if current == signal.SIG_IGN:
                    continue  # the process ignores this signal; so do we
                if signum == signal.SIGINT and current != signal.SIG_DFL:
                    # Python's KeyboardInterrupt, asyncio.run's task cancellation, a server's
                    # or the application's handler: they end in a normal exit, which stores
                    # everything (atexit). And asyncio.run puts its handler in place only if
                    # it finds Python's own: leave them all.
                    continue
                signal.signal(signum, _Handler(signum, current))
            except (OSError, ValueError, RuntimeError) as exc:  # embedded interpreters, etc.
                warn_data_loss(f"kronicler: cannot handle {signum} ({exc}); a stop by this "
                               "signal may lose the last captured calls", _log,
                               level=logging.WARNING)  # fmt: skip
        return True


def run_flushes(timeout: float) -> bool:
    """Run every registered flush in a helper thread; wait at most ``timeout`` seconds.

    True when they all finished in time. Never raises.
    """
    flushes = list(_flushes.values())  # one atomic copy under the GIL, no lock (see _lock)
    if not flushes:
        return True
    done = threading.Event()

    def work() -> None:
        deadline = time.monotonic() + timeout
        for flush in flushes:
            try:
                flush(max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - a stop must go on whatever happens
                warn_data_loss(f"kronicler: flush on stop signal failed ({type(exc).__name__}: "
                               f"{exc})", _log, level=logging.WARNING)  # fmt: skip
        done.set()

    try:
        threading.Thread(target=work, name="kronicler-stop-flush", daemon=True).start()
    except RuntimeError as exc:  # no more threads (interpreter finalising): flush here instead
        _log.warning("kronicler: flushing on the signal's thread (%s)", exc)
        work()
    if done.wait(timeout):
        return True
    warn_data_loss(f"kronicler: the flush on a stop signal took over {timeout:.1f} s; going on "
                   f"without it (pid {os.getpid()})", _log, level=logging.WARNING)  # fmt: skip
    return False


def install_shutdown_flush(provider: Any, *, timeout: float | None = None) -> bool:
    """Flush an OpenTelemetry SDK ``TracerProvider`` and Kronicler's databases on a stop signal.

    For the SDK path (``BatchSpanProcessor(KroniclerSpanExporter(...))``): the processor holds
    spans in memory for up to its schedule delay, and the provider's own exit hook (``atexit``)
    does not run when a server re-raises SIGTERM. On SIGTERM, SIGINT or SIGQUIT this calls
    ``provider.force_flush()`` (every processor exports what it holds), then flushes every
    Kronicler ``Database`` open in this process (the exporter's included), then hands the signal
    on as described in this module. ``timeout`` (seconds; default ``KRONICLER_STOP_TIMEOUT``, else
    5) bounds the flush. Call it in the main thread, after creating the provider; True when the
    handlers are in place.
    """
    force_flush = getattr(provider, "force_flush", None)
    if not callable(force_flush):
        raise ValueError(f"provider must be an OpenTelemetry TracerProvider, got {provider!r}")
    if timeout is None:
        from kronicler._config import Settings

        timeout = Settings.from_env().stop_timeout
    set_timeout(timeout)

    def flush(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        force_flush(max(1, int(seconds * 1000)))
        flush_databases(max(0.0, deadline - time.monotonic()))

    return on_stop_signal(("provider", id(provider)), flush)


def flush_databases(timeout: float) -> bool:
    """Flush every Kronicler database open in this process (loaded only if one can be open)."""
    if "kronicler.db.database" not in sys.modules:
        return True
    from kronicler.db.database import flush_all

    return flush_all(timeout)


def _after_fork_in_child() -> None:
    global _lock, _flushing, _drainer
    _lock = threading.Lock()  # a thread of the parent may have held it at the fork
    _flushing = False
    _drainer = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
