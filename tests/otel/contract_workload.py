"""One workload, stored three ways: run as a fresh process by ``test_contract_roads.py``.

    python -c "from tests.otel import contract_workload as w; w.main()" MODE DB [ENDPOINT]

MODE is ``fast`` (zero-config ``@kronicler.capture``), ``sdk`` (an SDK ``TracerProvider`` with
``KroniclerSpanExporter``) or ``otlp`` (an SDK provider with the stock ``OTLPSpanExporter``
sending to ENDPOINT). The workload runs three times, once per service setup: the default (no
service named anywhere), a named service, and none at all (an empty service name on the fast
path, a resource without ``service.name`` on the SDK).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

import kronicler

SITE_ATTRIBUTES = {
    "layer": "api", "weight": 2.5, "retries": 3, "public": True, "tags": ("a", "b"),
    "codes": (200, 404), "ratios": (0.5, 1.5), "bits": (True, False),
}  # fmt: skip
EXTENDED = {
    "payload": b"\x00\xffk", "nested": {"a": 1, "b": ["x", True], "c": {"d": None}},
    "nothing": None, "mixed": [1, "one", 1.0, None], "neg_zero": -0.0, "big": 2**62,
    "empty": [],
}  # fmt: skip
SCENARIOS = ("default", "named", "none")
TOKEN = "tok"


def current() -> Any:
    return trace.get_current_span()


@kronicler.capture(attributes=SITE_ATTRIBUTES, kind=SpanKind.SERVER)
def handle(i: int) -> int:
    span = current()
    span.set_attribute("request.index", i)
    if i == 0:
        span.set_attributes(EXTENDED)
    total = fetch(i) + sum(items(2))
    for call in (charge, explode, declined, by_code, ok_is_final, unset_is_ignored,
                 ok_description, recorded, replaced, ok_then_raise, renamed):  # fmt: skip
        try:
            call(i)
        except (LookupError, ValueError, RuntimeError):
            pass
    try:
        interrupted()
    except KeyboardInterrupt:
        pass
    for value in (True, 1, 1.0):
        flag(value)
    return total


@kronicler.capture(kind=SpanKind.CLIENT)
def fetch(i: int) -> int:
    return parse(i) + 1


@kronicler.capture
def parse(i: int) -> int:
    return i


@kronicler.capture
def items(n: int) -> Iterator[int]:
    yield from range(n)


@kronicler.capture
def charge(i: int) -> None:
    if i % 2:
        raise LookupError(f"no card {i}")


@kronicler.capture
def explode(i: int) -> None:
    raise ValueError("x" * 3000)


@kronicler.capture
def declined(i: int) -> None:
    current().set_status(Status(StatusCode.ERROR, "card declined"))


@kronicler.capture
def by_code(i: int) -> None:
    current().set_status(StatusCode.ERROR, f"code {i}")


@kronicler.capture
def ok_is_final(i: int) -> None:
    current().set_status(Status(StatusCode.OK))
    current().set_status(StatusCode.ERROR, "ignored")


@kronicler.capture
def unset_is_ignored(i: int) -> None:
    current().set_status(StatusCode.ERROR, "first")
    current().set_status(StatusCode.UNSET)


@kronicler.capture
def ok_description(i: int) -> None:
    current().set_status(Status(StatusCode.OK, "an OK status has no description"))


@kronicler.capture
def recorded(i: int) -> None:
    current().record_exception(ValueError("caught"),
                               attributes={"exception.message": "overridden"})  # fmt: skip


@kronicler.capture
def replaced(i: int) -> None:
    current().set_status(StatusCode.ERROR, "replaced by the exception's")
    raise KeyError(f"k{i}")


@kronicler.capture
def ok_then_raise(i: int) -> None:
    current().set_status(StatusCode.OK)
    raise RuntimeError("after OK")


@kronicler.capture
def renamed(i: int) -> None:
    current().update_name("renamed.span")


@kronicler.capture
def interrupted() -> None:
    raise KeyboardInterrupt


@kronicler.capture
def flag(value: Any) -> None:
    current().set_attribute("flag", value)


@kronicler.capture
async def background() -> int:
    await asyncio.sleep(0)
    return parse(7)


def workload() -> None:
    for i in range(3):
        handle(i)
    asyncio.run(background())


def _run_fast(path: str) -> None:
    kronicler.configure(path=path)
    for scenario in SCENARIOS:
        if scenario == "named":
            kronicler.configure(service_name="shop.api")
        elif scenario == "none":
            kronicler.configure(service_name="")
        workload()
    assert kronicler.flush(30.0)
    kronicler.shutdown()


def _run_sdk(mode: str, path: str, endpoint: str) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    from kronicler.db import Database
    from kronicler.otel import KroniclerSpanExporter
    from tests.otel.helpers import reset_global_provider

    db = Database.open(path) if mode == "sdk" else None
    resources = {
        "default": Resource.create(),
        "named": Resource.create({"service.name": "shop.api"}),
        "none": Resource({"deployment.environment": "ci"}),
    }
    for scenario in SCENARIOS:
        exporter: SpanExporter
        if db is not None:
            exporter = KroniclerSpanExporter(db)
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True,
                                        headers={"authorization": f"Bearer {TOKEN}"})  # fmt: skip
        provider = TracerProvider(resource=resources[scenario])
        provider.add_span_processor(BatchSpanProcessor(exporter))
        reset_global_provider()
        trace.set_tracer_provider(provider)
        workload()
        assert provider.force_flush(30_000)
        provider.shutdown()
    if db is not None:
        db.close()


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "fast":
        _run_fast(path)
    elif mode in ("sdk", "otlp"):
        _run_sdk(mode, path, sys.argv[3] if len(sys.argv) > 3 else "")
    else:
        raise SystemExit(f"unknown mode {mode!r}")
