"""A dataset whose slow calls have known causes, kept as raw rows for brute-force answers.

Three functions, 2,000 calls each over 100 s, every call with noise attributes (``http.route``
of 5, ``host.name`` of 3, a unique ``request.id``) and a fast noise child (``log.write``):

- ``api.lookup``: calls on ``db.shard = 7`` (about 3%) are 8x slower: an attribute cause;
- ``api.render``: 5% of calls run the child ``cache.fill`` (20 ms): a child cause;
- ``api.search``: from 70 s on, the calls carry ``service.version = 1.5.0`` (before: 1.4.0) and
  15% of them are 20x slower: a release cause;
- ``api.fetch``: its ``url`` is unique per call except ``/export/all``, seen in 2% of calls,
  which are 10x slower: a near-unique key whose one value clusters.

Each parent call has its own trace; children share it and point at the parent's span id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BASE_NS = 1_750_000_000_000_000_000
SPAN_NS = 100 * 1_000_000_000
CALLS = 2_000
CAUSE_FUNCTIONS = ("api.lookup", "api.render", "api.search", "api.fetch")


@dataclass
class ExplainData:
    """Raw rows, one list per column (the shape ``Database.append`` takes)."""

    name: list[str] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    duration: list[int] = field(default_factory=list)
    trace_id: list[int] = field(default_factory=list)
    span_id: list[int] = field(default_factory=list)
    parent_span_id: list[int] = field(default_factory=list)
    attributes: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, start: int, duration: int, trace: int, span: int, parent: int,
            attributes: dict[str, Any]) -> None:  # fmt: skip
        self.name.append(name)
        self.start.append(start)
        self.duration.append(duration)
        self.trace_id.append(trace)
        self.span_id.append(span)
        self.parent_span_id.append(parent)
        self.attributes.append(attributes)

    def rows(self, function: str) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """(start, duration, attributes) of every call of ``function``."""
        idx = [i for i, n in enumerate(self.name) if n == function]
        return (np.array([self.start[i] for i in idx], np.int64),
                np.array([self.duration[i] for i in idx], np.int64),
                [self.attributes[i] for i in idx])  # fmt: skip

    def children_of(self, function: str) -> list[tuple[int, str, int]]:
        """(parent row index among ``function``'s calls, child name, child duration)."""
        parents = {
            (self.trace_id[i], self.span_id[i]): k
            for k, i in enumerate(i for i, n in enumerate(self.name) if n == function)
        }
        out = []
        for i, p in enumerate(self.parent_span_id):
            k = parents.get((self.trace_id[i], p))
            if p and k is not None:
                out.append((k, self.name[i], self.duration[i]))
        return out


def make_explain_data(seed: int = 3) -> ExplainData:
    rng = np.random.default_rng(seed)
    data = ExplainData()
    ids = iter(rng.choice(2**62, size=40 * CALLS, replace=False).tolist())
    for fn in CAUSE_FUNCTIONS:
        starts = BASE_NS + np.sort(rng.integers(0, SPAN_NS, CALLS))
        for i, start in enumerate(starts.tolist()):
            trace, span = next(ids), next(ids)
            own = int(1_000_000 * rng.lognormal(0.0, 0.3))
            attrs: dict[str, Any] = {
                "http.route": f"/r{rng.integers(5)}",
                "host.name": f"host-{rng.integers(3)}",
                "request.id": f"{fn}-{i}",
                "service.version": "1.4.0",
            }
            kids = [("log.write", int(50_000 * rng.lognormal(0.0, 0.2)))]
            if fn == "api.lookup":
                shard = 7 if rng.random() < 0.03 else int(rng.integers(7))
                attrs["db.shard"] = shard
                own *= 8 if shard == 7 else 1
            elif fn == "api.render":
                if rng.random() < 0.05:
                    kids.append(("cache.fill", int(20_000_000 * rng.lognormal(0.0, 0.1))))
                kids.append(("tmpl.compile", int(100_000 * rng.lognormal(0.0, 0.2))))
            elif fn == "api.search":
                if start >= BASE_NS + int(SPAN_NS * 0.7):
                    attrs["service.version"] = "1.5.0"
                    own *= 20 if rng.random() < 0.15 else 1
            else:
                clustered = rng.random() < 0.02
                attrs["url"] = "/export/all" if clustered else f"/item/{i}"
                own *= 10 if clustered else 1
            t = start + 1000
            for kid, kd in kids:
                data.add(kid, t, kd, trace, next(ids), span, {"host.name": attrs["host.name"]})
                t += kd + 1000
            data.add(fn, start, own + t - start, trace, span, 0, attrs)
    return data


def write_explain_data(path: Path, data: ExplainData, *, chunk_rows: int = 1024) -> None:
    from kronicler.db import Database

    db = Database.open(path, chunk_rows=chunk_rows)
    try:
        db.append(data.name, np.array(data.start, np.int64), np.array(data.duration, np.int64),
                  service="api", trace_id=data.trace_id, span_id=data.span_id,
                  parent_span_id=data.parent_span_id, attributes=data.attributes)  # fmt: skip
        assert db.flush(timeout=60)
    finally:
        db.close()
