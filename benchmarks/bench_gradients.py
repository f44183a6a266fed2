"""Forward + backward cost of a gradient through a solve: parasolve's discrete adjoint against
torchdiffeq's ``odeint`` (autograd through the steps) and ``odeint_adjoint``, on the same fixed grid.

    python benchmarks/bench_gradients.py            # N = 1000 and 2000, 3 repeats (about 6 minutes, 1 thread)
    python benchmarks/bench_gradients.py --quick    # N = 100, one repeat (the smoke test)

Problems (float64, explicit midpoint on the grid -- the same map in both libraries):

- ``spiral``: torchdiffeq's ode_demo dynamics ``dy/dt = y^3 A`` with ``A`` the parameter, ``y0 = (2, 0)``,
  ``t`` in [0, 0.025 N] (ode_demo's step: [0, 25] at N = 1000); loss ``mean(ys^2)``; gradient w.r.t.
  ``y0`` and ``A``. State of 2 entries.
- ``neural``: ode_demo's ODEFunc (2-50-2 MLP on ``y^3``, seed 0) on a batch of 16 starting points
  (a state of 32 entries), ``t`` in [0, 5]; loss ``mean(ys^2)``; gradient w.r.t. ``y0`` and the weights.

Columns: ``fwd``/``bwd`` = sequential depth in rounds: batched drift calls plus batched VJPs, each
VJP through a step map counted as ``stages`` drift VJPs (parasolve's VJP rounds go through the
whole midpoint increment, two stages deep); torchdiffeq's ``odeint`` backward is one VJP per
forward drift call, ``odeint_adjoint``'s backward one drift call and one VJP per stage of the
reverse solve. ``grad_diff``: max |grad - grad of torchdiffeq odeint| (relative to max |grad|).
``seconds``: median of ``--repeats`` interleaved runs of forward + backward.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import time
from pathlib import Path

import torch
import torchdiffeq

import parasolve

STAGES = 2  # midpoint


class Counted(torch.nn.Module):
    """Counts calls of the wrapped drift (torchdiffeq: each call is one sequential round)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.inner(t, y)


class Spiral(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.A = torch.nn.Parameter(torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64))

    def forward(self, t, y):
        return (y ** 3) @ self.A


def _ode_func():
    """ode_demo's model, as trained in examples/neural_ode_spiral.py (seed 0)."""
    path = Path(__file__).resolve().parents[1] / "examples" / "neural_ode_spiral.py"
    spec = importlib.util.spec_from_file_location("neural_ode_spiral", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ODEFunc(seed=0)


def problems(n):
    spiral = (Spiral(), torch.tensor([[2.0, 0.0]], dtype=torch.float64),
              torch.linspace(0, 0.025 * n, n + 1, dtype=torch.float64))
    gen = torch.Generator().manual_seed(1)
    starts = torch.randn(16, 1, 2, generator=gen, dtype=torch.float64)
    neural = (_ode_func(), starts, torch.linspace(0, 5, n + 1, dtype=torch.float64))
    return {"spiral": spiral, "neural": neural}


def run_torchdiffeq(kind, func, y0, t):
    f = Counted(func)
    y0 = y0.clone().requires_grad_(True)
    solver = torchdiffeq.odeint if kind == "odeint" else torchdiffeq.odeint_adjoint
    extra = {} if kind == "odeint" else {"adjoint_params": tuple(func.parameters())}
    start = time.perf_counter()
    ys = solver(f, y0, t, method="midpoint", **extra)
    fwd = f.calls
    loss = (ys ** 2).mean()
    grads = torch.autograd.grad(loss, [y0, *func.parameters()])
    seconds = time.perf_counter() - start
    bwd_calls = f.calls - fwd
    bwd = fwd if kind == "odeint" else 2 * bwd_calls  # autograd: one VJP per drift call; adjoint: call + VJP
    return dict(fwd=fwd, bwd=bwd, seconds=seconds, grads=grads, detail="")


def run_parasolve(method, adjoint, func, y0, t):
    y0 = y0.clone().requires_grad_(True)
    start = time.perf_counter()
    sol = parasolve.solve(func, y0, t, method=method, step="midpoint", tol=1e-10, adjoint_options=adjoint)
    loss = (sol.ys ** 2).mean()
    grads = torch.autograd.grad(loss, [y0, *func.parameters()])
    seconds = time.perf_counter() - start
    b = sol.backward
    return dict(fwd=sol.stats.drift_calls, bwd=b.drift_calls + STAGES * b.vjp_rounds, seconds=seconds, grads=grads,
                detail=f"fwd {sol.stats.iterations} sweeps; bwd {b.method}: {b.sweeps} sweeps, "
                       f"{b.vjp_rounds} VJP rounds")


VARIANTS = [
    ("torchdiffeq odeint (autograd)", lambda f, y, t: run_torchdiffeq("odeint", f, y, t)),
    ("torchdiffeq odeint_adjoint", lambda f, y, t: run_torchdiffeq("adjoint", f, y, t)),
    ("parasolve sequential + adjoint scan", lambda f, y, t: run_parasolve("sequential", {"method": "scan"}, f, y, t)),
    ("parasolve picard + adjoint scan", lambda f, y, t: run_parasolve("picard", {"method": "scan"}, f, y, t)),
    ("parasolve picard + adjoint picard", lambda f, y, t: run_parasolve("picard", {"method": "picard"}, f, y, t)),
    ("parasolve picard + adjoint picard w=100", lambda f, y, t: run_parasolve(
        "picard", {"method": "picard", "window": 100}, f, y, t)),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 100 only, one repeat (smoke test)")
    parser.add_argument("--steps", type=int, nargs="*", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    steps = args.steps or ([100] if args.quick else [1000, 2000])
    repeats = 1 if args.quick else args.repeats
    print(f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread\n")
    print("| problem | N | variant | fwd rounds | bwd rounds | bwd / sequential bwd | seconds | grad_diff | detail |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for n in steps:
        for name, (func, y0, t) in problems(n).items():
            results = {label: [] for label, _ in VARIANTS}
            for _ in range(repeats):  # interleaved: every variant once per repeat
                for label, run in VARIANTS:
                    results[label].append(run(func, y0, t))
            ref = results[VARIANTS[0][0]][0]["grads"]
            scale = max(float(g.abs().max()) for g in ref)
            for label, _ in VARIANTS:
                r = results[label][0]
                diff = max(float((a - b).abs().max()) for a, b in zip(r["grads"], ref)) / scale
                secs = statistics.median(x["seconds"] for x in results[label])
                row = dict(problem=name, n=n, variant=label, fwd=r["fwd"], bwd=r["bwd"],
                           ratio=r["bwd"] / (STAGES * n), seconds=secs, grad_diff=diff, detail=r["detail"])
                rows.append(row)
                print(f"| {name} | {n} | {label} | {row['fwd']} | {row['bwd']} | {row['ratio']:.3f} | {secs:.2f} | "
                      f"{diff:.1e} | {row['detail']} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
