"""Ornstein–Uhlenbeck paths by parallel Euler–Maruyama, checked against the exact mean and variance.

    python examples/sde_ou.py [--fast]
"""

import argparse

import torch

import parasolve
from parasolve import problems


def main(fast: bool = False):
    torch.set_num_threads(1)
    paths = 500 if fast else 4000
    ou = problems.ornstein_uhlenbeck(paths=paths)
    t = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(200, paths, dtype=torch.float64, generator=gen)
    seq = parasolve.solve_sde(ou.f, ou.g, ou.y0, t, noise=noise, method="sequential", vectorized=True)
    par = parasolve.solve_sde(ou.f, ou.g, ou.y0, t, noise=noise, window=50, tol=1e-8, vectorized=True)
    x = par.y
    print(f"sequential: {seq.stats.iterations} steps; picard: {par.stats.iterations} sweeps, "
          f"{par.stats.nfe} drift evaluations; max|x - x_seq| = {float((par.ys - seq.ys).abs().max()):.1e}")
    print(f"mean at t=1: {float(x.mean()):.4f} (exact {float(ou.mean(t[-1:])[0]):.4f}); "
          f"variance: {float(x.var()):.4f} (exact {float(ou.variance(t[-1:])[0]):.4f})")
    return seq, par


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true")
    main(parser.parse_args().fast)
