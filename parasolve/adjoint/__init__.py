"""Gradients of a solve: the discrete adjoint of the step map, solved parallel in time.

A solve's answer is the discrete trajectory ``x_{i+1} = x_i + Phi_i(x_i)`` (multistep maps: also
of ``x_{i-1}``, through ``prev``). For a loss ``L(x_0 .. x_N)`` with cotangents ``g_i = dL/dx_i``,
the exact gradient of that discrete solution is given by the time-reversed linear recurrence

    lambda_N = g_N,    lambda_i = g_i + lambda_{i+1} + mu_i,
    mu_i = sum_k lambda_{k+1}^T dPhi_k/dx_i      (k = i, and k = i + 1 for multistep maps),

with ``dL/dy0 = lambda_0``, ``dL/dtheta = sum_k lambda_{k+1}^T dPhi_k/dtheta`` and likewise for the
grid ``t``. The forward solve runs without an autograd graph and keeps the trajectory (or every
``checkpoint``-th state, the rest recomputed); the backward linearises the step map at the saved
states -- one batched evaluation of ``Phi`` per window with an autograd graph of that one
evaluation -- and solves the recurrence with vector-Jacobian products batched over the window:

- ``method="picard"``: sliding-window sweeps from the end, ``lambda_i <- lambda_b + sum_{k=i}^{b-1}
  (g_k + mu_k)``; a slot is accepted when its defect ``|lambda_i - lambda_{i+1} - g_i - mu_i|``
  is within ``tol * G * |h_i| / |T|`` (``G = sum_i max|g_i|``), so the accepted defects sum to at
  most ``tol * G`` and ``max|lambda - lambda_exact| <= S * tol * G`` with ``S`` the stability
  constant of the transposed recurrence (docs/gradients.md). Each sweep is one batched VJP.
- ``method="scan"``: the Jacobians ``dPhi_i/dx_i`` as dense matrices (one VJP round batched over
  the state's ``d`` basis vectors), then a parallel scan of the affine recurrence in
  ``ceil(log2 N)`` rounds of matrix products: a direct solve, exact up to round-off, for small
  real states (``d <= max_dense``); multistep maps scan the pair ``(lambda_i, lambda_{i+1})``.

One job per module: ``options`` (what ``adjoint_options`` may ask, and when the adjoint
refuses), ``request`` (what a solve asked for, and the node it gets), ``node`` (the autograd
node around the forward run), ``linearize`` (the step map's VJPs and Jacobians at the saved
states), ``picard`` and ``scan`` (the two solvers of the recurrence), ``checkpoint`` (the states
between checkpoints).
"""

from .node import BackwardStats
from .options import ADJOINT_OPTIONS, AdjointError
from .request import GradientRequest

__all__ = ["BackwardStats", "AdjointError", "GradientRequest", "ADJOINT_OPTIONS"]
