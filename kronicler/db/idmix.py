"""The id mix: a keyless, invertible scramble of 64-bit integers, shared by capture and storage.

Kronicler's own span and trace ids are ``mix64(counter ^ key)`` (see :mod:`kronicler.otel.ids`):
they look random, as OTel ids must, yet the storage can undo the mix (:func:`unmix64`) and keep
only the few low bits in which neighbouring counters differ (``kronicler.db.codec``, the SEQ
form). It lives apart from the codecs so that ``import kronicler`` (the capture side) needs
numpy only, not the page codecs and zstd.
"""

from __future__ import annotations

from typing import Final

import numpy as np

_C1: Final = 0xBF58476D1CE4E5B9
_C2: Final = 0x94D049BB133111EB
_C1_INV: Final = pow(_C1, -1, 1 << 64)
_C2_INV: Final = pow(_C2, -1, 1 << 64)


def mix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser over a uint64 array: a keyless bijection with full avalanche
    (wrapping arithmetic, no Python loop). Kronicler's own ids are ``mix64(counter ^ key)``."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(_C1)
    x ^= x >> np.uint64(27)
    x *= np.uint64(_C2)
    x ^= x >> np.uint64(31)
    return x


def unmix64(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`mix64`: each xor-shift undone by xoring in the shifts by one and two
    times its amount, each product by the inverse of its odd constant modulo 2**64. In place
    on one copy with two scratch arrays (half the time of the same steps with temporaries)."""
    x = x.astype(np.uint64, copy=True)
    t, u = np.empty_like(x), np.empty_like(x)
    for shift, inverse in ((31, _C2_INV), (27, _C1_INV), (30, None)):
        np.right_shift(x, np.uint64(shift), out=t)
        np.right_shift(x, np.uint64(2 * shift), out=u)
        t ^= u
        x ^= t
        if inverse is not None:
            x *= np.uint64(inverse)
    return x
