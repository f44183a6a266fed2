"""The windowed engine's own cost per sweep, for two source trees, interleaved in one run.

    python benchmarks/bench_engine_overhead.py --trees /path/to/main /path/to/branch

A cheap drift (``y' = -y`` on 64 numbers) makes the engine's bookkeeping, not the drift,
the cost of a sweep. Each tree runs in its own subprocess (``PYTHONPATH=tree``), one torch
thread, alternating A B A B ... ``--rounds`` times; the table gives the median wall and CPU
time per sweep of each scheme (the sequential loop: per step) and the sweep counts (which must
agree between the trees).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

PROBE = r"""
import json, time, torch, parasolve
torch.set_num_threads(1)
y0 = torch.linspace(-1, 1, 64, dtype=torch.float64)
t = torch.linspace(0, 4, 2001, dtype=torch.float64)
out = {}
for method in ["sequential", "picard", "anderson", "newton", "parareal"]:
    kw = dict(method=method, window=200, tol=1e-9, vectorized=True, save="last")
    parasolve.solve(lambda t, y: -y, y0, t, **kw)  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    sol = parasolve.solve(lambda t, y: -y, y0, t, **kw)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    out[method] = [wall / sol.stats.iterations, sol.stats.iterations, cpu / sol.stats.iterations]
print(json.dumps(out))
"""


def run(tree: str) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs=2, required=True, metavar=("A", "B"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = {tree: [] for tree in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            results[tree].append(run(tree))
    print("| scheme | sweeps | " + " | ".join(f"ms/sweep {k}" for k in "AB") + " | B/A | "
          + " | ".join(f"CPU ms/sweep {k}" for k in "AB") + " | B/A CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in results[args.trees[0]][0]:
        med = [statistics.median(r[method][0] for r in results[tree]) * 1e3 for tree in args.trees]
        cpu = [statistics.median(r[method][2] for r in results[tree]) * 1e3 for tree in args.trees]
        sweeps = {r[method][1] for tree in args.trees for r in results[tree]}
        print(f"| {method} | {'/'.join(map(str, sorted(sweeps)))} | {med[0]:.3f} | {med[1]:.3f} | "
              f"{med[1] / med[0]:.2f} | {cpu[0]:.3f} | {cpu[1]:.3f} | {cpu[1] / cpu[0]:.2f} |")
    for k, tree in zip("AB", args.trees):
        print(f"{k} = {tree}")


if __name__ == "__main__":
    main()
