"""Sweeps, drift evaluations and distance to the sequential solution for every scheme.

    python benchmarks/bench_schemes.py analytic      # analytic problems + Van der Pol + Lorenz
    python benchmarks/bench_schemes.py digits        # the digits UNet: DDPM-1000, DDIM-100, DPM-Solver++-50
    python benchmarks/bench_schemes.py tolerance     # iterations vs tol (CSV + PNG in docs/img/schemes/)
    python benchmarks/bench_schemes.py warm          # warm starts: coarse solve, neighbouring trajectory
    python benchmarks/bench_schemes.py all

Prints markdown tables (pasted into docs/benchmarks/schemes.md) and writes CSVs to
docs/img/schemes/. Single-threaded; run under ``nice`` on a shared machine. Columns:

- sweeps: ``stats.iterations`` (parareal: parareal iterations);
- depth: ``stats.drift_calls``, the sequential depth in batched drift rounds, comparable across
  schemes (sequential: N x stages);
- nfe: drift evaluations per time point (for the digits model: per batch of samples);
- max diff: ``max |x - x_sequential|`` over the trajectory (digits: the final samples).
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import time
from pathlib import Path

import torch

import parasolve
from parasolve import problems

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "schemes"

# (label, method, options) -- the variants compared everywhere.
SCHEMES = [
    ("picard", "picard", None),
    ("anderson", "anderson", None),
    ("newton", "newton", None),
    ("newton-diag", "newton", {"jacobian": "diagonal"}),
    ("parareal", "parareal", None),
    ("parareal-rk4", "parareal", {"coarse": "rk4"}),
    ("parareal-odeint", "parareal", {"fine": "odeint", "coarse": "rk4"}),
]
ODE_ONLY = {"parareal-rk4", "parareal-odeint"}  # coarse/fine that treat f as an ODE right-hand side
# Newton with full finite-difference Jacobians: small states only (not the digits model).
FULL = [("newton-full", "newton", {"jacobian": "full"})]
# Same parallelism as parareal's default sqrt(N) segments: windowed schemes with window 32.
NARROW = [("picard-w32", "picard", None), ("anderson-w32", "anderson", None), ("newton-w32", "newton", None)]


def lorenz(t1: float = 1.0) -> problems.ODEProblem:
    """Lorenz-63 (sigma 10, rho 28, beta 8/3) over a short horizon; reference: the sequential solve."""
    def f(t, y):
        x, v, z = y[..., 0], y[..., 1], y[..., 2]
        return torch.stack([10 * (v - x), x * (28 - z) - v, x * v - 8 / 3 * z], dim=-1)

    return problems.ODEProblem("lorenz", f, torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64), 0.0, t1,
                               exact=None, lipschitz=float("nan"))


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread"


def row_of(label, sol, ref, seconds, extra=None):
    diff = float((sol.ys - ref).abs().max())
    fallbacks = extra if extra is not None else ""
    return dict(scheme=label, sweeps=sol.stats.iterations, depth=sol.stats.drift_calls, nfe=sol.stats.nfe,
                max_diff=diff, converged=sol.converged, fallbacks=fallbacks, seconds=round(seconds, 2))


def print_table(title, rows, keys):
    print(f"\n### {title}\n")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k, "")
            cells.append(f"{v:.1e}" if isinstance(v, float) and k in ("max_diff", "tol", "ode_err") else str(v))
        print("| " + " | ".join(cells) + " |")


def write_csv(name, rows):
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / name, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)


def solve_timed(f, y0, t, label, method, options, **kw):
    scheme = parasolve.schemes.resolve_scheme(method, options)
    start = time.perf_counter()
    sol = parasolve.solve(f, y0, t, method=scheme, vectorized=True, throw=False, **kw)
    return sol, time.perf_counter() - start, sol.stats.fallbacks


# ---------------------------------------------------------------------------- analytic + nonlinear ODEs
def analytic(n=1000, step="heun", tol=1e-7):
    cases = problems.all_ode_problems() + [lorenz()]
    rows = []
    for problem in cases:
        t = problem.grid(n)
        seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", step=step, vectorized=True)
        if problem.exact is not None:
            ode = problem.exact(t)
        else:  # Lorenz: RK4 on a 20x finer grid, subsampled
            fine = parasolve.solve(problem.f, problem.y0, problem.grid(20 * n), method="sequential", step="rk4",
                                   vectorized=True)
            ode = fine.ys[::20]
        rows.append(dict(problem=problem.name, scheme="sequential", sweeps=n, depth=seq.stats.drift_calls,
                         nfe=seq.stats.nfe, max_diff=0.0, converged=True, fallbacks="", seconds="",
                         ode_err=float((seq.ys - ode).abs().max())))
        for label, method, options in SCHEMES + FULL + NARROW:
            window = 32 if label.endswith("-w32") else None
            sol, sec, fb = solve_timed(problem.f, problem.y0, t, label, method, options, step=step, tol=tol,
                                       window=window)
            rows.append(dict(problem=problem.name, **row_of(label, sol, seq.ys, sec, fb),
                             ode_err=float((sol.ys - ode).abs().max())))
    print_table(f"ODE problems: N = {n}, step {step}, tol {tol:g}, full window unless -w32 (float64; {machine()})",
                rows, ["problem", "scheme", "sweeps", "depth", "nfe", "max_diff", "ode_err", "converged",
                       "fallbacks"])
    write_csv("analytic.csv", rows)
    return rows


# ---------------------------------------------------------------------------- digits diffusion model
def digits(samples=2, seed=0, parareal_iters=6):
    from parasolve import diffusion, zoo

    den = zoo.pretrained("digits")
    shape = (samples, 1, 16, 16)
    configs = [("ddpm", 1000, 128, (5e-2, 1e-2)), ("ddim", 100, 100, (1e-1, 3e-2)),
               ("dpmsolver++", 50, 50, (1e-1, 3e-2))]
    rows = []
    for sampler, steps, window, tols in configs:
        gen = torch.Generator().manual_seed(seed)
        x_T = torch.randn(shape, generator=gen)
        noise = torch.randn((steps, *shape), generator=gen) if sampler == "ddpm" else None
        start = time.perf_counter()
        ref = diffusion.sample(den, shape, sampler=sampler, steps=steps, method="sequential", x_T=x_T, noise=noise)
        rows.append(dict(sampler=f"{sampler}-{steps}", scheme="sequential", window=1, tol="", sweeps=steps,
                         nfe=ref.stats.nfe, max_diff=0.0, converged=True, fallbacks="",
                         seconds=round(time.perf_counter() - start, 1)))
        print(rows[-1], flush=True)
        for label, method, options, tol in [(*s, tol) for tol in tols for s in SCHEMES]:
            if label in ODE_ONLY or label == "newton-diag":
                continue
            kw = {}
            if method == "parareal":
                if sampler == "dpmsolver++":  # multistep: parareal needs a one-step map
                    rows.append(dict(sampler=f"{sampler}-{steps}", scheme=label, window="", tol=tol, sweeps="n/a",
                                     nfe="", max_diff="", converged="multistep map", fallbacks="", seconds=""))
                    continue
                kw["max_iters"] = parareal_iters  # its iterations are expensive; report where it stands
            scheme = parasolve.schemes.resolve_scheme(method, options)
            start = time.perf_counter()
            out = diffusion.sample(den, shape, sampler=sampler, steps=steps, method=scheme, window=window,
                                   tol=tol, x_T=x_T, noise=noise, throw=False, **kw)
            rows.append(dict(sampler=f"{sampler}-{steps}", scheme=label, window=window, tol=tol,
                             sweeps=out.stats.iterations, depth=out.stats.drift_calls, nfe=out.stats.nfe,
                             max_diff=float((out.x - ref.x).abs().max()), converged=out.converged,
                             fallbacks=out.stats.fallbacks,
                             seconds=round(time.perf_counter() - start, 1)))
            print(rows[-1], flush=True)
    print_table(f"Digits UNet, {samples} samples, float32 ({machine()})", rows,
                ["sampler", "scheme", "window", "tol", "sweeps", "depth", "nfe", "max_diff", "converged",
                 "fallbacks", "seconds"])
    write_csv("digits.csv", rows)
    return rows


# ---------------------------------------------------------------------------- iterations vs tolerance
def tolerance(n=1000, step="heun", ddim=True, samples=2):
    rows = []
    problem = problems.van_der_pol()
    t = problem.grid(n)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", step=step, vectorized=True)
    for tol in [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9]:
        for label, method, options in SCHEMES:
            sol, sec, fb = solve_timed(problem.f, problem.y0, t, label, method, options, step=step, tol=tol)
            rows.append(dict(case=f"van_der_pol-{step}-{n}", tol=tol, **row_of(label, sol, seq.ys, sec, fb)))
    if ddim:
        from parasolve import diffusion, zoo

        den = zoo.pretrained("digits")
        shape = (samples, 1, 16, 16)
        x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        ref = diffusion.sample(den, shape, sampler="ddim", steps=100, method="sequential", x_T=x_T)
        for tol in [3e-1, 1e-1, 3e-2, 1e-2, 1e-3]:
            for label, method, options in SCHEMES:
                if label in ODE_ONLY or label == "newton-diag":
                    continue
                scheme = parasolve.schemes.resolve_scheme(method, options)
                start = time.perf_counter()
                out = diffusion.sample(den, shape, sampler="ddim", steps=100, method=scheme, window=100, tol=tol,
                                       x_T=x_T, throw=False)
                rows.append(dict(case="digits-ddim-100", tol=tol, scheme=label, sweeps=out.stats.iterations,
                                 depth=out.stats.drift_calls, nfe=out.stats.nfe,
                                 max_diff=float((out.x - ref.x).abs().max()), converged=out.converged,
                                 fallbacks=out.stats.fallbacks,
                                 seconds=round(time.perf_counter() - start, 2)))
                print(rows[-1], flush=True)
    write_csv("iterations_vs_tol.csv", rows)
    plot_tolerance(rows)
    print_table(f"Iterations vs tolerance ({machine()})", rows,
                ["case", "tol", "scheme", "sweeps", "depth", "max_diff", "converged"])
    return rows


def plot_tolerance(rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = sorted({r["case"] for r in rows})
    fig, axes = plt.subplots(2, len(cases), figsize=(5.5 * len(cases), 7.5), squeeze=False)
    for col, case in enumerate(cases):
        sub = [r for r in rows if r["case"] == case]
        for label in dict.fromkeys(r["scheme"] for r in sub):
            pts = [r for r in sub if r["scheme"] == label]
            tols = [r["tol"] for r in pts]
            axes[0, col].plot(tols, [r["depth"] for r in pts], "o-", label=label)
            axes[1, col].plot(tols, [max(r["max_diff"], 1e-17) for r in pts], "o-", label=label)
        axes[1, col].plot(tols, tols, "k:", label="tol")
        for ax in axes[:, col]:
            ax.set_xscale("log")
            ax.set_xlabel("tol")
            ax.grid(alpha=0.3)
        axes[0, col].set_yscale("log")
        axes[0, col].set_ylabel("sequential depth (batched drift rounds)")
        axes[1, col].set_yscale("log")
        axes[1, col].set_ylabel("max |x - x_sequential|")
        axes[0, col].set_title(case)
        axes[0, col].legend(fontsize=8)
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / "iterations_vs_tol.png", dpi=110)


# ---------------------------------------------------------------------------- warm starts
def interpolate(coarse_t, coarse_y, t):
    """Piecewise-linear interpolation of a coarse trajectory onto the grid ``t`` (either direction)."""
    sign = 1.0 if coarse_t[-1] > coarse_t[0] else -1.0
    ct, ft = sign * coarse_t, sign * t
    j = torch.searchsorted(ct, ft).clamp(1, len(ct) - 1)
    w = ((ft - ct[j - 1]) / (ct[j] - ct[j - 1])).reshape(-1, *([1] * (coarse_y.dim() - 1)))
    return (1 - w) * coarse_y[j - 1] + w * coarse_y[j]


def warm(n=1000, step="heun", tol=1e-7, samples=2):
    rows = []
    for problem in [problems.van_der_pol(), problems.logistic(), lorenz()]:
        t = problem.grid(n)
        seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", step=step, vectorized=True)
        tc = problem.grid(n // 20)
        coarse = parasolve.solve(problem.f, problem.y0, tc, method="sequential", step=step, vectorized=True)
        init_coarse = interpolate(tc, coarse.ys, t)
        y0_near = problem.y0 * (1 + 1e-2)
        near = parasolve.solve(problem.f, y0_near, t, method="sequential", step=step, vectorized=True)
        seq_near = near.ys
        for label, method, options in SCHEMES:
            if label == "parareal-odeint":
                continue
            cold, _, _ = solve_timed(problem.f, problem.y0, t, label, method, options, step=step, tol=tol)
            warm_c, _, _ = solve_timed(problem.f, problem.y0, t, label, method, options, step=step, tol=tol,
                                       init=init_coarse.clone())
            # A neighbouring run: y0 perturbed by 1 %, warm-started from the unperturbed trajectory.
            cold_n, _, _ = solve_timed(problem.f, y0_near, t, label, method, options, step=step, tol=tol)
            warm_n, _, _ = solve_timed(problem.f, y0_near, t, label, method, options, step=step, tol=tol,
                                       init=seq.ys.clone())
            rows.append(dict(problem=problem.name, scheme=label, cold=cold.stats.iterations,
                             coarse_init=f"{warm_c.stats.iterations} (+{n // 20} seq.)",
                             neighbour_cold=cold_n.stats.iterations, neighbour_init=warm_n.stats.iterations,
                             max_diff=max(float((warm_c.ys - seq.ys).abs().max()),
                                          float((warm_n.ys - seq_near).abs().max()))))
    rows += warm_digits(samples)
    print_table(f"Warm starts: sweeps cold vs initialised (N = {n}, {step}, tol {tol:g}; {machine()})", rows,
                ["problem", "scheme", "cold", "coarse_init", "neighbour_cold", "neighbour_init", "max_diff"])
    write_csv("warm_starts.csv", rows)
    return rows


def warm_digits(samples=2, steps=100, tol=1e-1):
    """DDIM-100: warm start from the trajectory of a neighbouring seed (x_T mixed 10 % with new noise)."""
    from parasolve import diffusion, zoo
    from parasolve.diffusion import samplers, sampling

    den = zoo.pretrained("digits")
    shape = (samples, 1, 16, 16)
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn(shape, generator=gen)
    x_near = (1 - 0.1 ** 2) ** 0.5 * x_T + 0.1 * torch.randn(shape, generator=gen)
    ts, step = samplers.build(den, "ddim", steps, 0.0, torch.float32)
    step.prepare(torch.float32, den.device, None)
    grid = sampling._grid(ts, torch.float32)
    drift = den.drift(shape, None, None, None)
    rows = []
    with torch.no_grad():
        ref = parasolve.solve(drift, x_T, grid, method="sequential", step=step, vectorized=True)
        ref_near = parasolve.solve(drift, x_near, grid, method="sequential", step=step, vectorized=True)
        for label, method, options in SCHEMES:
            if label in ODE_ONLY or label == "newton-diag":
                continue
            kw = dict(method=method, options=options, step=step, tol=tol, vectorized=True, throw=False)
            cold = parasolve.solve(drift, x_near, grid, **kw)
            warm_n = parasolve.solve(drift, x_near, grid, init=ref.ys.clone(), **kw)
            rows.append(dict(problem=f"digits-ddim-{steps} (tol {tol:g})", scheme=label, cold="",
                             coarse_init="", neighbour_cold=cold.stats.iterations,
                             neighbour_init=warm_n.stats.iterations,
                             max_diff=float((warm_n.ys[-1] - ref_near.ys[-1]).abs().max())))
            print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["analytic", "digits", "tolerance", "warm", "all", "replot"],
                        help="replot: redraw the tolerance PNG from its CSV")
    parser.add_argument("--samples", type=int, default=2, help="digits samples per batch")
    parser.add_argument("--n", type=int, default=1000, help="steps of the ODE problems")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    if args.part == "replot":
        with open(OUT / "iterations_vs_tol.csv") as fh:
            rows = [dict(r, tol=float(r["tol"]), depth=int(r["depth"]), max_diff=float(r["max_diff"]))
                    for r in csv.DictReader(fh)]
        plot_tolerance(rows)
    if args.part in ("analytic", "all"):
        analytic(args.n)
    if args.part in ("digits", "all"):
        digits(args.samples)
    if args.part in ("tolerance", "all"):
        tolerance(args.n, samples=args.samples)
    if args.part in ("warm", "all"):
        warm(args.n, samples=args.samples)


if __name__ == "__main__":
    main()
