"""Euler, Euler-ancestral, Heun and flow-matching Euler steps in sigma space, as one step map.

For a noise level ``sigma_i`` the model sees ``x_i / c_i`` at its timestep ``t_i``
(``c = sqrt(sigma^2 + 1)`` for the variance-preserving Karras samplers, ``1`` for flow
models) and its output gives the derivative ``d_i = (x_i - x0_i) / sigma_i`` (flow: the predicted
velocity itself). A step moves to ``sigma_down_i`` and adds noise::

    x_{i+1} = x_i + (sigma_down_i - sigma_i) d_i + sigma_up_i z_i

Euler and flow Euler: ``sigma_down = sigma_{i+1}``, ``sigma_up = 0``; Euler-ancestral: the
ancestral split of ``sigma_{i+1}``; Heun: a second model call at the Euler point and the mean of
the two derivatives (Euler's step where ``sigma_{i+1} = 0``), i.e. both of diffusers' interleaved
``HeunDiscreteScheduler.step`` calls in one step; stochastic flow sampling
(``stochastic_sampling=True``): ``x_{i+1} = (1 - sigma_{i+1}) x0_i + sigma_{i+1} z_i``.
The arithmetic is the schedulers' own, expression for expression.
"""

from __future__ import annotations

import numpy as np
import torch

from ..steps import Increments, StepMap


class SigmaStep(StepMap):
    """One sampler step in sigma space (module docstring); a one-step map (no carry) whose drift
    is the model. Heun makes two model calls per step over every point of a batch: at a step
    that ends at sigma 0 the second is discarded (diffusers takes an Euler step there)."""

    order, stages = 1, 1
    ode_rhs = False
    callables = ("model",)
    integer_timesteps = False

    def __init__(self, name: str, prediction_type: str, *, sigmas: np.ndarray, model_timesteps: np.ndarray,
                 divisors: np.ndarray | None = None, down: np.ndarray | None = None, up: np.ndarray | None = None,
                 heun: bool = False, flow_sde: bool = False, clip_sample_range: float | None = None,
                 init_noise_sigma: float = 1.0):
        n = len(model_timesteps)
        self.name = name
        self.prediction_type = prediction_type
        self.heun = heun
        self.flow_sde = flow_sde
        self.clip_sample_range = clip_sample_range
        self.init_noise_sigma = float(init_noise_sigma)
        self.n = n
        self.tables = {"sigma": sigmas.astype(np.float32), "t": model_timesteps.astype(np.float32),
                       "div": (np.ones(n + 1, np.float32) if divisors is None else divisors.astype(np.float32)),
                       "down": (sigmas[1:] if down is None else down).astype(np.float32),
                       "up": (np.zeros(n, np.float32) if up is None else up.astype(np.float32))}
        self.stochastic = flow_sde or bool(np.any(self.tables["up"] != 0))
        self.linear = not (heun or flow_sde)
        if heun:
            self.order, self.stages = 2, 2
        self.noise = None
        self._dev = {}

    def draws(self) -> np.ndarray:
        """Which steps draw a normal in diffusers' loop (every step of a stochastic sampler)."""
        return np.full(self.n, self.stochastic)

    def prepare(self, dtype: torch.dtype, device: torch.device, noise: torch.Tensor | None):
        """Move the tables to the sample's dtype and device and attach the pre-drawn noise."""
        self._dev = {k: torch.as_tensor(v, device=device) for k, v in self.tables.items()}
        self._dev = {k: (v if k == "t" else v.to(dtype)) for k, v in self._dev.items()}
        self.noise = noise
        return self

    def linear_part(self):
        """``dPhi_i/dx`` with the clean-sample prediction held fixed: ``sigma_down_i / sigma_i - 1``
        (``d = (x - x0) / sigma``; for a flow model too, whose velocity is ``(x - x0) / sigma``),
        from the host tables. ``None`` for Heun and stochastic flow sampling (no single slope)."""
        if not self.linear:
            return None
        return torch.from_numpy(self.tables["down"].astype(np.float64) / self.tables["sigma"][:-1] - 1)

    def increments(self, drift, t, idx, y, prev=None):
        if not self._dev:
            raise ValueError(f"{self.name}: call prepare(dtype, device, noise) before increments(); sample() does.")
        shape = (-1, *([1] * (y.dim() - 1)))
        d = {k: v[idx].reshape(shape) for k, v in self._dev.items() if k != "t"}
        sigma = d["sigma"]
        out = drift(self._dev["t"][idx], self._scaled(y, d["div"]))
        if self.flow_sde:
            x0 = y - sigma * out
            nxt = self._dev["sigma"][idx + 1].reshape(shape)
            return Increments((1.0 - nxt) * x0 + nxt * self.noise[idx] - y)
        deriv = self._derivative(out, y, sigma)
        dt = d["down"] - sigma
        x_next = y + deriv * dt
        if self.heun:
            x_next = self._second_stage(drift, idx, y, x_next, deriv, dt, shape)
        if self.stochastic:
            x_next = x_next + self.noise[idx] * d["up"]
        return Increments(x_next - y)

    def _second_stage(self, drift, idx, y, x_mid, deriv, dt, shape):
        """Heun's corrector at the Euler point ``x_mid``; a step that ends at sigma 0 keeps ``x_mid``."""
        nxt = idx + 1
        out = drift(self._dev["t"][nxt.clamp(max=self.n - 1)], self._scaled(x_mid, self._dev["div"][nxt].reshape(shape)))
        k = len(idx) - (1 if int(idx[-1]) == self.n - 1 and self.tables["sigma"][-1] == 0 else 0)
        sigma_next = self._dev["sigma"][nxt[:k]].reshape(shape)
        mean = (deriv[:k] + self._derivative(out[:k], x_mid[:k], sigma_next)) / 2
        return torch.cat([y[:k] + mean * dt[:k], x_mid[k:]])

    def _scaled(self, x, div):
        return x if self.prediction_type == "flow_prediction" else x / div

    def _derivative(self, out, x, sigma):
        kind = self.prediction_type
        if kind == "flow_prediction":
            return out
        if kind == "epsilon":
            x0 = x - sigma * out
        elif kind == "v_prediction":
            x0 = out * (-sigma / (sigma ** 2 + 1) ** 0.5) + (x / (sigma ** 2 + 1))
        else:
            x0 = out
        if self.clip_sample_range is not None:
            x0 = x0.clamp(-self.clip_sample_range, self.clip_sample_range)
        return (x - x0) / sigma
