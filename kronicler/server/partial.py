"""A node's answer to ``Partial``: the request's question, asked of the local database, as
mergeable pieces (:mod:`kronicler.query.partials`) in a ``PartialResponse``.

Each question takes the same arguments and checks as its ordinary RPC, and asks the query layer
on one snapshot; plain function names this node never saw are left out and listed in
``unknown_functions`` instead of failing, since another node may hold them. A request that names
its question (``view``) is answered from the view held for that question across its rounds
(:mod:`kronicler.server.held_views`), and explain's calls are kept from its counting round for
its details round.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from kronicler import query
from kronicler.errors import CorruptPageError, LimitExceededError, shorten
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.query.explain import (
    SERIES_BUCKETS,
    Calls,
    Details,
    ExplainPart,
    Picks,
    ValueCounts,
    Weighted,
)
from kronicler.query.filters import is_glob
from kronicler.query.grouping import check_quantiles, parse_group_by
from kronicler.query.limits import MAX_CALLS
from kronicler.query.partials import (
    MAX_PARTIAL_ROWS,
    PARTIAL_VERSION,
    SUMMARY_PACKED,
    Cells,
    on_node,
    series_cells,
    stats_cells,
)
from kronicler.query.series import check_buckets
from kronicler.server import convert
from kronicler.server.held_views import Held, HeldViews, held_views

if TYPE_CHECKING:
    from kronicler.db.view import ReadAPI, ReadView


_NO_CALLS: list[query.Call] = []


def answer(db: ReadAPI, request: pb.PartialRequest) -> pb.PartialResponse:
    """The node's answer; from the view held for the request's question when it names one."""
    if not request.HasField("view"):
        return _answer(db, request, None)
    table = held_views(db)
    held = table.view(db, request.view)
    try:
        out = _answer(held.view, request, (table, held))
    except CorruptPageError:
        # The held view cannot leave the damaged chunk out as a fresh one would: the question
        # ends here on this node (the frontend names it missing) and the next one asks afresh.
        table.release(held.question_id)
        raise
    finally:
        if request.view.last_round:  # answered or failed, the question ends here
            table.release(held.question_id)
    out.held_view = True
    return out


def _answer(
    db: ReadAPI, request: pb.PartialRequest, held: tuple[HeldViews, Held] | None
) -> pb.PartialResponse:
    out = pb.PartialResponse(version=PARTIAL_VERSION)
    which = request.WhichOneof("question")
    unknown: tuple[str, ...] = ()
    packed = request.summary_encoding == SUMMARY_PACKED
    if which == "time_range":
        span = db.time_range()
        if span is not None:
            out.first_start_unix_nano, out.last_start_unix_nano = span
    elif which == "list_functions":
        flt = convert.filter_from_proto(request.list_functions.filter)
        no_functions: list[query.FunctionInfo] = []
        found, unknown = on_node(
            db, flt, lambda view, f: query.list_functions(view, f), no_functions
        )
        out.functions.extend(convert.function_to_proto(f) for f in found)
    elif which == "stats":
        req = request.stats
        group_by = req.group_by or "function"
        parse_group_by(group_by)
        cells, unknown = on_node(
            db, convert.filter_from_proto(req.filter),
            lambda view, flt: stats_cells(view, flt, group_by, req.exact),
            empty_cells(1, req.exact),
        )  # fmt: skip
        out.cells.CopyFrom(convert.cells_to_proto(cells, packed=packed))
    elif which == "series":
        cells, unknown = _series(db, request.series)
        out.cells.CopyFrom(convert.cells_to_proto(cells, packed=packed))
    elif which == "histogram":
        _histogram(db, request.histogram, out)
        return out
    elif which == "slowest":
        unknown = _slowest(db, request, out)
    elif which == "explain":
        unknown = _explain(db, request.explain, out, held)
    else:
        raise ValueError("a partial request needs a question")
    out.unknown_functions.extend(unknown)
    return out


def empty_cells(per_key: int, exact: bool) -> Cells:
    """A node's cells when it holds nothing that matches (the shape the others send)."""
    if not exact:
        return Cells((), per_key)
    none = np.empty(0, np.int64)
    return Cells((), per_key, rows=(none, none, np.empty(0, np.uint8)))


def _series(db: ReadAPI, req: pb.GetSeriesRequest) -> tuple[Cells, tuple[str, ...]]:
    flt = convert.filter_from_proto(req.filter)
    group_by = req.group_by or "function"
    parse_group_by(group_by)
    check_quantiles(tuple(req.quantiles) or query.DEFAULT_QUANTILES)
    if req.step_ns <= 0 or flt.since is None or flt.until is None or flt.until <= flt.since:
        raise ValueError("a series partial needs step_ns > 0 and since < until")
    n_buckets = -(-(flt.until - flt.since) // req.step_ns)
    return on_node(
        db, flt, lambda view, f: series_cells(view, f, req.step_ns, group_by, req.exact),
        empty_cells(n_buckets, req.exact),
    )  # fmt: skip


def _histogram(db: ReadAPI, req: pb.GetHistogramRequest, out: pb.PartialResponse) -> None:
    flt = convert.filter_from_proto(req.filter)
    per_decade = req.per_decade or 10
    one = query.Filter((req.function,), flt.service, flt.since, flt.until, flt.attributes)
    empty = query.Histogram(req.function, 0, per_decade, req.exact or flt.needs_scan, ())
    h, unknown = on_node(
        db, one if req.function else flt,
        lambda view, _: query.histogram(view, req.function, flt, per_decade=per_decade,
                                        exact=req.exact),
        empty,
    )  # fmt: skip
    out.histogram.CopyFrom(convert.histogram_to_proto(h))
    out.unknown_functions.extend(unknown)


def _slowest(db: ReadAPI, request: pb.PartialRequest, out: pb.PartialResponse) -> tuple[str, ...]:
    flt = convert.filter_from_proto(request.slowest.filter)
    k = request.slowest.k or 10
    if not request.per_function:
        calls, unknown = on_node(db, flt, lambda view, f: query.slowest(view, f, k=k), _NO_CALLS)
        out.calls.extend(convert.call_to_proto(c) for c in calls)
        return unknown
    if len(request.per_function) * k > MAX_CALLS:
        raise ValueError(
            f"{len(request.per_function)} functions x k={k} is more than {MAX_CALLS} calls"
        )
    for name in request.per_function:
        one = query.Filter((name,), flt.service, flt.since, flt.until, flt.attributes)
        calls, _ = on_node(db, one, lambda view, f: query.slowest(view, f, k=k), _NO_CALLS)
        out.per_function.add().calls.extend(convert.call_to_proto(c) for c in calls)
    return ()


def _explain(
    db: ReadAPI, q: pb.ExplainQuestion, out: pb.PartialResponse,
    held: tuple[HeldViews, Held] | None,
) -> tuple[str, ...]:  # fmt: skip
    """Explain's bounds, counts or (with ``details``) the details of the findings named, under
    the frontend's threshold, range, series grid and children's window. With a held view, the
    calls split for the counts are kept (when they fit) for the details rounds, which then
    read nothing again."""
    if not q.function or is_glob(q.function):
        raise ValueError(f"explain needs one function name, not a pattern: {shorten(q.function)}")
    since = q.since_unix_nano if q.HasField("since_unix_nano") else None
    until = q.until_unix_nano if q.HasField("until_unix_nano") else None
    flt = query.Filter((q.function,), since=since, until=until)
    flt.check()
    if q.bounds:
        found, unknown = on_node(
            db, flt, lambda view, _: Calls.read(view, q.function, since, until,
                                                columns=("start",)).bounds(), None,
        )  # fmt: skip
        if found is not None:
            out.explain.first_start_unix_nano, out.explain.last_start_unix_nano, \
                out.explain.last_end_unix_nano = found  # fmt: skip
        return unknown
    step = q.step_ns
    if since is None or until is None or step <= 0 or not math.isfinite(q.threshold_ns):
        raise ValueError("an explain partial needs since < until, step_ns > 0 and a threshold")
    if q.children_until_unix_nano <= q.children_since_unix_nano:
        raise ValueError("an explain partial needs the children's window")
    n_buckets = check_buckets(since, until, step, SERIES_BUCKETS)
    window = (q.children_since_unix_nano, q.children_until_unix_nano)

    key = ("explain", q.function, since, until, q.threshold_ns, window)

    def calls(view: ReadView) -> Calls:
        kept = None if held is None else held[0].memo_get(held[1], key)
        if isinstance(kept, Calls):
            return kept
        got = Calls.read(view, q.function, since, until).split(q.threshold_ns, window)
        if held is not None:
            held[0].memo_put(held[1], key, max(got.count, 1), got)
        return got

    if q.details:
        picks = picks_from_proto(q)
        got, unknown = on_node(db, flt, lambda view, _: calls(view).details(picks),
                               Details.none(picks))  # fmt: skip
        out.explain.CopyFrom(details_to_proto(got))
        return unknown
    part, unknown = on_node(db, flt, lambda view, _: calls(view).part(since, step, n_buckets),
                            ExplainPart.empty(n_buckets))  # fmt: skip
    entries = sum(len(v) for v in part.values) + len(part.releases)
    if entries > MAX_PARTIAL_ROWS:
        raise LimitExceededError(
            f"explain over a cluster ships every attribute value's counts: {entries} values on "
            f"one node, more than the limit of {MAX_PARTIAL_ROWS}; narrow the range"
        )
    out.explain.CopyFrom(part_to_proto(part))
    return unknown


def picks_to_proto(q: pb.ExplainQuestion, picks: Picks) -> None:
    q.details = True
    q.attributes.extend(pb.ExplainValue(key=k, hash=v) if isinstance(v, int) else
                        pb.ExplainValue(key=k, value=v) for k, v in picks.attributes)  # fmt: skip
    q.children.extend(picks.children)
    q.release_first_starts.extend(picks.release_starts)


def picks_from_proto(q: pb.ExplainQuestion) -> Picks:
    return Picks(tuple((a.key, a.hash if a.HasField("hash") else a.value) for a in q.attributes),
                 tuple(q.children),
                 tuple(q.release_first_starts))  # fmt: skip


def _weighted_to_proto(calls: Weighted) -> pb.WeightedCalls:
    return pb.WeightedCalls(calls=[convert.call_to_proto(c) for _, c in calls],
                            weights=[w for w, _ in calls])  # fmt: skip


def _weighted_from_proto(msg: pb.WeightedCalls) -> Weighted:
    if len(msg.calls) != len(msg.weights):
        raise CorruptPageError("explain partial: calls and weights do not line up")
    return tuple((int(w), convert.call_from_proto(c))
                 for w, c in zip(msg.weights, msg.calls, strict=True))  # fmt: skip


def part_to_proto(p: ExplainPart) -> pb.ExplainPartial:
    msg = pb.ExplainPartial(
        count=p.count, slow_count=p.slow_count, slow_time_ns=p.slow_time,
        baseline_time_ns=p.baseline_time,
        values=[pb.ExplainKeyCounts(key=v.key, values=v.values, slow=v.slow.tolist(),
                                    baseline=v.baseline.tolist(),
                                    hashes=[] if v.hashes is None else v.hashes.tolist())
                for v in p.values],
        children=[convert.child_to_proto(c) for c in p.children],
        series_calls=p.series_calls.tolist(), series_slow=p.series_slow.tolist(),
        releases=[convert.release_to_proto(r) for r in p.releases],
        examples=[convert.call_to_proto(c) for c in p.examples],
    )  # fmt: skip
    msg.self_time.CopyFrom(convert.child_to_proto(p.self_time))
    msg.self_examples.CopyFrom(_weighted_to_proto(p.self_examples))
    return msg


def part_from_proto(msg: pb.ExplainPartial, n_buckets: int) -> ExplainPart:
    """A node's counts; ``CorruptPageError`` when its lists do not line up."""
    values = []
    for v in msg.values:
        hashed = len(v.hashes) > 0
        if not len(v.hashes if hashed else v.values) == len(v.slow) == len(v.baseline) or (
            hashed and len(v.values)
        ):
            raise CorruptPageError(
                f"explain partial: the counts of {shorten(v.key)} do not line up"
            )
        values.append(ValueCounts(v.key, list(v.values), np.array(v.slow, dtype=np.int64),
                                  np.array(v.baseline, dtype=np.int64),
                                  np.array(v.hashes, dtype=np.uint64) if hashed else None))  # fmt: skip
    if not len(msg.series_calls) == len(msg.series_slow) == n_buckets:
        raise CorruptPageError("explain partial: the series is not on the frontend's grid")
    return ExplainPart(
        msg.count, msg.slow_count, msg.slow_time_ns, msg.baseline_time_ns, tuple(values),
        tuple(convert.child_from_proto(c) for c in msg.children),
        convert.child_from_proto(msg.self_time), _weighted_from_proto(msg.self_examples),
        np.array(msg.series_calls, dtype=np.int64), np.array(msg.series_slow, dtype=np.int64),
        tuple(convert.release_from_proto(r) for r in msg.releases),
        tuple(convert.call_from_proto(c) for c in msg.examples),
    )  # fmt: skip


def details_to_proto(d: Details) -> pb.ExplainPartial:
    return pb.ExplainPartial(
        attribute_examples=[pb.CallList(calls=[convert.call_to_proto(c) for c in calls])
                            for calls in d.attributes],
        child_examples=[_weighted_to_proto(w) for w in d.children],
        before_calls=[c for c, _ in d.before], before_slow=[s for _, s in d.before],
        attribute_names=[n or "" for n in d.names],
        attribute_named=[n is not None for n in d.names],
    )  # fmt: skip


def details_from_proto(msg: pb.ExplainPartial, picks: Picks) -> Details:
    """A node's details; ``CorruptPageError`` when they are not parallel to ``picks``."""
    n_attrs, n_starts = len(picks.attributes), len(picks.release_starts)
    if (len(msg.attribute_examples), len(msg.child_examples), len(msg.before_calls),
            len(msg.before_slow), len(msg.attribute_names), len(msg.attribute_named)) != (
            n_attrs, len(picks.children), n_starts, n_starts, n_attrs, n_attrs):  # fmt: skip
        raise CorruptPageError("explain partial: the details do not answer the findings asked")
    return Details(
        tuple(tuple(convert.call_from_proto(c) for c in one.calls)
              for one in msg.attribute_examples),
        tuple(_weighted_from_proto(w) for w in msg.child_examples),
        tuple((int(c), int(s)) for c, s in zip(msg.before_calls, msg.before_slow, strict=True)),
        tuple(n if named else None
              for n, named in zip(msg.attribute_names, msg.attribute_named, strict=True)),
    )  # fmt: skip
