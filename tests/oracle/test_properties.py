"""Random rows, random layouts, random questions: the Python API against the brute force.

A scenario draws rows (durations lognormal, heavily tied, or spread over 2**40 ns, zeros
included), splits them over 1-4 writers with their own function sets (one segment each, in
this process, one after the other as restarts are), a chunk size from 1 row up, optionally a
last writer left open after a flush (an unsealed tail) and optionally a compaction. Then it asks
a random question: functions or globs, a service, an attribute, a time range whose bounds sit
on, next to or between stored start times.

CI runs a small fixed set (``derandomize=True``), without shrinking so that a failure costs
seconds; by hand, ``KRONICLER_ORACLE_EXAMPLES=500 python -m pytest tests/oracle/test_properties.py``
runs longer and shrinks a failure to a minimal example.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from kronicler import query as kq
from kronicler.db import Database
from tests.oracle.interfaces import PythonApi
from tests.oracle.truth import (
    Query,
    Rows,
    check_exact_histogram,
    check_table,
    expected_functions,
    expected_series_counts,
    expected_slowest,
    expected_stats,
    generate,
    mask,
)

CI_EXAMPLES = 20
EXAMPLES = int(os.environ.get("KRONICLER_ORACLE_EXAMPLES", "0")) or CI_EXAMPLES
LONG = EXAMPLES > CI_EXAMPLES
SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=not LONG,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if LONG else [])],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUNCTIONS = ("a.one", "a.two", "b.three", "c.four")
SERVICES = ("api", "worker", "")
BASE = 1_800_000_000_000_000_000
SPAN = 10_000_000_000


@dataclass
class Scenario:
    seed: int
    writers: list[tuple[int, tuple[str, ...]]]  # rows, functions
    durations: str
    chunk_rows: int
    open_tail: bool
    compact: bool

    def rows(self) -> list[Rows]:
        rng = np.random.default_rng(self.seed)
        parts = []
        for lane, (n, names) in enumerate(self.writers):
            rows = generate(rng, n, names, base=BASE, span=SPAN, services=SERVICES, lane=lane)
            if self.durations == "ties":
                rows.duration[:] = rng.choice(np.array([0, 1, 7, 1000]), n)
            elif self.durations == "wide":
                rows.duration[:] = rng.integers(0, 1 << 40, n)
            parts.append(rows)
        return parts


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n_writers = draw(st.integers(1, 4))
    writers = [
        (draw(st.integers(0, 120)),
         tuple(draw(st.lists(st.sampled_from(FUNCTIONS), min_size=1, max_size=3, unique=True))))
        for _ in range(n_writers)
    ]  # fmt: skip
    return Scenario(
        seed=draw(st.integers(0, 2**32 - 1)),
        writers=writers,
        durations=draw(st.sampled_from(["lognormal", "ties", "wide"])),
        chunk_rows=draw(st.sampled_from([1, 3, 16, 50, 1000])),
        open_tail=draw(st.booleans()),
        compact=draw(st.booleans()),
    )


@contextmanager
def built(s: Scenario) -> Iterator[tuple[Database, Rows]]:
    """The scenario's database (writers as successive segments) and its exact rows."""
    parts = s.rows()
    with tempfile.TemporaryDirectory(prefix="kronicler-oracle-") as tmp, ExitStack() as stack:
        path = Path(tmp) / "db"
        for i, rows in enumerate(parts):
            db = Database.open(path, chunk_rows=s.chunk_rows, flush_interval=0.05)
            for piece in np.array_split(np.arange(len(rows)), 2):
                if len(piece):
                    assert db.append(**rows.take(piece).append_kwargs()) == len(piece)
                    assert db.flush(30)
            if s.open_tail and i == len(parts) - 1:
                stack.callback(db.close)  # a live writer: its tail is not sealed
            else:
                db.close()
        reader = stack.enter_context(Database.open(path))
        if s.compact:
            reader.compact()
        yield reader, Rows.concat(parts)


def _bound(draw: st.DrawFn, truth: Rows) -> int | None:
    if not len(truth) or draw(st.booleans()):
        return None
    start = int(truth.start[draw(st.integers(0, len(truth) - 1))])
    return start + draw(st.sampled_from([-1, 0, 0, 1]))


@st.composite
def questions(draw: st.DrawFn, truth: Rows) -> Query:
    names = sorted(set(truth.name.tolist()))
    functions: tuple[str, ...] = ()
    pick = draw(st.sampled_from(["all", "names", "glob"]))
    if pick == "names" and names:
        functions = tuple(draw(st.lists(st.sampled_from(names), min_size=1, max_size=2,
                                        unique=True)))  # fmt: skip
    elif pick == "glob":
        functions = (draw(st.sampled_from(["a.*", "*.t*", "?.four", "z*"])),)
    since, until = _bound(draw, truth), _bound(draw, truth)
    if since is not None and until is not None and since >= until:
        since, until = until, since + 1  # a range never empty by construction, at least 1 ns
    # Mostly neither: only function and time filters take the index road (summaries, zone maps).
    service = draw(st.sampled_from([None, None, None, "api", "worker"]))
    attributes = draw(st.sampled_from([(), (), (), (("route", "/b"),), (("code", "500"),)]))
    return Query(functions, service, since, until, attributes)


@SETTINGS
@given(scenario=scenarios(), data=st.data())
def test_stats_match_brute_force(scenario: Scenario, data: st.DataObject) -> None:
    with built(scenario) as (db, truth):
        q = data.draw(questions(truth))
        group_by = data.draw(st.sampled_from(["function", "service", "attribute:route"]))
        key_name = group_by.split(":", 1)[-1]
        qs = (0.0, 0.5, 0.9, 0.99, 0.999, 1.0)
        want = expected_stats(truth, q, group_by)
        for exact in (False, True):
            got = PythonApi(db).stats(q, group_by=group_by, quantiles=qs, exact=exact)
            check_table(got, key_name, want, qs, exact, f"{q.label()} exact={exact}")


@SETTINGS
@given(scenario=scenarios(), data=st.data())
def test_slowest_match_brute_force(scenario: Scenario, data: st.DataObject) -> None:
    with built(scenario) as (db, truth):
        q = data.draw(questions(truth))
        if data.draw(st.booleans()):  # the index road: function and time filters only
            q = Query(q.functions, None, q.since, q.until)
        k = data.draw(st.sampled_from([1, 2, 5, 40]))
        got = [(c["function"], c["duration_ns"], c["start_unix_nano"])
               for c in PythonApi(db).slowest(q, k)]  # fmt: skip
        want = [(c["function"], c["duration_ns"], c["start_unix_nano"])
                for c in expected_slowest(truth, q, k)]  # fmt: skip
        assert got == want


@SETTINGS
@given(scenario=scenarios(), data=st.data())
def test_functions_series_histogram_match_brute_force(scenario: Scenario,
                                                      data: st.DataObject) -> None:  # fmt: skip
    with built(scenario) as (db, truth):
        q = data.draw(questions(truth))
        api = PythonApi(db)
        assert api.functions(q) == expected_functions(truth, q)
        if len(truth):
            lo = q.since if q.since is not None else int(truth.start.min())
            hi = q.until if q.until is not None else int(truth.start.max()) + 1
            if lo < hi:
                step = max(1, (hi - lo) // data.draw(st.integers(1, 12)))
                exact = data.draw(st.booleans())
                flt = kq.Filter.make(list(q.functions), service=q.service, since=lo, until=hi,
                                     attributes=dict(q.attributes))  # fmt: skip
                got = kq.series(db, flt, step=step, exact=exact)
                want = expected_series_counts(truth, q, lo, hi, step)
                assert {s.key: [(p.count, p.errors) for p in s.points]
                        for s in got.series} == want  # fmt: skip
        for name in sorted(set(truth.name.tolist()))[:2]:
            one = Query((name,), q.service, q.since, q.until, q.attributes)
            hist = api.histogram(name, Query((), q.service, q.since, q.until, q.attributes),
                                 exact=True)  # fmt: skip
            check_exact_histogram(hist, truth.duration[mask(truth, one)], name)
