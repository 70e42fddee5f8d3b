"""From HTTP query parameters to query-layer arguments: time windows, chart steps, thresholds.

Kept free of any web framework so that the rules a URL follows can be tested (and reused) on
their own. A request names its time range either with a *preset* (``15m``, ``1h``, ``24h``,
``7d``: the span of time ending *now*; ``all``: everything stored) or with explicit ``since`` /
``until`` Unix epoch nanoseconds; giving both forms is an error rather than a silent choice.

A :class:`Window` keeps two pairs of bounds on purpose. ``since``/``until`` go to the query layer
exactly as asked (``None`` = open, so ``all`` keeps the database's fast whole-range road).
``start``/``end`` are the effective bounds (open ends filled in from the data), which is what
rates (calls/s) and chart axes need. Trade-off: ``calls/s`` over a preset counts the whole window,
so a process that started ten minutes ago shows a lower rate over ``1h`` than over ``15m``; that
is the honest reading of "calls per second over this range".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kronicler.errors import shorten
from kronicler.query.anomalies import (
    DEFAULT_MIN_COUNT,
    DEFAULT_REGRESSION_THRESHOLD,
    DEFAULT_SPIKE_THRESHOLD,
    DEFAULT_TAIL_THRESHOLD,
)
from kronicler.query.filters import RESOURCE_PREFIX
from kronicler.query.grouping import parse_group_by
from kronicler.query.series import pick_step

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

#: Preset name -> width in ns (``None``: all data).
PRESETS: dict[str, int | None] = {
    "15m": 15 * MINUTE,
    "1h": HOUR,
    "24h": DAY,
    "7d": 7 * DAY,
    "all": None,
}
DEFAULT_PRESET = "1h"

#: Slowest calls the dashboard lists: a page, longer than ``query.defaults.SLOWEST_K``.
SLOWEST_SHOWN = 20

#: Buckets a chart aims for (the step is the smallest round one giving at most this many).
TARGET_POINTS = 120

#: Anomaly thresholds the dashboard uses by default: the query layer's defaults.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "tail": DEFAULT_TAIL_THRESHOLD,
    "spike": DEFAULT_SPIKE_THRESHOLD,
    "regression": DEFAULT_REGRESSION_THRESHOLD,
}

#: Functions with fewer calls in the window are not judged by the anomaly finder.
MIN_COUNT = DEFAULT_MIN_COUNT

#: Most slowest calls one request may ask for.
MAX_SLOWEST = 1000

#: Values the compare view lists (the most called first); more are counted, not listed.
COMPARE_SHOWN = 50


@dataclass(frozen=True, slots=True)
class Window:
    """The time range of one request.

    Fields:
        preset: the preset's name, or ``None`` for an explicit range.
        since, until: bounds handed to the query layer (Unix epoch ns; ``None`` = open).
        start, end: effective bounds, ``start <= call start < end``; open ends are filled from
            the stored data (``None`` only when both are open and the database is empty).
        now: the server's clock when the request was resolved.
    """

    preset: str | None
    since: int | None
    until: int | None
    start: int | None
    end: int | None
    now: int

    @property
    def seconds(self) -> float | None:
        """Width in seconds, or ``None`` when unknown (empty database)."""
        if self.start is None or self.end is None:
            return None
        return max(self.end - self.start, 1) / SECOND

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "since_unix_nano": self.start,
            "until_unix_nano": self.end,
            "seconds": self.seconds,
            "now_unix_nano": self.now,
        }


def resolve_window(
    preset: str | None,
    since: int | None,
    until: int | None,
    *,
    now: int,
    data_range: tuple[int, int] | None,
) -> Window:
    """Check the time parameters of a request and resolve them (``ValueError`` when bad).

    With no parameter at all the :data:`DEFAULT_PRESET` applies. ``data_range`` is the database's
    ``(first start, last start)`` or ``None`` when it is empty.
    """
    if preset is not None and (since is not None or until is not None):
        raise ValueError("give either range or since/until, not both")
    for label, value in (("since", since), ("until", until)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{label} must be integer Unix epoch nanoseconds, got {value!r}")
        if value is not None and value < 0:
            raise ValueError(f"{label} must not be negative, got {value}")
        if value is not None and value >= 2**63:
            raise ValueError(f"{label} must fit in 64-bit Unix epoch nanoseconds, got {value}")
    if since is not None and until is not None and since >= until:
        raise ValueError(f"since ({since}) must be before until ({until})")
    if since is None and until is None:
        preset = DEFAULT_PRESET if preset is None else preset
        if preset not in PRESETS:
            raise ValueError(f"unknown range {preset!r}: use one of {', '.join(PRESETS)}")
        width = PRESETS[preset]
        if width is None:
            if data_range is None:
                return Window(preset, None, None, None, None, now)
            return Window(preset, None, None, data_range[0], data_range[1] + 1, now)
        return Window(preset, now - width, now, now - width, now, now)
    end = until if until is not None else _open_end(since, now, data_range)
    start = since if since is not None else _open_start(end, data_range)
    return Window(None, since, until, start, end, now)


def _open_end(since: int | None, now: int, data_range: tuple[int, int] | None) -> int:
    last = data_range[1] + 1 if data_range is not None else now
    return max(last, now, (since or 0) + 1)


def _open_start(end: int, data_range: tuple[int, int] | None) -> int:
    first = data_range[0] if data_range is not None else end - 1
    return min(first, end - 1)


def chart_step(start: int, end: int, *, target: int = TARGET_POINTS) -> int:
    """The smallest round step (ns) that splits ``[start, end)`` into at most ``target`` buckets."""
    return pick_step(end - start, target)


def aligned_start(start: int, step: int) -> int:
    """``start`` rounded down to a multiple of ``step``, so refreshed charts keep their buckets."""
    return start - start % step


def check_int(label: str, value: int, low: int, high: int) -> int:
    """``value`` when ``low <= value <= high``, else ``ValueError`` naming it."""
    if not low <= value <= high:
        raise ValueError(f"{label} must be between {low} and {high}, got {value}")
    return value


def check_threshold(label: str, value: float) -> float:
    if not value > 1.0:
        raise ValueError(f"{label} must be greater than 1, got {value}")
    return value


def parse_attributes(pairs: list[str] | None) -> dict[str, str]:
    """``["http.route=/pay", "code=500"]`` -> ``{"http.route": "/pay", "code": "500"}``."""
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key or key == RESOURCE_PREFIX:
            raise ValueError(
                f"attribute filter must be KEY=VALUE or resource:KEY=VALUE, got {shorten(pair)}"
            )
        out[key] = value
    return out


def parse_compare_by(by: str) -> str:
    """``?by=resource:service.version`` (or ``attribute:KEY``, ``service``), checked."""
    kind, _ = parse_group_by(by)
    if kind == "function":
        raise ValueError(
            f"compare by {shorten(by)}: use resource:KEY, attribute:KEY or service (the view "
            "shows one function)"
        )
    return by


def parse_slow(text: str | None) -> int | str | None:
    """``?slow=p99`` (a quantile label) or ``?slow=250000000`` (ns); absent: the default."""
    if text is None:
        return None
    return int(text) if text.strip().isdigit() else text
