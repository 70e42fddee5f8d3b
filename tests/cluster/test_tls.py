"""A frontend reaches its nodes over TLS: ``serve --peers`` with ``--peer-tls-ca`` (and a client
certificate for nodes that require one) answers as one node holding all the data; with the wrong
CA or without the client certificate, the answer fails naming each peer and what failed.

Everything is real: a CA made in the test, nodes and frontend as ``kronicler serve`` processes,
the CLI as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.certs import Issued, issue, make_ca
from tests.cluster.nodes import spawn_node, spawn_serve, split_database
from tests.oracle.truth import Query, Rows, check_table, expected_stats, generate

ROOT = Path(__file__).resolve().parents[2]
BASE = 1_796_000_000_000_000_000
QS = (0.5, 0.99)


@dataclass
class TlsNodes:
    truth: Rows
    peers: list[str]
    ca: Issued
    client: Issued  # a client certificate the nodes' client CA signed
    tmp: Path


@pytest.fixture(scope="module")
def tls_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNodes]:
    tmp = tmp_path_factory.mktemp("tls")
    ca = make_ca(tmp / "ca", "cluster-ca")
    server = issue(ca, tmp / "ca", "node")
    client_ca = make_ca(tmp / "client-ca", "frontends-ca")
    client = issue(client_ca, tmp / "client-ca", "frontend", client=True)
    truth = generate(np.random.default_rng(14), 600, ("api.get", "db.query", "render"),
                     base=BASE, span=10**10, services=("web", "worker"))  # fmt: skip
    dirs = [tmp / f"node{i}" for i in range(2)]
    split_database(truth, dirs)
    procs, peers = [], []
    try:
        for path in dirs:
            proc, address = spawn_node(
                path, "--tls-cert", str(server.cert), "--tls-key", str(server.key),
                "--tls-client-ca", str(client_ca.cert),
            )  # fmt: skip
            procs.append(proc)
            peers.append(address)
        yield TlsNodes(truth, peers, ca, client, tmp)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(30)


def _frontend(nodes: TlsNodes, *tls: str) -> tuple[subprocess.Popen[str], str]:
    return spawn_serve("--peers", ",".join(nodes.peers), "--peer-timeout", "20", *tls)


def _stats(address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kronicler", "stats", "--address", address, "--json",
         "--quantiles", ",".join(map(str, QS))],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip


def _stopped(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(30)


def test_a_frontend_with_the_ca_and_client_certificate_answers_for_all(tls_nodes: TlsNodes) -> None:
    proc, address = _frontend(
        tls_nodes, "--peer-tls-ca", str(tls_nodes.ca.cert),
        "--peer-tls-cert", str(tls_nodes.client.cert), "--peer-tls-key", str(tls_nodes.client.key),
    )  # fmt: skip
    try:
        out = _stats(address)
        assert out.returncode == 0, out.stderr
        assert "partial answer" not in out.stderr
        rows = json.loads(out.stdout)
        check_table(rows, "function", expected_stats(tls_nodes.truth, Query()), QS, False,
                    "over TLS")  # fmt: skip
    finally:
        _stopped(proc)


@pytest.mark.parametrize("case", ["wrong CA", "no client certificate"])
def test_a_frontend_that_cannot_verify_fails_naming_each_peer(
    tls_nodes: TlsNodes, case: str
) -> None:
    client = ("--peer-tls-cert", str(tls_nodes.client.cert),
              "--peer-tls-key", str(tls_nodes.client.key))  # fmt: skip
    if case == "wrong CA":
        other = make_ca(tls_nodes.tmp / "other", "another-ca")
        args: tuple[str, ...] = ("--peer-tls-ca", str(other.cert), *client)
    else:
        args = ("--peer-tls-ca", str(tls_nodes.ca.cert))
    proc, address = _frontend(tls_nodes, *args)
    try:
        out = _stats(address)
        assert out.returncode != 0 and not out.stdout
        message = out.stderr.lower()
        assert "no peer answered" in message, out.stderr
        for peer in tls_nodes.peers:
            assert f"{peer}: unavailable" in message, out.stderr
        if case == "wrong CA":  # the frontend's side of the handshake says why
            assert "handshake failed" in message or "certificate" in message, out.stderr
    finally:
        _stopped(proc)


def test_peer_tls_files_are_checked_before_serving(tls_nodes: TlsNodes) -> None:
    missing = tls_nodes.tmp / "absent.pem"
    for args, words in [
        (("--peer-tls-ca", str(missing)), "absent.pem"),
        (("--peer-tls-cert", str(tls_nodes.client.cert)), "needs its key"),
    ]:
        out = subprocess.run(
            [sys.executable, "-m", "kronicler", "serve", "--address", "127.0.0.1:0", "--peers",
             ",".join(tls_nodes.peers), *args],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=60,
        )  # fmt: skip
        assert out.returncode != 0 and words in out.stderr, out.stderr
