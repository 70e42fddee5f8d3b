"""Data out: the stored calls as readable columns, for pandas, DuckDB, Parquet, CSV or JSON lines.

Inside the database a row is codes and split integers (a name code, ``trace_hi``/``trace_lo``, an
attribute-set code); out here it is what a person or another tool expects:

====================  ======================================================================
column                value
====================  ======================================================================
``name``              the function (span) name
``service``           the service name
``start``             start time (Arrow/pandas: ``timestamp[ns, UTC]``; CSV/JSON: ISO 8601)
``duration_ns``       the call's duration in nanoseconds
``status``            ``UNSET``, ``OK`` or ``ERROR``
``kind``              ``INTERNAL``, ``SERVER``, ``CLIENT``, ``PRODUCER`` or ``CONSUMER``
``trace_id``          32 lowercase hex digits
``span_id``           16 lowercase hex digits
``parent_span_id``    16 hex digits, or null for a root span
``attributes``        a map of text to text (values as in filters: strings as themselves,
                      other types in JSON), a JSON object in CSV and JSON lines
``resource``          the resource attributes (``service.version``, ``host.name``...), a map
                      like ``attributes``
====================  ======================================================================

Rows come in pieces of at most ``piece_rows`` (1M by default) so that an export of any size runs
in bounded memory: the time range is split, using the index's exact per-range counts, into
windows small enough, and each window is read, sorted by start time and converted on its own.
Text columns convert once per distinct value (names, services, attribute and resource sets), ids through
vectorised hex; nothing loops per row except the CSV and JSON writers. One export reads one
snapshot of the database (held until its last piece), so rows appended meanwhile are neither
half-included nor counted in ``total`` and missing from the pieces.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from kronicler.db.schema import KIND_NAMES as _KIND_NAMES
from kronicler.db.schema import parse_attributes
from kronicler.db.view import answer, snapshot_of
from kronicler.query.filters import Filter, attribute_text, resolve_functions, select

if TYPE_CHECKING:
    from kronicler.db.view import ReadAPI, ReadView

COLUMNS = (
    "name", "service", "start", "duration_ns", "status", "kind",
    "trace_id", "span_id", "parent_span_id", "attributes", "resource",
)  # fmt: skip
#: Columns holding a map of text to text (one dict per row, shared by equal sets).
MAP_COLUMNS = ("attributes", "resource")
FORMATS = ("parquet", "csv", "jsonl")
DEFAULT_PIECE_ROWS = 1_000_000
STATUS_NAMES = np.array(["UNSET", "OK", "ERROR"], dtype=object)
KIND_NAMES = np.array(_KIND_NAMES, dtype=object)
_RAW = {
    "name": ("name",), "service": ("service",), "start": ("start",),
    "duration_ns": ("duration",), "status": ("status",), "kind": ("kind",),
    "trace_id": ("trace_hi", "trace_lo"), "span_id": ("span_id",),
    "parent_span_id": ("parent_span_id",), "attributes": ("attributes",),
    "resource": ("resource",),
}  # fmt: skip
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class Piece:
    """Rows of one window, sorted by start, as readable columns.

    ``columns`` maps each requested column to an array (object arrays of text, ``int64`` for
    ``start`` and ``duration_ns``, text or None for ``parent_span_id``); ``attributes`` and
    ``resource`` hold one ``dict`` per row, shared between rows with the same set.
    """

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        for arr in self.columns.values():
            return len(arr)
        return 0


def check_columns(columns: Sequence[str] | None) -> tuple[str, ...]:
    if columns is None:
        return COLUMNS
    if isinstance(columns, str):
        columns = [columns]
    bad = [c for c in columns if c not in COLUMNS]
    if bad or not columns:
        raise ValueError(
            f"unknown export column(s) {bad or columns!r}; columns are {list(COLUMNS)}"
        )
    return tuple(dict.fromkeys(columns))


def pieces(
    db: ReadAPI,
    flt: Filter | None = None,
    *,
    columns: Sequence[str] | None = None,
    piece_rows: int = DEFAULT_PIECE_ROWS,
) -> Iterator[Piece]:
    """The calls ``flt`` selects, in pieces of at most ``piece_rows``, oldest first.

    Every piece comes from one snapshot of ``db`` (``db`` itself when it is a view), taken at
    the first piece and released when the iterator ends or is closed.
    """
    flt = flt or Filter()
    flt.check()
    cols = check_columns(columns)
    if not isinstance(piece_rows, int) or piece_rows < 1:
        raise ValueError(f"piece_rows must be a positive integer, got {piece_rows!r}")
    with snapshot_of(db) as view:
        yield from _pieces(view, flt, cols, piece_rows)


def _pieces(db: ReadView, flt: Filter, cols: tuple[str, ...], piece_rows: int) -> Iterator[Piece]:
    names = resolve_functions(db, flt.functions)
    if names == []:
        return
    span = db.time_range()
    if span is None:
        return
    since = flt.since if flt.since is not None else span[0]
    until = flt.until if flt.until is not None else span[1] + 1
    raw = sorted({r for c in cols for r in _RAW[c]} | {"start"})
    for lo, hi in _windows(db, names, since, until, piece_rows):
        sel = select(db, flt.with_range(lo, hi), raw)
        if len(sel) == 0:
            continue
        order = np.argsort(sel.columns["start"], kind="stable")
        yield Piece(_readable({k: v[order] for k, v in sel.columns.items()}, sel, cols))


def total_rows(db: ReadAPI, flt: Filter | None = None) -> int:
    """Rows in the functions and time range of ``flt`` (an upper bound with other filters)."""
    flt = flt or Filter()
    return answer(db, lambda view: _total_rows(view, flt))


def _total_rows(db: ReadView, flt: Filter) -> int:
    names = resolve_functions(db, flt.functions)
    if names == []:
        return 0
    sums = db.summaries(names, since=flt.since, until=flt.until)
    return sum(int(s.summary.count) for s in sums.values())


def _windows(
    db: ReadView, names: list[str] | None, since: int, until: int, piece_rows: int
) -> Iterator[tuple[int, int]]:
    """``[lo, hi)`` windows covering ``[since, until)`` holding at most ``piece_rows`` rows each
    (a window one nanosecond wide is returned whatever it holds)."""
    stack = [(since, until)]
    while stack:
        lo, hi = stack.pop()
        count = sum(int(s.summary.count) for s in
                    db.summaries(names, since=lo, until=hi).values())  # fmt: skip
        if count == 0:
            continue
        if count <= piece_rows or hi - lo <= 1:
            yield lo, hi
            continue
        mid = lo + (hi - lo) // 2
        stack.extend(((mid, hi), (lo, mid)))  # the earlier half is popped first


def _readable(raw: dict[str, np.ndarray], sel: Any, cols: tuple[str, ...]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for c in cols:
        if c == "name":
            out[c] = np.array(sel.names, dtype=object)[raw["name"]]
        elif c == "service":
            out[c] = np.array(sel.services, dtype=object)[raw["service"]]
        elif c == "start":
            out[c] = raw["start"].astype(np.int64)
        elif c == "duration_ns":
            out[c] = raw["duration"].astype(np.int64)
        elif c == "status":
            out[c] = STATUS_NAMES[np.minimum(raw["status"], 2)]
        elif c == "kind":
            out[c] = KIND_NAMES[np.minimum(raw["kind"], 4)]
        elif c == "trace_id":
            out[c] = hex_ids(raw["trace_hi"], raw["trace_lo"])
        elif c == "span_id":
            out[c] = hex_ids(raw["span_id"])
        elif c == "parent_span_id":
            parents = raw["parent_span_id"]
            text = hex_ids(parents)
            text[parents == 0] = None
            out[c] = text
        elif c in MAP_COLUMNS:
            texts = sel.attributes if c == "attributes" else sel.resources
            maps = np.empty(len(texts), dtype=object)
            for code, blob in enumerate(texts):
                maps[code] = {k: attribute_text(v) for k, v in parse_attributes(blob).items()}
            out[c] = maps[raw[c]]
    return out


def hex_ids(*words: np.ndarray) -> np.ndarray:
    """Big-endian 64-bit words (one array per word) as lowercase hex text, vectorised."""
    n = len(words[0])
    raw = np.empty((n, 8 * len(words)), dtype=np.uint8)
    for i, w in enumerate(words):
        raw[:, 8 * i : 8 * i + 8] = w.astype(">u8").view(np.uint8).reshape(n, 8)
    digits = np.empty((n, raw.shape[1] * 2), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 0x0F]
    text = digits.view(f"S{digits.shape[1]}").ravel().astype(f"U{digits.shape[1]}")
    return text.astype(object)


# ---- Arrow and pandas -------------------------------------------------------------------------


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:  # an optional extra
        raise ImportError(
            "Arrow, pandas and Parquet export need pyarrow: pip install pyarrow "
            "(or this package's 'export' extra)"
        ) from exc
    return pyarrow


def arrow_schema(columns: Sequence[str] | None = None) -> Any:
    pa = _pyarrow()
    types = {
        "name": pa.string(), "service": pa.string(), "start": pa.timestamp("ns", tz="UTC"),
        "duration_ns": pa.int64(), "status": pa.string(), "kind": pa.string(),
        "trace_id": pa.string(), "span_id": pa.string(), "parent_span_id": pa.string(),
        "attributes": pa.map_(pa.string(), pa.string()),
        "resource": pa.map_(pa.string(), pa.string()),
    }  # fmt: skip
    return pa.schema([(c, types[c]) for c in check_columns(columns)])


def piece_to_arrow(piece: Piece, schema: Any) -> Any:
    pa = _pyarrow()
    arrays = []
    for field in schema:
        values = piece.columns[field.name]
        if field.name in MAP_COLUMNS:
            arrays.append(pa.array([list(m.items()) for m in values], type=field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def to_arrow(
    db: ReadAPI, flt: Filter | None = None, *, columns: Sequence[str] | None = None
) -> Any:
    """Every selected call as one ``pyarrow.Table`` (readable columns, oldest first)."""
    pa = _pyarrow()
    schema = arrow_schema(columns)

    def ask(view: ReadView) -> list[Any]:
        return [piece_to_arrow(p, schema) for p in pieces(view, flt, columns=columns)]

    tables = answer(db, ask)
    return pa.concat_tables(tables) if tables else schema.empty_table()


def to_pandas(
    db: ReadAPI, flt: Filter | None = None, *, columns: Sequence[str] | None = None
) -> Any:
    """:func:`to_arrow` as a ``pandas.DataFrame`` (attributes as lists of (key, value))."""
    return to_arrow(db, flt, columns=columns).to_pandas()


# ---- files --------------------------------------------------------------------------------------


def export(
    db: ReadAPI,
    out: str | Path | TextIO,
    *,
    format: str,  # noqa: A002 - the natural word for the option
    flt: Filter | None = None,
    columns: Sequence[str] | None = None,
    piece_rows: int = DEFAULT_PIECE_ROWS,
    progress: Callable[[int, int], object] | None = None,
) -> int:
    """Write the selected calls to ``out`` as Parquet, CSV or JSON lines; returns rows written.

    ``out`` is a path (``"-"``: standard output, CSV and JSON lines only) or an open text file.
    ``progress(done, total)`` is called after each piece (``total`` is an upper bound when a
    service or attribute filter narrows the rows).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
    cols = check_columns(columns)
    if format == "parquet" and (not isinstance(out, (str, Path)) or str(out) == "-"):
        raise ValueError("Parquet export needs a file path")
    with snapshot_of(db) as view:
        total = total_rows(view, flt)
        stream = pieces(view, flt, columns=cols, piece_rows=piece_rows)
        return _write(stream, out, format, cols, total, progress)


def _write(
    stream: Iterator[Piece],
    out: str | Path | TextIO,
    format: str,  # noqa: A002 - as in export()
    cols: tuple[str, ...],
    total: int,
    progress: Callable[[int, int], object] | None,
) -> int:
    done = 0
    if format == "parquet":
        assert isinstance(out, (str, Path))
        import pyarrow.parquet as pq

        schema = arrow_schema(cols)
        with pq.ParquetWriter(str(out), schema, compression="zstd") as writer:
            for piece in stream:
                writer.write_table(piece_to_arrow(piece, schema))
                done += len(piece)
                if progress is not None:
                    progress(done, total)
        return done
    opened = out if not isinstance(out, (str, Path)) else (
        sys.stdout if str(out) == "-" else open(out, "w", encoding="utf-8", newline="")  # noqa: SIM115
    )  # fmt: skip
    try:
        write_rows = _write_csv(opened, cols) if format == "csv" else _write_jsonl(opened)
        for piece in stream:
            write_rows(piece)
            done += len(piece)
            if progress is not None:
                progress(done, total)
        opened.flush()
    finally:
        if opened is not out and opened is not sys.stdout:
            opened.close()
    return done


def _iso(starts: np.ndarray) -> list[str]:
    seconds, nanos = np.divmod(starts, 1_000_000_000)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return [
        f"{(epoch + dt.timedelta(seconds=int(s))).strftime('%Y-%m-%dT%H:%M:%S')}.{int(n):09d}Z"
        for s, n in zip(seconds.tolist(), nanos.tolist(), strict=True)
    ]


def _write_csv(out: TextIO, cols: tuple[str, ...]) -> Callable[[Piece], None]:
    writer = csv.writer(out)
    writer.writerow(cols)

    def write(piece: Piece) -> None:
        values = []
        for c in cols:
            v = piece.columns[c]
            if c == "start":
                values.append(_iso(v))
            elif c in MAP_COLUMNS:
                values.append([json.dumps(m, separators=(",", ":"), ensure_ascii=False) for m in v])
            elif c == "parent_span_id":
                values.append(["" if p is None else p for p in v])
            else:
                values.append(v.tolist())
        writer.writerows(zip(*values, strict=True))

    return write


def _write_jsonl(out: TextIO) -> Callable[[Piece], None]:
    def write(piece: Piece) -> None:
        cols = list(piece.columns)
        values = [
            _iso(piece.columns[c]) if c == "start" else piece.columns[c].tolist() for c in cols
        ]
        for row in zip(*values, strict=True):
            out.write(json.dumps(dict(zip(cols, row, strict=True)), ensure_ascii=False))
            out.write("\n")

    return write
