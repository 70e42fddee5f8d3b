"""The roll-up across segments (``segments.ktree``): a cold range reads a few tree nodes for a run
of segments it holds whole, and every answer is what the segments' own roll-ups and the brute
force give, whether the file is current, stale, damaged, torn, or left by a killed writer.

Two databases: eight time-disjoint segments of one writer (a window holds runs of them whole),
and two writers whose segments overlap in time. Each is asked cold (a new Database) with and
without the file, for windows that hold runs of segments whole and windows that cut some.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from kronicler.db import Database, compaction, segment_tree
from kronicler.db.database import SEGMENTS
from kronicler.db.merged import Part
from kronicler.db.scan import FunctionSummary, TimeRange
from tests.db.test_corruption import _flip, _pages
from tests.oracle.interfaces import PythonApi
from tests.oracle.layouts import ROOT, writer_env
from tests.oracle.truth import Query, Rows, check_table, expected_stats, generate
from tests.oracle.writer import append_all

HOUR = 3600 * 10**9
BASE = 1_790_000_000 * 10**9
FUNCTIONS = ("shop.cart", "shop.pay", "shop.search", "shop.ship")
SEGMENT_ROWS = 150


def _write(path: Path, rows: Rows) -> None:
    """One writer appending ``rows`` in start order: segments of SEGMENT_ROWS rows, chunks of 32."""
    db = Database.open(path, chunk_rows=32, segment_rows=SEGMENT_ROWS)
    append_all(db, rows.take(np.argsort(rows.start, kind="stable")), 12)
    db.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Rows]]:
    rng = np.random.default_rng(11)
    work = tmp_path_factory.mktemp("segment_tree")
    out = {}
    rows = generate(rng, 1200, FUNCTIONS, base=BASE, span=HOUR, tail=["shop.search"], lane=0)
    _write(work / "disjoint", rows)
    out["disjoint"] = (work / "disjoint", rows)
    parts = []
    for lane in (1, 2):  # two writers over the same hour, one after the other
        part = generate(rng, 700, FUNCTIONS, base=BASE, span=HOUR, lane=lane)
        _write(work / "overlapping", part)
        parts.append(part)
    out["overlapping"] = (work / "overlapping", Rows.concat(parts))
    return out


@pytest.fixture(params=["disjoint", "overlapping"])
def db_copy(request: pytest.FixtureRequest, built: dict[str, tuple[Path, Rows]],
            tmp_path: Path) -> tuple[Path, Rows]:  # fmt: skip
    path, truth = built[request.param]
    shutil.copytree(path, tmp_path / request.param)
    return tmp_path / request.param, truth


def _segdir(path: Path) -> Path:
    return path / SEGMENTS


def _spans(path: Path) -> list[tuple[int, int]]:
    """(oldest, newest start) of every visible segment, oldest first."""
    readers = compaction.open_readers(_segdir(path))
    out = []
    for r in compaction.visible(readers.values()):
        starts = [c.start_min for c in r.chunks] + [c.start_max for c in r.chunks]
        out.append((min(starts), max(starts)))
        r.close()
    return sorted(out)


def _windows(path: Path) -> list[tuple[int | None, int | None]]:
    """Everything; runs of segments held whole (from the first, in the middle, to the last);
    windows cutting segments; one inside a segment."""
    s = _spans(path)
    n = len(s)
    return [
        (None, None), (s[0][0], s[n - 1][1] + 1), (s[1][0], s[n - 2][1] + 1),
        (s[0][0], s[n // 2][1] + 1), (s[2][0], s[n - 1][1] + 1),
        (s[1][0] + 1, s[n - 2][1] - 1), (s[0][0] + HOUR // 7, BASE + 5 * HOUR // 7),
        (s[3][0] + 1, s[3][1]),
    ]  # fmt: skip


def _summaries(path: Path, since: int | None, until: int | None,
               names: tuple[str, ...] | None = None) -> tuple[dict[str, FunctionSummary], int]:  # fmt: skip
    """A cold answer (a new Database) and how many tree nodes it read."""
    with Database.open(path, readonly=True) as db:
        got = db.summaries(names, since=since, until=until)
        tree = db._reads.tree.current
        return got, 0 if tree is None else tree.reads


def _same(a: dict[str, FunctionSummary], b: dict[str, FunctionSummary], where: str) -> None:
    """Equal merges: integer fields and buckets exactly, sums up to float rounding."""
    assert a.keys() == b.keys(), where
    for name, x in a.items():
        y = b[name]
        sx, sy = x.summary, y.summary
        assert (sx.count, sx.min, sx.max, sx.zero_count) == (sy.count, sy.min, sy.max,
                                                              sy.zero_count), (where, name)  # fmt: skip
        assert (x.errors, x.first_start, x.last_start) == (y.errors, y.first_start,
                                                           y.last_start), (where, name)  # fmt: skip
        assert np.array_equal(sx.keys, sy.keys) and np.array_equal(sx.counts, sy.counts), where
        assert sx.sum == pytest.approx(sy.sum, rel=1e-12), (where, name)
        assert sx.m2 == pytest.approx(sy.m2, rel=1e-9, abs=1e-6), (where, name)


def _check_brute(path: Path, truth: Rows, since: int | None, until: int | None, where: str) -> None:
    with Database.open(path, readonly=True) as db:
        q = Query(since=since, until=until)
        check_table(PythonApi(db).stats(q), "function", expected_stats(truth, q), (0.5, 0.99),
                    exact=False, where=where)  # fmt: skip


def _write_tree(path: Path) -> bool:
    return compaction.update_tree(_segdir(path))


def _without_tree(path: Path, since: int | None, until: int | None) -> dict[str, FunctionSummary]:
    """A cold answer with the file moved aside."""
    file = _segdir(path) / segment_tree.FILE
    aside = path / "aside.ktree"
    file.rename(aside)
    try:
        got, reads = _summaries(path, since, until)
        assert reads == 0
        return got
    finally:
        aside.rename(file)


def _used(path: Path, since: int | None, until: int | None) -> list[tuple[str, ...]]:
    """The segments of each tree node a question over the window would read."""
    with Database.open(path, readonly=True) as db:
        snap = db._reads.snapshot()
        across = db._reads._across(snap, TimeRange.of(since, until), None)
        return [p.key.ids for p in across.values() if isinstance(p, Part)
                and isinstance(p.key, segment_tree.NodeKey)]  # fmt: skip


def test_answers_with_the_tree_equal_those_without_it_and_the_brute_force(
    db_copy: tuple[Path, Rows],
) -> None:
    path, truth = db_copy
    windows = _windows(path)
    before = {w: _summaries(path, *w) for w in windows}
    one = {w: _summaries(path, *w, names=("shop.pay",)) for w in windows}
    assert all(reads == 0 for _, reads in before.values())
    assert _write_tree(path)
    assert not _write_tree(path)  # nothing changed: not written again
    tree = segment_tree.TreeFile.open(_segdir(path) / segment_tree.FILE)
    assert tree is not None and len(tree.members) == len(_spans(path))
    read = 0
    for w in windows:
        got, reads = _summaries(path, *w)
        _same(got, before[w][0], f"{w}")
        _same(_summaries(path, *w, names=("shop.pay",))[0], one[w][0], f"{w} shop.pay")
        _check_brute(path, truth, *w, where=f"{w}")
        read += reads
    whole, reads = _summaries(path, None, None)
    assert reads == 1  # every segment closed and clean: the root alone
    if path.name == "disjoint":
        s = _spans(path)
        assert len(s) == 6  # a binary tree over them: 0-1, 2-3, 4-5; 0-3; 0-5
        _, reads = _summaries(path, s[0][0], s[3][1] + 1)  # the first four held whole
        assert reads == 1
        assert [len(ids) for ids in _used(path, s[0][0], s[3][1] + 1)] == [4]
        assert [len(ids) for ids in _used(path, s[1][0], s[4][1] + 1)] == [2]  # and two leaves
        assert sorted(map(len, _used(path, s[1][0], s[5][1] + 1))) == [2, 2]
    assert read > 0


def test_a_stale_tree_is_used_only_where_it_still_holds(db_copy: tuple[Path, Rows]) -> None:
    path, _ = db_copy
    segdir = _segdir(path)
    file = segdir / segment_tree.FILE
    assert _write_tree(path)
    old = file.read_bytes()
    first = segment_tree.TreeFile.open(file)
    assert first is not None
    oldest = first.members[0].id
    # retention retired the oldest segment, then died before writing the file again: stale
    compaction.delete_segment(segdir, oldest)
    windows = _windows(path)
    for w in windows:
        _same(_summaries(path, *w)[0], _without_tree(path, *w), f"retired {w}")
    used = _used(path, None, None)
    assert used and all(oldest not in ids for ids in used)  # the rest of the tree still serves
    assert max(map(len, used)) >= 2
    # a segment added since (a later writer): it answers from its own roll-up
    extra = generate(np.random.default_rng(3), 300, FUNCTIONS, base=BASE + HOUR, span=HOUR,
                     lane=5)  # fmt: skip
    _write(path, extra)
    read = 0
    for w in [*windows, (BASE, BASE + 2 * HOUR), (BASE + HOUR // 3, BASE + 3 * HOUR // 2)]:
        got, reads = _summaries(path, *w)
        _same(got, _without_tree(path, *w), f"added {w}")
        read += reads
    assert read > 0
    # a new compaction: a time-disjoint rewrite replaces every segment, and the file it wrote
    # names the new ones; the old file (as if the compaction died before writing it) names
    # none that is still visible
    with Database.open(path) as db:
        db.compact(time_disjoint=True, output_rows=400, wait=10)
    new = segment_tree.TreeFile.open(file)
    assert new is not None and not {m.id for m in new.members} & {m.id for m in first.members}
    file.write_bytes(old)
    for w in [(None, None), (BASE + HOUR // 3, BASE + 3 * HOUR // 2)]:
        got, reads = _summaries(path, *w)
        assert reads == 0
        _same(got, _without_tree(path, *w), f"compacted {w}")


def test_a_member_damaged_since_is_left_to_its_own_roll_up(db_copy: tuple[Path, Rows]) -> None:
    """A segment the tree summarised whole that has since lost a chunk (found damaged by a
    walk of the segment) differs from its member: no node holding it is used, so its lost rows
    are not counted, as without the file."""
    path, _ = db_copy
    segdir = _segdir(path)
    assert _write_tree(path)
    tree = segment_tree.TreeFile.open(segdir / segment_tree.FILE)
    assert tree is not None
    victim = tree.members[len(tree.members) // 2].id
    (segdir / f"{victim}.kidx").unlink()  # its reader walks it, checking every page
    offset, size = _pages(segdir, victim, 1)["duration"]
    _flip(segdir / f"{victim}.kseg", offset + size - 3)
    used = _used(path, None, None)
    assert used and all(victim not in ids for ids in used)
    for w in _windows(path):
        got, _ = _summaries(path, *w)
        _same(got, _without_tree(path, *w), f"damaged member {w}")
    everything, _ = _summaries(path, None, None)
    assert sum(s.summary.count for s in everything.values()) < len(db_copy[1])  # rows lost


def test_a_question_of_a_few_functions_takes_nodes_over_segments_without_them(
    tmp_path: Path,
) -> None:
    """Segments that hold none of the functions asked add nothing, whether or not the window
    holds them whole: a node holding them and segments the window holds whole serves."""
    rng = np.random.default_rng(8)
    common = generate(rng, 900, FUNCTIONS, base=BASE, span=HOUR, lane=0)
    late = generate(rng, 300, ("late.job",), base=BASE + 3 * HOUR // 4, span=HOUR // 4, lane=1)
    truth = Rows.concat([common, late])
    path = tmp_path / "db"
    _write(path, truth)
    assert _write_tree(path)
    s = _spans(path)
    assert len(s) >= 6
    cut = (s[0][0] + 1, s[-1][1] + 1)  # cuts the first segment, which holds no late.job
    with Database.open(path, readonly=True) as db:
        snap = db._reads.snapshot()
        across = db._reads._across(snap, TimeRange.of(*cut), {"late.job"})
        used = [p.key.ids for p in across.values() if isinstance(p, Part)
                and isinstance(p.key, segment_tree.NodeKey)]  # fmt: skip
    first = min(snap.segments, key=lambda v: int(v.chunks.column("start_min").min())).id
    assert any(first in ids for ids in used)  # the cut segment without late.job is in a node
    assert not _used(path, *cut) or all(first not in ids for ids in _used(path, *cut))
    for w in [cut, (None, None), (s[1][0], s[-2][1] + 1), (BASE + HOUR // 3, BASE + HOUR)]:
        for names in (("late.job",), ("late.job", "shop.cart")):
            got, _ = _summaries(path, *w, names=names)
            file = _segdir(path) / segment_tree.FILE
            file.rename(tmp_path / "aside")
            want, reads = _summaries(path, *w, names=names)
            (tmp_path / "aside").rename(file)
            assert reads == 0
            _same(got, want, f"{w} {names}")
            q = Query(functions=names, since=w[0], until=w[1])
            with Database.open(path, readonly=True) as db:
                check_table(PythonApi(db).stats(q), "function", expected_stats(truth, q),
                            (0.5, 0.99), exact=False, where=f"{w} {names}")  # fmt: skip


@pytest.mark.parametrize("damage", ["directory", "root", "truncated", "garbage"])
def test_a_damaged_or_torn_tree_is_ignored(db_copy: tuple[Path, Rows], damage: str) -> None:
    path, truth = db_copy
    assert _write_tree(path)
    file = _segdir(path) / segment_tree.FILE
    tree = segment_tree.TreeFile.open(file)
    assert tree is not None
    raw = bytearray(file.read_bytes())
    base = len(raw) - sum(n.size for n in tree.nodes)
    root = tree.nodes[0]  # the largest
    if damage == "directory":
        raw[base // 2] ^= 0x40
    elif damage == "root":
        raw[base + root.offset + root.size // 2] ^= 0x01
    elif damage == "truncated":
        del raw[base + root.offset + 100 :]
    else:
        raw[:] = os.urandom(len(raw))
    file.write_bytes(bytes(raw))
    for w in [(None, None), *_windows(path)]:
        got, reads = _summaries(path, *w)
        _check_brute(path, truth, *w, where=f"{damage} {w}")
    _, reads = _summaries(path, None, None)
    if damage in ("directory", "garbage"):
        assert reads == 0
    else:  # the root is unusable: its children answer instead
        assert reads >= 2
    # maintenance writes a good file again
    assert _write_tree(path)
    assert _summaries(path, None, None)[1] == 1


_KILLED_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from kronicler.db import compaction, segment_tree
    from kronicler.db.metadata import atomic_write
    segdir = Path(sys.argv[1])
    readers = compaction.open_readers(segdir)
    views = [r.view() for r in compaction.visible(readers.values())]
    found = sorted(((segment_tree.member_of(v), v) for v in views),
                   key=lambda mv: (mv[0].start_min, mv[0].start_max, mv[0].id))
    data = segment_tree.encode([m for m, _ in found],
                               [(v.names, segment_tree.rollup.rollup_block(v.rollup))
                                for _, v in found])
    print("ready", flush=True)
    while True:  # the file written again and again, until killed
        atomic_write(segdir / segment_tree.FILE, data)
""")


def test_a_killed_writer_leaves_the_old_file_valid(db_copy: tuple[Path, Rows]) -> None:
    path, truth = db_copy
    segdir = _segdir(path)
    assert _write_tree(path)
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(segdir)],
                                env=writer_env(), cwd=ROOT, stdout=subprocess.PIPE,
                                text=True)  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        tree = segment_tree.TreeFile.open(segdir / segment_tree.FILE)
        assert tree is not None and len(tree.members) == len(_spans(path))
        got, reads = _summaries(path, None, None)
        assert reads == 1
        _check_brute(path, truth, None, None, where=f"killed after {delay}s")
    # its temporary files are left to the next writable open, which removes them
    Database.open(path).close()
    assert not [f for f in os.listdir(segdir) if f.endswith(".tmp")]


def test_maintenance_and_upgrade_write_the_tree(db_copy: tuple[Path, Rows]) -> None:
    path, _ = db_copy
    file = _segdir(path) / segment_tree.FILE
    assert not file.exists()
    out = subprocess.run([sys.executable, "-m", "kronicler", "upgrade", "--path", str(path)],
                         env=writer_env(), cwd=ROOT, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert file.exists()
    file.unlink()
    with Database.open(path) as db:
        db.compact(small_rows=1, wait=10)  # nothing merged, nothing changed: not written
    assert not file.exists()
    spans = _spans(path)
    with Database.open(path) as db:  # retention retires the oldest segment: written
        total = sum(f.stat().st_size for f in _segdir(path).iterdir()
                    if f.name.endswith(compaction.SEGMENT_SUFFIXES))  # fmt: skip
        assert db.retain(max_bytes=total - 1, wait=10) == 1
    tree = segment_tree.TreeFile.open(file)
    assert tree is not None and len(tree.members) == len(spans) - 1
    assert (tree.members[0].start_min, tree.members[0].start_max) == spans[1]
    with Database.open(path) as db:
        db.retain(max_age_ns=0, wait=10)  # every segment is old: all retired, the file too
    assert not file.exists()
