"""Per-key attribute columns (``.kkey``): every value as its text, damage read around, and
``explain`` answering the same from the columns, from the texts, and as brute force says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kronicler import query as q
from kronicler.db import Database
from kronicler.db.attr_keys import (
    SUFFIX,
    KeyWriter,
    decompose,
    hash_texts,
    read_blocks,
    value_text,
)
from kronicler.db.schema import canonical_attributes

BASE_NS = 1_760_000_000_000_000_000


def _sets(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(3)
    out: list[dict[str, Any]] = []
    for i in range(n):
        # "wide": under half as many values as sets, kept as a list (16 bits past 127 values)
        a: dict[str, Any] = {"rid": f"r-{i}", "shard": int(rng.integers(4)), "wide": f"w{i % 140}"}
        if i % 5 == 0:
            a["flag"] = bool(i % 2)
        if i % 7 == 0:
            a["tags"] = ["x", i % 3]
        if i % 11 == 0:
            a["note"] = 'say "hi"\n\u00e9'
        if i % 13 == 0:
            a["ratio"] = i / 8
            a["none"] = None
        if i % 17 == 0:
            a["rid"] = 1000 + i  # a number among the strings
        out.append(a)
    out[3] = {}
    return out


def test_every_value_reads_back_as_its_text() -> None:
    sets = _sets(400)
    texts = [canonical_attributes(a) for a in sets]
    block = decompose(texts, np.arange(10, 410))
    assert block.entries.tolist() == list(range(10, 410))
    cols = dict(zip(block.keys, zip(block.values, block.columns, strict=True), strict=True))
    assert set(cols) == {k for a in sets for k in a}
    assert cols["rid"][0] is None  # near-unique: hashed
    assert cols["shard"][0] is not None and len(cols["shard"][0] or ()) == 4
    for key, (names, col) in cols.items():
        for i, a in enumerate(sets):
            if key not in a:
                assert col[i] == (0 if names is None else -1)
            elif names is None:
                assert col[i] == hash_texts([value_text(a[key])])[0]
            else:
                assert names[col[i]] == value_text(a[key])


def test_records_read_back_up_to_the_first_damage(tmp_path: Path) -> None:
    texts = [canonical_attributes(a) for a in _sets(300)]
    path = tmp_path / f"s{SUFFIX}"
    w = KeyWriter(path)
    for lo in (0, 100, 200):
        w.add(lo // 100, lo, texts[lo : lo + 100])
    w.close()
    blocks = read_blocks(path)
    assert [b.entries.tolist() for b in blocks] == [list(range(lo, lo + 100)) for lo in
                                                    (0, 100, 200)]  # fmt: skip
    whole = decompose(texts[100:200], np.arange(100, 200))
    assert blocks[1].keys == whole.keys and blocks[1].values == whole.values
    assert {c.dtype.itemsize for c in blocks[1].columns} == {1, 8}  # shard etc., rid
    w = KeyWriter(tmp_path / f"all{SUFFIX}")
    w.add(0, 0, texts)
    w.close()
    (one,) = read_blocks(tmp_path / f"all{SUFFIX}")
    names, col = one.values[one.keys.index("wide")] or (), one.columns[one.keys.index("wide")]
    assert len(names) == 140 and col.dtype.itemsize == 2 and col[3] == -1
    assert all(names[c] == f"w{i % 140}" for i, c in enumerate(col.tolist()) if i != 3)
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # a torn last record
    assert len(read_blocks(path)) == 2
    second = len(data) // 2
    path.write_bytes(data[:second] + bytes([data[second] ^ 0xFF]) + data[second + 1 :])
    assert len(read_blocks(path)) == 1
    assert read_blocks(tmp_path / "missing.kkey") == []


def _workload(n: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A unique ``request.id`` per call, except: ``req-hot`` on 40 slow calls (spread over the
    segments) and, in a middle stretch, ids from a pool of 20 (so that stretch's records keep a
    value list for the key, which must count together with the hashed ones); ``db.shard`` 7
    on the slow calls; an attribute key that is also a resource key, whose value ``hx`` comes
    from either."""
    rng = np.random.default_rng(7)
    duration = rng.integers(1_000_000, 2_000_000, n)
    slow = np.zeros(n, dtype=bool)
    slow[rng.choice(n, 150, replace=False)] = True
    duration[slow] = 9_000_000
    slow_rows = np.flatnonzero(slow)
    attrs: list[dict[str, Any]] = []
    for i in range(n):
        a: dict[str, Any] = {"request.id": f"req-{i}", "db.shard": int(rng.integers(8))}
        if 1200 <= i < 1800:
            a["request.id"] = f"pool-{i % 20}" if i % 20 else "req-hot"
        if i % 3 == 0:
            a["resource:host.name"] = f"a{i % 2}"
        attrs.append(a)
    for i in slow_rows[:40].tolist():
        attrs[i]["request.id"] = "req-hot"
    for i in slow_rows[slow_rows >= 1000][:40].tolist():
        attrs[i]["resource:host.name"] = "hx"  # as the first 1,000 calls' resource says
    for i in slow_rows[::2].tolist():
        attrs[i]["db.shard"] = 7
    return duration, attrs


def _brute(attrs: list[dict[str, Any]], slow: np.ndarray, key: str, value: str,
           resources: list[dict[str, Any]]) -> tuple[int, int]:  # fmt: skip
    def of(a: dict[str, Any], resource: dict[str, Any]) -> str | None:
        if key in a:
            return value_text(a[key])
        short = key.removeprefix("resource:")
        return value_text(resource[short]) if key != short and short in resource else None

    has = np.array([of(a, r) == value for a, r in zip(attrs, resources, strict=True)])
    return int((has & slow).sum()), int((has & ~slow).sum())


def _answer(path: Path, *, pages: bool = False) -> dict[str, Any]:
    with Database.open(path, readonly=True) as db:
        e = q.explain(db, "f", slow=5_000_000)
        # each row's set text read alone (one dictionary page, or the whole dictionary) is the
        # one a scan mapping every text gives
        with db.snapshot() as view:
            local = view.scan(["attributes", "start"], local_attributes=True)
            texts = [local.attributes[c] for c in local.columns["attributes"].tolist()]
            if pages:  # a closed segment's texts came from single dictionary pages
                closed = [v for v in local.attributes.views if v.closed]  # type: ignore[attr-defined]
                assert closed and not any("attributes" in v._cache for v in closed)
            shared = view.scan(["attributes", "start"])
    assert (local.columns["start"] == shared.columns["start"]).all()
    assert texts == [shared.attributes[c] for c in shared.columns["attributes"].tolist()]
    return e.to_dict()


@pytest.mark.parametrize("damage", ["none", "removed", "corrupt"])
def test_explain_counts_exactly_from_columns_texts_or_both(tmp_path: Path, damage: str) -> None:
    n = 3000
    duration, attrs = _workload(n)
    first = {"host.name": "hx", "service.version": "2.0"}
    then = {"host.name": "h1", "service.version": "2.0"}
    resources = [first] * 1000 + [then] * (n - 1000)
    path = tmp_path / "db"
    w = Database.open(path, chunk_rows=200, segment_rows=800)
    start = BASE_NS + np.arange(n, dtype=np.int64) * 1000
    for lo, hi, resource in ((0, 1000, first), (1000, n, then)):
        w.append(["f"] * (hi - lo), start[lo:hi], duration[lo:hi], attributes=attrs[lo:hi],
                 resource=resource)  # fmt: skip
    w.append(["g"] * 50, BASE_NS + np.arange(50, dtype=np.int64), np.ones(50, np.int64))
    assert w.flush(timeout=30)  # the writer stays open: its last rows are in the tail log
    try:
        side = sorted((path / "segments").glob(f"*{SUFFIX}"))
        assert len(side) >= 2 and all(read_blocks(p) for p in side)
        with_columns = _answer(path, pages=True)
        if damage == "removed":
            for p in side:
                p.unlink()
        elif damage == "corrupt":
            for p in side[::2]:
                data = bytearray(p.read_bytes())
                data[len(data) // 3] ^= 0xFF
                p.write_bytes(bytes(data))
        if damage != "none":
            assert _answer(path) == with_columns
    finally:
        w.close()
    slow = duration > 5_000_000
    got = {(a["key"], a["value"]): (a["slow"], a["baseline"]) for a in with_columns["attributes"]}
    assert got[("request.id", "req-hot")] == _brute(attrs, slow, "request.id", "req-hot",
                                                    resources)  # fmt: skip
    assert got[("request.id", "req-hot")][0] == 40 + int(slow[1200:1800:20].sum())
    assert with_columns["attributes"][0]["key"] == "db.shard"
    for (key, value), counts in got.items():
        assert counts == _brute(attrs, slow, key, value, resources), (key, value)
    assert not any(k == "request.id" and v.startswith("pool-") for k, v in got)
    # the key spelled both ways: the attribute where the call has it, else the resource
    assert ("resource:host.name", "hx") in got


def test_compaction_writes_per_key_columns_and_explain_is_unchanged(tmp_path: Path) -> None:
    n = 3000
    duration, attrs = _workload(n)
    resource = {"host.name": "h1", "service.version": "2.0"}
    path = tmp_path / "db"
    start = BASE_NS + np.arange(n, dtype=np.int64) * 1000
    for lo in range(0, n, 600):  # five writer processes' worth of closed segments
        with Database.open(path, chunk_rows=200, segment_rows=800) as w:
            w.append(["f"] * 600, start[lo:lo + 600], duration[lo:lo + 600],
                     attributes=attrs[lo:lo + 600], resource=resource)  # fmt: skip
    before = _answer(path)
    segments = sorted((path / "segments").glob("*.kseg"))
    with Database.open(path) as db:
        assert db.compact(small_rows=10_000, group_rows=10_000) >= 2
    after_segments = sorted((path / "segments").glob("*.kseg"))
    assert len(after_segments) < len(segments)
    side = sorted((path / "segments").glob(f"*{SUFFIX}"))
    assert {p.stem for p in side} == {p.stem for p in after_segments}
    assert all(read_blocks(p) for p in side)
    assert _answer(path, pages=True) == before
    slow = duration > 5_000_000
    got = {(a["key"], a["value"]): (a["slow"], a["baseline"]) for a in before["attributes"]}
    for (key, value), counts in got.items():
        assert counts == _brute(attrs, slow, key, value, [resource] * n), (key, value)
