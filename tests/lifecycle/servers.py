"""Real servers for the lifecycle tests: app files, a started server, load over loopback, a stop.

Each test writes a tiny application into its own directory, starts a real server process on a
free loopback port, sends ``n`` requests whose handlers each make one captured call, stops the
server with a signal as an orchestrator would, waits for it to exit, and counts the stored rows.
The flush interval is set very long, so rows reach the database only through the exit or signal
path: a missing flush on that path loses every row, not a timing-dependent few.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kronicler.db import Database

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "lifecycle.work"
_START_TIMEOUT = 60.0  # seconds for a server to answer its first request (a hang guard only)
_EXIT_TIMEOUT = 60.0  # seconds for a stopped server to exit (a hang guard only)

SLOW_FUNCTION = "lifecycle.slow_work"

ASGI_APP = f'''
import asyncio
import os

import kronicler
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


@kronicler.capture(name="{FUNCTION}")
def work(i):
    return i * 2


async def hit(request):
    work(int(request.query_params.get("i", "0")))
    return PlainTextResponse(str(os.getpid()))


@kronicler.capture(name="{SLOW_FUNCTION}")
async def slow_work():
    with open("started.txt", "a") as f:  # tells the test this call is in flight
        f.write("x\\n")
    await asyncio.sleep(1.0)


async def slow(request):
    await slow_work()
    return PlainTextResponse(str(os.getpid()))


app = Starlette(routes=[Route("/hit", hit), Route("/slow", slow)])
'''

WSGI_APP = f'''
import os

import kronicler


@kronicler.capture(name="{FUNCTION}")
def work(i):
    return i * 2


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/hit":
        work(int(environ.get("QUERY_STRING", "").partition("i=")[2] or "0"))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

# The SDK path: every captured call becomes an SDK span, batched by BatchSpanProcessor and stored
# by KroniclerSpanExporter; install_shutdown_flush makes a stop signal flush both.
SDK_APP = ASGI_APP.replace(
    "import kronicler\n",
    """import kronicler
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from kronicler.otel import KroniclerSpanExporter, install_shutdown_flush

provider = TracerProvider()
provider.add_span_processor(
    BatchSpanProcessor(KroniclerSpanExporter(os.environ["KRONICLER_PATH"]),
                       max_queue_size=100_000, schedule_delay_millis=600_000)
)
trace.set_tracer_provider(provider)
install_shutdown_flush(provider)
""",
    1,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_app(directory: Path, source: str, module: str = "lifeapp") -> None:
    (directory / f"{module}.py").write_text(textwrap.dedent(source))


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        """The server's log, its last lines only (enough to say why it failed)."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def start(directory: Path, argv: Sequence[str], port: int, *, env: dict[str, str] | None = None,
          ) -> Server:  # fmt: skip
    """Run ``python -m <argv>`` in ``directory`` and wait until it answers on ``port``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KRONICLER_", "OTEL_"))}
    full_env["PYTHONPATH"] = os.pathsep.join([str(directory), str(ROOT)])
    full_env["KRONICLER_PATH"] = str(directory / "db")
    full_env["KRONICLER_FLUSH_INTERVAL"] = "600"  # only the exit/signal path stores rows
    full_env["OTEL_SERVICE_NAME"] = "lifecycle"
    full_env.update(env or {})
    log = directory / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *argv], cwd=directory, env=full_env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = Server(proc, port, log)
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.output()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/ping")
            conn.getresponse().read()
            conn.close()
            return server
        except OSError:
            if time.monotonic() > deadline:
                stop(server, signal.SIGKILL)
                raise AssertionError(f"server did not start:\n{server.output()}") from None
            time.sleep(0.05)


def load(port: int, n: int, *, clients: int = 4, per_connection: int = 1) -> set[int]:
    """Send ``n`` requests from ``clients`` threads; every one must succeed. Returns worker pids.

    Connections are renewed every ``per_connection`` requests so that every worker of a pool
    gets a share of them.
    """
    pids: set[int] = set()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(first: int) -> None:
        conn = None
        try:
            for k, i in enumerate(range(first, n, clients)):
                if conn is None or k % per_connection == 0:
                    if conn is not None:
                        conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", f"/hit?i={i}")
                response = conn.getresponse()
                body = response.read()
                assert response.status == 200, (response.status, body)
                with lock:
                    pids.add(int(body))
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
        finally:
            if conn is not None:
                conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return pids


def in_flight(port: int, directory: Path, k: int) -> tuple[list[threading.Thread], list[int]]:
    """Start ``k`` requests to ``/slow`` and return once all ``k`` calls are running.

    Returns the client threads and the list their response statuses are appended to.
    """
    statuses: list[int] = []

    def client() -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/slow")
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
            conn.close()
        except OSError:
            statuses.append(0)

    threads = [threading.Thread(target=client) for _ in range(k)]
    for t in threads:
        t.start()
    marker = directory / "started.txt"
    deadline = time.monotonic() + _START_TIMEOUT
    while not (marker.exists() and len(marker.read_text().split()) >= k):
        if time.monotonic() > deadline:
            raise AssertionError("the slow calls did not start")
        time.sleep(0.01)
    return threads, statuses


def stop(server: Server, sig: int, *, group: bool = False) -> int:
    """Send ``sig`` to the server's main process (or its whole process group, as a terminal's
    Ctrl-C does) and wait for it to exit; its return code."""
    if group:
        os.killpg(server.proc.pid, sig)
    else:
        server.proc.send_signal(sig)
    try:
        return server.proc.wait(_EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        raise AssertionError(f"server did not exit after {sig!r}:\n{server.output()}") from None


def reap_group(server: Server) -> None:
    """Kill whatever is left of the server's process group (workers of a failed test)."""
    try:
        os.killpg(server.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if server.proc.poll() is None:
        server.proc.wait()


def stored(path: Path, name: str = FUNCTION) -> int:
    """Rows of ``name`` in the database at ``path`` (0 when nothing was ever stored)."""
    if not (path / "catalog.json").exists():
        return 0
    with Database.open(path) as db:
        scan = db.scan(["name"])
    codes = [i for i, text in enumerate(scan.names) if text == name]
    names = scan.columns["name"]
    return int(sum(int((names == c).sum()) for c in codes))
