"""Types of the optional C conversion loop (kronicler/otel/_fastrows.c)."""

from collections.abc import Sequence
from typing import Any

ROWS: int

def read_spans(
    spans: Sequence[Any],
    cls: type,
    entries: dict[str, Any],
    kinds: tuple[Any, ...],
    codes: tuple[Any, ...],
    out: Any,
    /,
) -> (
    tuple[
        list[str],
        list[str | None],
        list[tuple[int, dict[str, Any]]],
        list[Any],
        list[tuple[int, str]],
        list[int],
    ]
    | None
): ...
