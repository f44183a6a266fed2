"""The parallel scan of an affine recursion ``u_{j+1} = A_j u_j + B_j``: Newton's linear solve on
the bidiagonal system (every Newton variant), the implicit stages' Newton and the adjoint's
``method="scan"`` all take their step from here.

Pairs ``(A, B)`` meaning ``u -> A u + B`` compose associatively as ``(A2 A1, A2 B1 + B2)``; a
Hillis-Steele scan composes every prefix in ``ceil(log2 L)`` vectorised rounds, with no drift
calls and none of the divisions (and their overflow) of a cumulative-product formula.
"""

from __future__ import annotations

import torch


def affine_scan(A: torch.Tensor, B: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
    """All ``u_1 .. u_L`` of ``u_{j+1} = A_j u_j + B_j``, stacked (``(L, *B.shape[1:])``).

    Two forms, told apart by the shapes: **matrices** -- ``A`` ``(L, *batch, d, d)``, ``B``
    ``(L, *batch, d)``, ``u0`` ``(*batch, d)`` (independent blocks in ``batch``; batched matrix
    products) -- or **element-wise** -- ``A`` broadcasting against ``B`` ``(L, *state)`` (a
    scalar or a diagonal per step), ``u0`` of the state's shape.
    """
    if A.dim() == B.dim() + 1:
        return _matrix_scan(A, B, u0)
    if A.shape[:1] != B.shape[:1]:
        A = A.expand(B.shape[0], *A.shape[1:])  # one factor for every step
    offset = 1
    while offset < B.shape[0]:  # new tensors each round (no clones): the prefixes already composed stay
        A, B = (torch.cat([A[:offset], A[offset:] * A[:-offset]]),
                torch.cat([B[:offset], B[offset:] + A[offset:] * B[:-offset]]))
        offset *= 2
    return A * u0 + B


def _matrix_scan(A: torch.Tensor, B: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
    """The matrix form of :func:`affine_scan`, each map ``u -> A u + B`` held as one augmented
    matrix ``[[A, B], [0, 1]]``: a round is one batched product (half the operations of composing
    ``A`` and ``B`` apart, which is what a round costs for small ``d``)."""
    d = B.shape[-1]
    T = A.new_zeros(*A.shape[:-2], d + 1, d + 1)
    T[..., :d, :d] = A
    T[..., :d, d] = B
    T[..., d, d] = 1.0
    offset = 1
    while offset < B.shape[0]:  # new tensors each round (no clones): the prefixes already composed stay
        T = torch.cat([T[:offset], T[offset:] @ T[:-offset]])
        offset *= 2
    return (T[..., :d, :d] @ u0[..., None])[..., 0] + T[..., :d, d]
