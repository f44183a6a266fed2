"""Noise schedules and timestep subsets, with the same numbers as diffusers' schedulers.

``alphas_cumprod(kind, ...)`` gives the training schedule ``alpha_bar_t`` (float32, as diffusers
stores it); ``timesteps(...)`` picks the model timesteps a sampler visits, largest first.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_choice, check_positive_int

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
SPACINGS = ("leading", "trailing", "linspace")


def alphas_cumprod(kind: str = "linear", num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                   beta_end: float = 0.02) -> torch.Tensor:
    """``alpha_bar_t = prod_{s<=t} (1 - beta_s)`` for ``t = 0 .. T-1`` (float32).

    ``kind``: ``"linear"`` (betas evenly spaced), ``"scaled_linear"`` (square roots evenly
    spaced, Stable Diffusion) or ``"squaredcos_cap_v2"`` (the cosine schedule of Nichol &
    Dhariwal, betas capped at 0.999; ``beta_start``/``beta_end`` unused).
    """
    check_choice("beta_schedule", kind, BETA_SCHEDULES)
    check_positive_int("num_train_timesteps", num_train_timesteps)
    n = num_train_timesteps
    if kind == "linear":
        betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
    elif kind == "scaled_linear":
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, n, dtype=torch.float32) ** 2
    else:
        def alpha_bar(s):
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.tensor([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)],
                             dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0)


def timesteps(spacing: str, num_train_timesteps: int, steps: int, steps_offset: int = 0, *,
              endpoint_dropped: bool = False, last_timestep: int | None = None) -> np.ndarray:
    """The ``steps`` model timesteps a sampler visits, decreasing (int64).

    ``spacing`` as in Table 2 of Lin et al. 2023 ("Common diffusion noise schedules and sample
    steps are flawed"): ``"leading"`` (multiples of ``T // steps`` from 0, plus ``steps_offset``),
    ``"trailing"`` (from ``T - 1`` down in strides of ``T / steps``) or ``"linspace"``.
    ``endpoint_dropped=True`` is DPM-Solver's variant: ``steps + 1`` points of which the last
    (the clean end) is dropped; ``last_timestep`` caps the range there (lambda clipping).
    """
    check_choice("timestep_spacing", spacing, SPACINGS)
    T = num_train_timesteps
    top = T if last_timestep is None else last_timestep
    if endpoint_dropped:
        if spacing == "linspace":
            ts = np.linspace(0, top - 1, steps + 1).round()[::-1][:-1]
        elif spacing == "leading":
            ts = (np.arange(0, steps + 1) * (top // (steps + 1))).round()[::-1][:-1] + steps_offset
        else:
            ts = np.arange(top, 0, -T / steps).round() - 1
    else:
        if spacing == "linspace":
            ts = np.linspace(0, T - 1, steps).round()[::-1]
        elif spacing == "leading":
            ts = (np.arange(0, steps) * (T // steps)).round()[::-1] + steps_offset
        else:
            ts = np.round(np.arange(T, 0, -T / steps)) - 1
    ts = np.ascontiguousarray(ts).astype(np.int64)
    if len(ts) != steps or (len(ts) and (ts.max() >= T or ts.min() < 0)) or np.any(np.diff(ts) >= 0):
        raise ValueError(f"timestep_spacing={spacing!r} with steps={steps}, steps_offset={steps_offset} and "
                         f"{T} training steps gives timesteps {ts.tolist()[:8]}..., which are not {steps} "
                         f"distinct values in [0, {T}); choose another `steps` or spacing.")
    return ts
