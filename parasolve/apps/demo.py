"""``parasolve demo``: the main job on a fresh CPU machine in under two minutes.

Solves a toy ODE (Van der Pol, 2000 Euler steps) and samples the shipped digits diffusion
model, each sequentially and in parallel, prints the side-by-side tables and writes PNGs of the
samples and of the convergence per sweep.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

import parasolve
from parasolve import problems
from parasolve.apps.common import format_table


ODE_TOL, DIGITS_TOL = 1e-6, 1e-3


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _row(name, sol, wall, ref, seq_wall):
    return {"run": name, "sweeps": sol.stats.iterations, "evals": sol.stats.nfe, "wall [s]": f"{wall:.3f}",
            "speed-up": f"{seq_wall / wall:.1f}x", "max|x - x_seq|": f"{float((sol.ys - ref.ys).abs().max()):.1e}"}


def ode_demo(fast: bool = False):
    """Van der Pol on [0, 10]: sequential vs sliding-window Picard. Returns (rows, picard solution)."""
    problem = problems.van_der_pol(t1=10.0)
    t = problem.grid(500 if fast else 2000)
    seq, seq_wall = _timed(lambda: parasolve.solve(problem.f, problem.y0, t, method="sequential", vectorized=True))
    rows = [_row("sequential", seq, seq_wall, seq, seq_wall)]
    par = None
    for window in (100, 200):
        par, wall = _timed(lambda: parasolve.solve(problem.f, problem.y0, t, method="picard", window=window,
                                                   tol=ODE_TOL, vectorized=True))
        rows.append(_row(f"picard window={window}", par, wall, seq, seq_wall))
    return rows, par


def digits_demo(fast: bool = False):
    """The shipped digits DDPM: sequential vs parallel sampling of 4 digits. Returns (rows, samples, sol)."""
    from parasolve import diffusion, zoo

    den = zoo.pretrained("digits")
    steps = 100 if fast else 1000
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn(4, 1, 16, 16, generator=gen)
    noise = torch.randn(steps, 4, 1, 16, 16, generator=gen)
    kw = dict(sampler="ddpm", steps=steps, x_T=x_T, noise=noise, progress=sys.stderr.isatty())
    with torch.no_grad():
        seq, seq_wall = _timed(lambda: diffusion.sample(den, (4, 1, 16, 16), method="sequential", **kw))
        par, wall = _timed(lambda: diffusion.sample(den, (4, 1, 16, 16), method="picard", window=64, tol=DIGITS_TOL, **kw))
    rows = []
    for name, out, w in (("DDPM sequential", seq, seq_wall), ("DDPM picard window=64", par, wall)):
        rows.append({"run": name, "sweeps": out.stats.iterations, "evals": out.stats.nfe, "wall [s]": f"{w:.2f}",
                     "speed-up": f"{seq_wall / w:.1f}x", "max|x - x_seq|": f"{float((out.x - seq.x).abs().max()):.1e}"})
    return rows, (seq.x, par.x), par


def convergence_figure(ode_sol, digits=None):
    """The largest defect per sweep of each Picard run, with each run's per-step allowance."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    runs = [("Van der Pol (Picard)", ode_sol.stats.history, ODE_TOL / ode_sol.stats.history[-1].end)]
    if digits is not None:
        runs.append(("digits DDPM (Picard)", digits[2].stats.history, DIGITS_TOL / digits[2].stats.history[-1].end))
    for label, hist, allowance in runs:  # overflowed iterates (restarted by the scheme) have no finite defect
        pts = [(r.sweep, min(max(r.residual, 1e-17), 1e12)) for r in hist if math.isfinite(r.residual)]
        line, = ax.semilogy(*zip(*pts), label=label)
        # uniform grids: every step may keep a defect of tol / N (the defects then sum to tol)
        ax.axhline(allowance, color=line.get_color(), ls="--", lw=0.9, label=f"tol / N = {allowance:.0e}")
    ax.set_xlabel("sweep")
    ax.set_ylabel("largest defect in window")
    ax.set_title("steps are accepted while their defect is under the dashed line; each sweep also\n"
                 "completes the next step exactly, so a curve may end above it (capped at 1e12)", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot(out: Path, ode_sol, digits):
    import matplotlib.pyplot as plt

    fig = convergence_figure(ode_sol, digits)
    fig.savefig(out / "convergence.png", dpi=120)
    plt.close(fig)
    if digits is not None:
        seq_x, par_x = digits[1]
        fig, axes = plt.subplots(2, seq_x.shape[0], figsize=(1.4 * seq_x.shape[0], 3))
        for row, (label, xs) in enumerate((("sequential", seq_x), ("parallel", par_x))):
            for j in range(xs.shape[0]):
                axes[row, j].imshow(xs[j, 0].clamp(-1, 1).numpy(), cmap="gray", vmin=-1, vmax=1)
                axes[row, j].axis("off")
            axes[row, 0].set_title(label, fontsize=8, loc="left")
        fig.tight_layout()
        fig.savefig(out / "digits_samples.png", dpi=120)
        plt.close(fig)


def run_demo(out: Path, fast: bool = False) -> None:
    """Run both demos, print their tables and write convergence.png and digits_samples.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    print("Toy ODE: Van der Pol (mu=1) on [0, 10], Euler steps, float64")
    rows, ode_sol = ode_demo(fast)
    print(format_table(rows) + "\n")
    digits = None
    try:
        print("Digits diffusion model (shipped weights), 4 samples, same x_T and noise")
        digits = digits_demo(fast)
        print(format_table(digits[0]) + "\n")
    except (ImportError, FileNotFoundError) as exc:  # a package installed without its weights
        print(f"(digits model unavailable: {exc})\n")
    speedups = [float(r["speed-up"].rstrip("x")) for r in rows + (digits[0] if digits else [])]
    if min(speedups) < 1:
        print(CPU_NOTE)
    _plot(out, ode_sol, digits)
    print(f"PNGs written to {out}/")


#: What the demo's speed-up column means on the machine it runs on (the demo runs on the CPU).
CPU_NOTE = ("A speed-up below 1x is expected on a CPU for a neural-network drift like the digits model: a "
            "parallel sweep evaluates it at many time points, and a CPU takes about as long for a batch of N "
            "as for N single calls, so the extra evaluations cost time (the toy ODE's drift is so cheap that "
            "Python's per-call overhead dominates, and batching pays even here). The sweeps column is the "
            "sequential depth; it turns into wall time where a batched call costs about as much as one "
            "(a GPU: docs/pays.md).")
