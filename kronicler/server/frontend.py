"""``Frontend``: one query answering for several Kronicler nodes, as a :class:`QueryBackend`.

When one node's disk or CPU is not enough, spans go to several nodes (the OpenTelemetry
Collector's ``loadbalancing`` exporter routes them by trace id or service; docs/cluster.md) and
``kronicler serve --peers host:port,...`` runs this frontend. Every question fans out to all
peers in parallel as a ``Partial`` RPC; each peer answers with mergeable pieces and the frontend
merges them (:mod:`kronicler.query.partials`) into the answer one node holding all the data
would give: counts, errors, min, max and the slowest calls exact, quantiles within the same 1%
(the same histograms merged), anomalies judged on the merged summaries, explanations ranked on
the merged counts under one agreed threshold (docs/cluster.md). Because it is a
``QueryBackend``, the gRPC service, the CLI and the dashboard run on it unchanged.

The frontend holds no data of its own: it stores nothing and hosts no OTLP receiver (spans go to
the nodes), so there is one road for data and a node's answer never counts twice.

Failures: each peer call gets the question's remaining deadline (the gRPC caller's less a fifth,
at most 1 s, kept for merging and replying; capped by ``timeout``), so a down or stalled peer
costs at most that and the caller still gets the other peers' answer in time. A peer that fails
(unreachable, timed out, wrong token, another release's partial format, bytes that do not
decode) is left out and named in :meth:`missing_peers` (``host:port: reason``), which the gRPC
service sends as trailing metadata and the CLI and dashboard show: an answer is never silently
partial. When no peer answers the question fails with :class:`~kronicler.errors.UnavailableError`.
A peer's refusal of the question itself (a bad argument, a limit) is the answer, raised as the
query layer raises it.

Speed: the peers are asked at once: the last peer's requests by the calling thread itself, the
others' by long-lived threads of the frontend's (one blocking call each). A gRPC future per call
(the earlier way) costs more: a channel with no call in flight starts a new polling thread for
its next future, so each question started one thread per peer (measured side by side over three
nodes: ~2.7 ms of the frontend's CPU for the three calls against ~1.7 ms with the threads kept).
Summaries travel as packed columns (:mod:`kronicler.query.summary_table`), so the frontend's
own work is reading arrays, one batched merge and one batched quantile pass
(bench/bench_cluster.py). Each reply is decoded by the thread that received it, so the askers'
replies are read while the calling thread still waits for its own peer; and the process keeps
freed heap memory (:func:`_keep_freed_memory`), which took its page faults from ~375 to ~26 a
question (GetStats by function over three nodes; together with the reply built in one
constructor call per group, the frontend's CPU per question fell from 8.0 to 6.6 ms, measured
side by side under load). Sending each cell's buckets as one dense run from its lowest key (no
keys) was measured too: 38 KB a node instead of 62 KB, but the frontend's decode, merge and
answer took only 2% fewer instructions (14.4M against 14.8M, callgrind) while each node spent
more building the runs, so the columns stay as they are.

Trade-off: questions whose range comes from the data (series, anomalies without bounds) cost one
more round trip (the merged time range first), and exact quantiles ship the selected rows
(refused beyond :data:`~kronicler.query.partials.MAX_PARTIAL_ROWS` per node). Explain takes up
to four rounds (bounds, threshold, counts, the ranked findings' details).

Rounds of one question read one snapshot per node: the frontend names such a question
(``QuestionView``) and each node answers all its rounds from the view it took in the first
(:mod:`kronicler.server.held_views`), so while data arrives the rounds still agree. A peer
missing from one round is not asked the next; the view is released by the last round, or by a
release sent without waiting when the question ends before it.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc

from kronicler import budget
from kronicler.db.stats import Call
from kronicler.errors import (
    KroniclerError,
    LimitExceededError,
    NotFoundError,
    UnavailableError,
    shorten,
)
from kronicler.proto.v1 import query_pb2 as pb
from kronicler.query import DEFAULT_QUANTILES, Explanation, Filter
from kronicler.query.anomalies import (
    DEFAULT_MIN_COUNT,
    DEFAULT_REGRESSION_THRESHOLD,
    DEFAULT_SPIKE_THRESHOLD,
    DEFAULT_TAIL_THRESHOLD,
    anomaly_window,
    check_anomalies,
    judge,
)
from kronicler.query.backend import QueryBackend
from kronicler.query.defaults import ANOMALY_EXEMPLARS, ANOMALY_LIMIT, PER_DECADE, SLOWEST_K
from kronicler.query.explain import (
    SERIES_BUCKETS,
    Details,
    Picks,
    buckets,
    check_explain,
    empty,
    exact_quantile,
    finish,
)
from kronicler.query.grouping import check_quantiles, parse_group_by
from kronicler.query.histogram import check_histogram
from kronicler.query.partials import (
    MAX_PARTIAL_ROWS,
    PARTIAL_VERSION,
    SUMMARY_PACKED,
    Cells,
    cell_stats,
    cell_summaries,
    check_groups,
    check_unknown,
    merge_cells,
    merge_functions,
    merge_histograms,
    merge_slowest,
    merge_span,
)
from kronicler.query.results import Anomaly, FunctionInfo, Histogram, SeriesTable, StatsTable
from kronicler.query.series import (
    MAX_POINTS,
    assemble,
    check_buckets,
    check_points,
    check_series,
    pick_step,
    series_bounds,
)
from kronicler.query.slowest import check_slowest
from kronicler.query.stats import check_limit, check_order, order_rows
from kronicler.server import convert
from kronicler.server.app import DEFAULT_MAX_WORKERS, split_address
from kronicler.server.client import Client, as_local
from kronicler.server.partial import (
    details_from_proto,
    part_from_proto,
    picks_to_proto,
)

#: Seconds a peer call may outlive its deadline before the frontend stops waiting for it (gRPC
#: ends the call at the deadline; this only guards against a transport that does not).
_GRACE = 0.5
#: Of a caller's remaining deadline, the part kept for merging and replying (at most 1 s): the
#: peers get the rest, so a stalled peer is dropped while the caller still waits for the answer.
_HEADROOM, _HEADROOM_MAX = 0.2, 1.0


class Frontend:
    """Fans every question out to ``peers`` and merges their partial answers.

    ``exact_threshold_rows``: explain gathers the function's durations for an exact quantile
    threshold up to this many calls over all peers; beyond, it takes the merged summaries'.

    Args:
        peers: ``host:port`` of each node (at least one, no repeats).
        token: bearer token sent to every peer (the nodes' ``--token``).
        tls, ca_cert, server_name, client_cert, client_key: as for
            :class:`~kronicler.server.Client`, for every peer (a peer whose certificate the CA
            does not vouch for is named missing, with the TLS error).
        timeout: seconds a question may take at most (a gRPC caller's shorter deadline wins).
    """

    exact_threshold_rows: int = MAX_PARTIAL_ROWS

    def __init__(
        self,
        peers: Sequence[str],
        *,
        token: str | None = None,
        tls: bool = False,
        ca_cert: Path | None = None,
        server_name: str | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        if isinstance(peers, str) or not peers:
            raise ValueError(f"a frontend needs a list of peers (host:port), got {shorten(peers)}")
        for peer in peers:
            split_address(peer)
        if len(set(peers)) != len(peers):
            raise ValueError(f"peers must not repeat, got {shorten(list(peers))}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.peers = tuple(peers)
        self.timeout = timeout
        _keep_freed_memory()
        self._clients = {
            p: Client(p, token=token, tls=tls, ca_cert=ca_cert, server_name=server_name,
                      client_cert=client_cert, client_key=client_key, timeout=timeout)
            for p in self.peers
        }  # fmt: skip
        # Threads that ask all peers but the last (the calling thread asks that one), started as
        # questions need them: enough for as many questions at once as a server runs by default,
        # so one question's calls (or a stalled peer's) do not queue behind another's.
        self._askers = ThreadPoolExecutor(
            max_workers=max(DEFAULT_MAX_WORKERS * (len(self.peers) - 1), 1),
            thread_name_prefix="kronicler-peer",
        )
        self._local = threading.local()  # per calling thread: its question (missing peers...)
        self._releasing: set[Any] = set()  # release calls in flight (kept until they end)
        self._releasing_lock = threading.Lock()

    # ---- fan-out -----------------------------------------------------------------------------

    def missing_peers(self) -> tuple[str, ...]:
        missing: dict[str, str] = getattr(self._local, "missing", {})
        return tuple(f"{peer}: {reason}" for peer, reason in missing.items())

    def _begin(self) -> None:
        self._local.missing = {}
        self._local.question = None

    @contextmanager
    def _rounds(self) -> Iterator[None]:
        """A question of several rounds: every peer answers them all from the view it took in
        the first (:mod:`kronicler.server.held_views`), and a peer missing from one round is
        not asked the next. The view is released by the last round, or when the question ends
        before it (an empty answer, an error) by a release the frontend does not wait for."""
        self._begin()
        question = _Question(os.urandom(16))
        self._local.question = question
        try:
            yield
        finally:
            self._local.question = None
            if question.asked and not question.closed:
                self._release(question)

    def _release(self, question: _Question) -> None:
        """Ask the peers that took the question's view to release it, without waiting. The
        request is a time range (cheap), so a node of an earlier release just answers it."""
        req = _partial(time_range=pb.TimeRangeQuestion())
        req.view.CopyFrom(pb.QuestionView(question_id=question.id, last_round=True, hold_ms=1))
        missing = getattr(self._local, "missing", {})
        for peer, client in self._clients.items():
            if peer in missing:
                continue
            call = client.partial_future(req, min(self.timeout, _GRACE * 10))
            with self._releasing_lock:
                self._releasing.add(call)
            call.add_done_callback(self._released)

    def _released(self, call: Any) -> None:
        with self._releasing_lock:
            self._releasing.discard(call)

    def _ask(
        self, *requests: pb.PartialRequest, last: bool = False
    ) -> list[list[pb.PartialResponse]]:
        """Every request to every peer, all at once: the replies of each peer that answered them
        all. Peers that did not are recorded as missing. Within :meth:`_rounds`, the requests
        name the question (``last``: this round ends it)."""
        remaining = budget.remaining()
        limit = self.timeout
        if remaining is not None:  # leave the caller time to receive the merged answer
            limit = min(limit, remaining - min(_HEADROOM_MAX, _HEADROOM * remaining))
        ends = time.monotonic() + limit
        missing: dict[str, str] = self._local.__dict__.setdefault("missing", {})
        question: _Question | None = getattr(self._local, "question", None)
        clients = self._clients
        if question is not None:
            view = pb.QuestionView(question_id=question.id, first_round=not question.asked,
                                   last_round=last, hold_ms=_hold_ms(limit))  # fmt: skip
            for r in requests:
                r.view.CopyFrom(view)
            question.asked = True
            question.closed = last
            clients = {p: c for p, c in clients.items() if p not in missing}
        # Every peer but the last is asked by the frontend's threads, the last by this one, so the
        # peers answer in parallel; each call gets what is left of the question's time.
        # Each reply's cells are decoded by the thread that received it (by id() of the reply;
        # replies outlive the question), so the askers decode theirs while this thread still
        # waits for its own peer.
        decoded: dict[int, Cells | KroniclerError] = {}
        self._local.decoded = decoded
        calls = {peer: [self._askers.submit(_call, c, r, ends, decoded) for r in requests]
                 for peer, c in list(clients.items())[:-1]}  # fmt: skip
        for peer, c in list(clients.items())[-1:]:
            calls[peer] = [_called(c, r, ends, decoded) for r in requests]
        replies: list[list[pb.PartialResponse]] = []
        refusal: Exception | None = None
        for peer, futures in calls.items():
            try:
                got = [f.result(timeout=max(ends - time.monotonic(), 0.0) + _GRACE)
                       for f in futures]  # fmt: skip
            except FutureTimeout:
                missing[peer] = f"no answer within {limit:.3g} s"
                for f in futures:
                    f.cancel()
                continue
            except grpc.RpcError as failed:
                exc = as_local(failed)
                if isinstance(exc, (ValueError, NotFoundError)):
                    refusal = refusal or exc  # the question itself is refused
                elif (
                    isinstance(exc, grpc.Call) and exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                ):
                    refusal = refusal or LimitExceededError(exc.details())
                elif isinstance(exc, grpc.Call):
                    missing[peer] = f"{exc.code().name}: {_reason(exc.details())}"
                else:
                    missing[peer] = f"{type(exc).__name__}: {shorten(str(exc), 200)}"
                continue
            bad = [r.version for r in got if r.version != PARTIAL_VERSION]
            if bad:
                missing[peer] = f"answered in partial format version {bad[0]}"
                continue
            broken = next((p for r in got if isinstance(p := decoded.get(id(r)), Exception)), None)
            if broken is not None:  # bytes that do not decode
                missing[peer] = f"{type(broken).__name__}: {shorten(str(broken), 200)}"
                continue
            replies.append(got)
        if refusal is not None:
            raise refusal
        budget.check()  # our own caller's time is up: say so, not "no peer answered"
        if not replies:
            raise UnavailableError(
                "no peer answered: " + "; ".join(f"{p}: {r}" for p, r in missing.items())
            )
        return replies

    def _replies(self, request: pb.PartialRequest, last: bool = False) -> list[pb.PartialResponse]:
        return [r[0] for r in self._ask(request, last=last)]

    def _cells(self, replies: Sequence[pb.PartialResponse], patterns: Sequence[str]) -> Cells:
        check_unknown(patterns, (r.unknown_functions for r in replies))
        decoded: dict[int, Cells | KroniclerError] = getattr(self._local, "decoded", {})
        parts = [decoded.get(id(r)) for r in replies]  # a peer whose cells failed is missing
        return merge_cells([
            part if isinstance(part, Cells) else convert.cells_from_proto(r.cells)
            for r, part in zip(replies, parts, strict=True)
        ])  # fmt: skip

    def _span(self) -> tuple[int, int] | None:
        replies = self._replies(_partial(time_range=pb.TimeRangeQuestion()))
        return merge_span(
            (r.first_start_unix_nano, r.last_start_unix_nano)
            if r.HasField("first_start_unix_nano") else None
            for r in replies
        )  # fmt: skip

    # ---- QueryBackend ------------------------------------------------------------------------

    def time_range(self) -> tuple[int, int] | None:
        self._begin()
        return self._span()

    def list_functions(self, flt: Filter | None = None) -> list[FunctionInfo]:
        self._begin()
        flt = flt or Filter()
        flt.check()
        req = pb.ListFunctionsRequest(filter=convert.filter_to_proto(flt))
        replies = self._replies(_partial(list_functions=req))
        check_unknown(flt.functions, (r.unknown_functions for r in replies))
        return merge_functions(convert.functions_from_proto(r) for r in replies)

    def stats(
        self,
        flt: Filter | None = None,
        *,
        group_by: str = "function",
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        exact: bool = False,
        order_by: str = "key",
        limit: int | None = None,
    ) -> StatsTable:
        self._begin()
        flt = flt or Filter()
        flt.check()
        qs = check_quantiles(quantiles)
        parse_group_by(group_by)
        check_order(order_by, qs)
        check_limit(limit)
        req = pb.GetStatsRequest(filter=convert.filter_to_proto(flt), group_by=group_by,
                                 quantiles=list(qs), exact=exact)  # fmt: skip
        cells = self._cells(self._replies(_partial(stats=req)), flt.functions)
        check_groups(cells)
        rows = order_rows(cell_stats(cells, qs, every_cell=False), order_by)
        return StatsTable(group_by, qs, exact, tuple(rows[:limit] if limit else rows))

    def series(
        self,
        flt: Filter | None = None,
        *,
        step: int | None = None,
        group_by: str = "function",
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        exact: bool = False,
    ) -> SeriesTable:
        with self._rounds():
            flt, qs = check_series(flt, step, group_by, quantiles)
            span = self._span() if flt.since is None or flt.until is None else None
            bounds = series_bounds(span, flt, step)
            if not isinstance(bounds, tuple):
                return replace(bounds, group_by=group_by, quantiles=qs, exact=exact)
            since, until, step = bounds
            n_buckets = check_buckets(since, until, step)
            req = pb.GetSeriesRequest(
                filter=convert.filter_to_proto(flt.with_range(since, until)), step_ns=step,
                group_by=group_by, quantiles=list(qs), exact=exact,
            )  # fmt: skip
            cells = self._cells(self._replies(_partial(series=req), last=True), flt.functions)
            check_groups(cells)
            check_points(len(cells.keys), n_buckets, len(qs), MAX_POINTS)
            rows = cell_stats(cells, qs, every_cell=True)
            return assemble(cells.keys, rows, (group_by, step, since, until, qs, exact), n_buckets)

    def histogram(
        self, function: str, flt: Filter | None = None, *, per_decade: int = PER_DECADE,
        exact: bool = False,
    ) -> Histogram:  # fmt: skip
        self._begin()
        flt = check_histogram(function, flt, per_decade)
        req = pb.GetHistogramRequest(function=function, filter=convert.filter_to_proto(flt),
                                     per_decade=per_decade, exact=exact)  # fmt: skip
        replies = self._replies(_partial(histogram=req))
        check_unknown([function], (r.unknown_functions for r in replies))
        return merge_histograms(
            function, per_decade, exact or flt.needs_scan,
            (convert.histogram_from_proto(r.histogram) for r in replies),
        )  # fmt: skip

    def slowest(self, flt: Filter | None = None, *, k: int = SLOWEST_K) -> list[Call]:
        self._begin()
        flt = check_slowest(flt, k)
        req = pb.GetSlowestRequest(filter=convert.filter_to_proto(flt), k=k)
        replies = self._replies(_partial(slowest=req))
        check_unknown(flt.functions, (r.unknown_functions for r in replies))
        return merge_slowest(([convert.call_from_proto(c) for c in r.calls] for r in replies), k)

    def anomalies(
        self,
        flt: Filter | None = None,
        *,
        min_count: int = DEFAULT_MIN_COUNT,
        tail_threshold: float = DEFAULT_TAIL_THRESHOLD,
        spike_threshold: float = DEFAULT_SPIKE_THRESHOLD,
        regression_threshold: float = DEFAULT_REGRESSION_THRESHOLD,
        recent: int | None = None,
        limit: int = ANOMALY_LIMIT,
        exemplars: int = ANOMALY_EXEMPLARS,
    ) -> list[Anomaly]:
        with self._rounds():
            thresholds = (tail_threshold, spike_threshold, regression_threshold)
            flt = check_anomalies(flt, min_count, thresholds, recent, limit, exemplars)
            span = self._span()
            window = None if span is None else anomaly_window(span, flt, recent)
            if window is None:
                return []
            since, split, until = window
            ranges = [(split, until), (since, split)] if split > since else [(since, until)]
            asked = [
                _partial(stats=pb.GetStatsRequest(
                    filter=convert.filter_to_proto(flt.with_range(lo, hi)), group_by="function"))
                for lo, hi in ranges
            ]  # fmt: skip
            replies = self._ask(*asked)
            parts = [
                self._cells([r[i] for r in replies], flt.functions) for i in range(len(ranges))
            ]
            found = judge(
                cell_summaries(parts[0]), cell_summaries(parts[1]) if len(parts) > 1 else {},
                split > since, split, min_count, thresholds, limit,
            )  # fmt: skip
            if not exemplars or not found:
                return found
            req = _partial(slowest=pb.GetSlowestRequest(
                filter=convert.filter_to_proto(flt.with_range(since, until)), k=exemplars))  # fmt: skip
            req.per_function.extend(a.function for a in found)
            lists = [r.per_function for r in self._replies(req, last=True)]
            return [
                replace(a, exemplars=tuple(merge_slowest(
                    ([convert.call_from_proto(c) for c in per[i].calls] for per in lists), exemplars)))
                for i, a in enumerate(found)
            ]  # fmt: skip

    def explain(
        self,
        function: str,
        *,
        since: int | None = None,
        until: int | None = None,
        slow: int | str | None = None,
    ) -> Explanation:
        """As one node holding all the calls explains them (:func:`kronicler.query.explain`).

        Rounds: the calls' first/last start, latest end and summary per node; for a quantile,
        the exact durations when the union holds at most ``MAX_PARTIAL_ROWS`` calls (else the
        quantile of the merged summaries, within 1%, and the answer says so); then every
        node's counts under that threshold and the frontend's series grid; then the examples
        and release counts of the findings ranked on the merged counts (:func:`finish`).
        """
        with self._rounds():
            threshold = check_explain(function, since, until, slow)
            f = convert.filter_to_proto(Filter((function,), since=since, until=until))
            bounds = pb.ExplainQuestion(function=function, bounds=True)
            if since is not None:
                bounds.since_unix_nano = since
            if until is not None:
                bounds.until_unix_nano = until
            first = self._ask(
                _partial(explain=bounds),
                _partial(stats=pb.GetStatsRequest(filter=f, group_by="function")),
            )
            check_unknown([function], (r[0].unknown_functions for r in first))
            found = [r[0].explain for r in first if r[0].explain.HasField("first_start_unix_nano")]
            if not found:
                return empty(function, since, until, threshold.quantile)
            table = self._cells([r[1] for r in first], [function]).table
            if not len(table):
                return empty(function, since, until, threshold.quantile)
            summary = table.summary(0)
            first_start = min(b.first_start_unix_nano for b in found)
            lo = since if since is not None else first_start
            hi = until if until is not None else max(b.last_start_unix_nano for b in found) + 1
            exact = True
            if threshold.quantile is None:
                limit = float(threshold.ns or 0)
            elif summary.count <= self.exact_threshold_rows:
                req = pb.GetStatsRequest(filter=f, group_by="function", exact=True)
                rows = self._cells(self._replies(_partial(stats=req)), [function]).rows
                assert rows is not None
                limit = exact_quantile(rows[1], threshold.quantile)
            else:
                merged = summary.quantile(threshold.quantile)
                assert merged is not None  # the nodes found calls: the summary is not empty
                limit = float(merged)
                exact = False
            step = pick_step(hi - lo, SERIES_BUCKETS)
            question = pb.ExplainQuestion(
                function=function, since_unix_nano=lo, until_unix_nano=hi, threshold_ns=limit,
                step_ns=step, children_since_unix_nano=first_start,
                children_until_unix_nano=max(b.last_end_unix_nano for b in found) + 1,
            )  # fmt: skip
            n_buckets = buckets(lo, hi, step)
            parts = [part_from_proto(r.explain, n_buckets)
                     for r in self._replies(_partial(explain=question))]  # fmt: skip

            def details(picks: Picks) -> list[Details]:
                asked = pb.ExplainQuestion()
                asked.CopyFrom(question)
                picks_to_proto(asked, picks)
                # The round naming hashed values comes before the details, which end it.
                naming = (
                    not picks.children
                    and not picks.release_starts
                    and all(isinstance(v, int) for _, v in picks.attributes)
                )
                return [details_from_proto(r.explain, picks)
                        for r in self._replies(_partial(explain=asked), last=not naming)]  # fmt: skip

            return finish(function, (lo, hi, step), threshold.quantile, limit, parts, details,
                          threshold_exact=exact)  # fmt: skip

    def close(self) -> None:
        self._askers.shutdown(wait=False, cancel_futures=True)
        for client in self._clients.values():
            client.close()

    def __enter__(self) -> Frontend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: glibc's ``mallopt`` parameters (malloc.h) and the values the frontend sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_BYTES, _MMAP_BYTES = 64 << 20, 32 << 20  # 32 MB: glibc's largest mmap threshold


def _keep_freed_memory() -> None:
    """Let this process's heap keep freed memory instead of handing it back to the kernel.

    Every question allocates and frees the same few hundred kilobytes: three peers' replies, the
    merge's temporaries (~45,000 buckets in bench_cluster's GetStats) and the answer. With
    glibc's defaults, blocks over 128 KB are mapped and unmapped at each use and the heap's top
    is trimmed once 128 KB are free, so each question faulted its pages in afresh: ~375 page
    faults a question in the served frontend, ~5% of its CPU (perf, kernel page-fault and
    page-clearing time). Raising both thresholds keeps those pages in the heap for the next
    question; the cost is up to ~64 MB of freed memory kept per malloc arena, in a process that
    holds no data. Nothing happens elsewhere than on glibc (``mallopt`` missing).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)
    mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES)


def _reason(details: str | None) -> str:
    """A peer's failure, shortened; a failed TLS handshake is told from its start, since gRPC
    puts it (and "CERTIFICATE_VERIFY_FAILED" or the like) at the end of a long message."""
    text = details or ""
    at = text.lower().find("handshake failed")
    if at > 0:
        text = text[max(text.rfind(" ", 0, at - 4) + 1, 0) :]  # from the word before
    return shorten(text, 200)


@dataclass(slots=True)
class _Question:
    """A question of several rounds: its id, whether a round was sent, whether the last was."""

    id: bytes
    asked: bool = False
    closed: bool = False


def _call(
    client: Client,
    request: pb.PartialRequest,
    ends: float,
    decoded: dict[int, Cells | KroniclerError],
) -> pb.PartialResponse:
    """One peer's reply, the call bounded by the question's end (``time.monotonic()``); its
    cells decoded into ``decoded`` (or the error saying why they do not decode)."""
    reply = client.partial_call(request, max(ends - time.monotonic(), 0.0))
    if reply.version == PARTIAL_VERSION and reply.HasField("cells"):
        try:
            decoded[id(reply)] = convert.cells_from_proto(reply.cells)
        except KroniclerError as exc:
            decoded[id(reply)] = exc
    return reply


def _called(
    client: Client,
    request: pb.PartialRequest,
    ends: float,
    decoded: dict[int, Cells | KroniclerError],
) -> Future[pb.PartialResponse]:
    """:func:`_call` made here and now, its reply or failure held as a done future."""
    done: Future[pb.PartialResponse] = Future()
    try:
        done.set_result(_call(client, request, ends, decoded))
    except grpc.RpcError as failed:
        done.set_exception(failed)
    return done


def _hold_ms(limit: float) -> int:
    """How long a peer keeps a question's view after a round: the round's time and a grace."""
    return max(1, min(int((max(limit, 0.0) + _GRACE) * 1000), 2**32 - 1))


def _partial(**question: object) -> pb.PartialRequest:
    return pb.PartialRequest(
        version=PARTIAL_VERSION,
        summary_encoding=SUMMARY_PACKED,
        **question,  # type: ignore[arg-type]
    )


_: type[QueryBackend] = Frontend  # mypy holds the frontend to the QueryBackend contract
