"""Butcher tableaus of the implicit step maps, all stiffly accurate (``b`` = the last row of ``A``,
so a step ends at its last stage: ``x_{i+1} = x_i + Z_s``).

``err0``/``err`` define the embedded error estimate of the adaptive methods in stage form,
``est = err0 * h f(t_i, x_i) + sum_j err[j] Z_j``, filtered as ``(I - h gamma J)^{-1} est``
(``J`` the drift's Jacobian at the step's start), which damps the stiff components the way
Hairer & Wanner's codes do (Solving ODEs II, IV.8).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tableau:
    """``A`` (``s x s``, lower triangular for the diagonally implicit methods), nodes ``c``; the
    global ``order``; ``err0``, ``err``, ``gamma``, ``err_order``: the error estimate above (``err``
    ``None``: none) and the power of ``h`` it scales with (the step controller's exponent)."""

    name: str
    A: tuple
    c: tuple
    order: int
    err0: float = 0.0
    err: tuple | None = None
    gamma: float = 0.0
    err_order: int = 0

    @property
    def stages(self) -> int:
        return len(self.c)

    def matrix(self, dtype=torch.float64, device=None) -> torch.Tensor:
        return _as_tensor(self.A, dtype, device)

    def nodes(self, dtype=torch.float64, device=None) -> torch.Tensor:
        return _as_tensor(self.c, dtype, device)


@functools.lru_cache(maxsize=64)
def _as_tensor(values: tuple, dtype, device) -> torch.Tensor:
    """A tableau's coefficients as a tensor, built once per dtype and device (every Newton
    iteration reads them). Callers must not modify it in place."""
    return torch.tensor(values, dtype=dtype, device=device)


def _collocation(c) -> tuple:
    """The collocation matrix of the nodes ``c``: ``sum_j a_ij c_j^(k-1) = c_i^k / k``."""
    c = torch.tensor(c, dtype=torch.float64)
    k = torch.arange(1, len(c) + 1, dtype=torch.float64)
    V = c[:, None] ** (k - 1)              # V[j, k] = c_j^(k-1)
    C = c[:, None] ** k / k                # C[i, k] = c_i^k / k
    A = torch.linalg.solve(V.T, C.T).T     # A V = C
    return tuple(tuple(float(v) for v in row) for row in A)


_S6 = math.sqrt(6.0)
_RADAU_C = ((4 - _S6) / 10, (4 + _S6) / 10, 1.0)
# The error estimate of Hairer & Wanner's RADAU5: gamma the real eigenvalue of A^-1, inverted.
_MU = 3 + 3 ** (2 / 3) - 3 ** (1 / 3)
_RADAU_ERR = tuple(e / (3 * _MU) for e in (-13 - 7 * _S6, -13 + 7 * _S6, -1.0))

RADAU5 = Tableau("radau5", _collocation(_RADAU_C), _RADAU_C, order=5, err0=1 / _MU, err=_RADAU_ERR,
                 gamma=1 / _MU, err_order=4)

# Hairer & Wanner's L-stable SDIRK of order 4 (Solving ODEs II, IV.6, Table 6.5), gamma = 1/4,
# with its embedded third-order weights b_hat.
_SD_A = ((1 / 4, 0, 0, 0, 0),
         (1 / 2, 1 / 4, 0, 0, 0),
         (17 / 50, -1 / 25, 1 / 4, 0, 0),
         (371 / 1360, -137 / 2720, 15 / 544, 1 / 4, 0),
         (25 / 24, -49 / 48, 125 / 16, -85 / 12, 1 / 4))
_SD_C = (1 / 4, 3 / 4, 11 / 20, 1 / 2, 1.0)
_SD_BHAT = (59 / 48, -17 / 96, 225 / 32, -85 / 12, 0.0)


def _stage_weights(A, w) -> tuple:
    """Weights on the stage increments ``Z`` equivalent to ``h sum_j w_j f_j``: ``w^T A^-1``."""
    out = torch.linalg.solve(torch.tensor(A, dtype=torch.float64).T, torch.tensor(w, dtype=torch.float64))
    return tuple(float(v) for v in out)


SDIRK4 = Tableau("sdirk4", _SD_A, _SD_C, order=4, err=_stage_weights(
    _SD_A, [b - bh for b, bh in zip(_SD_A[-1], _SD_BHAT)]), gamma=1 / 4, err_order=4)

BACKWARD_EULER = Tableau("backward_euler", ((1.0,),), (1.0,), order=1)
# The trapezoidal rule as the two-stage Lobatto IIIA method (first stage explicit: Z_1 = 0).
TRAPEZOID = Tableau("trapezoid", ((0.0, 0.0), (0.5, 0.5)), (0.0, 1.0), order=2)

TABLEAUS = {tab.name: tab for tab in (BACKWARD_EULER, TRAPEZOID, SDIRK4, RADAU5)}
