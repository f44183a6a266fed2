"""Euler, Euler-ancestral and Heun (diffusers' ``EulerDiscreteScheduler``,
``EulerAncestralDiscreteScheduler``, ``HeunDiscreteScheduler``) for variance-preserving models.

Sigmas are interpolated at float timesteps spaced by ``timestep_spacing`` (or Karras sigmas,
whose timesteps are found by log-sigma interpolation); the start is scaled by the schedulers'
``init_noise_sigma``. The steps themselves are :class:`~.sigma_steps.SigmaStep`.
"""

from __future__ import annotations

import numpy as np
import torch

from . import sigma_schedules as sg
from .sigma_steps import SigmaStep

_COMMON = dict(timestep_spacing="linspace", steps_offset=0, use_exponential_sigmas=False, use_beta_sigmas=False)
DEFAULTS = {
    "euler": dict(_COMMON, use_karras_sigmas=False, interpolation_type="linear", sigma_min=None, sigma_max=None,
                  timestep_type="discrete", final_sigmas_type="zero"),
    "euler-ancestral": dict(timestep_spacing="linspace", steps_offset=0),
    "heun": dict(_COMMON, use_karras_sigmas=False, clip_sample=False, clip_sample_range=1.0),
}
SUPPORTED = {"interpolation_type": ("linear",), "use_exponential_sigmas": (False,), "use_beta_sigmas": (False,),
             "final_sigmas_type": ("zero", "sigma_min"), "timestep_type": ("discrete", "continuous")}
PREDICTIONS = {"euler": ("epsilon", "v_prediction", "sample"), "euler-ancestral": ("epsilon", "v_prediction"),
               "heun": ("epsilon", "v_prediction", "sample")}


def schedule(den, st: dict, steps: int, sampler: str):
    """``(model timesteps (N,) float32, sigmas (N+1,) float32)`` as the scheduler's ``set_timesteps``."""
    T = den.num_train_timesteps
    train = sg.vp_sigmas(den.alphas_cumprod)
    log_train = np.log(train)
    ts = sg.float_timesteps(st["timestep_spacing"], T, steps, st["steps_offset"])
    sig = sg.interpolate(ts, train)
    if st.get("use_karras_sigmas"):
        hi = st.get("sigma_max") if st.get("sigma_max") is not None else sig[0].item()
        lo = st.get("sigma_min") if st.get("sigma_min") is not None else sig[-1].item()
        sig = sg.karras(hi, lo, steps)
        ts = sg.sigma_to_t(sig, log_train)
    last = train[0] if st.get("final_sigmas_type") == "sigma_min" else 0.0
    sig = np.concatenate([sig, [last]]).astype(np.float32)
    ts = ts.astype(np.float32)
    if st.get("timestep_type") == "continuous" and den.prediction_type == "v_prediction":
        ts = (0.25 * torch.from_numpy(sig[:-1]).log()).numpy()
    return ts, sig


def build(den, st: dict, steps: int, sampler: str, sigmas=None, mu=None):
    """The model timesteps and the :class:`SigmaStep` of ``sampler`` (``"euler"``, ``"euler-ancestral"``, ``"heun"``)."""
    if sigmas is not None or mu is not None:
        raise ValueError(f"`sigmas` and `mu` set a flow-matching schedule; the {sampler} sampler takes neither.")
    if den.prediction_type not in PREDICTIONS[sampler]:
        raise ValueError(f"{den.name}: the {sampler} sampler does not support prediction_type="
                         f"{den.prediction_type!r}; supported: {list(PREDICTIONS[sampler])}.")
    ts, sig = schedule(den, st, steps, sampler)
    top = torch.from_numpy(sig).max()
    init = top if st["timestep_spacing"] in ("linspace", "trailing") else (top ** 2 + 1) ** 0.5
    div = ((torch.from_numpy(sig) ** 2 + 1) ** 0.5).numpy()
    kw = dict(sigmas=sig, model_timesteps=ts, divisors=div, init_noise_sigma=float(init))
    if sampler == "euler-ancestral":
        s, nxt = torch.from_numpy(sig[:-1]), torch.from_numpy(sig[1:])
        up = (nxt ** 2 * (s ** 2 - nxt ** 2) / s ** 2) ** 0.5
        kw.update(up=up.numpy(), down=((nxt ** 2 - up ** 2) ** 0.5).numpy())
    elif sampler == "heun":
        kw.update(heun=True, clip_sample_range=st["clip_sample_range"] if st["clip_sample"] else None)
    return ts, SigmaStep(sampler, den.prediction_type, **kw)
