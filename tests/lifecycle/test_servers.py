"""Real servers stopped as deployments stop them: every captured call answered must be stored.

Docker, Kubernetes and systemd stop a service with SIGTERM; a developer with Ctrl-C (SIGINT).
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

N = 2_000
STOPS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]


@pytest.fixture
def started() -> Iterator[list[servers.Server]]:
    """Servers started by the test; whatever is left of them is killed afterwards."""
    running: list[servers.Server] = []
    yield running
    for server in running:
        servers.reap_group(server)


def serve_and_stop(tmp_path: Path, started: list[servers.Server], source: str,
                   argv: list[str], sig: int) -> tuple[int, servers.Server]:  # fmt: skip
    servers.write_app(tmp_path, source)
    port = servers.free_port()
    server = servers.start(tmp_path, [a.format(port=port) for a in argv], port)
    started.append(server)
    servers.load(port, N)
    code = servers.stop(server, sig)
    return code, server


@pytest.mark.parametrize("sig", STOPS)
def test_uvicorn_single_process(tmp_path: Path, started: list[servers.Server], sig: int) -> None:
    code, server = serve_and_stop(
        tmp_path, started, servers.ASGI_APP,
        ["uvicorn", "lifeapp:app", "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"], sig,
    )  # fmt: skip
    assert servers.stored(tmp_path / "db") == N, server.output()
    # The signal is not swallowed: SIGTERM still kills with its own status; SIGINT ends uvicorn
    # through KeyboardInterrupt, which it turns into a normal exit.
    assert code == (-signal.SIGTERM if sig == signal.SIGTERM else 0), server.output()


@pytest.mark.parametrize("sig", STOPS)
def test_uvicorn_workers(tmp_path: Path, started: list[servers.Server], sig: int) -> None:
    code, server = serve_and_stop(
        tmp_path, started, servers.ASGI_APP,
        ["uvicorn", "lifeapp:app", "--host", "127.0.0.1", "--port", "{port}", "--no-access-log", "--workers", "2"],
        sig,
    )  # fmt: skip
    assert servers.stored(tmp_path / "db") == N, server.output()
    assert code == 0, server.output()


@pytest.mark.parametrize("sig", STOPS)
def test_gunicorn_uvicorn_workers(tmp_path: Path, started: list[servers.Server], sig: int) -> None:
    code, server = serve_and_stop(
        tmp_path, started, servers.ASGI_APP,
        ["gunicorn", "lifeapp:app", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
         "-b", "127.0.0.1:{port}"],
        sig,
    )  # fmt: skip
    assert servers.stored(tmp_path / "db") == N, server.output()
    assert code == 0, server.output()


def test_gunicorn_sync_workers(tmp_path: Path, started: list[servers.Server]) -> None:
    code, server = serve_and_stop(
        tmp_path, started, servers.WSGI_APP,
        ["gunicorn", "lifeapp:app", "-w", "2", "-b", "127.0.0.1:{port}"], signal.SIGTERM,
    )  # fmt: skip
    assert servers.stored(tmp_path / "db") == N, server.output()
    assert code == 0, server.output()


def test_sdk_exporter_under_uvicorn(tmp_path: Path, started: list[servers.Server]) -> None:
    code, server = serve_and_stop(
        tmp_path, started, servers.SDK_APP,
        ["uvicorn", "lifeapp:app", "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"], signal.SIGTERM,
    )  # fmt: skip
    assert servers.stored(tmp_path / "db") == N, server.output()
    assert code == -signal.SIGTERM, server.output()
