"""DDPM, DDIM and DPM-Solver++ as step maps of the core solver.

Every sampler step here is the same affine map of the model's predictions, with per-step
coefficients computed once from the schedule (the rules of diffusers' ``DDPMScheduler``,
``DDIMScheduler`` and ``DPMSolverMultistepScheduler``)::

    x_{i+1} = A_i x_i + B_i x0_i + E_i eps_i + C_i (x0_i - x0_{i-1}) + S_i z_i

``x0_i``/``eps_i``: the clean-sample and noise predictions at ``(x_i, t_i)`` (x0 clipped or
thresholded as the scheduler says); ``z_i``: the standard normals drawn up front, so the
stochastic samplers are deterministic maps too; ``C_i != 0`` only for DPM-Solver's second-order
multistep steps, which reuse the previous step's ``x0`` (the core's ``prev``).

With ``abar`` the cumulative schedule at the step's timestep and at the next one (``abar_prev``,
1 past the end), ``alpha = abar / abar_prev`` and ``beta = 1 - alpha``:

- DDPM: ``A = sqrt(alpha) (1 - abar_prev) / (1 - abar)``, ``B = sqrt(abar_prev) beta / (1 - abar)``,
  ``S`` = the posterior standard deviation (none at timestep 0).
- DDIM: ``B = sqrt(abar_prev)``, ``E = sqrt(1 - abar_prev - S^2)``, ``S = eta * sigma_ddim``.
- DPM-Solver++(2M): ``A = s_{i+1} / s_i``, ``B = alpha_{i+1} (1 - e^{-h})``, ``C`` the
  second-order correction (midpoint or heun), first order at the first step and, by
  diffusers' ``lower_order_final`` rules, at the last; ``sde-dpmsolver++`` adds noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_real
from ..steps import Increments, StepMap
from .denoiser import Denoiser
from .predictions import clip_x0, to_eps, to_x0
from . import flow, karras, unipc
from . import sigma_schedules as sg
from .schedules import timesteps as spaced_timesteps

_THRESHOLDING = dict(thresholding=False, dynamic_thresholding_ratio=0.995, sample_max_value=1.0)
_CLIPPING = dict(clip_sample=True, clip_sample_range=1.0)
#: ``data_std``: the data's largest standard deviation along any direction (the square root of
#: its covariance's top eigenvalue), if known; the stop rule's gain model needs it.
_DATA = dict(data_std=None)
#: Settings each sampler reads, with the defaults of its diffusers scheduler.
DEFAULTS: dict[str, dict] = {
    "ddpm": dict(timestep_spacing="leading", steps_offset=0, **_CLIPPING, **_THRESHOLDING, **_DATA,
                 variance_type="fixed_small"),
    "ddim": dict(timestep_spacing="leading", steps_offset=0, **_CLIPPING, **_THRESHOLDING, **_DATA,
                 set_alpha_to_one=True),
    "dpmsolver++": dict(timestep_spacing="linspace", steps_offset=0, **_THRESHOLDING, **_DATA, solver_order=2,
                        solver_type="midpoint", lower_order_final=True, euler_at_final=False,
                        final_sigmas_type="zero", lambda_min_clipped=-math.inf, variance_type=None,
                        use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
                        use_lu_lambdas=False, use_flow_sigmas=False, beta_schedule="linear"),
}
DEFAULTS["sde-dpmsolver++"] = DEFAULTS["dpmsolver++"]
#: The sigma-space and multistep families, each in its own module (name -> module with ``build``).
FAMILIES = {"euler": karras, "euler-ancestral": karras, "heun": karras, "flow-euler": flow, "unipc": unipc}
for _module in (karras, flow, unipc):
    DEFAULTS.update(_module.DEFAULTS)
SAMPLERS = tuple(DEFAULTS)
#: Data standard deviations (relative to ``data_std``) of the Gaussian models behind
#: :meth:`DiffusionStep.gains`.
DATA_STDS = np.geomspace(1e-3, 1.0, 31)
_ALIASES = {"dpm-solver++": "dpmsolver++", "dpm": "dpmsolver++", "sde-dpm-solver++": "sde-dpmsolver++",
            "euler_a": "euler-ancestral", "euler-a": "euler-ancestral", "flow": "flow-euler", "unipc++": "unipc"}
# Settings of which only some values can be reproduced (None: DDPM's own fixed_small; DPM-Solver's default).
_SUPPORTED = {"variance_type": (None, "fixed_small", "fixed_small_log", "fixed_large"),
              "solver_order": (1, 2), "solver_type": ("midpoint", "heun"), "final_sigmas_type": ("zero", "sigma_min"),
              "use_exponential_sigmas": (False,), "use_beta_sigmas": (False,), "use_flow_sigmas": (False,)}
_SUPPORTED_BY = {name: {**_SUPPORTED, **FAMILIES[name].SUPPORTED} if name in FAMILIES else _SUPPORTED
                 for name in DEFAULTS}


def resolve_sampler(name) -> str:
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in DEFAULTS:
        raise ValueError(f"Unknown `sampler` {name!r}; valid: {list(SAMPLERS)}.")
    return key


def settings_for(den: Denoiser, sampler: str) -> dict:
    """The sampler's diffusers defaults overridden by the keys of ``den.config`` it knows."""
    st = dict(DEFAULTS[sampler])
    st.update({k: v for k, v in den.config.items() if k in st})
    check_real(f"{den.name}.config['data_std']", st.get("data_std"), low=0.0, open_low=True, none_ok=True,
               fix="It is the data's largest standard deviation along any direction.")
    for key, ok in _SUPPORTED_BY[sampler].items():
        if key in st and st[key] not in ok:
            raise ValueError(f"{den.name}: {key}={st[key]!r} is not supported by the {sampler} sampler; "
                             f"supported: {[v for v in ok if v is not None]}.")
    return st


class DiffusionStep(StepMap):
    """One sampler step as the affine map in the module docstring; tables indexed by step.

    The drift is the model (its output ``out``), not an ODE right-hand side (``ode_rhs = False``).
    For the multistep samplers (DPM-Solver++ 2M) the carry -- the next call's ``prev`` -- is the
    step's clean-sample prediction ``x0_i``; the one-step samplers carry nothing. The map declares
    a linear part (:meth:`linear_part`). :meth:`prepare` moves the tables to the sample's dtype and
    device and attaches the noise before :meth:`increments` is called.
    """

    order, stages = 1, 1
    ode_rhs, linear = False, True
    callables = ("model",)
    integer_timesteps = True  # the model is called at integer training timesteps (Denoiser.drift)
    init_noise_sigma = 1.0  # x_T is standard normal (capabilities.SamplerStep)
    #: Slots entering a solver's window start from :meth:`predict` (frozen clean-sample
    #: prediction) instead of a copy of the last state: 12% fewer sweeps on DDPM-1000 at
    #: window 128 (docs/tolerance.md). Set to False on the class to measure without it.
    predict_new = True

    def __init__(self, name: str, prediction_type: str, settings: dict, tables: dict[str, np.ndarray]):
        self.name = name
        self.prediction_type = prediction_type
        self.settings = settings
        self.tables = tables  # host arrays of shape (N,), float32 or float64
        self.multistep = bool(np.any(tables["C"] != 0))
        self.stochastic = bool(np.any(tables["S"] != 0))
        self.uses_eps = bool(np.any(tables["E"] != 0))
        self.noise = None
        self._dev = {}

    def prepare(self, dtype: torch.dtype, device: torch.device, noise: torch.Tensor | None):
        """Move the tables to the sample's dtype and device and attach the pre-drawn noise."""
        self._dev = {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in self.tables.items()}
        self.noise = noise
        return self

    def linear_part(self) -> torch.Tensor:
        """``dPhi_i/dx`` with the clean-sample prediction ``x0`` held fixed: ``A - 1``, plus ``E / s``
        where the step uses ``eps = (x - a x0) / s`` (exact when ``x0`` does not depend on ``x``).
        From the host tables, in their precision: no :meth:`prepare` needed."""
        d = self.tables
        return torch.from_numpy(d["A"] - 1 + (d["E"] / d["s"] if self.uses_eps else 0))

    def gains(self):
        """The error recursion of the steps on Gaussian data, or ``None`` when the denoiser's
        config declares no ``data_std``.

        On data ``N(mu, Sigma)``, along an eigendirection of ``Sigma`` with standard deviation
        ``sigma`` the clean-sample prediction is ``x0 = mu + k (x - a mu)`` with
        ``k = a sigma^2 / (a^2 sigma^2 + s^2)``, so errors follow exactly
        ``e_{j+1} = (A + B k + E (1 - a k) / s + C k) e_j - C k_{j-1} e_{j-1}``; one row per
        ``sigma`` in ``DATA_STDS * data_std`` (every direction's std is at most ``data_std``).
        How far a trained model's gains are from these is measured in docs/tolerance.md.
        """
        top = self.settings.get("data_std")
        if top is None:
            return None
        tb = {k: np.asarray(v, dtype=np.float64) for k, v in self.tables.items()}
        sig = (float(top) * DATA_STDS)[:, None]
        a, s = tb["a"][None], tb["s"][None]
        k = a * sig ** 2 / (a ** 2 * sig ** 2 + s ** 2)
        p = tb["A"] + tb["B"] * k + (tb["E"] * (1 - a * k) / s if self.uses_eps else 0) + tb["C"] * k
        if not self.multistep:
            return p
        k_prev = np.concatenate([np.zeros_like(k[:, :1]), k[:, :-1]], axis=1)
        return p, -tb["C"] * k_prev

    def predict(self, start: int, count: int, x: torch.Tensor, hint) -> torch.Tensor:
        """Guesses of the states ``start .. start+count-1`` from ``x`` (the state before ``start``)
        with the clean-sample prediction frozen: the steps' affine recursion
        ``x_{j+1} = (A + E/s) x_j + (B - E a/s) x0 + S z_j``, no model calls.

        ``hint = (j, y, inc, carry)``: the latest evaluated step ``j`` at state ``y`` with
        increment ``inc`` (and its carry, ``x0``, for the multistep samplers); for the one-step
        samplers ``x0`` is recovered from ``y + inc = (A + E/s) y + (B - E a/s) x0 + S z``."""
        j, y, inc, carry = hint
        d = self._dev
        if carry is not None:
            x0 = carry
        else:
            q = d["B"][j] - (d["E"][j] * d["a"][j] / d["s"][j] if self.uses_eps else 0)
            rhs = y + inc - (d["A"][j] + (d["E"][j] / d["s"][j] if self.uses_eps else 0)) * y
            if self.stochastic:
                rhs = rhs - d["S"][j] * self.noise[j]
            if not bool(q != 0):
                return x.expand(count, *x.shape)
            x0 = rhs / q
        out = []
        for j in range(start - 1, start - 1 + count):
            nxt = d["A"][j] * x + d["B"][j] * x0
            if self.uses_eps:
                nxt = nxt + d["E"][j] * (x - d["a"][j] * x0) / d["s"][j]
            if self.stochastic:
                nxt = nxt + d["S"][j] * self.noise[j]
            x = nxt
            out.append(x)
        return torch.stack(out) if out else x0[None][:0]

    def increments(self, drift, t, idx, y, prev=None):
        if not self._dev:
            raise ValueError(f"{self.name}: call prepare(dtype, device, noise) before increments(); "
                             f"sample() does.")
        out = drift(t[idx], y)
        x_next, x0 = self.advance(idx, y, out, prev)
        return Increments(x_next - y, x0 if self.multistep else None)

    def advance(self, idx, x, out, prev):
        """``x_{i+1}`` and ``x0_i`` for the steps ``idx`` from states ``x`` and model outputs ``out``."""
        c = {k: v[idx].reshape(-1, *([1] * (x.dim() - 1))) for k, v in self._dev.items()}
        x0 = to_x0(self.prediction_type, out, x, c["a"], c["s"])
        x0 = clip_x0(x0, self.settings)
        x_next = c["A"] * x + c["B"] * x0
        if self.uses_eps:
            x_next = x_next + c["E"] * to_eps(self.prediction_type, out, x, c["a"], c["s"])
        if self.multistep:
            if prev is None and int(idx[0]) > 0:
                raise ValueError(f"{self.name}: step {int(idx[0])} is a multistep step and needs `prev`, "
                                 f"the clean-sample prediction of step {int(idx[0]) - 1}.")
            before = torch.cat([x0[:1] if prev is None else prev[None], x0[:-1]])
            x_next = x_next + c["C"] * (x0 - before)
        if self.stochastic:
            x_next = x_next + c["S"] * self.noise[idx]
        return x_next, x0


def build(den: Denoiser, sampler: str, steps: int, eta: float = 0.0, dtype: torch.dtype = torch.float32, *,
          sigmas=None, mu=None):
    """Timesteps ``(N,)`` and the step map of ``sampler`` with ``steps`` steps (the families of
    :data:`FAMILIES` are built by their modules; ``sigmas``/``mu``: a flow schedule's custom
    sigmas and resolution shift).

    The coefficients are computed in float64 for float64 samples and otherwise in float32 with
    the scheduler's own formulas (``1 - alpha_t / alpha_prev`` and the like lose digits in
    float32 near ``t = 0``; computing them as diffusers does keeps the samples equal to its loop).
    """
    st = settings_for(den, sampler)
    if sampler in FAMILIES:
        return FAMILIES[sampler].build(den, st, steps, sampler, sigmas=sigmas, mu=mu)
    if sigmas is not None or mu is not None:
        raise ValueError(f"`sigmas` and `mu` set a flow-matching schedule; the {sampler} sampler takes neither.")
    if den.prediction_type == "flow_prediction":
        raise ValueError(f"{den.name} is a flow-matching model; sample it with 'flow-euler' or 'unipc' "
                         f"(use_flow_sigmas=True), not {sampler!r}.")
    T = den.num_train_timesteps
    ac = den.alphas_cumprod.numpy().astype(np.float64 if dtype == torch.float64 else np.float32)
    if sampler in ("ddpm", "ddim"):
        ts = spaced_timesteps(st["timestep_spacing"], T, steps, st["steps_offset"])
        tables = (_ddpm if sampler == "ddpm" else _ddim)(ac, ts, st, eta, T)
        tables.update(a=ac[ts] ** 0.5, s=(1 - ac[ts]) ** 0.5)
    else:
        ts, tables = _dpm(ac, st, steps, T, stochastic=sampler.startswith("sde"))
    zeros = np.zeros(len(ts), dtype=ac.dtype)
    for key in "CES":
        tables.setdefault(key, zeros)
    return ts, DiffusionStep(sampler, den.prediction_type, st, tables)


def draws(sampler: str, timesteps: np.ndarray, eta: float, step=None) -> np.ndarray:
    """Which steps draw a fresh normal in diffusers' loop (the order ``generator`` is consumed in)."""
    if sampler in FAMILIES:
        return step.draws()
    if sampler == "ddpm":
        return timesteps > 0
    if sampler == "ddim":
        return np.full(len(timesteps), eta > 0)
    return np.full(len(timesteps), sampler.startswith("sde"))


def _ddpm(ac, ts, st, eta, T):
    prev = np.append(ts[1:], -1)
    a_t = ac[ts]
    a_prev = np.where(prev >= 0, ac[np.maximum(prev, 0)], 1.0).astype(ac.dtype)
    beta_t, beta_prev = 1 - a_t, 1 - a_prev
    alpha = a_t / a_prev
    beta = 1 - alpha
    var = np.maximum((1 - a_prev) / (1 - a_t) * beta, 1e-20) if st["variance_type"] != "fixed_large" else beta
    return dict(A=alpha ** 0.5 * beta_prev / beta_t, B=a_prev ** 0.5 * beta / beta_t,
                S=np.where(ts > 0, var ** 0.5, 0.0).astype(ac.dtype))


def _ddim(ac, ts, st, eta, T):
    prev = ts - T // len(ts)  # diffusers' DDIM rule (not the next entry of ts)
    final = 1.0 if st["set_alpha_to_one"] else ac[0]
    a_t = ac[ts]
    a_prev = np.where(prev >= 0, ac[np.maximum(prev, 0)], final).astype(ac.dtype)
    std = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
    direction = 1 - a_prev - std ** 2
    if np.any(direction < 0):
        raise ValueError(f"`eta`={eta} makes the DDIM noise larger than the step allows (1 - alpha_prev - "
                         f"sigma^2 < 0); use 0 <= eta <= 1.")
    return dict(A=np.zeros_like(a_t), B=a_prev ** 0.5, E=direction ** 0.5, S=std.astype(ac.dtype))


def _dpm_sigmas(ac, st, steps):
    """Karras sigmas or Lu et al.'s log-linear ones (``use_lu_lambdas``) and their rounded timesteps."""
    train = sg.vp_sigmas(torch.from_numpy(ac.astype(np.float32)))
    log_train = np.log(train)
    if st["use_karras_sigmas"]:
        sig = sg.karras(train[-1].item(), train[0].item(), steps)
    else:
        hi, lo = log_train[-1].item(), log_train[0].item()
        sig = np.exp(hi + np.linspace(0, 1, steps) * (lo - hi))
    ts = sg.sigma_to_t(sig, log_train)
    if st["beta_schedule"] != "squaredcos_cap_v2":
        ts = ts.round()
    return ts.astype(np.int64), sig


def _dpm(ac, st, steps, T, *, stochastic):
    lam_train = np.log(ac ** 0.5) - np.log((1 - ac) ** 0.5)
    clipped = int(np.searchsorted(lam_train[::-1], st["lambda_min_clipped"]))
    ts = spaced_timesteps(st["timestep_spacing"], T, steps, st["steps_offset"], endpoint_dropped=True,
                          last_timestep=T - clipped)
    n = len(ts)
    # diffusers' parametrisation: sigma = sqrt((1 - a) / a), alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha_t.
    last = 0.0 if st["final_sigmas_type"] == "zero" else ((1 - ac[0]) / ac[0]) ** 0.5
    if st["use_karras_sigmas"] or st["use_lu_lambdas"]:
        ts, sig = _dpm_sigmas(ac, st, steps)
        sig = np.append(sig, last).astype(ac.dtype)
    else:
        sig = np.append(((1 - ac) / ac)[ts] ** 0.5, last).astype(ac.dtype)
    alpha = 1 / (sig ** 2 + 1) ** 0.5
    sigma = sig * alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.log(alpha) - np.log(sigma)
        h = lam[1:] - lam[:-1]
        r = np.append(np.nan, lam[1:-1] - lam[:-2]).astype(ac.dtype) / h  # h_{i-1} / h_i
        decay = np.exp(-h)  # 0 at a zero final sigma
        if stochastic:
            A = sigma[1:] / sigma[:-1] * decay
            B = alpha[1:] * (1 - np.exp(-2.0 * h))
            heun = alpha[1:] * ((1 - np.exp(-2.0 * h)) / (-2.0 * h) + 1)
            S = sigma[1:] * (1 - np.exp(-2 * h)) ** 0.5
        else:
            A = sigma[1:] / sigma[:-1]
            B = -(alpha[1:] * (decay - 1))
            heun = alpha[1:] * ((decay - 1) / h + 1)
            S = np.zeros_like(A)
        C = (0.5 * B if st["solver_type"] == "midpoint" else heun) * (1 / r)
    second = np.arange(n) > 0
    if st["solver_order"] == 1:
        second[:] = False
    if st["euler_at_final"] or (st["lower_order_final"] and n < 15) or st["final_sigmas_type"] == "zero":
        second[-1] = False
    return ts, dict(A=A, B=B, C=np.where(second, C, 0.0).astype(ac.dtype), S=S,
                    a=alpha[:-1], s=sigma[:-1])
