"""Solve your own ODE sequentially and in parallel, and print the stats side by side.

    python examples/user_ode.py            # a damped pendulum, 4000 RK4 steps
    python examples/user_ode.py --fast     # smaller (used by the test suite)
"""

import argparse
import time

import torch

import parasolve


def pendulum(t, y):
    """Damped, driven pendulum; batched over leading dimensions (works with vectorized=True)."""
    theta, omega = y[..., 0], y[..., 1]
    drive = 0.5 * torch.cos(0.7 * torch.as_tensor(t, dtype=y.dtype))
    return torch.stack([omega, -0.3 * omega - torch.sin(theta) + drive], dim=-1)


def main(fast: bool = False):
    torch.set_num_threads(1)
    n = 400 if fast else 4000
    t = torch.linspace(0.0, 20.0, n + 1, dtype=torch.float64)
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    rows = []
    for method, kwargs in [("sequential", {}), ("picard", dict(window=200, tol=1e-8))]:
        start = time.perf_counter()
        sol = parasolve.solve(pendulum, y0, t, method=method, step="rk4", vectorized=True, **kwargs)
        rows.append((method, sol, time.perf_counter() - start))
    ref = rows[0][1]
    print(f"{'method':>10} {'sweeps':>7} {'evals':>7} {'wall [s]':>9} {'max|y - y_seq|':>15}")
    for method, sol, wall in rows:
        gap = float((sol.ys - ref.ys).abs().max())
        print(f"{method:>10} {sol.stats.iterations:7d} {sol.stats.nfe:7d} {wall:9.3f} {gap:15.2e}")
    par = rows[1][1]
    print(f"defect sum {par.stats.defect_sum:.2e} <= tol 1e-08: the gap is at most S times it (docs/tolerance.md)")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true")
    main(parser.parse_args().fast)
