"""Radau IIA's eigen-split of the stage Newton system (Hairer & Wanner, Solving ODEs II, IV.8).

With one Jacobian ``J`` for all three stages of a step, the Newton matrix is
``M = I - h A ⊗ J``. Writing ``A^-1 = T Λ T^-1`` with ``Λ = [[γ, 0, 0], [0, α, -β], [0, β, α]]``
(one real eigenvalue ``γ``, one complex pair ``α ± iβ``), ``M dZ = r`` becomes, for
``dZ = (T ⊗ I) W`` and ``q = (T^-1 A^-1 ⊗ I) r``,

    (γ I - h J) W_1 = q_1,        ((α + iβ) I - h J) (W_2 + i W_3) = q_2 + i q_3,

one real and one complex ``D x D`` system instead of one real ``3D x 3D`` one: about a third of
the factorisation's cost for ``D = 8`` (a benchmark in docs/stiff.md). The derivative of the stage
equations in the step's start is then ``h c ⊗ J`` (``A 1 = c``).
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=8)
def eigen_split(tab, dtype, device):
    """``(T, P, gamma, alpha, beta)`` of the tableau's ``A^-1 = T Λ T^-1``, ``P = T^-1 A^-1`` (tensors
    in ``dtype``; read-only), for a 3-stage tableau whose ``A^-1`` has one real eigenvalue."""
    A = torch.tensor(tab.A, dtype=torch.float64)
    inv = torch.linalg.inv(A)
    lam, V = torch.linalg.eig(inv)
    real, pair = int(torch.argmin(lam.imag.abs())), int(torch.argmax(lam.imag))
    T = torch.stack([V[:, real].real, V[:, pair].real, V[:, pair].imag], 1)
    L = torch.linalg.solve(T, inv @ T)
    P = torch.linalg.solve(T, inv)
    return (T.to(dtype=dtype, device=device), P.to(dtype=dtype, device=device),
            float(L[0, 0]), float(L[1, 1]), float(L[2, 1]))


def split_factorize(tab, h: torch.Tensor, J: torch.Tensor, G: torch.Tensor | None = None):
    """``(lu, B, a)`` for one Jacobian per step ``J`` (``(n, D, D)``): ``lu`` the LU factors and
    pivots of the real and the complex system (a 4-tuple for :func:`split_solve`), ``B = M^-1 (h c ⊗ J)``
    (``(n, 3, D, D)``) and, given the residual ``G``, the correction ``a = -M^-1 G`` (else ``None``).
    A singular step's factors are NaN (a failed iteration, never an answer)."""
    n, d, _ = J.shape
    _, _, gamma, alpha, beta = eigen_split(tab, J.dtype, J.device)
    hJ = h.to(J.dtype)[:, None, None] * J
    eye = torch.eye(d, dtype=J.dtype, device=J.device)
    LU1, piv1, info1 = torch.linalg.lu_factor_ex(gamma * eye - hJ)
    LU2, piv2, info2 = torch.linalg.lu_factor_ex(torch.complex(alpha * eye - hJ, (beta * eye).expand_as(hJ)))
    LU1 = torch.where((info1 != 0)[:, None, None], float("nan"), LU1)
    LU2 = torch.where((info2 != 0)[:, None, None], float("nan"), LU2)
    lu = (LU1, piv1, LU2, piv2)
    c = tab.nodes(J.dtype, J.device)
    rhs = c[None, :, None, None] * hJ[:, None]                                    # (n, 3, D, D)
    if G is not None:
        rhs = torch.cat([G.neg()[..., None], rhs], 3)
    sol = split_solve(tab, lu, rhs)
    return lu, sol[..., -d:], None if G is None else sol[..., 0]


def split_solve(tab, lu, r: torch.Tensor) -> torch.Tensor:
    """``M^-1 r`` for right-hand sides ``r`` (``(n, 3, D, k)``) with :func:`split_factorize`'s ``lu``."""
    n, s, d, k = r.shape
    T, P, _, _, _ = eigen_split(tab, r.dtype, r.device)
    LU1, piv1, LU2, piv2 = lu
    q = (P @ r.reshape(n, s, d * k)).reshape(n, s, d, k)
    W1 = torch.linalg.lu_solve(LU1, piv1, q[:, 0])
    U = torch.linalg.lu_solve(LU2, piv2, torch.complex(q[:, 1], q[:, 2]))
    W = torch.stack([W1, U.real, U.imag], 1)
    return (T @ W.reshape(n, s, d * k)).reshape(n, s, d, k)


def split_correction(tab, hA: torch.Tensor, F: torch.Tensor, Z: torch.Tensor, lu) -> torch.Tensor:
    """The simplified Newton correction ``a = -M^-1 G(Z)`` with :func:`split_factorize`'s factors."""
    return split_solve(tab, lu, (hA @ F - Z)[..., None])[..., 0]
