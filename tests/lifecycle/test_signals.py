"""Stop signals in plain processes: flush, then the signal goes on exactly as without Kronicler.

Each script captures calls with a very long flush interval (only an exit or signal path can
store them), says "ready" on stdout, and is then signalled by the test. The return code shows how
the process ended: ``-SIGTERM`` means it died of the signal, as it would have without Kronicler.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.lifecycle.servers import ROOT, stored

_HANG_GUARD = 60.0  # seconds; only ever reached if a process hangs

IMPORTS = """
import os, signal, sys, threading, time
import kronicler
"""
WORK = """
@kronicler.capture(name="lifecycle.work")
def work(i):
    return i * 2

def ready():
    print("ready", flush=True)
"""
PRELUDE = IMPORTS + WORK


def spawn(tmp_path: Path, body: str, *, env: dict[str, str] | None = None,
          prelude: str = PRELUDE) -> subprocess.Popen[str]:  # fmt: skip
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONICLER_", "OTEL_"))}
    full_env.update(
        PYTHONPATH=str(ROOT), KRONICLER_PATH=str(tmp_path / "db"), KRONICLER_FLUSH_INTERVAL="600"
    )
    full_env.update(env or {})
    script = tmp_path / "script.py"  # a file, so that spawned workers can import __main__
    script.write_text(textwrap.dedent(prelude) + textwrap.dedent(body))
    return subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, env=full_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def signal_when_ready(proc: subprocess.Popen[str], sig: int) -> tuple[int, str, str]:
    assert proc.stdout is not None
    before = ""
    while (line := proc.stdout.readline()).strip() != "ready":
        before += line
        if not line:
            out, err = proc.communicate(timeout=_HANG_GUARD)
            raise AssertionError(f"not ready: {before}{out}\n{err}")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=_HANG_GUARD)
    return proc.returncode, before + line + out, err


def test_sigterm_with_default_disposition_stores_then_dies_of_the_signal(tmp_path: Path) -> None:
    proc = spawn(tmp_path, """
        for i in range(5000):
            work(i)
        ready()
        time.sleep(600)
    """)  # fmt: skip
    code, out, err = signal_when_ready(proc, signal.SIGTERM)
    assert code == -signal.SIGTERM, err
    assert stored(tmp_path / "db") == 5000


def test_sigint_still_raises_keyboard_interrupt(tmp_path: Path) -> None:
    proc = spawn(tmp_path, """
        for i in range(300):
            work(i)
        try:  # ready() inside: the signal may arrive as soon as "ready" is read
            ready()
            time.sleep(600)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(7)
    """)  # fmt: skip
    code, out, err = signal_when_ready(proc, signal.SIGINT)
    assert (code, out.split()) == (7, ["ready", "interrupted"]), err
    assert stored(tmp_path / "db") == 300


def test_asyncio_run_keeps_its_own_ctrl_c_handling(tmp_path: Path) -> None:
    # asyncio.run turns Ctrl-C into a cancellation of its main task, delivered at the task's
    # next await, instead of a KeyboardInterrupt wherever the code happens to be; it does so
    # only if it finds Python's own SIGINT handler in place, which Kronicler therefore leaves
    # alone (its KeyboardInterrupt ends in a normal exit, which stores everything anyway).
    proc = spawn(tmp_path, """
        import asyncio

        async def main():
            for i in range(200):
                work(i)
            ready()
            while asyncio.current_task().cancelling() == 0:
                pass          # no KeyboardInterrupt here: asyncio only asks the task to cancel
            print("cancel requested", flush=True)
            try:
                await asyncio.sleep(600)
            except asyncio.CancelledError:
                print("cancelled", flush=True)
                raise

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)  # fmt: skip
    code, out, err = signal_when_ready(proc, signal.SIGINT)
    assert code == 0, err
    assert out.splitlines() == ["ready", "cancel requested", "cancelled", "interrupted"], err
    assert stored(tmp_path / "db") == 200


def test_previous_handler_runs_after_the_flush(tmp_path: Path) -> None:
    # The application's own handler was there first; it is still called, once, with the same
    # arguments, and it decides how the process ends.
    proc = spawn(tmp_path, """
        def mine(signum, frame):
            print("mine", signum, frame is not None, flush=True)
            os._exit(5)   # skips atexit: only the flush before this handler can have stored rows
        signal.signal(signal.SIGTERM, mine)
        for i in range(700):
            work(i)
        ready()
        time.sleep(600)
    """)  # fmt: skip
    # PRELUDE decorated before `mine` existed; the first call re-arms ours on top of it.
    code, out, err = signal_when_ready(proc, signal.SIGTERM)
    assert (code, out.split()) == (5, ["ready", "mine", str(int(signal.SIGTERM)), "True"]), err
    assert stored(tmp_path / "db") == 700


def test_a_server_that_restores_our_handler_and_reraises_loses_nothing(tmp_path: Path) -> None:
    # What uvicorn does: install its handler over ours, record the signal, drain gracefully
    # (calls made during the drain are captured too), restore the handler it found, re-raise.
    proc = spawn(tmp_path, """
        seen = []
        found = {s: signal.signal(s, lambda n, f: seen.append(n)) for s in (signal.SIGTERM,)}
        for i in range(400):
            work(i)
        ready()
        while not seen:
            time.sleep(0.01)
        for i in range(400, 600):      # the graceful drain
            work(i)
        for s, h in found.items():
            signal.signal(s, h)
        signal.raise_signal(seen[0])
        print("survived", flush=True)
    """)  # fmt: skip
    code, out, err = signal_when_ready(proc, signal.SIGTERM)
    assert code == -signal.SIGTERM, (out, err)
    assert stored(tmp_path / "db") == 600


def test_ignored_signal_stays_ignored(tmp_path: Path) -> None:
    proc = spawn(tmp_path, """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for i in range(100):
            work(i)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        ready()
        os.kill(os.getpid(), signal.SIGTERM)   # ignored: the script goes on
        for i in range(100, 250):
            work(i)
        print("done", flush=True)
    """)  # fmt: skip
    assert proc.stdout is not None
    out, err = proc.communicate(timeout=_HANG_GUARD)
    assert (proc.returncode, out.split()) == (0, ["ready", "done"]), err
    assert stored(tmp_path / "db") == 250


def test_disabled_capture_installs_no_handler(tmp_path: Path) -> None:
    proc = spawn(tmp_path, """
        for i in range(10):
            work(i)
        print([signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGQUIT)] == [signal.SIG_DFL] * 2,
              signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
    """, env={"KRONICLER_ENABLED": "0"})  # fmt: skip
    out, err = proc.communicate(timeout=_HANG_GUARD)
    assert (proc.returncode, out.split()) == (0, ["True", "True"]), err
    assert not (tmp_path / "db").exists()


def test_capture_started_off_the_main_thread_installs_nothing_and_raises_nothing(
    tmp_path: Path,
) -> None:
    # Signal handlers can only be set in the main thread: here capture is decorated and started
    # in another one, so no handler, no error, and the normal exit still stores every row.
    proc = spawn(tmp_path, """
        def elsewhere():
            work = kronicler.capture(name="lifecycle.work")(lambda i: i)
            for i in range(50):
                work(i)
        t = threading.Thread(target=elsewhere)
        t.start()
        t.join()
        print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)
    """, prelude=IMPORTS)  # fmt: skip
    out, err = proc.communicate(timeout=_HANG_GUARD)
    assert (proc.returncode, out.split()) == (0, ["True"]), err
    assert stored(tmp_path / "db") == 50


def test_signal_while_the_main_thread_holds_the_pipeline_lock_still_ends_the_process(
    tmp_path: Path,
) -> None:
    # The handler interrupts the main thread wherever it is; here inside the pipeline's drain
    # lock, which the flush needs. The flush waits at most KRONICLER_STOP_TIMEOUT, then the
    # signal goes on: a bounded delay instead of a deadlock.
    proc = spawn(tmp_path, """
        from kronicler.otel import tracer
        for i in range(10):
            work(i)
        with tracer.PIPELINE._drain_lock:
            ready()
            time.sleep(600)
    """, env={"KRONICLER_STOP_TIMEOUT": "0.5"})  # fmt: skip
    code, out, err = signal_when_ready(proc, signal.SIGTERM)
    assert code == -signal.SIGTERM, err
    assert "took over 0.5 s" in err


def test_a_second_signal_during_the_flush_goes_on_at_once(tmp_path: Path) -> None:
    # A flush that never ends; the second SIGTERM must not wait for it (the stop timeout is far
    # beyond the hang guard, so only handing the second signal on at once ends this process).
    proc = spawn(tmp_path, """
        from kronicler.otel import shutdown
        def stuck(timeout):
            os.kill(os.getpid(), signal.SIGTERM)   # the operator's second signal
            threading.Event().wait()
        shutdown.on_stop_signal("stuck", stuck)
        work(1)
        ready()
        time.sleep(600)
    """, env={"KRONICLER_STOP_TIMEOUT": "3600"})  # fmt: skip
    code, out, err = signal_when_ready(proc, signal.SIGTERM)
    assert code == -signal.SIGTERM, err


def test_worker_pool_terminated_by_sigterm_stores_every_call(tmp_path: Path) -> None:
    # Leaving `with Pool()` terminates the workers with SIGTERM; fork workers inherit the
    # handler, spawn workers install it when they import the decorated function.
    proc = spawn(tmp_path, """
        import multiprocessing

        def job(i):
            return work(i)

        if __name__ == "__main__":
            for method in ("fork", "spawn"):
                with multiprocessing.get_context(method).Pool(2) as pool:
                    assert sum(pool.map(job, range(1000), chunksize=10)) == 999_000
            print("done", flush=True)
    """)  # fmt: skip
    out, err = proc.communicate(timeout=_HANG_GUARD)
    assert (proc.returncode, out.split()) == (0, ["done"]), err
    assert stored(tmp_path / "db") == 2000


def test_calls_ending_while_an_earlier_handler_drains_reach_the_database(tmp_path: Path) -> None:
    # A server whose handler was installed before the application was imported (uvicorn
    # --workers): ours runs first and hands the signal on; the server then drains, and will end
    # with the default action (no handler of ours runs then). Calls made during the drain must
    # reach the database on their own: the test waits until they are there, then SIGKILLs.
    proc = spawn(tmp_path, """
        for i in range(300):
            work(i)
        ready()
        while not seen:
            time.sleep(0.01)
        for i in range(300, 420):      # the graceful drain
            work(i)
        print("drained", flush=True)
        time.sleep(600)
    """, prelude="""
import signal, time
seen = []
signal.signal(signal.SIGTERM, lambda n, f: seen.append(n))
""" + PRELUDE)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline().strip() == "drained"
    try:
        deadline = time.monotonic() + _HANG_GUARD
        while stored(tmp_path / "db") != 420 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.communicate(timeout=_HANG_GUARD)
    assert stored(tmp_path / "db") == 420


def test_bad_stop_settings_raise_value_error_naming_the_value() -> None:
    from kronicler._config import Settings
    from kronicler.otel import install_shutdown_flush

    with pytest.raises(ValueError, match="stop_timeout.*-1"):
        Settings(stop_timeout=-1)
    with pytest.raises(ValueError, match="provider.*'nope'"):
        install_shutdown_flush("nope")
    assert Settings.from_env({"KRONICLER_STOP_TIMEOUT": "soon"}).stop_timeout == 5.0
    assert Settings.from_env({"KRONICLER_STOP_TIMEOUT": "0.25"}).stop_timeout == 0.25
