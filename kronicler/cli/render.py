"""Text tables for people and JSON for tools, from the query layer's result types.

Tables right-align numbers and show durations in human units; JSON keeps raw nanoseconds
and uses the result types' ``to_dict`` so the shapes match the Python and gRPC APIs.

Tables fit the terminal's width: the least useful columns (standard deviation and error, span
ids) go first, then long names are cut with an ellipsis; numbers are always shown whole.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from kronicler.cli.units import ellipsis, format_ns, format_time
from kronicler.query import (
    Anomaly,
    Call,
    FunctionInfo,
    Histogram,
    SeriesTable,
    StatsTable,
    quantile_label,
)


def terminal_width() -> int | None:
    """Columns of the terminal the tables go to; None (no limit) when output is not a terminal.

    ``COLUMNS`` overrides, as for other command-line tools. Piped output is not cut, so that
    ``grep`` and files see whole names.
    """
    if os.environ.get("COLUMNS", "").strip().isdigit():
        return max(20, int(os.environ["COLUMNS"]))
    try:
        if not sys.stdout.isatty():
            return None
    except (AttributeError, ValueError):  # replaced or closed stdout
        return None
    return max(20, shutil.get_terminal_size().columns)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, *,
          width: int | None = None, optional: Sequence[int] = ()) -> str:  # fmt: skip
    """Columns padded to fit; the first ``left`` columns left-aligned, the rest right-aligned.

    When the table is wider than ``width`` (default: :func:`terminal_width`), the columns in
    ``optional`` are left out, in that order, until it fits; then the left-aligned text columns
    (names) are cut with an ellipsis, down to :data:`MIN_TEXT` characters. Numbers are never
    cut: a table of numbers alone wider than the terminal stays wider.
    """
    width = terminal_width() if width is None else width
    keep = list(range(len(headers)))
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def total() -> int:
        return sum(widths[i] for i in keep) + 2 * (len(keep) - 1)

    if width is not None:
        for col in optional:
            if total() <= width:
                break
            if col in keep and col >= left:
                keep.remove(col)
        for col in range(left):
            over = total() - width
            if over > 0:
                widths[col] = max(len(headers[col]), MIN_TEXT, widths[col] - over)
    dots = ellipsis()

    def cell(text: str, col: int) -> str:
        w = widths[col]
        if len(text) > w:
            text = text[: max(0, w - len(dots))] + dots
        return text.ljust(w) if col < left else text.rjust(w)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell(cells[i], i) for i in keep).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


MIN_TEXT = 16  # characters a cut name keeps (with its ellipsis)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def stats_table(t: StatsTable) -> str:
    if not t.rows:
        return "no calls match"
    qs = [quantile_label(q) for q in t.quantiles]
    headers = [t.key_name, "calls", "errors", "mean", "stddev", "stderr", "min", *qs, "max"]
    optional = [5, 4, 6]  # stderr, stddev, min: the first to go on a narrow terminal
    rows = [
        [
            r.key,
            f"{r.count:,}",
            f"{r.errors:,}",
            format_ns(r.mean),
            format_ns(r.stddev),
            format_ns(r.stderr),
            format_ns(r.min),
            *(format_ns(v) for _, v in r.quantiles),
            format_ns(r.max),
        ]
        for r in t.rows
    ]
    return table(headers, rows, optional=optional)


def stats_json(t: StatsTable) -> str:
    return dumps([r.to_dict(t.key_name) for r in t.rows])


def functions_table(fs: Sequence[FunctionInfo]) -> str:
    if not fs:
        return "no functions recorded"
    rows = [
        [
            f.name,
            f"{f.count:,}",
            f"{f.errors:,}",
            format_time(f.first_start),
            format_time(f.last_start),
        ]
        for f in fs
    ]
    return table(["function", "calls", "errors", "first call", "last call"], rows)


def slowest_table(calls: Sequence[Call]) -> str:
    if not calls:
        return "no calls match"
    rows = [
        [
            c.function,
            format_ns(c.duration),
            format_time(c.start),
            "error" if c.status == 2 else "ok",
            c.trace_id_hex,
            c.span_id_hex,
        ]
        for c in calls
    ]
    headers = ["function", "duration", "started", "status", "trace id", "span id"]
    return table(headers, rows, optional=[5])


def series_table(t: SeriesTable) -> str:
    if not t.series:
        return "no calls match"
    qs = [quantile_label(q) for q in t.quantiles]
    out = []
    for s in t.series:
        rows = [
            [
                format_time(p.start),
                f"{p.count:,}",
                f"{p.errors:,}",
                format_ns(p.mean),
                *(format_ns(v) for _, v in p.quantiles),
                format_ns(p.max),
            ]
            for p in s.points
        ]
        out.append(
            f"{s.key}  (step {format_ns(t.step)})\n"
            + table(["bucket start", "calls", "errors", "mean", *qs, "max"], rows)
        )
    return "\n\n".join(out)


def histogram_table(h: Histogram) -> str:
    if not h.buckets:
        return f"{h.function}: no calls match"
    top = max(b.count for b in h.buckets)
    rows = [
        [
            f"{format_ns(b.lower)} - {format_ns(b.upper)}",
            f"{b.count:,}",
            "#" * max(1, round(40 * b.count / top)),
        ]
        for b in h.buckets
    ]
    return f"{h.function}  ({h.count:,} calls)\n" + table(["duration", "calls", ""], rows)


def anomalies_text(found: Sequence[Anomaly]) -> str:
    if not found:
        return "no anomalies: every function's slow calls are within the thresholds"
    blocks = []
    for i, a in enumerate(found, 1):
        lines = [
            f"{i}. {a.function}  score {a.score:.2f}  ({a.count:,} calls, {a.errors:,} errors)",
            f"   p50 {format_ns(a.p50)}  p99 {format_ns(a.p99)}  max {format_ns(a.max)}",
        ]
        lines += [f"   - {r}" for r in a.reasons]
        for c in a.exemplars:
            lines.append(
                f"   slow call: {format_ns(c.duration)} at {format_time(c.start)} "
                f"trace {c.trace_id_hex} span {c.span_id_hex}"
            )
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
