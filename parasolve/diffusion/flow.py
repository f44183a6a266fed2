"""Flow matching: diffusers' ``FlowMatchEulerDiscreteScheduler`` (Stable Diffusion 3, Flux, Wan).

A flow model predicts the velocity ``v = eps - x0`` of ``x_sigma = (1 - sigma) x0 + sigma eps``
at timestep ``1000 sigma``; Euler moves ``x += (sigma_{i+1} - sigma_i) v``. Sigmas: evenly spaced
from 1 (or custom ``sigmas=``), shifted by ``shift`` or, with ``use_dynamic_shifting``, by the
resolution-dependent ``mu`` (``sample(..., mu=)``), optionally stretched to ``shift_terminal``
or converted to Karras sigmas.
"""

from __future__ import annotations

import numpy as np
import torch

from . import sigma_schedules as sg
from .sigma_steps import SigmaStep

DEFAULTS = {"flow-euler": dict(shift=1.0, use_dynamic_shifting=False, time_shift_type="exponential",
                               shift_terminal=None, use_karras_sigmas=False, use_exponential_sigmas=False,
                               use_beta_sigmas=False, invert_sigmas=False, stochastic_sampling=False)}
SUPPORTED = {"use_exponential_sigmas": (False,), "use_beta_sigmas": (False,), "invert_sigmas": (False,),
             "time_shift_type": ("exponential", "linear")}


def schedule(T: int, st: dict, steps: int, sigmas=None, mu=None):
    """``(model timesteps (N,), sigmas (N+1,))``, float32, as ``set_timesteps(steps, sigmas=, mu=)``."""
    if st["use_dynamic_shifting"] and mu is None:
        raise ValueError("This flow model shifts its sigmas by resolution (use_dynamic_shifting=True): pass `mu=` "
                         "(the pipelines compute it from the image sequence length, e.g. calculate_shift).")
    if not st["use_dynamic_shifting"] and mu is not None:
        raise ValueError(f"`mu`={mu} is only used with use_dynamic_shifting=True; drop `mu`.")
    base = torch.from_numpy(np.linspace(1, T, T, dtype=np.float32)[::-1].copy()) / T
    if not st["use_dynamic_shifting"]:
        base = sg.shift(base, st["shift"])
    if sigmas is None:
        sig = np.linspace(base[0].item() * T, base[-1].item() * T, steps) / T
    else:
        sig = np.array(sigmas).astype(np.float32)
        if sig.ndim != 1 or len(sig) != steps or not np.all(np.isfinite(sig)):
            raise ValueError(f"`sigmas` must be {steps} finite noise levels (one per step, the final 0 is "
                             f"appended); got {np.shape(sig)}.")
    sig = sg.time_shift(sig, mu, st["time_shift_type"]) if st["use_dynamic_shifting"] else sg.shift(sig, st["shift"])
    if st["shift_terminal"]:
        sig = sg.stretch_to_terminal(sig, st["shift_terminal"])
    if st["use_karras_sigmas"]:
        sig = sg.karras(sig[0].item(), sig[-1].item(), steps)
    sig = torch.from_numpy(np.asarray(sig)).to(torch.float32)
    ts = sig * T
    return ts.numpy(), torch.cat([sig, torch.zeros(1)]).numpy()


def build(den, st: dict, steps: int, sampler: str, sigmas=None, mu=None):
    """The model timesteps and the flow Euler :class:`SigmaStep`."""
    if den.prediction_type != "flow_prediction":
        raise ValueError(f"{den.name} predicts {den.prediction_type!r}, but the flow-euler sampler needs a "
                         f"flow-matching model (prediction_type='flow_prediction').")
    ts, sig = schedule(den.num_train_timesteps, st, steps, sigmas, mu)
    return ts, SigmaStep("flow-euler", "flow_prediction", sigmas=sig, model_timesteps=ts,
                         flow_sde=bool(st["stochastic_sampling"]))
