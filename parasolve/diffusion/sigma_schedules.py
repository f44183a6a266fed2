"""Noise levels and model timesteps of diffusers' sigma-space schedulers, with the same numbers.

``sigma`` is the noise-to-signal ratio of a variance-preserving model, ``sqrt((1 - abar) / abar)``
(Euler, Heun, UniPC, DPM-Solver with Karras/Lu sigmas), or the noise weight of a flow-matching
model, ``x_sigma = (1 - sigma) x0 + sigma eps`` (FlowMatchEuler, UniPC with flow sigmas). Each
function follows the arithmetic of the scheduler's ``set_timesteps`` (float32 where it casts,
float64 where numpy computes), so the samplers see the very same sigmas and timesteps.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .schedules import SPACINGS


def vp_sigmas(alphas_cumprod: torch.Tensor) -> np.ndarray:
    """``sqrt((1 - abar_t) / abar_t)`` for every training timestep, float32 as diffusers computes it."""
    ac = torch.as_tensor(alphas_cumprod, dtype=torch.float32)
    return (((1 - ac) / ac) ** 0.5).numpy()


def float_timesteps(spacing: str, num_train_timesteps: int, steps: int, steps_offset: int = 0) -> np.ndarray:
    """The Euler-family spacing of ``steps`` float32 model timesteps, decreasing."""
    T = num_train_timesteps
    if spacing == "linspace":
        return np.linspace(0, T - 1, steps, dtype=np.float32)[::-1].copy()
    if spacing == "leading":
        ts = (np.arange(0, steps) * (T // steps)).round()[::-1].copy().astype(np.float32)
        return ts + steps_offset
    if spacing == "trailing":
        return np.arange(T, 0, -T / steps).round().copy().astype(np.float32) - 1
    raise ValueError(f"`timestep_spacing` must be one of {list(SPACINGS)}; got {spacing!r}.")


def interpolate(timesteps: np.ndarray, train_sigmas: np.ndarray) -> np.ndarray:
    """Sigmas at (possibly fractional) timesteps, linear in ``t`` between training timesteps."""
    return np.interp(timesteps, np.arange(0, len(train_sigmas)), train_sigmas)


def karras(sigma_max: float, sigma_min: float, steps: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al. (2022) noise levels: ``rho``-th roots evenly spaced from ``sigma_max`` to ``sigma_min``."""
    ramp = np.linspace(0, 1, steps)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def sigma_to_t(sigmas: np.ndarray, log_train_sigmas: np.ndarray) -> np.ndarray:
    """Fractional training timesteps of ``sigmas``, linear in ``log sigma`` between neighbours."""
    log_sigma = np.log(np.maximum(sigmas, 1e-10))
    dists = log_sigma - log_train_sigmas[:, None]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_train_sigmas.shape[0] - 2)
    lo, hi = log_train_sigmas[low], log_train_sigmas[low + 1]
    w = np.clip((lo - log_sigma) / (lo - hi), 0, 1)
    return ((1 - w) * low + w * (low + 1)).reshape(sigmas.shape)


def time_shift(sigmas, mu: float, kind: str = "exponential"):
    """Resolution-dependent shift of flow sigmas (SD3, Flux): ``e^mu / (e^mu + 1/sigma - 1)``."""
    if kind == "exponential":
        return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))
    return mu / (mu + (1 / sigmas - 1))


def shift(sigmas, amount: float):
    """The constant flow shift ``a sigma / (1 + (a - 1) sigma)``."""
    return amount * sigmas / (1 + (amount - 1) * sigmas)


def stretch_to_terminal(sigmas, terminal: float):
    """Stretch a flow schedule so that its last sigma is ``terminal`` (LTX-Video's ``shift_terminal``)."""
    one_minus = 1 - sigmas
    return 1 - one_minus / (one_minus[-1] / (1 - terminal))
