"""Newton variants between full Jacobians and Picard, and the levers on forced-scheme evaluations.

For issue 22's rows (``suite_rows``), ``parasolve.odeint`` with its parallel scheme forced, each
variant against torchdiffeq's dopri5 at the same rtol/atol: drift evaluations over torchdiffeq's
(states; a row of a ``(B, D)`` batch counts ``1/B``), sweeps, CPU time (one thread, median of
``--repeats``, interleaved with torchdiffeq), error against the suite's tight reference.

    python benchmarks/bench_larger_states.py --group classic   # Jacobian reuse, window (issue 22, item 4)
    python benchmarks/bench_larger_states.py --group mlp       # larger states: secant, blocks, per trajectory
    python benchmarks/bench_larger_states.py --group fixed     # solve on 1000 RK4 steps: window x chord
    python benchmarks/bench_larger_states.py --group variants  # exact (JVP) vs FD Jacobians, exact diagonal,
                                                               # rank-r oracle, damping on hard problems

Writes ``<out-dir>/larger-states-<group>.csv`` and prints a markdown table (docs/benchmarks/larger-states.md).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torchdiffeq

sys.path.insert(0, str(Path(__file__).parent))
import parasolve  # noqa: E402
from newton_variants import cpu, newton_variants  # noqa: E402
from suite_rows import all_rows, reference  # noqa: E402
from suite_solvers import Counter, counted  # noqa: E402

FULL = {"jacobian": "full"}
CLASSIC = ["vdp-mu1-rtol1e-05", "vdp-mu5-rtol1e-05", "lorenz-rtol1e-05", "kepler-rtol1e-05",
           "vdp-mu1-rtol1e-08", "lorenz-rtol1e-08", "kepler-rtol1e-08"]
MLP = ["mlp-B1-D64-rtol1e-05", "mlp-B16-D2-rtol1e-05", "mlp-B16-D16-rtol1e-05", "mlp-B16-D64-rtol1e-05"]


def variants(group: str, batch: int):
    """``(label, options for odeint)`` of each variant of the group."""
    if group == "classic":
        return [("newton full", {"scheme": "newton", "scheme_options": FULL}),
                ("newton full chord=0.2", {"scheme": "newton", "scheme_options": {**FULL, "chord": 0.2}}),
                ("newton full window=64", {"scheme": "newton", "scheme_options": FULL, "window": 64}),
                ("newton full chord=0.2 window=64", {"scheme": "newton", "scheme_options": {**FULL, "chord": 0.2},
                                                      "window": 64})]
    blocks = {"blocks": batch} if batch > 1 else {}
    out = [("picard", {"scheme": "picard"}),
           ("newton scalar secant", {"scheme": "newton", "scheme_options": {"jacobian": "scalar"}}),
           ("newton diagonal secant", {"scheme": "newton", "scheme_options": {"jacobian": "diagonal"}}),
           ("newton diagonal secant damping=0.5", {"scheme": "newton",
                                                   "scheme_options": {"jacobian": "diagonal", "damping": 0.5}})]
    if batch > 1:
        out += [("picard per trajectory", {"scheme": "picard", "scheme_options": blocks}),
                ("newton full blocks, shared front", {"scheme": "newton", "scheme_options":
                                                      {**FULL, **blocks, "per_trajectory": False}}),
                ("newton full per trajectory", {"scheme": "newton", "scheme_options": {**FULL, **blocks}}),
                ("newton full per trajectory window=64", {"scheme": "newton", "scheme_options": {**FULL, **blocks},
                                                          "window": 64})]
    else:
        out += [("newton full", {"scheme": "newton", "scheme_options": FULL}),
                ("newton full window=64", {"scheme": "newton", "scheme_options": FULL, "window": 64})]
    return out


def measure(row, label, options, repeats: int, budget: float) -> dict:
    problem = row.make()
    counter = Counter(problem.y0.numel())
    f = counted(problem.f, counter)
    tol = {"rtol": row.rtol, "atol": row.atol}
    ref = reference(problem)

    def ps():
        with torch.no_grad():
            return parasolve.odeint(f, problem.y0, problem.t, options=options, full_output=True, **tol)

    def td():
        with torch.no_grad():
            return torchdiffeq.odeint(f, problem.y0, problem.t, method="dopri5", **tol)

    counter.reset()
    first = time.perf_counter()
    try:
        res = ps()
    except Exception as exc:  # noqa: BLE001 -- a failing variant is a result
        return {"row": row.name, "variant": label, "failure": f"{type(exc).__name__}: {str(exc)[:120]}"}
    first = time.perf_counter() - first
    ps_points, stats = counter.points, res.stats
    err_ps = float((res.ys - ref).abs().max())
    counter.reset()
    ys_td = td()
    td_points, err_td = counter.points, float((ys_td - ref).abs().max())
    ps_cpu, td_cpu = [], []
    for k in range(repeats if first < budget else 0):  # interleaved, order alternating
        pair = (ps, td) if k % 2 == 0 else (td, ps)
        times = [cpu(fn) for fn in pair]
        (ps_cpu if pair[0] is ps else td_cpu).append(times[0])
        (td_cpu if pair[0] is ps else ps_cpu).append(times[1])
    return {"row": row.name, "variant": label, "evals_ps_over_td": ps_points / td_points,
            "sweeps": getattr(stats, "sweeps", None), "passes": getattr(stats, "passes", None),
            "cpu_ps": statistics.median(ps_cpu) if ps_cpu else None,
            "cpu_td": statistics.median(td_cpu) if td_cpu else None,
            "first_call_wall": first, "err_ps": err_ps, "err_td": err_td, "failure": ""}


def fixed_grid():
    """``solve`` (Newton, full Jacobians, tol 1e-8) on 1000 RK4 steps of the suite's Van der Pol and
    Lorenz drifts: sweeps and evaluations per step and stage for each window and ``chord``."""
    rows = {r.name: r for r in all_rows()}
    print("| problem | window | chord | sweeps | evaluations per step and stage | max error vs sequential |")
    print("|---|---|---|---|---|---|")
    for name, T in (("vdp-mu1-rtol1e-05", 10.0), ("vdp-mu5-rtol1e-05", 10.0), ("lorenz-rtol1e-05", 2.0)):
        problem = rows[name].make()
        t = torch.linspace(0.0, T, 1001, dtype=torch.float64)
        seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", step="rk4")
        for window in (1000, 300, 100, 30):
            for chord in (0.0, 0.2):
                sol = parasolve.solve(problem.f, problem.y0, t, method="newton", window=window, step="rk4", tol=1e-8,
                                      options={**FULL, "chord": chord})
                print(f"| {name.split('-rtol')[0]} | {window} | {chord} | {sol.stats.iterations} | "
                      f"{sol.stats.nfe / 1000 / 4:.1f} | {float((sol.ys - seq.ys).abs().max()):.1e} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", choices=("classic", "mlp", "fixed", "variants"), required=True)
    parser.add_argument("--rows", default=None, help="comma-separated row names (default: the group's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=20.0, help="no timed repeats for a variant whose first call "
                                                                   "took longer (s)")
    parser.add_argument("--out-dir", default="docs/benchmarks")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.group == "fixed":
        return fixed_grid()
    if args.group == "variants":
        return newton_variants(max(args.repeats, 3))
    names = args.rows.split(",") if args.rows else (CLASSIC if args.group == "classic" else MLP)
    rows = {r.name: r for r in all_rows()}
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, load {os.getloadavg()}")
    results = []
    for name in names:
        row = rows[name]
        for label, options in variants(args.group, row.batch):
            r = measure(row, label, options, args.repeats, args.budget)
            results.append(r)
            if r["failure"]:
                print(f"| {name} | {label} | fails: {r['failure']} |", flush=True)
                continue
            ratio = r["cpu_ps"] / r["cpu_td"] if r["cpu_ps"] else float("nan")
            print(f"| {name} | {label} | {r['evals_ps_over_td']:.1f} | {r['sweeps']} | "
                  f"{r['cpu_ps'] if r['cpu_ps'] is None else round(r['cpu_ps'], 4)} | "
                  f"{r['cpu_td'] if r['cpu_td'] is None else round(r['cpu_td'], 4)} | {ratio:.3g} | "
                  f"{r['err_ps']:.1e} | {r['err_td']:.1e} |", flush=True)
    print(f"# load at the end {os.getloadavg()}")
    out = Path(args.out_dir) / f"larger-states-{args.group}.csv"
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(results[0].keys()) + ["failure"] * 0, extrasaction="ignore")
        writer.writeheader()
        for r in results:
            writer.writerow({k: r.get(k) for k in writer.fieldnames})


if __name__ == "__main__":
    main()
