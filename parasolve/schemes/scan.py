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
    matrix = A.dim() == B.dim() + 1
    if not matrix and A.shape[:1] != B.shape[:1]:
        A = A.expand(B.shape[0], *A.shape[1:])  # one factor for every step

    def apply(a, b):
        return (a @ b[..., None])[..., 0] if matrix else a * b

    offset = 1
    while offset < B.shape[0]:  # new tensors each round (no clones): the prefixes already composed stay
        A, B = (torch.cat([A[:offset], A[offset:] @ A[:-offset] if matrix else A[offset:] * A[:-offset]]),
                torch.cat([B[:offset], B[offset:] + apply(A[offset:], B[:-offset])]))
        offset *= 2
    return apply(A, u0) + B
