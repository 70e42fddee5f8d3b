"""Real servers stopped as deployments stop them: every captured call answered must be stored.

Docker and Kubernetes stop a service with SIGTERM to its main process, systemd with SIGTERM to
every process of its group, a developer with Ctrl-C (SIGINT to the terminal's process group).
uvicorn re-raises the signal with its default disposition after its graceful shutdown, so the
interpreter's exit hooks never run: only a signal handler can store what was captured. Each test
answers ``N`` requests, each making one captured call, signals the server right after the last
response, waits for it to exit and counts the rows: exactly ``N``.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lifecycle import servers

N = 1_000
IN_FLIGHT = 6

UVICORN = ["uvicorn", "lifeapp:app", "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"]
UVICORN_WORKERS = [*UVICORN, "--workers", "2"]
# A short graceful timeout: gunicorn's quick shutdown (SIGINT to the master) sends the workers
# SIGQUIT, which uvicorn workers do not act on, then SIGKILL after this many seconds.
GUNICORN_UVICORN = ["gunicorn", "lifeapp:app", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
                    "-b", "127.0.0.1:{port}", "--graceful-timeout", "3"]  # fmt: skip
GUNICORN_SYNC = ["gunicorn", "lifeapp:app", "-w", "2", "-b", "127.0.0.1:{port}"]

SIGTERM_MAIN = pytest.param(signal.SIGTERM, False, id="SIGTERM-main")  # docker stop, Kubernetes
SIGINT_MAIN = pytest.param(signal.SIGINT, False, id="SIGINT-main")
SIGTERM_GROUP = pytest.param(signal.SIGTERM, True, id="SIGTERM-group")  # systemd
SIGINT_GROUP = pytest.param(signal.SIGINT, True, id="SIGINT-group")  # Ctrl-C in a terminal
# Every server gets SIGTERM and SIGINT at its main process; the group deliveries are tried where
# they take a different road (workers signalled directly as well as by their master).
STOPS = [SIGTERM_MAIN, SIGINT_MAIN]


@pytest.fixture
def started() -> Iterator[list[servers.Server]]:
    """Servers started by the test; whatever is left of them is killed afterwards."""
    running: list[servers.Server] = []
    yield running
    for server in running:
        servers.reap_group(server)


def serve(tmp_path: Path, started: list[servers.Server], source: str, argv: list[str],
          ) -> servers.Server:  # fmt: skip
    servers.write_app(tmp_path, source)
    port = servers.free_port()
    server = servers.start(tmp_path, [a.format(port=port) for a in argv], port)
    started.append(server)
    return server


def serve_load_stop(tmp_path: Path, started: list[servers.Server], source: str,
                    argv: list[str], sig: int, group: bool) -> tuple[int, servers.Server]:  # fmt: skip
    server = serve(tmp_path, started, source, argv)
    servers.load(server.port, N)
    return servers.stop(server, sig, group=group), server


@pytest.mark.parametrize(("sig", "group"), STOPS)
def test_uvicorn_single_process(tmp_path: Path, started: list[servers.Server], sig: int,
                                group: bool) -> None:  # fmt: skip
    code, server = serve_load_stop(tmp_path, started, servers.ASGI_APP, UVICORN, sig, group)
    assert servers.stored(tmp_path / "db") == N, server.output()
    # The signal is not swallowed: SIGTERM still ends the process with its own status; SIGINT
    # ends uvicorn through KeyboardInterrupt, which it turns into a normal exit.
    assert code == (-signal.SIGTERM if sig == signal.SIGTERM else 0), server.output()


@pytest.mark.parametrize(("sig", "group"), [*STOPS, SIGTERM_GROUP])
def test_uvicorn_workers(tmp_path: Path, started: list[servers.Server], sig: int,
                         group: bool) -> None:  # fmt: skip
    code, server = serve_load_stop(tmp_path, started, servers.ASGI_APP, UVICORN_WORKERS, sig,
                                   group)  # fmt: skip
    assert servers.stored(tmp_path / "db") == N, server.output()
    assert code == 0, server.output()


@pytest.mark.parametrize(("sig", "group"), [*STOPS, SIGINT_GROUP])
def test_gunicorn_uvicorn_workers(tmp_path: Path, started: list[servers.Server], sig: int,
                                  group: bool) -> None:  # fmt: skip
    code, server = serve_load_stop(tmp_path, started, servers.ASGI_APP, GUNICORN_UVICORN, sig,
                                   group)  # fmt: skip
    assert servers.stored(tmp_path / "db") == N, server.output()
    assert code == 0, server.output()


def test_gunicorn_sync_workers(tmp_path: Path, started: list[servers.Server]) -> None:
    code, server = serve_load_stop(tmp_path, started, servers.WSGI_APP, GUNICORN_SYNC,
                                   signal.SIGTERM, False)  # fmt: skip
    assert servers.stored(tmp_path / "db") == N, server.output()
    assert code == 0, server.output()


def test_sdk_exporter_under_uvicorn(tmp_path: Path, started: list[servers.Server]) -> None:
    code, server = serve_load_stop(tmp_path, started, servers.SDK_APP, UVICORN, signal.SIGTERM,
                                   False)  # fmt: skip
    assert servers.stored(tmp_path / "db") == N, server.output()
    assert code == -signal.SIGTERM, server.output()


@pytest.mark.parametrize(
    "argv", [pytest.param(UVICORN, id="uvicorn"), pytest.param(GUNICORN_UVICORN, id="gunicorn")]
)
def test_calls_in_flight_at_sigterm_are_stored(tmp_path: Path, started: list[servers.Server],
                                               argv: list[str]) -> None:  # fmt: skip
    # The server drains: requests running when SIGTERM arrives are answered, and their calls,
    # which end after the signal, are stored too: the application was imported before the
    # server installed its handlers, so ours lies beneath the server's, which restores it and
    # re-raises the signal after draining. (Under `uvicorn --workers` the application is imported
    # after, and calls ending during the drain are stored by a best-effort flushing loop:
    # test_signals.py checks that loop without depending on when the process dies.)
    server = serve(tmp_path, started, servers.ASGI_APP, argv)
    servers.load(server.port, N)
    threads, statuses = servers.in_flight(server.port, tmp_path, IN_FLIGHT)
    servers.stop(server, signal.SIGTERM)
    for t in threads:
        t.join()
    assert statuses == [200] * IN_FLIGHT, server.output()
    assert servers.stored(tmp_path / "db") == N, server.output()
    assert servers.stored(tmp_path / "db", servers.SLOW_FUNCTION) == IN_FLIGHT, server.output()
