"""Reading and writing times and durations the way people type and read them.

Input: durations like ``250us``, ``1.5ms``, ``10s``, ``5m``, ``2h``, ``1d`` (a bare number is
seconds); times as ``now``, a duration ago (``1h`` or ``-1h``: one hour before now), an ISO 8601
date-time (``2024-05-01T12:00:00``, local time unless it names a zone) or Unix epoch seconds with
a leading ``@`` (``@1714560000``). Output: durations in the unit that keeps 3-4 digits.

Error messages of the query layer speak nanoseconds (they serve the Python and gRPC APIs too);
:func:`in_typed_units` rewrites them for people: a figure the user typed is shown as typed
(``--step 1us``, not ``1000 ns``), any other duration in readable units, an epoch time as a date.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000}  # fmt: skip
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h|d)?\s*$")


def parse_duration(text: str) -> int:
    """``"1.5ms" -> 1_500_000`` ns; ``ValueError`` naming the text otherwise."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"bad duration {text!r}: use e.g. 500ms, 10s, 5m, 1h, 1d")
    return int(round(float(m.group(1)) * _UNITS[m.group(2) or "s"]))


def parse_time(text: str, *, now_ns: int | None = None) -> int:
    """A point in time as Unix epoch ns (see the module doc for the accepted forms)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    t = text.strip()
    if t == "now":
        return now_ns
    if t.startswith("@"):
        # Decimal, not float: a float holds epoch nanoseconds only to ~256 ns, so a bound
        # copied from a call's start time would let neighbouring calls in or out.
        try:
            seconds = Decimal(t[1:])
        except InvalidOperation:
            raise ValueError(f"bad time {text!r}: '@' needs Unix epoch seconds") from None
        if not seconds.is_finite():
            raise ValueError(f"bad time {text!r}: '@' needs Unix epoch seconds")
        return int((seconds * 1_000_000_000).to_integral_value())
    if _DURATION.match(t.lstrip("-")) and not t.lstrip("-").replace(".", "").isdigit():
        return now_ns - parse_duration(t.lstrip("-"))
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(
            f"bad time {text!r}: use now, 15m (ago), an ISO date-time or @epoch-seconds"
        ) from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time, as ``timestamp()`` reads it
    # Whole microseconds in integers (``timestamp()`` is a float, off by up to ~250 ns).
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1_000


def micro_unit() -> str:
    """``µs``, or ``us`` where standard output cannot encode ``µ`` (an ASCII or Latin-9 locale)."""
    return "µs" if _stdout_encodes("µ") else "us"


def ellipsis() -> str:
    """``…``, or ``...`` where standard output cannot encode it."""
    return "…" if _stdout_encodes("…") else "..."


def _stdout_encodes(text: str) -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def format_ns(value: float | int | None) -> str:
    """``1234567 -> "1.23 ms"``; ``None -> "-"``."""
    if value is None:
        return "-"
    v = float(value)
    for unit, size in (("s", 1e9), ("ms", 1e6), (micro_unit(), 1e3), ("ns", 1.0)):
        x = v / size
        if abs(x) >= 1 or unit == "ns":
            digits = 0 if abs(x) >= 100 or unit == "ns" else 1 if abs(x) >= 10 else 2
            return f"{x:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def format_time(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9).isoformat(sep=" ", timespec="milliseconds")


_NS_FIGURE = re.compile(r"(?<![\w.])(-?\d+) ns\b")
_EPOCH_NS = re.compile(r"(?<![\w.@])(\d{16,19})(?![\w.])")  # times after 2001, in ns


def in_typed_units(message: str, typed: Mapping[int, str]) -> str:
    """``message`` with its nanosecond figures as the user typed them, or else readable.

    ``typed`` maps each value the user gave (in ns) to the text they typed for it.
    ``"step 1000 ns over 587755630 ns"`` with ``{1000: "1us"}`` -> ``"step 1us over 588 ms"``.
    """

    def duration(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return typed.get(n) or format_ns(n)

    def moment(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return typed.get(n) or format_time(n)

    return _EPOCH_NS.sub(moment, _NS_FIGURE.sub(duration, message))
