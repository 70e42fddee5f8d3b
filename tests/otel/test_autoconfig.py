"""An unchanged application under ``opentelemetry-instrument`` with ``OTEL_TRACES_EXPORTER=kronicler``
stores its spans locally; ``OTEL_SDK_DISABLED=true`` turns the decorator off too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kronicler._config import Settings
from kronicler.db import Database

APP = """
    from opentelemetry import trace

    import kronicler

    tracer = trace.get_tracer("shop")

    @kronicler.capture(name="shop.lookup")
    def lookup(i):
        return i * 2

    for i in range(300):
        with tracer.start_as_current_span("shop.request"):
            lookup(i)
"""


def run_app(tmp_path: Path, env: dict[str, str], *prefix: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP))
    full = {**os.environ, "KRONICLER_PATH": str(tmp_path / "db"), **env}
    return subprocess.run([*prefix, sys.executable, str(script)], env=full, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def counts(path: Path) -> dict[str, int]:
    with Database.open(path, readonly=True) as db:
        return {name: s.count for name, s in db.stats().items()}


def test_opentelemetry_instrument_with_the_kronicler_exporter(tmp_path: Path) -> None:
    instrument = shutil.which("opentelemetry-instrument")
    assert instrument is not None, "opentelemetry-distro (test extra) provides it"
    result = run_app(tmp_path, {"OTEL_TRACES_EXPORTER": "kronicler", "OTEL_SERVICE_NAME": "shop",
                                "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"},
                     instrument)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert counts(tmp_path / "db") == {"shop.request": 300, "shop.lookup": 300}
    with Database.open(tmp_path / "db", readonly=True) as db:
        assert db.services() == ["shop"]
        (call,) = db.slowest("shop.lookup", k=1)
        assert call.parent_span_id != 0  # nested under its request span, one trace


def test_otel_sdk_disabled_turns_the_decorator_off(tmp_path: Path) -> None:
    result = run_app(tmp_path, {"OTEL_SDK_DISABLED": "true"})
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "db").exists()
    assert Settings.from_env({"OTEL_SDK_DISABLED": "true"}).enabled is False
    assert Settings.from_env({"OTEL_SDK_DISABLED": "false"}).enabled is True


@pytest.mark.parametrize("value", ["", "false"])
def test_without_sdk_disabled_the_decorator_stores(tmp_path: Path, value: str) -> None:
    result = run_app(tmp_path, {"OTEL_SDK_DISABLED": value})
    assert result.returncode == 0, result.stderr
    assert counts(tmp_path / "db") == {"shop.lookup": 300}
