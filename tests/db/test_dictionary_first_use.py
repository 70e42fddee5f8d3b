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
