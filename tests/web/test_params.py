"""How request parameters become a time window, a chart step and an address."""

from __future__ import annotations

import pytest

from kronicler.web.params import (
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    aligned_start,
    chart_step,
    parse_attributes,
    resolve_window,
)
from kronicler.web.server import parse_address

NOW = 1_800_000_000 * SECOND
DATA = (NOW - 3 * DAY, NOW - HOUR)


def test_no_parameters_mean_the_last_hour() -> None:
    w = resolve_window(None, None, None, now=NOW, data_range=DATA)
    assert (w.preset, w.since, w.until, w.start, w.end) == ("1h", NOW - HOUR, NOW, NOW - HOUR, NOW)
    assert w.seconds == 3600


@pytest.mark.parametrize(("preset", "width"), [("15m", 15 * MINUTE), ("24h", DAY), ("7d", 7 * DAY)])
def test_presets_end_now(preset: str, width: int) -> None:
    w = resolve_window(preset, None, None, now=NOW, data_range=DATA)
    assert (w.since, w.until) == (NOW - width, NOW)


def test_all_stays_open_for_the_query_but_has_effective_bounds_from_the_data() -> None:
    w = resolve_window("all", None, None, now=NOW, data_range=DATA)
    assert (w.since, w.until) == (None, None)
    assert (w.start, w.end) == (DATA[0], DATA[1] + 1)
    empty = resolve_window("all", None, None, now=NOW, data_range=None)
    assert empty.seconds is None


def test_explicit_range_and_open_ends() -> None:
    w = resolve_window(None, NOW - DAY, NOW - HOUR, now=NOW, data_range=DATA)
    assert (w.preset, w.since, w.until, w.seconds) == (None, NOW - DAY, NOW - HOUR, 23 * 3600)
    since_only = resolve_window(None, NOW - DAY, None, now=NOW, data_range=DATA)
    assert (since_only.until, since_only.end) == (None, NOW)
    until_only = resolve_window(None, None, NOW - DAY, now=NOW, data_range=DATA)
    assert (until_only.since, until_only.start) == (None, DATA[0])


@pytest.mark.parametrize(
    ("preset", "since", "until", "message"),
    [
        ("2h", None, None, "unknown range '2h'"),
        ("1h", 5, None, "not both"),
        (None, 10, 5, "since (10) must be before until (5)"),
        (None, 5, 5, "must be before"),
        (None, -1, None, "since must not be negative"),
    ],
)
def test_bad_ranges_name_the_problem(preset: str | None, since: int | None, until: int | None,
                                     message: str) -> None:  # fmt: skip
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_window(preset, since, until, now=NOW, data_range=DATA)


def test_chart_steps_are_round_and_give_at_most_120_buckets() -> None:
    assert chart_step(0, HOUR) == 30 * SECOND
    assert chart_step(0, 15 * MINUTE) == 10 * SECOND
    assert chart_step(0, DAY) == 15 * MINUTE
    assert chart_step(0, 7 * DAY) == 2 * HOUR
    assert chart_step(0, 1000) == SECOND // 1000
    huge = 10_000 * DAY
    assert huge / chart_step(0, huge) <= 120
    start = aligned_start(NOW + 7 * SECOND, 30 * SECOND)
    assert start % (30 * SECOND) == 0 and 0 <= NOW + 7 * SECOND - start < 30 * SECOND
    assert aligned_start(95, 30) == 90


def test_attribute_pairs() -> None:
    assert parse_attributes(["a=1", "http.route=/x=y"]) == {"a": "1", "http.route": "/x=y"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_attributes(["novalue"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":9000", ("127.0.0.1", 9000)),
        ("localhost", ("localhost", 8080)),
        ("[::1]:8081", ("::1", 8081)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "host:port", "::1:80", "h:70000", "[::1"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)
