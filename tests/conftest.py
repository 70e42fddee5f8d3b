"""Fixtures shared across the test packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kronicler.db.reads import SegmentSet


@pytest.fixture
def refreshes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts ``SegmentSet.refresh`` calls (the real method runs): one per question is the rule."""
    count = [0]
    real = SegmentSet.refresh

    def counted(self: SegmentSet) -> list:
        count[0] += 1
        return real(self)

    monkeypatch.setattr(SegmentSet, "refresh", counted)
    yield count
