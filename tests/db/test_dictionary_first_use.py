"""Codes of new texts follow their first use in a batch, wherever in the batch that is.

``Dictionary.encode_indexed`` looks for first uses in a growing prefix of the batch; a text
first used past every prefix tried must still get its code in order.
"""

from __future__ import annotations

import numpy as np

from kronicler.db.dictionary import Dictionary


def test_new_texts_are_numbered_by_first_use_even_far_into_a_big_batch():
    rng = np.random.default_rng(1)
    table = [f"site{i}" for i in range(6)]
    n = 300_000
    index = rng.integers(0, 3, n)  # sites 0-2 from the start
    index[5_000] = 4  # past the first prefix (4,096 rows)
    index[40_000] = 3  # past the second (32,768)
    index[299_999] = 5  # the last row
    index[:3] = [2, 0, 1]
    d = Dictionary()
    codes = d.encode_indexed(table, index)
    assert d.values == ["site2", "site0", "site1", "site4", "site3", "site5"]
    assert [d.values[c] for c in codes[[0, 1, 2, 5_000, 40_000, 299_999]]] == [
        "site2", "site0", "site1", "site4", "site3", "site5"
    ]  # fmt: skip
    assert np.array_equal(np.array(d.values)[codes], np.array(table)[index])


def _state(d: Dictionary) -> tuple[list[str], dict[str, int], set[int]]:
    return d.values, d.codes, d.missing


def test_defining_all_texts_at_once_equals_defining_them_one_by_one():
    """A segment index's texts go into a fresh dictionary in one step: the same entries,
    repeated texts included, as a ``define`` per code; into one that holds entries already
    (read from a walk), the same as those ``define`` calls too."""
    texts = ["a", "b", "a", "", "c", "b"]
    for before in ([], [(0, "z"), (4, "y")]):
        one, each = Dictionary(), Dictionary()
        for d in (one, each):
            for code, text in before:
                d.define(code, text)
        one.define_all(texts)
        for code, text in enumerate(texts):
            each.define(code, text)
        assert _state(one) == _state(each)
        assert one.codes["a"] == (2 if not before else 0) and one.values == texts
