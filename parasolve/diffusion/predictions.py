"""Conversions of a model's output to the clean-sample prediction ``x0`` and the noise ``eps``.

With ``x_t = a x0 + s eps`` (``a = sqrt(abar)``, ``s = sqrt(1 - abar)``; flow models: ``a = 1 - sigma``,
``s = sigma``): ``"epsilon"`` predicts ``eps``, ``"sample"`` ``x0``, ``"v_prediction"``
``v = a eps - s x0`` and ``"flow_prediction"`` the velocity ``eps - x0``.
"""

from __future__ import annotations

import torch


def to_x0(kind, out, x, a, s):
    if kind == "epsilon":
        return (x - s * out) / a
    if kind == "sample":
        return out
    if kind == "flow_prediction":
        return x - s * out
    return a * x - s * out


def to_eps(kind, out, x, a, s):
    if kind == "epsilon":
        return out
    if kind == "sample":
        return (x - a * out) / s
    return a * out + s * x


def clip_x0(x0, st):
    """diffusers' dynamic thresholding or clipping of ``x0``, as the settings ``st`` ask."""
    if st.get("thresholding"):
        flat = x0.reshape(x0.shape[0] * x0.shape[1], -1)
        work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
        bound = torch.quantile(work.abs(), st["dynamic_thresholding_ratio"], dim=1)
        bound = bound.clamp(min=1, max=st["sample_max_value"])[:, None]
        return (torch.clamp(work, -bound, bound) / bound).to(x0.dtype).reshape(x0.shape)
    if st.get("clip_sample"):
        return x0.clamp(-st["clip_sample_range"], st["clip_sample_range"])
    return x0
