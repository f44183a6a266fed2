"""The rows of ``bench_suite.py``: problems, settings and tight references (issue 22's list).

Every problem is float64 and autonomous (torchode passes ``t`` per sample, shape ``(batch,)``;
an autonomous drift ignores it). Drifts act on the last dimension, so a state of shape ``(D,)``
or ``(B, D)`` works for all three solvers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp

DTYPE = torch.float64
HIDDEN = 64  #: width of the MLP drift's hidden layer
SEED = 0


@dataclass
class Problem:
    """A drift, its initial state and its output times."""

    f: Callable
    y0: torch.Tensor
    t: torch.Tensor
    stiff: bool = False  #: reference by Radau instead of DOP853


@dataclass(frozen=True)
class Row:
    """One line of the suite: a problem and how it is solved.

    ``kind``: ``"adaptive"`` (``odeint`` at ``rtol``/``atol``, torchdiffeq's ``dopri5``),
    ``"fixed"`` (``steps`` RK4 steps, torchdiffeq's 3/8 rule, output at every grid point) or
    ``"train"`` (forward and backward of a loss at the end time; ``method`` as for the others).
    """

    name: str
    group: str
    kind: str
    make: Callable[[], Problem]
    rtol: float | None = None
    atol: float | None = None
    steps: int | None = None
    batch: int = 1  #: independent trajectories (the leading dimension of a (B, D) state)
    dim: int = 0  #: components per trajectory
    long_horizon: bool = False  #: a small state over many steps: the issue's >= 4x lead applies

    @property
    def method(self) -> str:
        return "rk4" if self.steps is not None else "dopri5"


def _outputs(T: float, n: int = 11) -> torch.Tensor:
    return torch.linspace(0.0, T, n, dtype=DTYPE)


def van_der_pol(mu: float) -> Problem:
    def f(t, y):
        return torch.stack([y[..., 1], mu * (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)
    return Problem(f, torch.tensor([2.0, 0.0], dtype=DTYPE), _outputs(20.0))


def lorenz() -> Problem:
    def f(t, y):
        x, v, z = y[..., 0], y[..., 1], y[..., 2]
        return torch.stack([10 * (v - x), x * (28 - z) - v, x * v - 8 / 3 * z], -1)
    return Problem(f, torch.tensor([1.0, 1.0, 1.0], dtype=DTYPE), _outputs(10.0))


def kepler(e: float = 0.5, periods: int = 5) -> Problem:
    def f(t, y):
        q, p = y[..., :2], y[..., 2:]
        r3 = (q * q).sum(-1, keepdim=True) ** 1.5
        return torch.cat([p, -q / r3], -1)
    y0 = torch.tensor([1 - e, 0.0, 0.0, math.sqrt((1 + e) / (1 - e))], dtype=DTYPE)
    return Problem(f, y0, _outputs(2 * math.pi * periods))


def robertson() -> Problem:
    """Robertson's stiff chemical kinetics on [0, 1] (the issue's failing case)."""
    def f(t, y):
        a, b, c = y[..., 0], y[..., 1], y[..., 2]
        return torch.stack([-0.04 * a + 1e4 * b * c, 0.04 * a - 1e4 * b * c - 3e7 * b * b, 3e7 * b * b], -1)
    return Problem(f, torch.tensor([1.0, 0.0, 0.0], dtype=DTYPE), _outputs(1.0), stiff=True)


def pendulum() -> Problem:
    def f(t, y):
        return torch.stack([y[..., 1], -torch.sin(y[..., 0])], -1)
    return Problem(f, torch.tensor([2.5, 0.0], dtype=DTYPE), _outputs(30.0))


class MLPDrift(torch.nn.Module):
    """``f(y) = W2 tanh(W1 y + b1) + b2``, unit-gain Gaussian weights from a fixed seed."""

    def __init__(self, dim: int, hidden: int = HIDDEN, seed: int = SEED):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.W1 = torch.nn.Parameter(torch.randn(hidden, dim, generator=gen, dtype=DTYPE) / math.sqrt(dim))
        self.b1 = torch.nn.Parameter(0.5 * torch.randn(hidden, generator=gen, dtype=DTYPE))
        self.W2 = torch.nn.Parameter(torch.randn(dim, hidden, generator=gen, dtype=DTYPE) / math.sqrt(hidden))
        self.b2 = torch.nn.Parameter(torch.zeros(dim, dtype=DTYPE))

    def forward(self, t, y):
        return torch.tanh(y @ self.W1.T + self.b1) @ self.W2.T + self.b2


def mlp(batch: int, dim: int, T: float = 5.0) -> Problem:
    gen = torch.Generator().manual_seed(SEED + 1)
    return Problem(MLPDrift(dim), torch.randn(batch, dim, generator=gen, dtype=DTYPE), _outputs(T))


def with_grid(make: Callable[[], Problem], steps: int) -> Callable[[], Problem]:
    """The problem with its outputs at every point of an ``steps``-step uniform grid."""
    def build():
        p = make()
        p.t = torch.linspace(0.0, float(p.t[-1]), steps + 1, dtype=DTYPE)
        return p
    return build


def train_target(problem: Problem) -> torch.Tensor:
    """The regression target of a training row (fixed seed), shaped like the state."""
    gen = torch.Generator().manual_seed(SEED + 2)
    return torch.randn(problem.y0.shape, generator=gen, dtype=DTYPE)


def all_rows() -> list[Row]:
    rows = []
    classic = {"vdp-mu1": lambda: van_der_pol(1.0), "vdp-mu5": lambda: van_der_pol(5.0),
               "lorenz": lorenz, "kepler": kepler}
    for rtol in (1e-5, 1e-8):
        for name, make in classic.items():
            dim = int(make().y0.numel())
            rows.append(Row(f"{name}-rtol{rtol:.0e}", "classic", "adaptive", make, rtol, 1e-3 * rtol, dim=dim,
                            long_horizon=rtol < 1e-6))
    rows.append(Row("robertson-rtol1e-04", "classic", "adaptive", robertson, 1e-4, 1e-8, dim=3))
    for rtol in (1e-5, 1e-8):
        for batch in (1, 16, 256):
            for dim in (2, 16, 64):
                rows.append(Row(f"mlp-B{batch}-D{dim}-rtol{rtol:.0e}", "mlp", "adaptive",
                                lambda b=batch, d=dim: mlp(b, d), rtol, 1e-3 * rtol, batch=batch, dim=dim))
    for steps in (100, 10_000):
        rows.append(Row(f"rk4-pendulum-N{steps}", "rk4", "fixed", with_grid(pendulum, steps), steps=steps,
                        dim=2, long_horizon=steps >= 10_000))
        rows.append(Row(f"rk4-mlp-B16-D16-N{steps}", "rk4", "fixed", with_grid(lambda: mlp(16, 16), steps),
                        steps=steps, batch=16, dim=16))
    rows.append(Row("train-dopri5-B16-D2-rtol1e-06", "train", "train", lambda: mlp(16, 2), 1e-6, 1e-9,
                    batch=16, dim=2))
    rows.append(Row("train-rk4-B16-D2-N100", "train", "train", with_grid(lambda: mlp(16, 2), 100), steps=100,
                    batch=16, dim=2))
    return rows


#: ``--quick``: one row of each kind, small and fast (the CI smoke test runs these).
QUICK = ("vdp-mu1-rtol1e-05", "mlp-B16-D2-rtol1e-05", "rk4-pendulum-N100", "train-rk4-B16-D2-N100")


def reference(problem: Problem) -> torch.Tensor:
    """The solution at ``problem.t`` by scipy at rtol 1e-12 (DOP853, or Radau when stiff)."""
    shape = problem.y0.shape
    with torch.no_grad():
        def fun(s, y):
            return problem.f(torch.tensor(s, dtype=DTYPE), torch.from_numpy(y).reshape(shape)).reshape(-1).numpy()
        t = problem.t.numpy()
        method, atol = ("Radau", 1e-14) if problem.stiff else ("DOP853", 1e-12)
        sol = solve_ivp(fun, (t[0], t[-1]), problem.y0.reshape(-1).numpy(), method=method, rtol=1e-12,
                        atol=atol, t_eval=t)
    if not sol.success:
        raise RuntimeError(f"reference solve failed: {sol.message}")
    return torch.from_numpy(np.ascontiguousarray(sol.y.T)).reshape(len(t), *shape)


def reference_gradient(problem: Problem) -> torch.Tensor:
    """The training loss's parameter gradient through torchdiffeq's dopri5 at rtol = atol = 1e-12."""
    import torchdiffeq
    model = problem.f
    model.zero_grad(set_to_none=True)
    ys = torchdiffeq.odeint(model, problem.y0, problem.t[[0, -1]], rtol=1e-12, atol=1e-12, method="dopri5")
    loss(ys, train_target(problem)).backward()
    grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).detach().clone()
    model.zero_grad(set_to_none=True)
    return grad


def loss(ys: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the end state from the target."""
    return ((ys[-1] - target) ** 2).mean()
