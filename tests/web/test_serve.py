"""``kronicler.web.serve`` in a real process: prints its URL, answers, and returns on a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.web.conftest import fetch, get_json

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys, time
from kronicler.db import Database
from kronicler.web import serve
db = Database.open(sys.argv[1])
db.append(["job"], [time.time_ns()], [1500])
db.flush()
try:
    serve(db, "127.0.0.1", 0, token=sys.argv[2] or None, ready=lambda url: print(url, flush=True))
finally:
    db.close()
print("closed", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_its_url_answers_and_returns_on_a_signal(tmp_path: Path, sig: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "db"), "tok"],
                            stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        status, body = get_json(url + "api/v1/functions", {"Authorization": "Bearer tok"})
        assert status == 200 and [r["function"] for r in body["rows"]] == ["job"]
        assert fetch(url + "api/v1/functions")[0] == 401
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0 and out.strip() == "closed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_the_web_extra_the_error_says_what_to_install(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['fastapi'] = None\n"
        "import kronicler.web as web\n"  # importing needs no extra: the CLI can offer commands
        "from kronicler.db import Database\n"
        "db = Database.open(sys.argv[1])\n"
        "try:\n"
        "    web.WebServer(db, '127.0.0.1', 0).start()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "db.close()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "db")], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    assert out.strip().startswith("the dashboard needs FastAPI and uvicorn: pip install '.[web]'")
