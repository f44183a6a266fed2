"""What ``method="auto"`` stands for among the parallel schemes, given the state and the step map:
Newton with full Jacobians for small states (per trajectory for a batch of independent ones),
Picard otherwise. Whether a parallel scheme pays at all is :mod:`parasolve.costs`' question."""

from __future__ import annotations

import torch

#: ``method="auto"`` (``solve``'s default, and ``odeint``'s without ``options["scheme"]``) takes
#: Newton with full Jacobians for real states of at most this many components and one-step
#: maps, Picard otherwise (the measurements: docs/odeint.md, "Which scheme").
FULL_NEWTON_SIZE = 16
#: ... and when the window's Jacobians (``steps * D * D`` numbers) stay within this many numbers.
FULL_NEWTON_ENTRIES = 2 ** 24


def auto_scheme(y0: torch.Tensor, multistep: bool, options: dict | None,
                steps: int | None = None, blocks: int = 1) -> tuple[str, dict | None]:
    """``(method, options)`` that ``method="auto"`` stands for, for this state (``blocks``
    independent trajectories in its leading dimension, :func:`parasolve.schemes.jacobians.independent_rows`), a one-step
    (``multistep=False``) or multistep map and a window of ``steps`` steps (``None``: not known
    yet); ``options`` refine the choice. The size that counts is one trajectory's."""
    d = y0.numel() // blocks
    small = d <= FULL_NEWTON_SIZE and (steps is None or steps * blocks * d * d <= FULL_NEWTON_ENTRIES)
    if not y0.is_complex() and small and not multistep:
        extra = {"blocks": blocks} if blocks > 1 else {}
        return "newton", {"jacobian": "full", **extra, **(options or {})}
    return "picard", options
