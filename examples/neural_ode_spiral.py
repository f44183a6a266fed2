"""Train a neural ODE on the spiral of torchdiffeq's ``examples/ode_demo.py``, with parasolve and
with torchdiffeq side by side.

    PYTHONPATH=. python examples/neural_ode_spiral.py            # 600 iterations each, PNG in docs/img/
    PYTHONPATH=. python examples/neural_ode_spiral.py --quick    # 20 iterations, no PNG (the smoke test)
    PYTHONPATH=. python examples/neural_ode_spiral.py --quick --threads 2   # see docs/benchmarks/threads.md

The set-up is ode_demo's: data ``dy/dt = y^3 A`` from ``y0 = (2, 0)`` on 1000 points of [0, 25]
(made with torchdiffeq's dopri5), a 2-50-2 MLP on ``y^3``, RMSprop (lr 1e-3), batches of 20
windows of 10 points, loss ``mean |pred - y|``. One change: every solver runs the explicit midpoint
rule on the data grid (torchdiffeq ``method="midpoint"``; parasolve ``step="midpoint"``), so the
three trainings below solve the *same* discrete problem and their loss curves can be compared:

- ``parasolve``: ``parasolve.solve`` (Picard sweeps), gradients by the discrete adjoint, solved
  parallel in time (``sol.backward`` reports its cost);
- ``torchdiffeq odeint``: autograd through the steps -- the same gradient, computed sequentially;
- ``torchdiffeq odeint_adjoint``: the continuous adjoint, integrated backwards with the same
  method -- a different gradient (it carries the reverse solve's discretisation error).

Everything in float64 (ode_demo uses float32), so the first two curves agree to many digits.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torchdiffeq

import parasolve

DATA_SIZE, BATCH_TIME, BATCH_SIZE, TEST_EVERY = 1000, 10, 20, 20
TRUE_A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)
IMG = Path(__file__).resolve().parents[1] / "docs" / "img" / "neural_ode_spiral.png"


class ODEFunc(torch.nn.Module):
    """ode_demo's model: an MLP applied to ``y^3``."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 50), torch.nn.Tanh(), torch.nn.Linear(50, 2)).double()
        for m in self.net.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, mean=0, std=0.1)
                torch.nn.init.constant_(m.bias, val=0)

    def forward(self, t, y):
        return self.net(y ** 3)


def spiral_data():
    t = torch.linspace(0.0, 25.0, DATA_SIZE, dtype=torch.float64)
    y0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        ys = torchdiffeq.odeint(lambda s, y: (y ** 3) @ TRUE_A, y0, t, method="dopri5")
    return t, y0, ys  # ys: (1000, 1, 2)


def solver(name):
    """``integrate(func, y0, t) -> (trajectory, stats or None)`` for one of the three trainings."""
    if name == "parasolve":
        def integrate(func, y0, t):
            sol = parasolve.solve(func, y0, t, step="midpoint", tol=1e-10)
            return sol.ys, sol
    elif name == "torchdiffeq odeint":
        def integrate(func, y0, t):
            return torchdiffeq.odeint(func, y0, t, method="midpoint"), None
    else:
        def integrate(func, y0, t):
            return torchdiffeq.odeint_adjoint(func, y0, t, method="midpoint",
                                              adjoint_params=tuple(func.parameters())), None
    return integrate


class Training:
    """One of the three trainings, advanced one iteration at a time (so all three interleave)."""

    def __init__(self, name, data, seed=0):
        self.name, self.data = name, data
        self.func = ODEFunc(seed)
        self.opt = torch.optim.RMSprop(self.func.parameters(), lr=1e-3)
        self.rng = np.random.RandomState(seed)
        self.integrate = solver(name)
        self.losses, self.tests, self.rounds, self.seconds = [], [], [], 0.0

    def step(self, itr, test):
        t, true_y0, true_y = self.data
        start = time.perf_counter()
        s = torch.from_numpy(self.rng.choice(np.arange(DATA_SIZE - BATCH_TIME, dtype=np.int64), BATCH_SIZE,
                                             replace=False))
        batch_y0, batch_t = true_y[s], t[:BATCH_TIME]
        batch_y = torch.stack([true_y[s + i] for i in range(BATCH_TIME)])
        self.opt.zero_grad()
        pred, sol = self.integrate(self.func, batch_y0, batch_t)
        loss = (pred - batch_y).abs().mean()
        loss.backward()
        self.opt.step()
        self.seconds += time.perf_counter() - start
        self.losses.append(float(loss.detach()))
        if sol is not None:
            self.rounds.append((sol.stats.drift_calls, sol.backward.drift_calls + 2 * sol.backward.vjp_rounds))
        if test:  # not timed: the whole spiral, as ode_demo's test
            with torch.no_grad():
                pred, _ = self.integrate(self.func, true_y0, t)
                self.tests.append((itr, float((pred - true_y).abs().mean())))


def train_all(iters, data, names=("parasolve", "torchdiffeq odeint", "torchdiffeq odeint_adjoint")):
    runs = [Training(name, data) for name in names]
    for itr in range(1, iters + 1):
        for run in runs:
            run.step(itr, test=itr % TEST_EVERY == 0 or itr == iters)
    return [dict(name=r.name, losses=r.losses, tests=r.tests, seconds=r.seconds, rounds=r.rounds) for r in runs]


def plot(runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"parasolve": dict(lw=2.5, alpha=0.6), "torchdiffeq odeint": dict(lw=1, ls="--", color="k"),
              "torchdiffeq odeint_adjoint": dict(lw=1, ls=":", color="tab:red")}
    for run in runs:
        axes[0].plot(np.arange(1, len(run["losses"]) + 1), run["losses"], label=run["name"], **styles[run["name"]])
        itr, test = zip(*run["tests"])
        axes[1].plot(itr, test, label=run["name"], **styles[run["name"]])
    axes[0].set(title="training loss (batches of 20 x 10 points)", xlabel="iteration", ylabel="mean |pred - y|",
                yscale="log")
    axes[1].set(title="test loss (the whole spiral, 1000 points)", xlabel="iteration", yscale="log")
    for ax in axes:
        ax.legend()
    fig.suptitle("Neural ODE on torchdiffeq's ode_demo spiral, explicit midpoint on the data grid (float64)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(quick=False, iters=None, png=None, threads=1):
    torch.set_num_threads(threads)
    iters = iters or (20 if quick else 600)
    data = spiral_data()
    runs = train_all(iters, data)
    print(f"{'training':28s} {'final loss':>11s} {'final test':>11s} {'train s':>8s}  (interleaved, tests untimed)")
    for run in runs:
        print(f"{run['name']:28s} {run['losses'][-1]:11.4e} {run['tests'][-1][1]:11.4e} {run['seconds']:8.1f}")
    fwd, bwd = np.mean(runs[0]["rounds"], axis=0)
    print(f"parasolve per training step: {fwd:.1f} forward and {bwd:.1f} backward rounds "
          f"(sequential: {2 * (BATCH_TIME - 1)} each)")
    gap = max(abs(a - b) for a, b in zip(runs[0]["losses"], runs[1]["losses"]))
    print(f"max |loss(parasolve) - loss(torchdiffeq odeint)| over the training: {gap:.2e}")
    if png or (png is None and not quick):
        plot(runs, Path(png) if isinstance(png, str) else IMG)
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 iterations, no PNG")
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--png", default=None,
                        help="where to write the figure (default docs/img/neural_ode_spiral.png)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default %(default)s; docs/benchmarks/threads.md)")
    args = parser.parse_args()
    main(quick=args.quick, iters=args.iters, png=args.png, threads=args.threads)
