"""The writer's tail origins, step by step and against a per-row model (hypothesis)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from kronicler.db.origins import LossCallback, TailOrigins


def _callbacks(n: int) -> list[LossCallback]:
    return [lambda rows: None for _ in range(n)]


def test_a_loss_takes_the_newest_rows_and_names_their_sources() -> None:
    a, b = _callbacks(2)
    tail = TailOrigins()
    tail.add(a, 5)
    tail.add(b, 3)
    tail.add(a, 2)
    tail.keep_newest(7)  # 3 of a's first rows were sealed
    assert tail.rows == 7
    assert list(tail.take_newest(4)) == [(a, 2), (b, 2)]
    assert list(tail.take_newest(10)) == [(b, 1), (a, 2)]
    assert tail.rows == 0


# Steps: ("add", source, rows) | ("seal", _, rows sealed from the front) | ("lose", _, rows);
# source 3 is a producer without a callback.
_steps = st.lists(
    st.tuples(st.sampled_from(["add", "seal", "lose"]), st.integers(0, 3), st.integers(0, 80)),
    max_size=40,
)


@given(_steps)
def test_origins_match_a_row_by_row_model(steps: list[tuple[str, int, int]]) -> None:
    sources: list[LossCallback | None] = [*_callbacks(3), None]
    tail = TailOrigins()
    model: list[LossCallback | None] = []  # one entry per row, oldest first
    for what, source, rows in steps:
        if what == "add":
            tail.add(sources[source], rows)
            model.extend([sources[source]] * rows)
        elif what == "seal":
            keep = max(0, len(model) - rows)
            tail.keep_newest(keep)
            model = model[len(model) - keep :]
        else:
            n = min(rows, len(model))
            got: Counter[int] = Counter()
            for origin, count in tail.take_newest(rows):
                got[sources.index(origin)] += count
            want = Counter(sources.index(s) for s in model[len(model) - n :])
            model = model[: len(model) - n]
            assert got == want
        assert tail.rows == len(model)
