"""Damaged bytes cost only the rows they hold (and the rows that need their dictionary entries).

A writer process is killed (SIGKILL) after two flushes, so its segment has sealed chunks and a
tail log of two records. One kind of page of that segment is then damaged: a column page, a page
header, the dictionary page, the summary page of a middle chunk, or a tail-log record. Every query
must still answer, and answer exactly what brute force over the surviving rows gives; the loss
must be counted. Two healthy segments written by other runs sit beside it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kronicler.db import Database, chunk, codec, wal
from kronicler.db.page import HEADER, HEADER_SIZE, parse_header
from kronicler.db.schema import COLUMN_IDS, COLUMNS
from kronicler.errors import CorruptPageError
from kronicler.query import Filter
from kronicler.query import stats as q_stats

ROOT = Path(__file__).resolve().parents[2]
BASE = 1_700_000_000_000_000_000
CR = 200  # rows per chunk
# One flush per chunk, then two log records of 100 and 60 rows. A writer defines a text in the
# dictionary entries of the first chunk (or log record) it writes after meeting the text, so
# flushing unit by unit makes "the unit that defines a text" the unit that first uses it.
FLUSHES = (CR, 2 * CR, 3 * CR, 700, 760)

WRITER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from kronicler.db import Database
    path, data = sys.argv[1], np.load(sys.argv[2])
    db = Database.open(path, chunk_rows=int(sys.argv[3]), flush_interval=3600)
    lo = 0
    for hi in json.loads(sys.argv[4]):
        db.append(
            data["names"][lo:hi].tolist(), data["start"][lo:hi], data["duration"][lo:hi],
            status=data["status"][lo:hi], service=data["service"][lo:hi].tolist(),
            attributes=data["attrs"][lo:hi].tolist(),
        )
        assert db.flush()
        lo = hi
    print("flushed", flush=True)
    time.sleep(600)
    """
)


def _victim_rows() -> dict[str, np.ndarray]:
    """Rows whose texts are first used in known places: chunk 1 and log record 1 define some."""
    n = FLUSHES[-1]
    rng = np.random.default_rng(11)
    i = np.arange(n)
    names = np.where(i < CR, "a.base", np.where(i % 3 == 0, "b.new", "a.base")).astype(object)
    names[(i >= 2 * CR) & (i % 5 == 0)] = "c.later"
    names[(i >= 600) & (i % 4 == 1)] = "d.tail"  # first used in log record 1
    service = np.where((i >= CR) & (i % 7 == 0), "svc-new", "svc-main").astype(object)
    attrs = np.array([json.dumps({"r": int(k % 2)}) for k in i], dtype=object)
    attrs[(i >= CR) & (i % 11 == 0)] = json.dumps({"r": 5})  # first used in chunk 1
    attrs[(i >= 600) & (i % 6 == 0)] = json.dumps({"t": 1})  # first used in log record 1
    return {
        "names": names.astype(str), "start": BASE + i * 1000,
        "duration": rng.permutation(np.arange(1, n + 1) * 997), "service": service.astype(str),
        "attrs": attrs.astype(str), "status": np.where(i % 13 == 0, 2, 0).astype(np.uint8),
    }  # fmt: skip


def _healthy(tmp_path: Path, seed: int, names: list[str], t0: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 450
    rows = {
        "names": np.array([names[k] for k in rng.integers(0, len(names), n)]),
        "start": t0 + np.arange(n) * 1000, "duration": rng.integers(1, 10**6, n) * 1000 + seed,
        "service": np.array(["svc-other"] * n),
        "attrs": np.array([json.dumps({"r": int(k)}) for k in rng.integers(0, 6, n)]),
        "status": np.zeros(n, np.uint8),
    }  # fmt: skip
    with Database.open(tmp_path, chunk_rows=CR) as db:
        db.append(rows["names"].tolist(), rows["start"], rows["duration"],
                  service=rows["service"].tolist(), attributes=rows["attrs"].tolist())  # fmt: skip
    return rows


def _killed_writer(tmp_path: Path, rows: dict[str, np.ndarray]) -> str:
    data = tmp_path / "rows.npz"
    np.savez(data, allow_pickle=False, **rows)  # plain arrays, as np.load in WRITER expects
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    before = set(os.listdir(tmp_path / "db" / "segments"))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "db"), str(data), str(CR),
         json.dumps(list(FLUSHES))],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "flushed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (seg,) = {f[:-5] for f in set(os.listdir(tmp_path / "db" / "segments")) - before
              if f.endswith(".kseg")}  # fmt: skip
    return seg


def _pages(segdir: Path, seg: str, seq: int) -> dict[str, tuple[int, int]]:
    """Page name -> (offset, size) of chunk ``seq``, from the segment's catalog and headers."""
    meta = json.loads((segdir / f"{seg}.meta").read_bytes())
    offset, length = meta["chunks"][seq][:2]
    data = (segdir / f"{seg}.kseg").read_bytes()
    names = {i: n for n, i in COLUMN_IDS.items()} | {100: "dictionary", 101: "summary"}
    out, pos = {}, offset
    while pos < offset + length:
        header = parse_header(data[pos : pos + HEADER_SIZE])
        assert header is not None
        out[names[header.column]] = (pos, header.size)
        pos += header.size
    return out


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.fixture
def layout(tmp_path):
    """(db dir, victim segment id, {name: rows}) with the victim's writer killed."""
    segdir = tmp_path / "db" / "segments"
    parts = {"healthy1": _healthy(tmp_path / "db", 1, ["other", "a.base"], BASE - 10**9)}
    parts["victim"] = _victim_rows()
    seg = _killed_writer(tmp_path, parts["victim"])
    parts["healthy2"] = _healthy(tmp_path / "db", 2, ["c.later", "zz"], BASE + 10**9)
    assert (segdir / f"{seg}.wal").stat().st_size > 0
    assert len(json.loads((segdir / f"{seg}.meta").read_bytes())["chunks"]) == 3
    return tmp_path / "db", seg, parts


def _first_defined(rows: dict[str, np.ndarray], unit: np.ndarray) -> dict[str, dict[str, int]]:
    """Text -> the unit (chunk or log record) whose dictionary entries define it."""
    out: dict[str, dict[str, int]] = {}
    for kind in ("names", "service", "attrs"):
        values, first = np.unique(rows[kind], return_index=True)
        out[kind] = dict(zip(values.tolist(), unit[first].tolist(), strict=True))
    return out


def _survivors(rows: dict[str, np.ndarray], damaged_unit: int, lose_dictionary: bool):
    """Rows that survive losing one unit (0-2: chunks; 3, 4: log records)."""
    i = np.arange(len(rows["start"]))
    unit = np.where(i < 3 * CR, i // CR, np.where(i < FLUSHES[3], 3, 4))
    keep = unit != damaged_unit
    if lose_dictionary:
        defined = _first_defined(rows, unit)
        for kind in ("names", "service", "attrs"):
            lost = [t for t, u in defined[kind].items() if u == damaged_unit]
            keep &= ~np.isin(rows[kind], lost)
    return {k: v[keep] for k, v in rows.items()}


def _damage(db_dir: Path, seg: str, kind: str) -> tuple[int, bool]:
    """Damage one kind of page of the victim; returns (unit lost, its dictionary lost too)."""
    segdir = db_dir / "segments"
    pages = _pages(segdir, seg, 1)
    if kind == "log":
        records = list(wal.read_records(segdir / f"{seg}.wal"))
        assert [len(r) for r in records] == [100, 60]
        _flip(segdir / f"{seg}.wal", 40)  # inside record 1's payload
        return 3, True
    where = {
        "column": pages["duration"][0] + HEADER_SIZE + 9,
        "header": pages["name"][0] + 17,  # the payload length: the walk loses its footing
        "dictionary": pages["dictionary"][0] + HEADER_SIZE + 5,
        "summary": pages["summary"][0] + HEADER_SIZE + 30,
    }[kind]
    _flip(segdir / f"{seg}.kseg", where)
    return 1, kind == "dictionary"


def _check_against(db: Database, survivors: dict[str, np.ndarray]) -> None:
    names, start, duration = survivors["names"], survivors["start"], survivors["duration"]
    assert db.functions() == sorted(set(names.tolist()))
    assert db.time_range() == (int(start.min()), int(start.max()))
    stats = db.stats()
    assert sorted(stats) == sorted(set(names.tolist()))
    for fn, st in stats.items():
        d = np.sort(duration[names == fn])
        errors = int((survivors["status"][names == fn] == 2).sum())
        assert (st.count, st.errors, st.min, st.max) == (d.size, errors, d[0], d[-1]), fn
        assert st.mean == pytest.approx(d.mean(), rel=1e-9)
        for q, got_q in ((0.5, st.p50), (0.99, st.p99)):
            assert got_q == pytest.approx(np.quantile(d, q, method="lower"), rel=0.0101), (fn, q)
        exact = db.stats(fn, exact=True)
        assert (exact.count, exact.p50) == (d.size, np.quantile(d, 0.5, method="lower")), fn
    scan = db.scan(["name", "duration", "service", "attributes"])
    got = sorted(zip((np.array(scan.names)[scan.columns["name"]]).tolist(),
                     scan.columns["duration"].tolist(),
                     (np.array(scan.services)[scan.columns["service"]]).tolist(),
                     [json.loads(scan.attributes[a]) for a in scan.columns["attributes"]],
                     strict=True), key=repr)  # fmt: skip
    want = sorted(zip(names.tolist(), duration.tolist(), survivors["service"].tolist(),
                      [json.loads(a) for a in survivors["attrs"]], strict=True), key=repr)  # fmt: skip
    assert got == want
    for only in (None, "b.new", "d.tail"):
        mask = np.ones(names.size, bool) if only is None else names == only
        want_top = sorted(duration[mask].tolist(), reverse=True)[:6]
        assert [c.duration for c in db.slowest(only, k=6)] == want_top, only
    since, until = BASE + 250 * 1000, BASE + 650 * 1000 + 1
    window = db.summaries(since=since, until=until)
    in_window = (start >= since) & (start < until)
    for fn in set(names.tolist()):
        n = int((in_window & (names == fn)).sum())
        assert (window[fn].summary.count if fn in window else 0) == n, fn
    table = q_stats(db, Filter.make(attributes={"r": 5}))
    attrs = np.array([json.loads(a).get("r") for a in survivors["attrs"]])
    want_counts = {fn: int(((attrs == 5) & (names == fn)).sum()) for fn in set(names.tolist())}
    assert {r.key: r.count for r in table.rows} == {k: v for k, v in want_counts.items() if v}


def _all(parts: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts.values()]) for k in parts["victim"]}


def test_the_undamaged_layout_answers_everything(layout):
    db_dir, _, parts = layout
    with Database.open(db_dir) as db:
        _check_against(db, _all(parts))
        assert db.damaged.rows == 0


@pytest.mark.parametrize("kind", ["column", "header", "dictionary", "summary", "log"])
def test_a_damaged_page_costs_only_its_rows(layout, kind, caplog):
    db_dir, seg, parts = layout
    unit, lose_dictionary = _damage(db_dir, seg, kind)
    parts["victim"] = _survivors(parts["victim"], unit, lose_dictionary)
    expected_loss = FLUSHES[-1] - len(parts["victim"]["start"])
    with caplog.at_level(logging.WARNING, logger="kronicler"), Database.open(db_dir) as db:
        _check_against(db, _all(parts))
        damage = db.damaged
        assert damage.rows == expected_loss
        assert (damage.chunks, damage.records) == ((1, 0) if unit < 3 else (0, 1))
        if lose_dictionary:
            assert damage.dependent_rows > 0
        reported = len(caplog.records)
        assert reported >= 1
        _check_against(db, _all(parts))  # asked again: the same answer, logged once
        assert len(caplog.records) == reported


def poison_page(segdir: Path, seg: str, chunk: int, column: str) -> None:
    """Make a page undecodable (an unknown codec id) while its checksum stays valid."""
    offset, size = _pages(segdir, seg, chunk)[column]
    data = bytearray((segdir / f"{seg}.kseg").read_bytes())
    data[offset + HEADER_SIZE] = 0x63  # an unknown codec id
    head = bytes(data[offset : offset + HEADER_SIZE - 4])
    crc = zlib.crc32(bytes(data[offset + HEADER_SIZE : offset + size]), zlib.crc32(head))
    data[offset + HEADER_SIZE - 4 : offset + HEADER_SIZE] = crc.to_bytes(4, "little")
    (segdir / f"{seg}.kseg").write_bytes(bytes(data))


def test_a_page_that_passes_its_checksum_but_does_not_decode(layout):
    """Garbage with a valid checksum: the query that meets it drops the chunk and answers."""
    db_dir, seg, parts = layout
    segdir = db_dir / "segments"
    poison_page(segdir, seg, 1, "duration")
    parts["victim"] = _survivors(parts["victim"], 1, False)
    with Database.open(db_dir) as db:
        survivors = _all(parts)
        scan = db.scan(["duration"])  # decodes the page: finds the damage, answers without it
        assert sorted(scan.columns["duration"].tolist()) == sorted(survivors["duration"].tolist())
        assert db.damaged.chunk_rows == CR
        _check_against(db, survivors)


# -- decoders never raise anything but CorruptPageError on bad bytes ---------------------------
def _mutations(payload: bytes, rng: np.random.Generator, n: int):
    for _ in range(n):
        data = bytearray(payload)
        how = rng.integers(0, 3)
        if how == 0 or len(data) < 4:
            for _ in range(int(rng.integers(1, 4))):
                if data:
                    data[int(rng.integers(0, len(data)))] ^= int(rng.integers(1, 256))
        elif how == 1:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            at = int(rng.integers(0, len(data)))
            data[at:at] = rng.bytes(int(rng.integers(1, 9)))
        yield bytes(data)


def test_decoders_raise_only_corrupt_page_errors_on_bad_bytes():
    rng = np.random.default_rng(3)
    n = 300
    span = rng.integers(1, 2**63, n, dtype=np.uint64)
    raw: dict[str, Any] = {
        "name": rng.integers(0, 4, n).astype(np.uint32), "start": BASE + np.arange(n) * 17,
        "duration": rng.integers(1, 10**7, n), "status": np.zeros(n, np.uint8),
        "kind": np.ones(n, np.uint8), "service": np.zeros(n, np.uint32),
        "trace_hi": rng.integers(0, 2**63, n, dtype=np.uint64) // 7 * 7,
        "trace_lo": np.repeat(rng.integers(0, 2**63, n // 10, dtype=np.uint64), 10),
        "span_id": span, "parent_span_id": np.where(np.arange(n) % 2 == 0, np.roll(span, 1), 0),
        "attributes": rng.integers(0, 50, n).astype(np.uint32),
        "resource": rng.integers(0, 3, n).astype(np.uint32),
    }  # fmt: skip
    columns = {c: np.asarray(a, dtype=COLUMNS[c]) for c, a in raw.items()}
    entries = {"name": [(0, "a"), (1, "b")], "attributes": [(0, '{"k":1}')]}
    cs = chunk.summarize(columns)
    pages = b"".join(chunk.encode_chunk(0, columns, entries, cs))
    pos, payloads = 0, []
    while pos < len(pages):
        *_, length, _lo, _hi, _crc = HEADER.unpack_from(pages, pos)
        header = parse_header(pages[pos : pos + HEADER_SIZE])
        assert header is not None
        payloads.append((header.column, pages[pos + HEADER_SIZE : pos + HEADER_SIZE + length]))
        pos += HEADER_SIZE + length
    names = {i: c for c, i in COLUMN_IDS.items()}
    outcomes = {"decoded": 0, "corrupt": 0}
    for column, payload in payloads:
        for bad in _mutations(payload, rng, 60):
            try:
                if column == 100:
                    chunk.decode_entries(bad)
                elif column == 101:
                    chunk.decode_summary(bad)
                else:
                    chunk.decode_column(names[column], bad, columns["span_id"], rows=n)
                outcomes["decoded"] += 1
            except CorruptPageError:
                outcomes["corrupt"] += 1
    assert outcomes["corrupt"] > 0
    for bad in _mutations(codec.encode(columns["duration"], codec.CODEC_NARROW), rng, 100):
        try:
            codec.decode(bad, np.dtype(np.int64), rows=n)
        except CorruptPageError:
            pass


def test_the_log_reader_steps_over_garbage(tmp_path):
    rng = np.random.default_rng(9)
    path = tmp_path / "x.wal"
    writer = wal.WalWriter(path)
    cols = {c: np.zeros(10, d) for c, d in COLUMNS.items()}
    for k in range(4):
        writer.append(wal.encode_record(10 * k, cols, {"name": [(k, f"f{k}")]}))
    writer.close()
    whole = path.read_bytes()
    for bad in _mutations(whole, rng, 200):
        path.write_bytes(bad)
        found = wal.read_log(path)  # never raises
        assert all(len(r) == 10 for r in found.records)


@pytest.mark.parametrize("kind", ["dictionary", "log"])
def test_compacting_a_damaged_segment_keeps_exactly_the_survivors(layout, kind):
    db_dir, seg, parts = layout
    unit, lose_dictionary = _damage(db_dir, seg, kind)
    parts["victim"] = _survivors(parts["victim"], unit, lose_dictionary)
    with Database.open(db_dir) as db:
        assert db.compact(small_rows=10_000) == 3
        _check_against(db, _all(parts))
