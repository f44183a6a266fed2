"""The exact denoiser of a Gaussian mixture, and of a finite data set (zero-width components).

For data ``x0 ~ sum_k w_k N(mu_k, s_k^2 I)`` and ``x_t = sqrt(a) x0 + sqrt(1 - a) eps``, the
optimal denoiser is closed form: ``x_t | k ~ N(sqrt(a) mu_k, v_k I)`` with
``v_k = a s_k^2 + 1 - a``, the component posterior is a softmax of the log-likelihoods, and

    E[x0 | x_t] = sum_k p_k(x_t) (mu_k + sqrt(a) s_k^2 / v_k (x_t - sqrt(a) mu_k)).

With ``s_k = 0`` this is the softmax over data points ``mu_k``. It is ground truth for tests in
any dimension and needs no training. With ``labels``, the model is conditional: ``cond`` is a
label per sample (``-1``: no label), restricting the mixture to that label's components.
"""

from __future__ import annotations

import torch

from .._checks import check_choice, check_tensor
from ..errors import ParasolveValueError
from .denoiser import PREDICTION_TYPES, Denoiser
from .schedules import alphas_cumprod as make_schedule


class GaussianMixtureDenoiser:
    """``model(x, t, cond)`` for :class:`Denoiser`: the exact prediction of a Gaussian mixture."""

    def __init__(self, means: torch.Tensor, alphas_cumprod: torch.Tensor, *, std=0.0, weights=None, labels=None,
                 prediction_type: str = "epsilon"):
        check_tensor("means", means,
                     fix="Pass the K component means (or `data`) as a floating tensor (K, *sample_shape).")
        if means.dim() < 2 or not means.is_floating_point():
            raise ParasolveValueError(f"`means` (or `data`) must be a floating tensor of shape (K, *sample_shape); "
                                      f"got {means.dtype} of shape {tuple(means.shape)}.")
        k = means.shape[0]
        self.means = means.reshape(k, -1)
        self.sample_shape = tuple(means.shape[1:])
        self.std = torch.as_tensor(std, dtype=means.dtype, device=means.device).expand(k).clone()
        if (self.std < 0).any():
            raise ValueError("`std` must be >= 0.")
        w = torch.ones(k, dtype=means.dtype, device=means.device) if weights is None else torch.as_tensor(
            weights, dtype=means.dtype, device=means.device)
        if w.shape != (k,) or not (w > 0).all():
            raise ValueError(f"`weights` must be {k} positive numbers, one per component.")
        self.log_w = torch.log(w / w.sum())
        self.labels = None if labels is None else torch.as_tensor(labels, device=means.device).long()
        if self.labels is not None and self.labels.shape != (k,):
            raise ValueError(f"`labels` must have shape ({k},), one per component; got {tuple(self.labels.shape)}.")
        check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        self.alphas_cumprod = alphas_cumprod.to(means.device)
        self.prediction_type = prediction_type

    def x0(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """``E[x0 | x_t = x]`` for samples ``x`` ``(B, *sample_shape)`` at integer timesteps ``t`` ``(B,)``."""
        dtype = x.dtype
        xf = x.reshape(x.shape[0], -1)
        mu, s2, log_w = self.means.to(dtype), self.std.to(dtype) ** 2, self.log_w.to(dtype)
        a = self.alphas_cumprod[t].to(dtype)[:, None]  # (B, 1)
        ra = a.sqrt()
        var = a * s2 + (1 - a)  # (B, K)
        # |x - sqrt(a) mu_k|^2 expanded, so no (B, K, D) tensor is formed.
        dist2 = (xf * xf).sum(1, keepdim=True) - 2 * ra * (xf @ mu.T) + a * (mu * mu).sum(1)
        logits = log_w - 0.5 * xf.shape[1] * torch.log(var) - dist2.clamp(min=0) / (2 * var)
        if cond is not None and self.labels is not None:
            cond = torch.as_tensor(cond, device=x.device).reshape(-1, 1)
            logits = logits.masked_fill((cond >= 0) & (self.labels[None] != cond), float("-inf"))
        p = torch.softmax(logits, dim=1)
        gain = p * ra * s2 / var  # weight of (x - sqrt(a) mu_k)
        x0 = p @ mu + gain.sum(1, keepdim=True) * xf - ra * (gain @ mu)
        return x0.reshape(x.shape)

    def __call__(self, x, t, cond=None):
        x0 = self.x0(x, t, cond)
        if self.prediction_type == "sample":
            return x0
        a = self.alphas_cumprod[t].to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return eps if self.prediction_type == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0


def exact_denoiser(data: torch.Tensor, *, std=0.0, weights=None, labels=None, prediction_type: str = "epsilon",
                   beta_schedule: str = "linear", num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                   beta_end: float = 0.02, config: dict | None = None) -> Denoiser:
    """A :class:`Denoiser` predicting exactly, for data drawn from ``data`` (points, or means with ``std``).

    Args:
        data: ``(K, *sample_shape)``: the data points, or the mixture's means when ``std > 0``.
        std: component standard deviation(s), a number or ``(K,)`` (0: the finite data set).
        weights: component probabilities (default: equal).
        labels: ``(K,)`` integer labels; makes the denoiser conditional (``cond`` = label per sample,
            ``-1`` = unconditional, which is also the ``uncond`` used by guidance).
        prediction_type: what it outputs: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.
        beta_schedule, num_train_timesteps, beta_start, beta_end: the noise schedule.
        config: sampler settings by diffusers name; clipping is off by default here (the data
            need not lie in [-1, 1]).
    """
    ac = make_schedule(beta_schedule, num_train_timesteps, beta_start, beta_end)
    model = GaussianMixtureDenoiser(data, ac, std=std, weights=weights, labels=labels,
                                    prediction_type=prediction_type)
    settings = {"clip_sample": False}
    settings.update(config or {})
    uncond = None if labels is None else torch.full((1,), -1, dtype=torch.long, device=data.device)
    return Denoiser(model, ac, prediction_type=prediction_type, config=settings, conditional=labels is not None,
                    uncond=uncond, device=data.device, dtype=data.dtype, name="exact denoiser")
