"""Test problems with exact solutions (or a tight scipy reference) for checking solvers.

Every drift works on one time point (``t`` scalar, ``y`` of the state's shape) and on a batch
(``t`` of shape ``(n,)``, ``y`` of shape ``(n, *state)``), so it can be passed with or without
``vectorized=True``. ``lipschitz`` is a Lipschitz constant of the drift in ``y`` (inf-norm) on
the problem's domain, used by the theory's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

__all__ = ["ODEProblem", "SDEProblem", "linear", "harmonic", "logistic", "gaussian_decay",
           "van_der_pol", "ornstein_uhlenbeck", "all_ode_problems"]


@dataclass
class ODEProblem:
    """``dy/dt = f(t, y)``, ``y(t0) = y0`` on ``[t0, t1]``; ``exact(t)`` gives ``y`` on a grid."""

    name: str
    f: Callable
    y0: torch.Tensor
    t0: float
    t1: float
    exact: Callable[[torch.Tensor], torch.Tensor]
    lipschitz: float

    def grid(self, n_steps: int, *, reverse: bool = False, dtype=torch.float64) -> torch.Tensor:
        """Uniform grid of ``n_steps`` steps; ``reverse=True`` runs from t1 back to t0."""
        a, b = (self.t1, self.t0) if reverse else (self.t0, self.t1)
        return torch.linspace(a, b, n_steps + 1, dtype=dtype)

    def initial(self, reverse: bool = False) -> torch.Tensor:
        """The state at the grid's first point (``y(t1)`` when running backward)."""
        if not reverse:
            return self.y0.clone()
        return self.exact(torch.tensor([self.t1], dtype=self.y0.dtype))[0]


def _bt(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A scalar or per-batch time shaped to broadcast against ``y``."""
    t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
    return t.reshape(t.shape + (1,) * (y.dim() - t.dim()))


def linear(A: Optional[torch.Tensor] = None, y0: Optional[torch.Tensor] = None, t1: float = 1.0) -> ODEProblem:
    """``y' = A y``, exact solution ``expm(A t) y0`` (a default 3x3 A with rotation and decay)."""
    if A is None:
        A = torch.tensor([[-0.5, 1.0, 0.0], [-1.0, -0.5, 0.3], [0.0, -0.3, -0.2]], dtype=torch.float64)
    if y0 is None:
        y0 = torch.ones(A.shape[0], dtype=A.dtype)

    def f(t, y):
        return y @ A.T.to(y.dtype)

    def exact(t):
        return torch.stack([torch.linalg.matrix_exp(A * ti) @ y0 for ti in t.to(A.dtype)]).to(t.dtype)

    lip = float(torch.linalg.matrix_norm(A, ord=float("inf")))
    return ODEProblem("linear", f, y0, 0.0, t1, exact, lip)


def harmonic(omega: float = 2.0, t1: float = 3.0) -> ODEProblem:
    """``x'' = -omega^2 x`` as ``(x, v)``; exact ``(cos wt, -w sin wt)``."""
    A = torch.tensor([[0.0, 1.0], [-omega ** 2, 0.0]], dtype=torch.float64)

    def f(t, y):
        return y @ A.T.to(y.dtype)

    def exact(t):
        return torch.stack([torch.cos(omega * t), -omega * torch.sin(omega * t)], dim=-1)

    return ODEProblem("harmonic", f, torch.tensor([1.0, 0.0], dtype=torch.float64), 0.0, t1, exact,
                      max(1.0, omega ** 2))


def logistic(r: float = 2.0, K: float = 1.0, y0: float = 0.1, t1: float = 4.0) -> ODEProblem:
    """``y' = r y (1 - y/K)`` (two independent components), exact sigmoid solution."""
    y_init = torch.tensor([y0, 0.5 * y0], dtype=torch.float64)

    def f(t, y):
        return r * y * (1 - y / K)

    def exact(t):
        e = torch.exp(-r * t)[:, None]
        return K / (1 + (K / y_init - 1) * e)

    return ODEProblem("logistic", f, y_init, 0.0, t1, exact, r)  # |r (1 - 2y/K)| <= r on [0, K]


def gaussian_decay(t1: float = 2.0) -> ODEProblem:
    """Time-dependent ``y' = -2 t y``, exact ``y0 exp(-t^2)``: checks that ``t`` reaches the drift."""
    y_init = torch.tensor([1.0, -2.0], dtype=torch.float64)

    def f(t, y):
        return -2 * _bt(t, y) * y

    def exact(t):
        return y_init * torch.exp(-t ** 2)[:, None]

    return ODEProblem("gaussian_decay", f, y_init, 0.0, t1, exact, 2 * t1)


def van_der_pol(mu: float = 1.0, t1: float = 3.0) -> ODEProblem:
    """Van der Pol oscillator; the reference is scipy's DOP853 at rtol 1e-12."""
    y_init = torch.tensor([2.0, 0.0], dtype=torch.float64)

    def f(t, y):
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, mu * (1 - x ** 2) * v - x], dim=-1)

    def exact(t):
        from scipy.integrate import solve_ivp

        def rhs(_, z):
            return [z[1], mu * (1 - z[0] ** 2) * z[1] - z[0]]

        ts = t.double().cpu().numpy()
        span = (ts[0], ts[-1]) if len(ts) > 1 else (0.0, ts[0])
        sol = solve_ivp(rhs, (0.0, max(abs(span[0]), abs(span[1]), 1e-12)), y_init.numpy(),
                        method="DOP853", rtol=1e-12, atol=1e-12, dense_output=True)
        return torch.as_tensor(np.asarray(sol.sol(ts)).T, dtype=t.dtype)

    # On |x| <= 2.2, |v| <= 4: |df/dy|_inf <= 1 + mu*(2|x||v| + 1 + x^2)
    return ODEProblem("van_der_pol", f, y_init, 0.0, t1, exact, 1 + mu * (2 * 2.2 * 4 + 1 + 2.2 ** 2))


@dataclass
class SDEProblem:
    """``dy = f dt + g dW`` with the exact mean and variance of ``y(t)``."""

    name: str
    f: Callable
    g: Callable
    y0: torch.Tensor
    t0: float
    t1: float
    mean: Callable[[torch.Tensor], torch.Tensor]
    variance: Callable[[torch.Tensor], torch.Tensor]
    lipschitz: float


def ornstein_uhlenbeck(theta: float = 1.5, mu: float = 0.5, sigma: float = 0.8, x0: float = 2.0,
                       paths: int = 1, t1: float = 2.0) -> SDEProblem:
    """``dX = theta (mu - X) dt + sigma dW`` for ``paths`` independent paths (state shape ``(paths,)``)."""
    y_init = torch.full((paths,), x0, dtype=torch.float64)

    def f(t, y):
        return theta * (mu - y)

    def g(t, y):
        return torch.full_like(y, sigma)

    def mean(t):
        return mu + (x0 - mu) * torch.exp(-theta * t)

    def variance(t):
        return sigma ** 2 / (2 * theta) * (1 - torch.exp(-2 * theta * t))

    return SDEProblem("ornstein_uhlenbeck", f, g, y_init, 0.0, t1, mean, variance, theta)


def all_ode_problems() -> list[ODEProblem]:
    """One instance of every ODE problem, for parametrised tests."""
    return [linear(), harmonic(), logistic(), gaussian_decay(), van_der_pol()]


