"""Per-key attribute columns, written at seal: counting attribute values without their texts.

An attribute set is stored as one dictionary-coded JSON text per distinct set. That is compact
and cheap to write, but a question about one key (``db.shard``'s values among slow calls) must
parse every text a scan uses; with a near-unique key (a request id) every call has its own set,
and parsing a million texts per query costs seconds. So, when a chunk is sealed, the writer
splits the attribute sets the chunk defines into one column per key (:func:`decompose`) and
appends them to the segment's ``<id>.kkey`` file: per key, per set a value code into a small
per-record list of value texts. Each record names its chunk, so the text of one set can be
read from that chunk's dictionary page alone. A key whose values are *near-unique* in the
record (more distinct values than :data:`NEAR_UNIQUE` of the sets carrying it) gets no value
list: each set holds a 64-bit hash of its value instead (blake2b), so a query can group calls
by value and see whether one clusters without reading a single text; the text of a value that
matters is read from one set that carries it.

Trade-offs, measured on ``bench/bench_explain.py --calls 1000000 --unique-ids`` (one loaded
machine, side by side with the code before): writing costs one JSON parse and, for a hashed
key, one hash per *new* set at seal, on the writer thread (nothing when sets repeat): 7.7 s of
CPU instead of 7.1 s to write 200k calls with unique ids and their children. On disk a set
costs a byte per key with few values (up to 4), 8 for a hashed key: 12 bytes against the set
text's ~110. Counting by hash is exact unless two distinct values of one key share a 64-bit
hash (about 1 in 10^7 for a million distinct values); within a record a collision is found and
that key keeps its value list.

The file is a side file like the index: best-effort. A record is checked (length, CRC) when
read; reading stops at the first bad one, and sets that no good record covers (older segments,
the tail log, a damaged or lost record) are split from their texts at query time by the same
:func:`decompose`, so every answer is the same either way.
"""

from __future__ import annotations

import json
import logging
import operator
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from kronicler._record import record
from kronicler.db.fileio import SideFile

SUFFIX: Final = ".kkey"
#: A key is near-unique in a record when its distinct values exceed this share of the sets
#: carrying it, and at least this many sets carry it.
NEAR_UNIQUE: Final = 0.5
MIN_CARRIED: Final = 64

_MAGIC = b"KKY1"
_HEAD = struct.Struct("<4sII")  # magic, payload bytes, crc32 of the payload
_META = struct.Struct("<I")  # bytes of the record's JSON description, then the arrays
assert _HEAD.size == 12 and _META.size == 4

log = logging.getLogger(__name__)


def value_text(value: Any) -> str:
    """The text an attribute value is compared as: strings as themselves, others as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def hash_texts(texts: Sequence[str]) -> np.ndarray:
    """A stable 64-bit hash of each text (uint64, never 0: 0 marks "absent")."""
    import hashlib  # here: loading OpenSSL costs ~7M instructions a question may not need

    out = np.fromiter(
        (int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
         for t in texts), np.uint64, len(texts),
    )  # fmt: skip
    out[out == 0] = 1
    return out


def distinct_count(values: np.ndarray) -> int:
    """How many distinct values: one sort (numpy 2's ``np.unique`` hashes instead, ~50x slower
    on a million random 64-bit values)."""
    if not len(values):
        return 0
    s = np.sort(values)
    return 1 + int(np.count_nonzero(s[1:] != s[:-1]))


@record
class KeyBlock:
    """Attribute sets split per key.

    Fields:
        seq: the chunk whose dictionary page defines the sets (-1: split at query time).
        entries: the sets' codes in their segment's attribute dictionary (int64).
        keys: the keys some set carries.
        values: per key its value texts, or None for a hashed (near-unique) key.
        columns: per key, per set: the value's index into ``values`` (int32, -1: absent), or
            for a hashed key the value's hash (uint64, 0: absent).
    """

    seq: int
    entries: np.ndarray
    keys: tuple[str, ...]
    values: tuple[tuple[str, ...] | None, ...]
    columns: tuple[np.ndarray, ...]


def decompose(texts: Sequence[str], entries: np.ndarray, seq: int = -1) -> KeyBlock:
    """``texts`` (canonical attribute set texts, ``""`` for none) split per key; ``entries``
    are their codes, defined by chunk ``seq``.

    Python work is per distinct *shape* (the tuple of keys a set has; sets from one call site
    share it) and per distinct value; per set and key it is C-level ``map`` calls.
    """
    n = len(texts)
    parsed = json.loads("[" + ",".join(t or "{}" for t in texts) + "]")
    shapes = list(map(tuple, parsed))
    shape_ids = {shape: i for i, shape in enumerate(dict.fromkeys(shapes))}
    of_shape = np.fromiter(map(shape_ids.__getitem__, shapes), np.int64, n)
    order = np.argsort(of_shape, kind="stable")
    ends = np.cumsum(np.bincount(of_shape, minlength=len(shape_ids))).tolist()
    per_key: dict[str, tuple[list[np.ndarray], list[Any]]] = {}
    for shape, lo, hi in zip(shape_ids, [0, *ends[:-1]], ends, strict=True):
        rows = order[lo:hi]
        sets = list(map(parsed.__getitem__, rows.tolist()))
        for key in shape:
            at, vals = per_key.setdefault(key, ([], []))
            at.append(rows)
            vals.extend(map(operator.itemgetter(key), sets))
    keys: list[str] = []
    values: list[tuple[str, ...] | None] = []
    columns: list[np.ndarray] = []
    for key, (pieces, vals) in sorted(per_key.items()):
        rows_of = np.concatenate(pieces)
        if set(map(type, vals)) != {str}:  # each distinct value as text once
            try:
                pairs = list(zip(map(type, vals), vals, strict=True))  # True apart from 1
                text_of = {p: value_text(p[1]) for p in dict.fromkeys(pairs)}
                vals = list(map(text_of.__getitem__, pairs))
            except TypeError:  # a list: not hashable
                vals = [v if type(v) is str else value_text(v) for v in vals]
        names = tuple(dict.fromkeys(vals))
        index = dict(zip(names, range(len(names)), strict=True))
        code = np.fromiter(map(index.__getitem__, vals), np.int64, len(vals))
        if len(vals) >= MIN_CARRIED and len(names) > NEAR_UNIQUE * len(vals):
            hashes = hash_texts(names)
            if distinct_count(hashes) == len(names):  # else: keep the values (exact)
                col = np.zeros(n, dtype=np.uint64)
                col[rows_of] = hashes[code]
                keys.append(key)
                values.append(None)
                columns.append(col)
                continue
        col = np.full(n, -1, dtype=np.int32)
        col[rows_of] = code
        keys.append(key)
        values.append(names)
        columns.append(col)
    return KeyBlock(seq, np.asarray(entries, dtype=np.int64), tuple(keys), tuple(values),
                    tuple(columns))  # fmt: skip


# ---- the side file ----------------------------------------------------------------------------


def path_of(directory: Path, segment_id: str) -> Path:
    return directory / f"{segment_id}{SUFFIX}"


def encode(block: KeyBlock) -> bytes:
    """One record: a block whose entries are consecutive codes."""
    lo, n = (int(block.entries[0]), len(block.entries)) if len(block.entries) else (0, 0)
    if n and int(block.entries[-1]) != lo + n - 1:
        raise ValueError("a stored block covers consecutive codes")
    # Value codes in the narrowest signed type that holds them (-1: absent): most keys have
    # few values, so a set costs a byte per key.
    columns = [c if v is None else c.astype(_narrowest(len(v)))
               for v, c in zip(block.values, block.columns, strict=True)]  # fmt: skip
    meta = json.dumps({"seq": block.seq, "lo": lo, "n": n, "keys": [
        [k, None if v is None else list(v), c.dtype.str]
        for k, v, c in zip(block.keys, block.values, columns, strict=True)
    ]}, separators=(",", ":")).encode()  # fmt: skip
    payload = b"".join([_META.pack(len(meta)), meta, *(c.tobytes() for c in columns)])
    return _HEAD.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


_KINDS = {np.dtype(t).str for t in (np.int8, np.int16, np.int32, np.uint64)}


def _narrowest(n_values: int) -> type[np.signedinteger[Any]]:
    for t in (np.int8, np.int16):
        if n_values <= np.iinfo(t).max:
            return t
    return np.int32


def decode(payload: bytes | memoryview) -> KeyBlock:
    (size,) = _META.unpack_from(payload, 0)
    meta = json.loads(bytes(payload[_META.size : _META.size + size]))
    lo, n = int(meta["lo"]), int(meta["n"])
    at = _META.size + size
    keys: list[str] = []
    values: list[tuple[str, ...] | None] = []
    columns: list[np.ndarray] = []
    for key, names, kind in meta["keys"]:
        dtype = np.dtype(kind)
        if dtype.str not in _KINDS or (names is None) != (dtype.kind == "u"):
            raise ValueError(f"column type {kind!r} of key {key!r}")
        columns.append(np.frombuffer(payload, dtype, n, at))
        at += n * dtype.itemsize
        keys.append(str(key))
        values.append(None if names is None else tuple(map(str, names)))
    return KeyBlock(int(meta["seq"]), np.arange(lo, lo + n, dtype=np.int64), tuple(keys),
                    tuple(values), tuple(columns))  # fmt: skip


def read_blocks(path: Path) -> list[KeyBlock]:
    """The good records of a side file, up to the first bad one (none when it is missing)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    blocks, at = [], 0
    while at + _HEAD.size <= len(data):
        magic, size, crc = _HEAD.unpack_from(data, at)
        payload = memoryview(data)[at + _HEAD.size : at + _HEAD.size + size]
        if magic != _MAGIC or len(payload) != size or zlib.crc32(payload) != crc:
            log.warning("%s: record at byte %d is damaged; later sets are read from texts",
                        path, at)  # fmt: skip
            break
        try:
            blocks.append(decode(payload))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s: record at byte %d unreadable (%s)", path, at, exc)
            break
        at += _HEAD.size + size
    return blocks


class KeyWriter:
    """Appends one record per sealed chunk (the attribute sets the chunk defines)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SideFile(path, "per-key attribute columns")

    def add(self, seq: int, first_code: int, texts: Sequence[str]) -> None:
        """Split and store the sets ``first_code, first_code + 1, ...`` that chunk ``seq``
        defines (best-effort: a failed write is logged, and those sets are read from texts)."""
        if not texts or self._file.abandoned:
            return
        block = decompose(texts, np.arange(first_code, first_code + len(texts)), seq)
        self._file.append(encode(block))

    def close(self) -> None:
        self._file.close()

    def abandon(self) -> None:
        self._file.abandon()
