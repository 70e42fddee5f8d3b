"""``kronicler serve`` stopped by SIGTERM while it ingests and answers: no acknowledged span lost.

A real ``serve`` process with 2 ingest workers takes OTLP requests from one thread while another
asks GetStats (so the server also summarises the workers' new rows between queries); one worker
is killed with SIGTERM on the way (the supervisor replaces it), then the server itself gets
SIGTERM in mid-stream. Afterwards every span of every acknowledged request is stored exactly once,
and nothing that was never sent.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from kronicler.db import Database
from kronicler.server import Client
from kronicler.server.ingest import EXPORT_METHOD
from tests.server.test_ingest import request, stored_span_ids

ROOT = Path(__file__).resolve().parents[2]
PER_REQUEST = 50


def _workers(pid: int) -> list[int]:
    """The ingest worker processes of ``pid`` (spawned by multiprocessing; Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("direct", [False, True], ids=["relayed", "workers-port"])
def test_sigterm_mid_ingest_keeps_every_acknowledged_span(tmp_path: Path, direct: bool) -> None:
    """OTLP through the server's address (``--no-otlp-address``: only there), or the workers'
    own port, which ``serve`` opens by default (port 0 here, as ``--address`` has port 0)."""
    path = tmp_path / "db"
    Database.open(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kronicler", "serve", "--path", str(path), "--address",
         "127.0.0.1:0", "--ingest-workers", "2", *([] if direct else ["--no-otlp-address"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    acknowledged: list[int] = []  # first span id of each acknowledged request
    sent = [0]
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        m = re.search(r"on (127\.0\.0\.1:\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        address = otlp_at = m.group(1)
        if direct:
            line = proc.stdout.readline()
            m = re.search(r"OTLP/gRPC in the ingest workers on (127\.0\.0\.1:\d+)", line)
            assert m, line
            otlp_at = m.group(1)
        else:  # no port of the workers' own: the next line is OTLP/HTTP's
            assert "OTLP/HTTP on" in proc.stdout.readline()

        def send() -> None:
            with grpc.insecure_channel(otlp_at) as channel:
                export = channel.unary_unary(EXPORT_METHOD)
                first = 1
                while not stop.is_set():
                    sent[0] = first + PER_REQUEST - 1
                    try:
                        export(request(first, PER_REQUEST).SerializeToString(), timeout=30)
                    except grpc.RpcError:  # the server stopping: not acknowledged
                        if proc.poll() is not None:
                            return
                        time.sleep(0.01)
                    else:
                        acknowledged.append(first)
                    first += PER_REQUEST  # never sent again: stored at most once

        def ask() -> None:
            with Client(address) as client:
                while not stop.is_set():
                    try:
                        client.stats()
                    except Exception:  # the server stopping
                        return

        threads += [threading.Thread(target=send), threading.Thread(target=ask)]
        for t in threads:
            t.start()
        while len(acknowledged) < 20:
            time.sleep(0.01)
        workers = _workers(proc.pid)
        assert workers
        os.kill(workers[0], signal.SIGTERM)
        count = len(acknowledged)
        while len(acknowledged) < count + 20:  # the replacement and the other worker take them
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    want = np.concatenate([np.arange(f, f + PER_REQUEST) for f in acknowledged])
    got = stored_span_ids(path)
    assert np.unique(got).size == got.size  # none stored twice
    assert np.isin(want, got).all()  # every acknowledged span stored
    assert got.max() <= sent[0]  # nothing that was never sent
