"""Which questions the oracle asks of a layout, drawn from its own rows.

Time bounds sit exactly on stored start times, one nanosecond off them, inside gaps between
rows and outside the data, so that ranges cut chunks (the layouts use 50-100-row chunks) and
test both edges of ``since <= start < until``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

import numpy as np

from tests.oracle.truth import Query, Rows

ATTRIBUTE_FILTERS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("route", "/b"),),
    (("code", "500"),),
    (("retry", "true"),),
    (("route", "/b"), ("code", "200")),
    (("ratio", "0.5"),),
    (("route", "/nowhere"),),
)


RESOURCE_FILTERS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("service.version", "1.1"),),
    (("service.version", "1.1"), ("host.name", "web-1")),
    (("cpu.count", "8"),),
    (("service.version", "9.9"),),
)


def time_bounds(truth: Rows) -> dict[str, tuple[int | None, int | None]]:
    starts = np.sort(truth.start)
    n = len(starts)
    lo, hi = int(starts[0]), int(starts[-1])
    a, b = int(starts[n // 3]), int(starts[2 * n // 3])
    gaps = np.flatnonzero(np.diff(starts) > 2)
    g = int(gaps[len(gaps) // 2])
    return {
        "middle third": (a, b),
        "middle third, off by one": (a + 1, b + 1),
        "since only": (a, None),
        "until only": (None, b),
        "all, tight": (lo, hi + 1),
        "last row only": (hi, hi + 1),
        "first row only": (lo, lo + 1),
        "before the data": (lo - 1000, lo),
        "a gap between rows": (int(starts[g]) + 1, int(starts[g + 1])),
        "after the data": (hi + 1, hi + 1000),
    }


def standard_queries(truth: Rows) -> list[Query]:
    names = sorted(set(truth.name.tolist()))
    services = sorted(set(truth.service.tolist()) - {""})
    bounds = time_bounds(truth)
    a, b = bounds["middle third"]
    assert a is not None and b is not None
    qs = [Query()]
    qs += [Query((n,)) for n in names]
    qs += [Query(("app.*",)), Query(("*.[fs]*",)), Query(("no.such.*",)), Query(tuple(names[:2]))]
    qs += [Query(service=s) for s in services]
    qs += [Query(attributes=attrs) for attrs in ATTRIBUTE_FILTERS]
    if any(truth.resource.tolist()):  # layouts written with resources (not every road has one)
        qs += [Query(resource=res) for res in RESOURCE_FILTERS]
        qs += [Query(("app.*",), resource=RESOURCE_FILTERS[0], attributes=(("route", "/b"),))]
    qs += [Query(since=s, until=u) for s, u in bounds.values()]
    qs += [
        Query((names[0],), since=a, until=b),
        Query((names[-1],), since=a + 1),
        Query(("app.*",), service=services[0], since=a, until=b),
        Query(service=services[-1], attributes=(("route", "/b"),)),
        Query(tuple(names[:3]), until=b, attributes=(("code", "500"),)),
    ]
    return qs


class Failures:
    """Collects every wrong answer of a sweep, so one run reports all of them."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, label: str, fn: Callable[..., object]) -> None:
        try:
            fn()
        except AssertionError as exc:
            self.items.append(f"{label}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a crash is a wrong answer too; report it
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.items.append(f"{label}: {type(exc).__name__}: {exc} "
                              f"(at {where.filename}:{where.lineno})")  # fmt: skip

    def assert_none(self) -> None:
        shown = "\n".join(self.items[:40])
        more = f"\n... and {len(self.items) - 40} more" if len(self.items) > 40 else ""
        assert not self.items, f"{len(self.items)} wrong answer(s):\n{shown}{more}"
