"""The package's import structure: no cycles, and the decorator loads none of the database.

Cycles are found statically over every ``import`` in the package, those inside functions
included (a lazy import is still a dependency), those under ``if TYPE_CHECKING:`` excluded (they
never run). What ``import kronicler`` loads is checked in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kronicler"

#: Imports that run back up a floor on purpose, each with its reason. Every one must still exist.
ALLOWED = {
    # ``db.to_arrow()`` / ``to_pandas()``: a convenience on the database for the export logic that
    # lives in the query layer (filters); the import runs only when the method is called.
    ("kronicler.db.view", "kronicler.query.export"),
    ("kronicler.db.view", "kronicler.query.filters"),
}

#: What the decorator needs from the database package: the row schema, the capture batch and
#: the sink contract, and the id mix. Readers, writers, codecs and the bufferpool load when a database opens.
CAPTURE_DB_MODULES = {"kronicler.db", "kronicler.db.schema", "kronicler.db.site_batch",
                      "kronicler.db.sink", "kronicler.db.idmix"}  # fmt: skip

#: What only writing and maintenance need: loaded on first use, so a process that only reads
#: (a cold query, the CLI) pays for none of their imports.
WRITE_SIDE_MODULES = {"kronicler.db.origins", "kronicler.db.retention", "kronicler.db.disjoint",
                      "kronicler.db.compaction", "kronicler.db.writer",
                      "kronicler.db.site_batch"}  # fmt: skip
#: Standard modules a read-only question needs none of (OpenSSL's hashes, cost ~7M instructions
#: to load; ``secrets`` loads them too): a writer or a hash of attribute texts loads them.
WRITE_SIDE_STDLIB = {"hashlib", "secrets"}
#: What only some questions need, loaded when one asks: attribute texts, exact statistics (the
#: sorted-duration records), the maintenance lock.
ON_DEMAND_MODULES = {"kronicler.db.attr_scan", "kronicler.db.attr_keys",
                     "kronicler.db.durations", "kronicler.db.lock"}  # fmt: skip


def module_names() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """Package modules that ``module`` imports (the module itself when a name is not one)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join([*here, base] if base else here)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
        visit(node)

    visit(ast.parse(path.read_text("utf-8")))
    return {m for m in found if m in known and m != module}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    known = set(modules)
    return {m: imports_of(m, p, pkg, known) for m, (p, pkg) in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    for source, target in ALLOWED:
        assert target in graph[source], f"{source} -> {target} is gone: drop it from ALLOWED"
        graph[source].discard(target)
    assert cycles(graph) == []


def test_import_kronicler_loads_no_database_reader_or_writer() -> None:
    script = (
        "import json, sys, kronicler\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('kronicler'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
        cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "kronicler.capture" not in loaded  # loaded on first use of kronicler.capture
    assert {m for m in loaded if m.startswith("kronicler.db")} <= CAPTURE_DB_MODULES
    assert not {m for m in loaded if m.split(".")[1:2] in (["query"], ["server"], ["web"],
                                                               ["cli"])}  # fmt: skip


def _loaded_after(script: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script += "\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
        cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_decorator_loads_the_capture_side_and_stays_the_decorator(tmp_path: Path) -> None:
    """``kronicler.capture`` is the decorator whichever import came first, the submodule's
    (which binds the submodule to the package's name) included."""
    for first in ("import kronicler", "import kronicler.capture"):
        loaded = _loaded_after(
            "import json, sys, os\n"
            f"os.environ['KRONICLER_PATH'] = {str(tmp_path / 'db')!r}\n"
            f"{first}\nimport kronicler\n"
            "assert callable(kronicler.capture) and kronicler.capture.__module__ == "
            "'kronicler.capture', kronicler.capture\n"
            "f = kronicler.capture(lambda: 7)\nassert f() == 7\n"
            "assert kronicler.PipelineStatus is type(kronicler.status())\n"
        )  # fmt: skip
        assert {"kronicler.capture", "kronicler.otel.tracer"} <= loaded


def test_a_reader_loads_neither_the_capture_side_nor_multiprocessing(tmp_path: Path) -> None:
    """A process that only reads (a cold query, the CLI) pays for no OpenTelemetry, tracer or
    multiprocessing import; one that writes arms multiprocessing's exit hook."""
    from kronicler.db import Database

    with Database.open(tmp_path / "db") as db:
        db.append(names=["f"], start_unix_nano=[1], duration_ns=[2])
        assert db.flush()
    read = (
        "import json, sys\nfrom kronicler.db import Database\n"
        f"db = Database.open({str(tmp_path / 'db')!r}, readonly=True)\n"
        "assert db.stats()['f'].count == 1 and db.stats(since=0, until=5)['f'].count == 1\n"
    )
    loaded = _loaded_after(read)
    assert not {m for m in loaded if m.startswith(("kronicler.otel", "opentelemetry",
                                                   "multiprocessing"))}  # fmt: skip
    assert "kronicler.capture" not in loaded
    write = read.replace("readonly=True", "create=False")
    assert "multiprocessing" in _loaded_after(write)


def test_a_read_only_range_loads_no_write_bookkeeping_or_maintenance(tmp_path: Path) -> None:
    """A read-only open answering a range imports none of the write side's bookkeeping nor the
    maintenance modules; a writer that retains and compacts loads them, defaults and all."""
    from kronicler.db import Database

    path = str(tmp_path / "db")
    with Database.open(path, chunk_rows=4) as db:
        for start in (1, 10):
            db.append(names=["f", "g"], start_unix_nano=[start, start + 1], duration_ns=[2, 3])
            assert db.flush()
    loaded = _loaded_after(
        "import json, sys\nfrom kronicler.db import Database\n"
        f"db = Database.open({path!r}, readonly=True)\n"
        "got = {k: v.count for k, v in db.stats(since=0, until=5).items()}\n"
        "assert got == {'f': 1, 'g': 1}, got\n"
    )  # fmt: skip
    assert "kronicler.db.database" in loaded
    assert not loaded & WRITE_SIDE_MODULES, sorted(loaded & WRITE_SIDE_MODULES)
    assert not loaded & WRITE_SIDE_STDLIB, sorted(loaded & WRITE_SIDE_STDLIB)
    assert not loaded & ON_DEMAND_MODULES, sorted(loaded & ON_DEMAND_MODULES)
    loaded = _loaded_after(
        "import json, sys\nfrom kronicler.db import Database\n"
        f"db = Database.open({path!r}, create=False, chunk_rows=4)\n"
        "db.append(names=['f'], start_unix_nano=[20], duration_ns=[4])\nassert db.flush()\n"
        "assert db.retain(max_age_ns=1 << 62) == 0\n"
        "db.compact(time_disjoint=True, small_rows=1 << 20)\ndb.close()\n"
        "got = {k: v.count for k, v in Database.open(db.path, readonly=True).stats().items()}\n"
        "assert got == {'f': 3, 'g': 2}, got\n"
    )  # fmt: skip
    assert loaded >= WRITE_SIDE_MODULES | WRITE_SIDE_STDLIB


def test_the_writer_class_is_still_found_in_the_database_module() -> None:
    """The database loads its writer on the first write, yet ``database.SegmentWriter`` is the
    writer class, as before (and a test may put another in its place)."""
    from kronicler.db import database, writer

    assert database.SegmentWriter is writer.SegmentWriter
