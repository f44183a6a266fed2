"""The optional capabilities of step maps and drifts, declared as protocols.

parasolve reads these attributes, never probes for them: :class:`~parasolve.steps.StepMap` carries
the defaults of the first three (a map that says nothing declares nothing), and the conformance kit
(``parasolve.conformance``, exported by :mod:`parasolve.testing`) checks the type and meaning of each, one rule apiece.

=====================  ===========================================  ======================================
protocol               declared by                                  read by
=====================  ===========================================  ======================================
:class:`DeclaresGains` ``gains()``; default ``None`` (StepMap)      the stop rule (:mod:`.stop_rule`)
:class:`Predicts`      ``predict_new``, ``predict``; default off    ``Problem.guess`` (the window's fill)
:class:`SolvesImplicitly`  ``implicit``, ``newton_solve``; default  ``method="newton"``, ``jacobian="full"``
                       off
:class:`ComputesIn`    ``compute_dtype`` on the user's drift        the drift's first-call row check
:class:`SamplerStep`   the diffusion samplers' step maps            :mod:`parasolve.diffusion` only
=====================  ===========================================  ======================================
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


class DeclaresGains(Protocol):
    def gains(self) -> np.ndarray | tuple[np.ndarray, np.ndarray] | None:
        """The map's scalar error recursion ``e_{j+1} = p_j e_j (+ q_j e_{j-1})``: ``p`` or, for a
        two-step recursion, ``(p, q)``, each finite of shape ``(N,)`` or ``(K, N)`` (one row per
        model of the drift, the worst counting), with ``|p_j| ~ ||d(x + Phi_j(x))/dx||``; ``None``:
        unknown. The stop rule weights step ``i``'s defect by how much the later steps amplify it."""


class Predicts(Protocol):
    #: Whether :meth:`predict` fills a window's new slots (else they start as copies of the last state).
    predict_new: bool

    def predict(self, start: int, count: int, last: torch.Tensor, hint: tuple) -> torch.Tensor:
        """Guesses of the states ``start .. start+count-1`` (shape ``(count, *state)``, ``last``'s
        dtype) from ``last``, the state before them, and ``hint = (j, x_j, Phi_j, carry_j)``, the
        latest step a sweep evaluated; no drift calls. A one-step map's guess of ``x_{j+1}`` from
        ``x_j`` and the hint of step ``j`` is ``x_j + Phi_j`` (it is consistent with what it was told)."""


class SolvesImplicitly(Protocol):
    #: The increments solve equations by Newton's method: a call makes one batched drift round
    #: per Newton iteration (at least one) instead of ``stages`` (StepMap rule 4).
    implicit: bool

    def newton_solve(self, problem: Any, name: str, damping: float = 1.0) -> Any:
        """The whole discrete ``problem`` by one Newton iteration over every step's equations, a
        :class:`~parasolve.solution.Solution` reported as ``method=name``: what ``method="newton"``
        with full Jacobians hands an implicit map (:mod:`parasolve.implicit`)."""


@runtime_checkable
class ComputesIn(Protocol):
    """A drift that computes in another precision than its states (a 16-bit model on float32
    states): ``compute_dtype``, a floating ``torch.dtype``, or ``None`` for the states' own. The
    first call's row check allows the round-off of that precision between batches."""

    compute_dtype: torch.dtype | None


def compute_dtype(f) -> torch.dtype | None:
    """The precision ``f`` declares it computes in (:class:`ComputesIn`), or ``None``."""
    return f.compute_dtype if isinstance(f, ComputesIn) else None


@runtime_checkable
class SamplerStep(Protocol):
    """The diffusion samplers' step maps (:mod:`parasolve.diffusion`): built from a schedule's host
    tables, then bound to one sample's dtype, device and noise by :meth:`prepare`. Their
    ``linear_part()`` and ``gains()`` read the host tables, so need no :meth:`prepare` first."""

    #: The model is called at integer training timesteps (``Denoiser.drift`` rounds ``t``).
    integer_timesteps: bool
    #: The standard deviation of the starting noise ``x_T`` (a positive finite float; 1 for the
    #: DDPM family, ``sqrt(sigma_max^2 + 1)`` for the Karras samplers).
    init_noise_sigma: float

    def prepare(self, dtype: torch.dtype, device: torch.device, noise: torch.Tensor | None) -> "SamplerStep":
        """Move the tables to the sample's dtype and device, attach the pre-drawn noise; returns self."""


__all__ = ["DeclaresGains", "Predicts", "SolvesImplicitly", "ComputesIn", "SamplerStep", "compute_dtype"]
