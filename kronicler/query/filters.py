"""Which calls a query looks at: function names or globs, a service, a time range, attributes
and resource attributes.

A :class:`Filter` is a plain value. Two roads read the rows it selects:

- the *summary road*: when only functions and a time range are filtered, the database's merged
  per-function summaries answer without decoding durations (fast, <= 1% quantile error);
- the *scan road*: a service or attribute filter, another grouping, or exact mode need the rows
  themselves, so :func:`select` decodes the needed columns and narrows them with numpy masks.
  Attribute sets are dictionary-coded, so an attribute filter is tested once per distinct set and
  applied to all rows through a lookup table.

Attribute equality compares text: a string value as itself, anything else in JSON form
(``True -> "true"``, ``3 -> "3"``), so ``{"http.status_code": "500"}`` matches the integer 500.
Resource attributes (``service.version``, ``host.name``...) filter the same way; wherever a
condition is given as ``KEY=VALUE`` text, ``resource:KEY`` names a resource attribute
(:func:`split_conditions`), as ``resource:KEY`` names one in a group-by.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import numpy as np

from kronicler import budget
from kronicler.db.attr_keys import value_text as attribute_text
from kronicler.db.scan import Scan
from kronicler.db.schema import parse_attributes
from kronicler.db.view import answer
from kronicler.errors import LimitExceededError, NotFoundError, shorten
from kronicler.query.limits import (
    MAX_ATTRIBUTE_FILTERS,
    MAX_FILTER_TEXT,
    MAX_PATTERN_CHARS,
    MAX_PATTERNS,
    MAX_SCAN_ROWS,
)

if TYPE_CHECKING:
    from kronicler.db.view import ReadAPI, ReadView

_GLOB_CHARS = re.compile(r"[*?\[]")
#: A condition or group key starting with this names a resource attribute.
RESOURCE_PREFIX = "resource:"
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True, slots=True)
class Filter:
    """Selects calls. Every field is optional; the empty filter selects everything.

    Fields:
        functions: function names or glob patterns (``*``, ``?``, ``[abc]``); empty = all.
            A plain name that is not in the database is an error (``NotFoundError``); a glob
            that matches nothing selects nothing.
        service: only calls of this service (exact name).
        since, until: Unix epoch ns; a call matches when ``since <= start < until``.
        attributes: ``(key, value)`` pairs that must all be equal (text comparison).
        resource: ``(key, value)`` pairs the call's resource attributes must all equal.
    """

    functions: tuple[str, ...] = ()
    service: str | None = None
    since: int | None = None
    until: int | None = None
    attributes: tuple[tuple[str, str], ...] = field(default=())
    resource: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def make(
        cls,
        functions: Iterable[str] | str | None = None,
        *,
        service: str | None = None,
        since: int | None = None,
        until: int | None = None,
        attributes: Mapping[str, Any] | None = None,
        resource: Mapping[str, Any] | None = None,
    ) -> Filter:
        """Build and check a filter from friendlier arguments (raises ``ValueError``).

        An ``attributes`` key ``resource:KEY`` is a condition on resource attribute ``KEY``.
        """
        if isinstance(functions, str):
            functions = (functions,)
        attrs, res = split_conditions((attributes or {}).items())
        res += tuple((str(k), attribute_text(v)) for k, v in (resource or {}).items())
        f = cls(tuple(functions or ()), service or None, since, until, attrs, tuple(sorted(res)))
        f.check()
        return f

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad value (see :mod:`kronicler.query.limits`)."""
        if len(self.functions) > MAX_PATTERNS:
            raise ValueError(
                f"at most {MAX_PATTERNS} function names or patterns per filter, "
                f"got {len(self.functions)}"
            )
        for pattern in self.functions:
            check_glob(pattern)
        for bound in ("since", "until"):
            value = getattr(self, bound)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"{bound} must be integer Unix epoch nanoseconds, got {value!r}")
            if value is not None and not _INT64[0] <= value <= _INT64[1]:
                raise ValueError(f"{bound} must fit in 64 bits (signed), got {value}")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"since ({self.since}) must be before until ({self.until})")
        if self.service is not None:
            _check_text("service", self.service)
        conditions = len(self.attributes) + len(self.resource)
        if conditions > MAX_ATTRIBUTE_FILTERS:
            raise ValueError(
                f"at most {MAX_ATTRIBUTE_FILTERS} attribute conditions per filter, got {conditions}"
            )
        for what, pairs in (("attribute", self.attributes), ("resource attribute", self.resource)):
            for key, value in pairs:
                if not key:
                    raise ValueError(f"{what} filter keys must not be empty")
                _check_text(f"{what} key", key)
                _check_text(f"value of {what} {shorten(key, 40)}", value)

    @property
    def needs_scan(self) -> bool:
        """True when the summary road cannot answer (a service, attribute or resource filter)."""
        return self.service is not None or bool(self.attributes) or bool(self.resource)

    def with_range(self, since: int | None, until: int | None) -> Filter:
        return replace(self, since=since, until=until)

    def with_functions(self, functions: Iterable[str]) -> Filter:
        return replace(self, functions=tuple(functions))


def split_conditions(
    pairs: Iterable[tuple[Any, Any]],
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """``(key, value)`` conditions -> (attribute conditions, resource conditions), sorted.

    A key ``resource:KEY`` is a condition on resource attribute ``KEY``; values become the text
    they compare as (:func:`attribute_text`).
    """
    attrs: list[tuple[str, str]] = []
    res: list[tuple[str, str]] = []
    for key, value in pairs:
        key = str(key)
        if key.startswith(RESOURCE_PREFIX):
            res.append((key[len(RESOURCE_PREFIX) :], attribute_text(value)))
        else:
            attrs.append((key, attribute_text(value)))
    return tuple(sorted(attrs)), tuple(sorted(res))


def _check_text(what: str, text: Any) -> None:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be text, got {shorten(text)}")
    if len(text) > MAX_FILTER_TEXT:
        raise ValueError(
            f"{what} is {len(text)} characters, more than the limit of {MAX_FILTER_TEXT}: "
            f"{shorten(text)}"
        )


def check_glob(pattern: str) -> None:
    """Raise ``ValueError`` for an empty, over-long or unclosed-``[`` pattern."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"function name or pattern must be non-empty text, got {shorten(pattern)}")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(
            f"function name or pattern is {len(pattern)} characters, more than the limit of "
            f"{MAX_PATTERN_CHARS}: {shorten(pattern)}"
        )
    depth_open = pattern.rfind("[")
    if depth_open != -1 and "]" not in pattern[depth_open + 2 :]:
        raise ValueError(f"bad glob pattern {shorten(pattern)}: '[' is never closed")


def is_glob(pattern: str) -> bool:
    return _GLOB_CHARS.search(pattern) is not None


def resolve_functions(db: ReadAPI, patterns: Sequence[str]) -> list[str] | None:
    """Names matching any of ``patterns`` (sorted), or ``None`` for "all" when there are none.

    Raises ``NotFoundError`` for a plain name the database has never seen.
    """
    if not patterns:
        return None
    known = db.functions()
    known_set = set(known)
    chosen: set[str] = set()
    for pattern in patterns:
        check_glob(pattern)
        if is_glob(pattern):
            budget.check()
            chosen.update(n for n in known if fnmatchcase(n, pattern))
        elif pattern in known_set:
            chosen.add(pattern)
        else:
            raise NotFoundError(f"unknown function {shorten(pattern)}")
    return sorted(chosen)


def select(db: ReadAPI, flt: Filter, columns: Iterable[str]) -> Scan:
    """Decode ``columns`` for the calls ``flt`` selects (plus whatever the masks need).

    The answer is a :class:`~kronicler.db.scan.Scan` holding only the selected rows: a filter
    narrows decoded rows, it does not make a different kind of thing.

    Names, row count and rows are read from one snapshot of ``db`` (``db`` itself if a view).
    """
    wanted = set(columns) | {"duration"}
    return answer(db, lambda view: _select(view, flt, wanted))


def _select(db: ReadView, flt: Filter, wanted: set[str]) -> Scan:
    names = resolve_functions(db, flt.functions)
    if flt.service is not None:
        wanted.add("service")
    if flt.attributes:
        wanted.add("attributes")
    if flt.resource:
        wanted.add("resource")
    if names is not None and not names:
        return Scan({c: np.empty(0, _dtype(c)) for c in wanted}, [], [], [], [])
    check_scan_rows(db, names, flt.since, flt.until)
    scan = db.scan(sorted(wanted), names=names, since=flt.since, until=flt.until)
    cols = dict(scan.columns)
    mask: np.ndarray | None = None
    if flt.service is not None:
        code = scan.services.index(flt.service) if flt.service in scan.services else -1
        mask = cols["service"] == code
    if flt.attributes:
        lut = attribute_lut(scan.attributes, flt.attributes)
        amask = lut[cols["attributes"]]
        mask = amask if mask is None else mask & amask
    if flt.resource:
        rmask = attribute_lut(scan.resources, flt.resource)[cols["resource"]]
        mask = rmask if mask is None else mask & rmask
    if mask is not None:
        cols = {k: v[mask] for k, v in cols.items()}
    return replace(scan, columns=cols)


def check_scan_rows(
    db: ReadAPI, names: Sequence[str] | None, since: int | None, until: int | None
) -> None:
    """Refuse (before decoding anything) a scan over more than :data:`MAX_SCAN_ROWS` rows.

    The merged summaries count the rows of the functions and time range exactly and cheaply; a
    service, attribute or resource filter only narrows the decoded rows afterwards, so it is not counted.
    """
    rows = sum(s.summary.count for s in db.summaries(names, since=since, until=until).values())
    if rows > MAX_SCAN_ROWS:
        raise LimitExceededError(
            f"the query would read {rows} rows, more than the limit of {MAX_SCAN_ROWS}; "
            "narrow the time range or the functions, or drop exact mode"
        )


def attribute_lut(texts: Sequence[str], wanted: Sequence[tuple[str, str]]) -> np.ndarray:
    """Boolean per attribute-set code: does the set hold every wanted ``(key, value)``?"""
    lut = np.zeros(len(texts), dtype=bool)
    for code, text in enumerate(texts):
        if code % 4096 == 0:
            budget.check()
        attrs = parse_attributes(text)
        lut[code] = all(k in attrs and attribute_text(attrs[k]) == v for k, v in wanted)
    return lut


def attribute_values(texts: Sequence[str], key: str) -> tuple[np.ndarray, list[str]]:
    """Attribute-set code -> code of ``key``'s value (-1 if absent), and the value texts."""
    values: dict[str, int] = {}
    lut = np.full(len(texts), -1, dtype=np.int64)
    for code, text in enumerate(texts):
        if code % 4096 == 0:
            budget.check()
        attrs = parse_attributes(text)
        if key in attrs:
            lut[code] = values.setdefault(attribute_text(attrs[key]), len(values))
    return lut, list(values)


def _dtype(column: str) -> np.dtype[Any]:
    from kronicler.db.schema import COLUMNS

    return COLUMNS[column]
