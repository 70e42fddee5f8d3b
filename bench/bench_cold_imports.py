"""What a cold read-only question pays for imports: this checkout beside a baseline, same run.

Run by hand:  python bench/bench_cold_imports.py [--baseline /work/main] [--repeat 20]
                  [--callgrind 3]

A small database (five flushes of 20,000 rows, seven functions) is written once in a temporary
directory by this checkout. Then, the two checkouts alternating so that a busy machine skews both
alike, a fresh process per repetition opens it read-only and asks one ``stats(since=, until=)``
(wall and CPU time, median and min), and another reports ``-X importtime``'s cumulative time of
``kronicler.db.database`` with numpy imported first (Kronicler's own imports and what they pull
in). Bytecode is cached (``PYTHONPYCACHEPREFIX`` in the temporary directory) after a first run.

With ``--callgrind N`` (valgrind installed), each checkout also runs N times under callgrind:
``import numpy`` alone, then numpy and every module the question loads, then the question;
printed are the medians of the whole question and of its imports less numpy's (instructions
are steadier than time on a shared machine; numpy's own count varies by a few million).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUILD = """
import sys, numpy as np
from kronicler.db import Database
with Database.open(sys.argv[1], chunk_rows=4096) as db:
    rng = np.random.default_rng(1)
    for b in range(5):
        n = 20_000
        db.append(names=[f"f{i % 7}" for i in range(n)],
                  start_unix_nano=(np.arange(n) + b * n) * 1000,
                  duration_ns=rng.integers(1, 10**6, n))
        db.flush()
"""

ASK = """
import sys
from kronicler.db import Database
db = Database.open(sys.argv[1], readonly=True)
got = db.stats(since=10_000_000, until=60_000_000)
assert sum(s.count for s in got.values()) == 50_000, got
if len(sys.argv) > 2:
    import json
    json.dump(sorted(m for m in sys.modules if m.startswith("kronicler")), open(sys.argv[2], "w"))
"""

IMPORT_ALL = """
import json, sys, numpy
for name in json.load(open(sys.argv[1])):
    __import__(name)
"""


def env_for(checkout: Path, cache: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONPYCACHEPREFIX": str(cache),
           "PYTHONHASHSEED": "0"}  # fmt: skip
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # else every process compiles Kronicler
    return env


def cold_ask(env: dict[str, str], script: Path, db: Path) -> tuple[float, float]:
    """Wall and CPU milliseconds of one fresh process asking one question."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script), str(db)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"the question failed ({proc.returncode})")
    return (time.perf_counter() - start) * 1e3, (usage.ru_utime + usage.ru_stime) * 1e3


def import_ms(env: dict[str, str]) -> float:
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import numpy; import kronicler.db.database"],
        env=env, capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    for line in err.splitlines():
        if line.split("|")[-1] == " kronicler.db.database":  # top level: no indent
            return int(line.split("|")[1]) / 1e3
    raise SystemExit("no kronicler.db.database in -X importtime's output")


def instructions(env: dict[str, str], *args: str) -> int:
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, *args],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split()[-1])
    raise SystemExit("no instruction count in callgrind's output")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=Path("/work/main"))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--callgrind", type=int, default=0, metavar="N")
    args = parser.parse_args()
    checkouts = {"this": ROOT, "baseline": args.baseline.resolve()}
    tmp = Path(tempfile.mkdtemp(prefix="kronicler-cold-"))
    here = os.getcwd()
    os.chdir(tmp)  # ``python -c`` puts the working directory first on sys.path: no checkout here
    try:
        cache, db = tmp / "pycache", tmp / "db"
        scripts = {}
        for name, text in (("build", BUILD), ("ask", ASK), ("import_all", IMPORT_ALL)):
            scripts[name] = tmp / f"{name}.py"
            scripts[name].write_text(text)
        envs = {k: env_for(v, cache) for k, v in checkouts.items()}
        subprocess.run([sys.executable, str(scripts["build"]), str(db)], env=envs["this"],
                       check=True)  # fmt: skip
        for k, env in envs.items():  # compiles each checkout's bytecode once, lists its modules
            subprocess.run([sys.executable, str(scripts["ask"]), str(db), str(tmp / f"{k}.json")],
                           env=env, check=True)  # fmt: skip
        wall: dict[str, list[float]] = {k: [] for k in envs}
        cpu: dict[str, list[float]] = {k: [] for k in envs}
        imports: dict[str, list[float]] = {k: [] for k in envs}
        for _ in range(args.repeat):
            for k, env in envs.items():
                w, c = cold_ask(env, scripts["ask"], db)
                wall[k].append(w)
                cpu[k].append(c)
                imports[k].append(import_ms(env))
        print(f"load average {os.getloadavg()[0]:.2f}; {args.repeat} cold asks each, alternating")
        for k in envs:
            print(f"{k:9s} cold ask: wall median {statistics.median(wall[k]):6.1f} ms, min "
                  f"{min(wall[k]):6.1f}; CPU median {statistics.median(cpu[k]):6.1f}, min "
                  f"{min(cpu[k]):6.1f}; -X importtime kronicler.db.database (numpy first) median "
                  f"{statistics.median(imports[k]):5.1f} ms, min {min(imports[k]):5.1f}")  # fmt: skip
        if args.callgrind and shutil.which("valgrind"):
            for k, env in envs.items():
                runs = []
                for _ in range(args.callgrind):
                    numpy = instructions(env, "-c", "import numpy")
                    loaded = instructions(env, str(scripts["import_all"]), str(tmp / f"{k}.json"))
                    ask = instructions(env, str(scripts["ask"]), str(db))
                    runs.append((ask, loaded - numpy, numpy))
                q, kron, bare = (statistics.median(r[i] for r in runs) for i in range(3))
                print(f"{k:9s} callgrind ({args.callgrind} runs, medians): question "
                      f"{q / 1e6:6.1f}M instructions; Kronicler's imports (with the standard "
                      f"modules they load) {kron / 1e6:6.1f}M; import numpy {bare / 1e6:6.1f}M")  # fmt: skip
    finally:
        os.chdir(here)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
