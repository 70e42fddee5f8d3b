"""Span and trace ids for the fast pipeline: a counter now, random-looking ids later.

The OpenTelemetry SDK draws fresh random bits for every span (``random.getrandbits``, ~35 ns a
call, three calls for a root span). The fast pipeline instead takes one number from a per-process
counter (``seq``, ~20 ns) and derives the ids from it with a keyed 64-bit bijection (the
SplitMix64 finaliser): ``span_id = mix(seq ^ K_span)``, ``trace_id = mix(root ^ K_hi) << 64 |
mix(root ^ K_lo)`` where ``root`` is the ``seq`` of the trace's first span. Because the mix is a
bijection, span ids are unique within a process; the keys are random per process, so ids look
random and collide across processes no more than random ids do.

The trade-off: the ids exist only as arithmetic until someone asks. The decorator stores
``seq``s, and the background thread turns a whole batch into ids with a few vectorised numpy
operations; a span whose context is actually observed (propagation, children, logging) computes
its ids in Python on demand. Both paths use the same function, so they always agree.

After ``fork`` the child keeps the keys (spans it inherited mid-call must keep their ids) and
restarts the counter at a fresh random point, so parent and child do not reuse ``seq``s.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import numpy as np

from kronicler.db.idmix import mix64

_M64 = (1 << 64) - 1
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB


def _random64() -> int:
    return int.from_bytes(os.urandom(8), "little")


K_SPAN = _random64()
K_HI = _random64()
K_LO = _random64()


def first_seq() -> int:
    """A random starting point for a ``seq`` source, in [1, 2**62)."""
    return 1 + (_random64() >> 2)


def new_counter() -> Iterator[int]:
    """A fresh ``seq`` source starting at a random point in [1, 2**62)."""
    return itertools.count(first_seq())


def mix(x: int) -> int:
    """SplitMix64 finaliser: a bijection on 64-bit integers with full avalanche."""
    x ^= x >> 30
    x = (x * _C1) & _M64
    x ^= x >> 27
    x = (x * _C2) & _M64
    return x ^ (x >> 31)


def span_id(seq: int) -> int:
    """The 64-bit span id of the span numbered ``seq`` (never 0)."""
    return mix((seq & _M64) ^ K_SPAN) or 1


def trace_id(root: int) -> int:
    """The 128-bit trace id of the trace whose first span is numbered ``root`` (never 0)."""
    r = root & _M64
    return (mix(r ^ K_HI) << 64 | mix(r ^ K_LO)) or 1


def mix_array(x: np.ndarray) -> np.ndarray:
    """:func:`mix` over a uint64 array (wrapping arithmetic, no Python loop).

    The storage inverts it to store counter ids compactly (``kronicler.db.codec.encode_ids``, :mod:`kronicler.db.idmix`), so
    both sides use the one implementation."""
    return mix64(x)


def span_ids(seqs: np.ndarray) -> np.ndarray:
    """Span ids for a uint64 array of ``seq``s; entries equal to 0 (no span) stay 0."""
    ids = mix_array(seqs ^ np.uint64(K_SPAN))
    ids[ids == 0] = 1
    ids[seqs == 0] = 0
    return ids


def trace_halves(roots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """High and low uint64 halves of the trace ids for a uint64 array of root ``seq``s."""
    hi = mix_array(roots ^ np.uint64(K_HI))
    lo = mix_array(roots ^ np.uint64(K_LO))
    lo[(hi == 0) & (lo == 0)] = 1
    return hi, lo
