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
import math
import warnings
from dataclasses import replace
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
from parasolve.evaluators import tangents_per_point  # noqa: E402
from parasolve.schemes import Newton  # noqa: E402
from parasolve.schemes.base import per_step  # noqa: E402
from suite_rows import all_rows, kepler, lorenz, mlp, reference, van_der_pol  # noqa: E402
from suite_solvers import Counter, counted  # noqa: E402
from jacobian_ceiling import truncated  # noqa: E402

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


def cpu(run) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


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


# ------------------------------------------------------------------ --group variants (issue 22, "Larger states")

JVP = {"jacobian": "full", "derivative": "jvp"}
JVP_ROWS = ["vdp-mu1-rtol1e-05", "vdp-mu1-rtol1e-08", "lorenz-rtol1e-08", "kepler-rtol1e-08", "mlp-B16-D2-rtol1e-05"]


class TangentCounter(Counter):
    """The suite's counter, plus the forward-mode tangents riding on each counted state (one
    evaluation each, as ``stats.nfe`` counts them)."""

    def count(self, y):
        before = self.points
        super().count(y)
        self.points += (self.points - before) * tangents_per_point()


class Truncated(Newton):
    """Full-Jacobian Newton whose measured Jacobians are cut before each update: to their diagonal
    (``rank=None``: the exact-diagonal quasi-DEER model) or to ``s I`` plus the best rank-``rank``
    part (an oracle: what any rank-``rank`` model could do at best)."""

    def __init__(self, rank=None):
        super().__init__(jacobian="full")
        self.rank = rank

    def update(self, state, window):
        jac = torch.nan_to_num(window.extra)
        cut = torch.diag_embed(jac.diagonal(dim1=-2, dim2=-1)) if self.rank is None else truncated(jac, self.rank)
        return super().update(state, replace(window, extra=cut))


class Trusted(Newton):
    """Full-Jacobian Newton with a per-step trust factor ``theta_i`` on ``J_i`` (Levenberg-Marquardt
    in the scan's terms: ``theta = 0`` is Picard's row): halved where the step's defect grew since the
    last sweep, doubled (up to 1) where it fell. Per-solve state on the instance: one solve each."""

    def __init__(self, n):
        super().__init__(jacobian="full")
        self.theta = torch.ones(n, dtype=torch.float64)
        self.previous = torch.full((n,), math.nan, dtype=torch.float64)

    def update(self, state, window):
        s, w, ys = window.shift, window.width, window.ys
        defect = per_step(ys[s + 1:] - ys[s:w] - window.inc[s:]).abs().amax(1).double()
        steps = torch.arange(window.start + s, window.start + w)
        theta = torch.where(defect > self.previous[steps], 0.5 * self.theta[steps], (2 * self.theta[steps]).clamp(max=1))
        self.theta[steps], self.previous[steps] = theta, defect
        jac = window.extra.clone()
        jac[s:] = jac[s:] * theta.reshape(-1, 1, 1).to(jac.dtype)
        return super().update(state, replace(window, extra=jac))


class Shrunk(Newton):
    """Full-Jacobian Newton with every ``J_i`` scaled by ``theta`` (a fixed step toward Picard)."""

    def __init__(self, theta: float):
        super().__init__(jacobian="full")
        self.theta = theta

    def update(self, state, window):
        return super().update(state, replace(window, extra=self.theta * window.extra))


class NoRestart(Newton):
    """Full-Jacobian Newton without the engine's restart of diverging slots."""

    divergence_ratio = None


def jvp_rows(repeats: int):
    """odeint with Newton forced, Jacobians by finite differences or by JVP: evaluations (tangents
    counted), sweeps, and CPU time of the two, interleaved (order alternating), median of ``repeats``."""
    rows = {r.name: r for r in all_rows()}
    print("| row | derivative | evals | sweeps | CPU s (median) | jvp/fd CPU (median of pairs) | err |")
    print("|---|---|---|---|---|---|---|")
    for name in JVP_ROWS:
        row = rows[name]
        problem = row.make()
        counter = TangentCounter(problem.y0.numel())
        f = counted(problem.f, counter)
        ref = reference(problem)
        blocks = {"blocks": row.batch} if row.batch > 1 else {}
        runs = {}
        for label, opts in (("fd", {"jacobian": "full", **blocks}), ("jvp", {**JVP, **blocks})):
            def go(opts=opts):
                with torch.no_grad():
                    return parasolve.odeint(f, problem.y0, problem.t, rtol=row.rtol, atol=row.atol, full_output=True,
                                            options={"scheme": "newton", "scheme_options": opts})
            counter.reset()
            res = go()
            runs[label] = (go, counter.points, res.stats.sweeps, float((res.ys - ref).abs().max()))
        times = {"fd": [], "jvp": []}
        for k in range(repeats):
            for label in (("fd", "jvp") if k % 2 == 0 else ("jvp", "fd")):
                times[label].append(cpu(runs[label][0]))
        ratio = statistics.median(j / d for j, d in zip(times["jvp"], times["fd"]))
        for label in ("fd", "jvp"):
            _, points, sweeps, err = runs[label]
            print(f"| {name} | {label} | {points:.0f} | {sweeps} | {statistics.median(times[label]):.3g} | "
                  f"{ratio:.2f} | {err:.1e} |" if label == "jvp" else
                  f"| {name} | {label} | {points:.0f} | {sweeps} | {statistics.median(times[label]):.3g} | | {err:.1e} |",
                  flush=True)


def structure_rows():
    """``solve`` (RK4, tol 1e-8) with each Jacobian model: sweeps and evaluations per step and stage."""
    print("| problem | model | sweeps | evaluations per step and stage | max error vs sequential |")
    print("|---|---|---|---|---|")
    cases = [("vdp-mu1", van_der_pol(1.0), 10.0, 1000), ("lorenz", lorenz(), 2.0, 1000),
             ("mlp-B1-D16", mlp(1, 16), 5.0, 200), ("mlp-B1-D64", mlp(1, 64), 5.0, 200)]
    for name, prob, T, N in cases:
        y0, t = prob.y0.reshape(-1), torch.linspace(0.0, T, N + 1, dtype=torch.float64)
        models = [("full (finite differences)", "newton", {"jacobian": "full", "max_size": 64}),
                  ("full (JVP)", "newton", {**JVP, "max_size": 64}), ("exact diagonal (quasi-DEER)", Truncated(), None)]
        if name.startswith("mlp"):
            models += [(f"sI + rank {r} oracle", Truncated(r), None) for r in (1, 4)]
        models += [("secant diagonal", "newton", {"jacobian": "diagonal"}), ("scalar secant", "newton", {"jacobian": "scalar"}),
                   ("picard", "picard", None)]
        with torch.no_grad():
            seq = parasolve.solve(prob.f, y0, t, method="sequential", step="rk4")
            for label, method, opts in models:
                sol = parasolve.solve(prob.f, y0, t, method=method, options=opts, step="rk4", tol=1e-8, throw=False)
                print(f"| {name} | {label} | {sol.stats.iterations}{'' if sol.converged else ' (not converged)'} | "
                      f"{sol.stats.nfe / N / 4:.1f} | {float((sol.ys - seq.ys).abs().max()):.1e} |", flush=True)


def robustness_rows():
    """Long, eccentric and stiff-ish problems on fixed RK4 grids (tol 1e-8) from the default guess:
    plain full Newton against its safeguarded, damped and trust-region variants."""
    print("| problem | variant | sweeps | evaluations per step and stage | fallbacks | max error vs sequential |")
    print("|---|---|---|---|---|---|")
    full = {"jacobian": "full"}
    cases = [("lorenz t in [0, 20], N 4000", lorenz(), 20.0, 4000), ("kepler e=0.9, 5 periods, N 4000", kepler(e=0.9), None, 4000),
             ("vdp mu=10, t in [0, 30], N 600", van_der_pol(10.0), 30.0, 600),
             ("vdp mu=30, t in [0, 60], N 3000", van_der_pol(30.0), 60.0, 3000)]
    for name, prob, T, N in cases:
        t = torch.linspace(0.0, float(prob.t[-1]) if T is None else T, N + 1, dtype=torch.float64)
        variants_ = [("full (plain)", "newton", full), ("safeguard", "newton", {**full, "safeguard": True}),
                     ("damping 0.5", "newton", {**full, "damping": 0.5}), ("J scaled by 0.5", Shrunk(0.5), None),
                     ("adaptive trust factor", Trusted(N), None), ("no restart of diverging slots", NoRestart(jacobian="full"), None)]
        with torch.no_grad():
            seq = parasolve.solve(prob.f, prob.y0, t, method="sequential", step="rk4")
            for label, method, opts in variants_:
                sol = parasolve.solve(prob.f, prob.y0, t, method=method, options=opts, step="rk4", tol=1e-8, throw=False)
                print(f"| {name} | {label} | {sol.stats.iterations}{'' if sol.converged else ' (not converged)'} | "
                      f"{sol.stats.nfe / N / 4:.1f} | {sol.stats.fallbacks} | {float((sol.ys - seq.ys).abs().max()):.1e} |",
                      flush=True)


def newton_variants(repeats: int):
    warnings.simplefilter("ignore", RuntimeWarning)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, load {os.getloadavg()}")
    jvp_rows(repeats)
    print()
    structure_rows()
    print()
    robustness_rows()
    print(f"# load at the end {os.getloadavg()}")


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
