"""SDEs through up-front noise: Euler–Maruyama as a deterministic step map.

With the Brownian increments drawn before the solve, step ``i`` is the deterministic map
``Phi_i(x) = h_i f(t_i, x) + g(t_i, x) * sqrt|h_i| * xi_i`` (diagonal noise), so every scheme
applies unchanged and the result is the sequential Euler–Maruyama path with the same ``xi``.
"""

from __future__ import annotations

import torch

from .drift import BatchedDrift
from .steps import Increments, StepMap, _bshape


class EulerMaruyama(StepMap):
    """Euler–Maruyama with diagonal noise ``g`` and pre-drawn standard normals ``noise[i]``.

    Stochastic and not an ODE right-hand side: ``f`` is the SDE's drift, and integrating it as
    an ODE would drop the noise. ``stages = 1`` counts the calls of ``f``; each step also calls
    ``g`` once (counted by ``g``'s own :class:`~parasolve.drift.BatchedDrift`, not in ``nfe``).
    """

    name, order, stages = "euler_maruyama", 1, 1
    stochastic, ode_rhs = True, False
    callables = ("f", "g")

    def __init__(self, g: BatchedDrift, noise: torch.Tensor):
        self.g, self.noise = g, noise

    def increments(self, drift, t, idx, y, prev=None):
        t0 = t[idx]
        h = t[idx + 1] - t0
        f = drift(t0, y)
        dw = _bshape(h.abs().sqrt(), y) * self.noise[idx]
        return Increments(_bshape(h, y) * f + self.g(t0, y) * dw)


def draw_noise(shape, dtype, device, generator=None) -> torch.Tensor:
    """Standard normals for every step, drawn up front (from ``generator`` when given)."""
    gen_device = generator.device if generator is not None else device
    z = torch.randn(shape, dtype=dtype, device=gen_device, generator=generator)
    return z.to(device)


def check_noise(noise, shape, dtype, device) -> torch.Tensor:
    if not isinstance(noise, torch.Tensor):
        raise TypeError(f"`noise` must be a torch.Tensor of standard normals; got {type(noise).__name__}.")
    if tuple(noise.shape) != tuple(shape):
        raise ValueError(f"`noise` must have shape (len(t) - 1, *y0.shape) = {tuple(shape)}; "
                         f"got {tuple(noise.shape)}.")
    if noise.device != device:
        raise ValueError(f"`noise` is on {noise.device} but y0 is on {device}; move it with noise.to(y0.device).")
    if not torch.isfinite(noise).all():
        raise ValueError("`noise` contains NaN or Inf.")
    return noise.to(dtype)
