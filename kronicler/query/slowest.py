"""The k slowest calls (exemplars): the concrete calls to open in a trace viewer.

With only function and time filters the database answers from its index (``Database.slowest``
skips pages whose max duration cannot make the top k). A service or attribute filter needs the
rows: every column of the selected rows is decoded and a partition picks the top k, which is
linear in the rows and sorts only the top k and the calls tied with the k-th (ties go to the
earlier start, the order every road promises).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kronicler.db.scan import top_k
from kronicler.db.schema import otlp_kind, parse_attributes
from kronicler.db.stats import Call
from kronicler.db.view import answer
from kronicler.query.defaults import SLOWEST_K
from kronicler.query.filters import Filter, resolve_functions, select

if TYPE_CHECKING:
    from kronicler.db.view import ReadAPI, ReadView

#: Most calls one query may return.
MAX_K = 10_000
#: Above this many matched functions one scan is cheaper than one index walk per function.
_PER_NAME_LIMIT = 32
#: The columns a :class:`Call` is built from.
CALL_COLUMNS = (
    "name", "service", "start", "duration", "status", "kind",
    "trace_hi", "trace_lo", "span_id", "parent_span_id", "attributes", "resource",
)  # fmt: skip


def slowest(db: ReadAPI, flt: Filter | None = None, *, k: int = SLOWEST_K) -> list[Call]:
    """The ``k`` slowest calls matching ``flt``, slowest first (ties: earlier start first)."""
    flt = check_slowest(flt, k)
    return answer(db, lambda view: _slowest(view, flt, k))


def check_slowest(flt: Filter | None, k: int) -> Filter:
    """The checked filter, or ``ValueError`` naming the bad argument."""
    flt = flt or Filter()
    flt.check()
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}, got {k!r}")
    return flt


def _slowest(db: ReadView, flt: Filter, k: int) -> list[Call]:
    names = resolve_functions(db, flt.functions)
    if names == []:
        return []
    if not flt.needs_scan and (names is None or len(names) <= _PER_NAME_LIMIT):
        calls: list[Call] = []
        targets: list[str | None] = list(names) if names is not None else [None]
        for name in targets:
            calls.extend(db.slowest(name, k=k, since=flt.since, until=flt.until))
        calls.sort(key=lambda c: (-c.duration, c.start))
        return calls[:k]
    sel = select(db, flt, CALL_COLUMNS)
    cols = sel.columns
    d = cols["duration"]
    if len(d) == 0:
        return []
    top = top_k(d, cols["start"], k)
    return [
        call_at(cols, sel.names, sel.services, sel.attributes, sel.resources, i)
        for i in top.tolist()
    ]


def call_at(
    cols: dict[str, Any],
    names: list[str],
    services: list[str],
    attributes: Sequence[str],
    resources: list[str],
    i: int,
) -> Call:
    """Row ``i`` of decoded columns (every column of :data:`CALL_COLUMNS`) as a call."""
    return Call(
        function=names[int(cols["name"][i])],
        service=services[int(cols["service"][i])],
        start=int(cols["start"][i]),
        duration=int(cols["duration"][i]),
        status=int(cols["status"][i]),
        kind=otlp_kind(cols["kind"][i]),
        trace_id=(int(cols["trace_hi"][i]) << 64) | int(cols["trace_lo"][i]),
        span_id=int(cols["span_id"][i]),
        parent_span_id=int(cols["parent_span_id"][i]),
        attributes=parse_attributes(attributes[int(cols["attributes"][i])]),
        resource=parse_attributes(resources[int(cols["resource"][i])]),
    )
