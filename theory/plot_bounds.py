"""Measured error per sweep against each bound, on analytic problems; PNGs for docs/theory.md.

    python -m theory.plot_bounds [--out docs/img/theory]

Problems (float64): exponential growth ``y' = y`` (Euler, the tight case), the harmonic oscillator
``(q, p)' = (p, -q)`` (RK4, ``||A||_inf = 1``), the pendulum ``(q, p)' = (p, -sin q)`` (Heun,
nonlinear with ``L = 1``), and an Ornstein-Uhlenbeck SDE ``dy = -y dt + 0.5 dW`` (additive noise,
per-sample Euler-Maruyama constants). Every curve comes from the real solvers.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

import parasolve
from parasolve import testing as pt
from parasolve.schemes.parareal import segment_bounds
from theory import discrete, noise, parareal, picard, tolerance, window

FLOOR = 1e-17  # exact zeros are drawn at this level on the log scale


def problems():
    """(name, f, y0, t, step, L, linear matrix or None)."""
    exp_A = torch.tensor([[1.0]], dtype=torch.float64)
    osc_A = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)

    def pendulum(t, y):
        return torch.stack([y[..., 1], -torch.sin(y[..., 0])], dim=-1)

    return [
        ("exponential y' = y (Euler, N=40)", pt.LinearDrift(exp_A), torch.tensor([1.0], dtype=torch.float64),
         torch.linspace(0, 2, 41, dtype=torch.float64), "euler", 1.0, exp_A),
        ("harmonic oscillator (RK4, N=64)", pt.LinearDrift(osc_A), torch.tensor([1.0, 0.0], dtype=torch.float64),
         torch.linspace(0, 2 * math.pi, 65, dtype=torch.float64), "rk4", 1.0, osc_A),
        ("pendulum (Heun, N=60)", pendulum, torch.tensor([2.0, 0.0], dtype=torch.float64),
         torch.linspace(0, 6, 61, dtype=torch.float64), "heun", 1.0, None),
    ]


def picard_curves(f, y0, t, step, L, p=None):
    """Per sweep k: measured max error, the discrete bound, the windowed bound, the continuous bound."""
    n = len(t) - 1
    ref = pt.sequential(f, y0, t, step=step)
    ell = discrete.step_lipschitz(step, t, L)
    e_init = pt.max_error(y0.expand_as(ref.ys), ref.ys).numpy()
    jumps = pt.max_error(ref.ys[1:], ref.ys[:-1]).numpy()
    inc0 = discrete.increments_at(f, y0, t, step)
    rows = []
    for k in range(1, n + 1):
        sol = pt.picard_iterate(f, y0, t, k, step=step, window=p)
        measured = float(pt.max_error(sol.ys, ref.ys).max())
        rows.append((k, measured,
                     float(discrete.bound(ell, k, e_init).max()),
                     float(discrete.bound_from_increments(ell, k, inc0).max()),
                     float(window.error_bound(ell, k, p, e_init, jumps).max()) if p else math.nan,
                     picard.bound(float(ell.sum()), 1.0, k, float(e_init.max()))))
    return np.array(rows)


def sde_curves(n=50, sigma=0.5, seed=0):
    t = torch.linspace(0, 2, n + 1, dtype=torch.float64)
    xi = torch.randn(n, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    y0 = torch.tensor([1.5], dtype=torch.float64)

    def f(s, y):
        return -y

    def g(s, y):
        return sigma + 0 * y

    ref = parasolve.solve_sde(f, g, y0, t, noise=xi, method="sequential")
    ell = noise.step_lipschitz(t, xi, 1.0, 0.0)
    e_init = pt.max_error(y0.expand_as(ref.ys), ref.ys).numpy()
    rows = []
    for k in range(1, n + 1):
        sol = parasolve.solve_sde(f, g, y0, t, noise=xi, tol=0.0, max_iters=k, throw=False,
                                  method=pt.PlainPicard())
        rows.append((k, float(pt.max_error(sol.ys, ref.ys).max()), float(discrete.bound(ell, k, e_init).max()),
                     math.nan, math.nan, picard.bound(float(ell.sum()), 1.0, k, float(e_init.max()))))
    return np.array(rows)


def parareal_curves(f, y0, t, step, L, A, segments):
    n = len(t) - 1
    ref = pt.sequential(f, y0, t, step=step)
    bounds = segment_bounds(n, segments)
    ell = discrete.step_lipschitz(step, t, L)
    if A is not None:  # the frozen coarse propagator's matrices: exact constants
        alpha, beta = parareal.linear_constants(tolerance.linear_jacobians(A, t, step), bounds)
    else:
        alpha, beta = parareal.frozen_constants(ell, bounds)
    opts = {"segments": segments}
    e0 = pt.max_error(parareal.frozen_prediction(f, y0, t, bounds, step), ref.ys[bounds[:-1]]).numpy()
    rows = []
    for k in range(1, segments + 1):
        sol = parasolve.solve(f, y0, t, method="parareal", step=step, tol=0.0, max_iters=k, throw=False, options=opts)
        measured = float(pt.max_error(sol.ys[bounds[:-1]], ref.ys[bounds[:-1]]).max())
        exact = parareal.bound(alpha, beta, k - 1, np.append(e0, 0.0))[:-1]
        gv = max(parareal.superlinear_bound(float(alpha.max()), float(beta.max()), k - 1, j, float(e0.max()))
                 for j in range(segments))
        rows.append((k, measured, float(exact.max()), gv))
    return np.array(rows)


def tolerance_curves(f, y0, t, step, A, p, method="picard"):
    S = tolerance.stability_constant_linear(A, t, step)
    ref = pt.sequential(f, y0, t, step=step)
    rows = []
    for tol in 10.0 ** np.arange(-12, -1.5, 0.5):
        sol = parasolve.solve(f, y0, t, step=step, window=p, tol=float(tol), method=method)
        rows.append((tol, float(pt.max_error(sol.ys, ref.ys).max()), S * sol.stats.defect_sum, S * tol,
                     sol.stats.iterations))
    return np.array(rows), S


def _log(ax, x, y, *args, **kwargs):
    ax.semilogy(x, np.maximum(y, FLOOR), *args, **kwargs)


def main(argv=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/theory")
    out = Path(parser.parse_args(argv).out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    probs = problems()

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    for ax, (name, f, y0, t, step, L, _) in zip(axes, probs):
        r = picard_curves(f, y0, t, step, L)
        _log(ax, r[:, 0], r[:, 1], "k.-", label="measured (solve, tol=0, max_iters=k)")
        _log(ax, r[:, 0], r[:, 3], "C0--", label="discrete, increment form")
        _log(ax, r[:, 0], r[:, 2], "C1--", label="discrete, initial-error form")
        _log(ax, r[:, 0], r[:, 5], "C2:", label="continuous (sum l)^k/k! e0")
        ax.set_title(name, fontsize=10)
    r = sde_curves()
    _log(axes[3], r[:, 0], r[:, 1], "k.-", label="measured")
    _log(axes[3], r[:, 0], r[:, 2], "C1--", label="discrete, initial-error form")
    _log(axes[3], r[:, 0], r[:, 5], "C2:", label="continuous")
    axes[3].set_title("OU SDE, additive noise (Euler-Maruyama, N=50)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("sweep k")
        ax.set_ylim(FLOOR / 2, None)
    axes[0].set_ylabel("max_j |x_j - x*_j|")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "picard_bounds.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (name, f, y0, t, step, L, _) in zip(axes, probs):
        r = picard_curves(f, y0, t, step, L, p=8)
        _log(ax, r[:, 0], r[:, 1], "k.-", label="measured, window 8")
        _log(ax, r[:, 0], r[:, 4], "C3--", label="windowed bound")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("sweep k")
    axes[0].set_ylabel("max_j |x_j - x*_j|")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "window_bounds.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, (name, f, y0, t, step, L, A) in zip(axes, probs[1:]):
        r = parareal_curves(f, y0, t, step, L, A, segments=8)
        _log(ax, r[:, 0], r[:, 1], "k.-", label="measured boundary error")
        _log(ax, r[:, 0], r[:, 2], "C0--", label="exact majorant (alpha_j, beta_j)")
        _log(ax, r[:, 0], r[:, 3], "C2:", label="Gander-Vandewalle form")
        ax.set_title(f"parareal, 8 segments: {name}", fontsize=10)
        ax.set_xlabel("parareal iteration k")
    axes[0].set_ylabel("max_j |U_j - x*(n_j)|")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "parareal_bounds.png", dpi=110)
    plt.close(fig)

    name, f, y0, t, step, L, A = probs[1]
    r, S = tolerance_curves(f, y0, t, step, A, p=16)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    axes[0].loglog(r[:, 0], np.maximum(r[:, 1], FLOOR), "k.-", label="measured max|x - x_seq|")
    axes[0].loglog(r[:, 0], r[:, 2], "C0--", label="S * defect_sum")
    axes[0].loglog(r[:, 0], r[:, 3], "C1:", label=f"S * tol (S = {S:.3g})")
    axes[0].set_xlabel("tol")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"meaning of tol: {name}, window 16", fontsize=10)
    t = torch.linspace(0, 2 * math.pi, 257, dtype=torch.float64)  # finer grid: Lambda = 8 l = 0.2
    r, S = tolerance_curves(f, y0, t, step, A, p=8, method=pt.PlainPicard())
    ell = discrete.step_lipschitz(step, t, L)
    ref = pt.sequential(f, y0, t, step=step)
    h = np.abs(np.diff(t.numpy()))
    bound = []
    for tol in r[:, 0]:
        G = window.linear_increment_bound(ell, 8, float(ref.ys.abs().max()), S, tol)
        bound.append(window.sweep_bound(ell, 8, tol * h / h.sum(), window.first_change_bound(ell, 8, G),
                                        pt.roundoff(ref.ys, 1)))
    lo, hi = window.sweep_range(len(t) - 1, 8)
    axes[1].semilogx(r[:, 0], r[:, 4], "k.-", label="measured sweeps")
    axes[1].semilogx(r[:, 0], bound, "C3--", label="min(N, (k*+1) ceil(N/p))")
    axes[1].axhline(lo, color="C2", ls=":", label="ceil(N/p)")
    axes[1].axhline(hi, color="C1", ls=":", label="N")
    axes[1].set_xlabel("tol")
    axes[1].legend(fontsize=8)
    axes[1].set_title("sweeps: harmonic oscillator (RK4, N=256), window 8", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "tolerance_and_sweeps.png", dpi=110)
    plt.close(fig)
    for png in sorted(out.glob("*.png")):
        print(png)


if __name__ == "__main__":
    main()
