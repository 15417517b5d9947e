"""Artifact benchmark: key computation and the warm start from the disk store.

    python benchmarks/artifacts.py

1. The key of a function that reaches ten helpers (each calling the next, in a user module):
   first computation in a fresh process, then again (reused fingerprints), median of runs.
2. A warm start: a fresh process whose disk store already holds the function's small artifact;
   the time from the first call to its result, minus the time the store takes to read the
   manifest and artifact, is the overhead of keys, manifest, guards and loading.
Targets: the key under 1 ms the first time; the warm-start overhead under 2 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"

MODULE = (
    "SCALE = 2\n"
    + "".join(f"def helper{i}(x):\n    return helper{i + 1}(x) + {i}\n" for i in range(9))
    + "def helper9(x):\n    return x * SCALE\n\ndef f(x):\n    return helper0(x)\n"
)

KEY_SCRIPT = """
import sys, time, json, os
sys.path[:0] = [{tests!r}, {work!r}]
import compilecache
from compilecache.artifacts import ArtifactHooks
from compilecache.stores import MemoryStore
from compilecache.dispatch import jit
from artifactbackend import FileLoggedBackend
import chain

times = []
class Timing(ArtifactHooks):
    def load(self, request):
        for _ in range(2 if not times else 1):
            request.hook_state = None  # key it afresh
            started = time.perf_counter()
            self.key_of(request)
            times.append(time.perf_counter() - started)
        return ()

hooks = Timing(MemoryStore())
f = jit(chain.f, backend=FileLoggedBackend(os.devnull), hooks=hooks)
f(1.5)
print(json.dumps(times))
"""

WARM_SCRIPT = """
import sys, time, json, os
sys.path[:0] = [{tests!r}, {work!r}]
t0 = time.perf_counter()
import compilecache
t1 = time.perf_counter()
from compilecache.dispatch import jit
from artifactbackend import FileLoggedBackend
import chain
f = jit(chain.f, backend=FileLoggedBackend({log!r}))
t2 = time.perf_counter()
result = f(1.5)  # the first miss: imports the persistence modules, opens the store, loads
t3 = time.perf_counter()
g = jit(chain.f, backend=FileLoggedBackend({log!r}), dynamic=True)  # a second miss, all warm
t4 = time.perf_counter()
g(1.5)
t5 = time.perf_counter()
store = compilecache.default_hooks.hooks().store
names = [k for k in store.keys() if k.startswith(("cc1/m/", "cc1/a/"))]
t6 = time.perf_counter()
for name in names:
    store.get(name)
read = time.perf_counter() - t6
print(json.dumps({{"import": t1 - t0, "first": t3 - t2, "again": t5 - t4, "read": read,
                  "result": result[0]}}))
"""


def run(script: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="compilecache-artifacts-bench-"))
    (work / "chain.py").write_text(textwrap.dedent(MODULE))
    env = {**os.environ, "COMPILECACHE_DIR": str(work / "cache")}
    env.pop("COMPILECACHE_REMOTE", None)
    # Measure as an installed package runs: with bytecode written once and reused. (This
    # machine sets PYTHONDONTWRITEBYTECODE, which recompiles every module in every process.)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(HERE.parent / "src"), str(TESTS), str(work)],
        env=env,
        check=True,
    )
    firsts, agains = [], []
    for _ in range(9):
        times = json.loads(run(KEY_SCRIPT.format(tests=str(TESTS), work=str(work)), env))
        firsts.append(times[0] * 1e3)
        agains.append(times[1] * 1e3)
    log = str(work / "log")
    run(WARM_SCRIPT.format(tests=str(TESTS), work=str(work), log=log), env)  # cold: compiles
    samples: dict[str, list[float]] = {"import": [], "first": [], "again": [], "read": []}
    for _ in range(9):
        warm = json.loads(run(WARM_SCRIPT.format(tests=str(TESTS), work=str(work), log=log), env))
        assert warm["result"] == "loaded", warm
        for name, values in samples.items():
            values.append(warm[name] * 1e3)
    key_first, key_again = statistics.median(firsts), statistics.median(agains)
    figures = {name: statistics.median(values) for name, values in samples.items()}
    overhead = figures["again"] - figures["read"]
    print("key of a function reaching ten helpers (median of 9 fresh processes)")
    print(f"  first computation in a process: {key_first:6.3f} ms (target < 1 ms)")
    print(f"  computed again:                 {key_again:6.3f} ms")
    print("warm start from the disk store, small artifact (median of 9 fresh processes)")
    print(f"  import compilecache:                           {figures['import']:7.3f} ms")
    print(f"  first miss, loaded from the store:            {figures['first']:7.3f} ms")
    print("    (includes importing the persistence modules and opening the store, once)")
    print(f"  a miss loaded once those are warm:            {figures['again']:7.3f} ms")
    print(f"  of which the store reads:                     {figures['read']:7.3f} ms")
    print(f"  overhead above the store reads, warm:         {overhead:7.3f} ms (target < 2 ms)")
    print(
        f"  overhead above the store reads, first miss:   "
        f"{figures['first'] - figures['read']:7.3f} ms"
    )
    print("Targets")
    print(f"  {'met   ' if key_first < 1 else 'MISSED'} key under 1 ms the first time")
    print(f"  {'met   ' if overhead < 2 else 'MISSED'} warm-start overhead under 2 ms (warm)")
    first_ok = figures["first"] - figures["read"] < 2
    print(f"  {'met   ' if first_ok else 'MISSED'} warm-start overhead under 2 ms (first miss)")


if __name__ == "__main__":
    main()
