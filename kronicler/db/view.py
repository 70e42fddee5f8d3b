"""Read views: a database's read API answering every call from one snapshot.

``Database.snapshot()`` refreshes the segment set once and returns a :class:`ReadView`: the same
read methods as the database (``functions``, ``services``, ``time_range``, ``summaries``, ``scan``,
``slowest``, ``stats``, ``to_arrow``), all reading the same segment views, chunk lists, tails and
dictionaries. A question that needs several reads (a filter resolved against the function list,
then a row count, then a scan; an anomaly's recent and baseline windows, then its slowest calls)
asks them of one view, so its parts never disagree, however fast writers append.

The view may be used outside the segment set's lock, for as long as it is open: each call takes
the lock (segment readers are not thread-safe), and the view *pins* its segments, so a segment
that retention or compaction deletes meanwhile keeps its reader (and open file) until the last
view holding it closes. The trade-off: an open view holds those files open and sees no newer
data, so views are meant to live for one query; close them (``with db.snapshot() as view:``), or
let them be collected, which closes them too.

A page that passed its checksum when its chunk was found but fails to decode is reported when a
view meets it, and the call raises ``CorruptPageError``: one snapshot cannot drop the chunk.
:func:`answer` runs a whole question on a fresh view again, without that chunk, so the damage
costs the chunk, not the answer. The query layer asks every question through :func:`answer`.
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np

from kronicler.db.reader import summarise_tail
from kronicler.db.reads import DAMAGE_RETRIES
from kronicler.db.scan import FunctionSummary, Scan
from kronicler.db.schema import STATUS_ERROR
from kronicler.db.snapshot import Damage, SegmentView, Snapshot
from kronicler.db.stats import DEFAULT_QUANTILES, Call, Stats, exact_of_values
from kronicler.db.summary import quantiles_of
from kronicler.errors import ClosedError, CorruptPageError

if TYPE_CHECKING:
    from kronicler.db.reads import SegmentSet

T = TypeVar("T")


class ReadAPI(ABC):
    """The read methods a :class:`~kronicler.db.Database` and a :class:`ReadView` share.

    Subclasses give the primitives (``snapshot``, ``functions``, ``services``, ``time_range``,
    ``summaries``, ``scan``, ``slowest``); statistics and exports are built on them here, once.
    """

    @abstractmethod
    def snapshot(self) -> ReadView:
        """A view answering every read from one snapshot (a view returns itself)."""

    @abstractmethod
    def functions(self) -> list[str]:
        """Names of every function with at least one stored call, sorted."""

    @abstractmethod
    def services(self) -> list[str]:
        """Service names seen, sorted."""

    @abstractmethod
    def time_range(self) -> tuple[int, int] | None:
        """(earliest, latest) start time over every stored call, or None when empty."""

    @abstractmethod
    def summaries(
        self,
        names: Sequence[str] | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
    ) -> dict[str, FunctionSummary]:
        """Merged summary per function over ``since <= start < until`` (exact at the edges)."""

    @abstractmethod
    def scan(
        self,
        columns: Sequence[str],
        *,
        names: Sequence[str] | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> Scan:
        """Decoded rows (``since <= start < until``, name in ``names``) of the given columns."""

    @abstractmethod
    def slowest(
        self,
        name: str | None = None,
        *,
        k: int = 10,
        since: int | None = None,
        until: int | None = None,
    ) -> list[Call]:
        """The ``k`` slowest calls (of ``name``, or of any function), slowest first."""

    # A name selects one function's Stats; no name gives every function's. The overloads let
    # callers use either result without narrowing it themselves.
    @overload
    def stats(
        self, name: str, *, since: int | None = None, until: int | None = None,
        exact: bool = False,
    ) -> Stats: ...  # fmt: skip

    @overload
    def stats(
        self, name: None = None, *, since: int | None = None, until: int | None = None,
        exact: bool = False,
    ) -> dict[str, Stats]: ...  # fmt: skip

    def stats(
        self,
        name: str | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
        exact: bool = False,
    ) -> Stats | dict[str, Stats]:
        """Statistics of one function (a ``Stats``) or of every function (name -> ``Stats``)."""
        if name is not None and not isinstance(name, str):
            raise ValueError(f"name must be text, got {name!r}")
        names = None if name is None else [name]
        if exact and name is not None and since is None and until is None:
            return answer(self, partial(exact_one, name=name))
        if exact:
            scan = self.scan(("name", "duration", "status"), names=names, since=since, until=until)
            result = scan.exact_stats()
        else:
            sums = self.summaries(names, since=since, until=until)
            values = quantiles_of([fs.summary for fs in sums.values()], DEFAULT_QUANTILES)
            result = {
                n: Stats.from_summary(fs.summary, fs.errors, values=v.tolist())
                for (n, fs), v in zip(sums.items(), values, strict=True)
            }
        if name is not None:
            return result.get(name, Stats.empty())
        return dict(sorted(result.items()))

    def to_arrow(
        self,
        columns: Sequence[str] | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
        where: Any = None,
    ) -> Any:
        """The stored calls as a ``pyarrow.Table`` of readable columns (needs pyarrow).

        ``where``: a :class:`kronicler.query.Filter` (functions, service, attributes); ``since``
        and ``until`` narrow its time range. Columns: :data:`kronicler.query.export.COLUMNS`.
        A convenience over :func:`kronicler.query.export.to_arrow`, where the logic lives.
        """
        from kronicler.query import export
        from kronicler.query.filters import Filter

        flt = where if where is not None else Filter()
        flt = flt.with_range(since if since is not None else flt.since,
                             until if until is not None else flt.until)  # fmt: skip
        return export.to_arrow(self, flt, columns=columns)

    def to_pandas(
        self,
        columns: Sequence[str] | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
        where: Any = None,
    ) -> Any:
        """:meth:`to_arrow` as a ``pandas.DataFrame`` (needs pyarrow and pandas)."""
        return self.to_arrow(columns, since=since, until=until, where=where).to_pandas()


class ReadView(ReadAPI):
    """A database's reads as of one snapshot (see the module docstring). Thread-safe.

    Made by ``Database.snapshot()``; a context manager. Reading a closed view (or a view of a
    closed database) raises ``ClosedError``.
    """

    def __init__(self, reads: SegmentSet, check_open: Callable[[], object]) -> None:
        self._reads = reads
        self._check_open = check_open  # raises ClosedError once the database is closed
        check_open()
        snapshot = reads.pin()
        self._snapshot = snapshot
        # Unpins on close() or when the view is collected; holds no reference to the view.
        self._release = weakref.finalize(self, reads.unpin, snapshot)
        self._functions: list[str] | None = None

    def __enter__(self) -> ReadView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "" if self._release.alive else ", closed"
        return f"ReadView({len(self._snapshot.segments)} segments, {self.rows} rows{state})"

    def close(self) -> None:
        """Release the view's segments (a segment deleted meanwhile is closed now). Idempotent."""
        self._release()

    @property
    def closed(self) -> bool:
        return not self._release.alive

    @property
    def rows(self) -> int:
        """Rows the view holds."""
        return self._snapshot.rows

    @property
    def damage(self) -> Damage:
        """What the view's segments had lost to damaged bytes when it was taken."""
        return self._snapshot.damage

    def _open(self) -> Snapshot:
        if not self._release.alive:
            raise ClosedError(f"{self!r} is closed")
        self._check_open()
        return self._snapshot

    def snapshot(self) -> ReadView:
        """This view: it already is one snapshot."""
        self._open()
        return self

    @property
    def segments(self) -> tuple[SegmentView, ...]:
        """The view's segments (immutable; read their readers holding the segment set's lock)."""
        return self._open().segments

    def warm(self, stop: Callable[[], bool] = lambda: False) -> bool:
        """Make now what a whole-history query of this view reads besides pages: each segment's
        tail summary block. The segment views keep it, so a later view of an unchanged segment
        has it, and a later view of a grown tail summarises only the rows added since.

        A summary reads only the view's immutable tail rows, so it is made without the segment
        set's lock (queries go on meanwhile); only keeping it takes the lock. ``stop`` is asked
        before each segment: True leaves the rest undone and returns False."""
        for seg in self._open().segments:
            if not seg.tail_rows or seg.made("tail_block"):
                continue
            if stop():
                return False
            block = summarise_tail(seg)
            with self._reads.lock:  # segment readers are not thread-safe
                seg.reader.keep_tail_block(seg, block)
            seg.keep("tail_block", block)
        return True

    def merge_whole(self) -> None:
        """Make the kept merges a whole-history question of this view reads: the segments'
        roll-ups merged (after a seal), and that merge with the tails' summaries (after a warm);
        held by the segment set's lock (``SegmentSet.merge_whole``)."""
        self._reads.merge_whole(snapshot=self._open())

    def functions(self) -> list[str]:
        # Asked by every filter of a question (resolving names and globs): one walk per view.
        if self._functions is None:
            self._functions = self._reads.functions(snapshot=self._open())
        else:
            self._open()
        return list(self._functions)

    def services(self) -> list[str]:
        return self._reads.services(snapshot=self._open())

    def time_range(self) -> tuple[int, int] | None:
        return self._reads.time_range(snapshot=self._open())

    def summaries(
        self,
        names: Sequence[str] | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
    ) -> dict[str, FunctionSummary]:
        snap = self._open()
        return self._reads.summaries(names, since=since, until=until, snapshot=snap)

    def scan(
        self,
        columns: Sequence[str],
        *,
        names: Sequence[str] | None = None,
        since: int | None = None,
        until: int | None = None,
        local_attributes: bool = False,
    ) -> Scan:
        snap = self._open()
        return self._reads.scan(columns, names=names, since=since, until=until, snapshot=snap,
                                local_attributes=local_attributes)  # fmt: skip

    def slowest(
        self,
        name: str | None = None,
        *,
        k: int = 10,
        since: int | None = None,
        until: int | None = None,
    ) -> list[Call]:
        snap = self._open()
        return self._reads.slowest(name, k=k, since=since, until=until, snapshot=snap)


def exact_one(view: ReadView, name: str, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Stats:
    """Exact statistics of one function over everything ``view`` holds.

    Its sorted durations come from the segments' ``.kdur`` records (a read per group of ~4M
    rows, see :mod:`kronicler.db.durations`); the chunks no usable record covers, and the tail
    rows, are scanned as before, restricted to those chunks. The union is every row once.
    """
    from kronicler.db.durations import stored_runs  # exact statistics only

    snap = view._open()
    runs: list[np.ndarray] = []
    errors = 0
    rest = []
    for seg in snap.segments:
        code = seg.name_codes.get(name)
        if code is None:
            continue
        stored = stored_runs(seg, code)
        runs.extend(stored.runs)
        errors += stored.errors
        left = seg.chunks.without(stored.covered)
        if len(left) or seg.tail_rows:
            rest.append(seg if len(left) == len(seg.chunks) else replace(seg, chunks=left,
                                                                        _cache={}))  # fmt: skip
    if rest:
        scan = view._reads.scan(
            ("duration", "status"), names=[name], snapshot=Snapshot(tuple(rest))
        )
        runs.append(scan.columns["duration"])
        errors += int(np.count_nonzero(scan.columns["status"] == STATUS_ERROR))
    if not sum(len(r) for r in runs):
        return Stats.empty()  # as the scan's answer: a function without calls has no key
    return exact_of_values(runs, errors, name, quantiles)


@contextmanager
def snapshot_of(source: ReadAPI) -> Iterator[ReadView]:
    """One view of ``source`` for a ``with`` block: ``source`` itself when it is a view (left
    open: its owner closes it), else a fresh view, closed when the block ends."""
    if isinstance(source, ReadView):
        yield source.snapshot()
        return
    with source.snapshot() as view:
        yield view


def answer(source: ReadAPI, question: Callable[[ReadView], T]) -> T:
    """``question`` asked of one view of ``source``: every read it makes sees the same data.

    Given a view, asks it (a damaged page raises ``CorruptPageError`` to whoever took the view).
    Given a database, takes a view, and a fresh one (up to 3 times) when the question meets a
    damaged page, which the next view leaves out.
    """
    if isinstance(source, ReadView):
        return question(source.snapshot())
    for attempt in range(DAMAGE_RETRIES + 1):
        with source.snapshot() as view:
            try:
                return question(view)
            except CorruptPageError:
                if attempt == DAMAGE_RETRIES:
                    raise
    raise AssertionError("unreachable")
