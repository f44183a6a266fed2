"""UniPC (diffusers' ``UniPCMultistepScheduler``, predictor with its corrector) as a step map.

diffusers' step ``i`` first corrects the sample it was handed, ``c_i = UniC(c_{i-1}, x0_{i-1}, x0_i)``,
then predicts ``x_{i+1} = UniP(c_i, x0_i, x0_{i-1}, ..)``. The model is evaluated at the
*uncorrected* ``x_i``, and the corrector shares its first part with the predictor that made
``x_i``, so ``c_i = x_i + alpha_i B(h) (sum_k (rho^p_k - rho^c_k) D_k - rho^c_last (x0_i - x0_{i-1}))``:
the whole step is linear in ``x_i`` and the clean-sample predictions::

    x_{i+1} = r_i x_i + sum_{j=0..K} W_ij x0_{i-j}

with the coefficients computed once (float64) from the scheduler's sigmas, orders (warm-up,
``lower_order_final``) and ``disable_corrector``. Each step's carry is its history
``(x0_i, .., x0_{i-K+1})``, so ``prev`` holds all the past the next window needs.
Supported: ``predict_x0=True`` (the default), ``solver_type`` ``bh1``/``bh2``, orders 1-3,
Karras sigmas, flow sigmas (``use_flow_sigmas``, ``flow_shift``, dynamic shifting) with
``flow_prediction``, thresholding.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..steps import Increments, StepMap
from . import sigma_schedules as sg
from .predictions import clip_x0, to_x0
from .schedules import timesteps as spaced_timesteps

DEFAULTS = {"unipc": dict(timestep_spacing="linspace", steps_offset=0, solver_order=2, solver_type="bh2",
                          predict_x0=True, lower_order_final=True, disable_corrector=[], solver_p=None,
                          use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
                          use_flow_sigmas=False, flow_shift=1.0, final_sigmas_type="zero",
                          use_dynamic_shifting=False, time_shift_type="exponential", shift_terminal=None,
                          thresholding=False, dynamic_thresholding_ratio=0.995, sample_max_value=1.0,
                          sigma_min=None, sigma_max=None)}
SUPPORTED = {"solver_order": (1, 2, 3), "solver_type": ("bh1", "bh2"), "predict_x0": (True,), "solver_p": (None,),
             "use_exponential_sigmas": (False,), "use_beta_sigmas": (False,), "final_sigmas_type": ("zero", "sigma_min"),
             "shift_terminal": (None,), "use_flow_sigmas": (False, True)}


class UniPCStep(StepMap):
    """``x_{i+1} = r_i x_i + sum_j W_ij x0_{i-j}`` (module docstring); carry: the x0 history."""

    order, stages, multistep = 2, 1, True
    ode_rhs, linear = False, True
    callables = ("model",)
    integer_timesteps = True
    stochastic = False
    init_noise_sigma = 1.0

    def __init__(self, prediction_type: str, settings: dict, tables: dict[str, np.ndarray]):
        self.name = "unipc"
        self.prediction_type = prediction_type
        self.settings = settings
        self.tables = tables
        self.depth = tables["W"].shape[1] - 1  # past predictions a step may use
        self.carry_depth = self.depth  # the carry (x0_i .. x0_{i-K+1}) depends on the last K states
        self.noise = None
        self._dev = {}

    def draws(self) -> np.ndarray:
        return np.zeros(len(self.tables["r"]), dtype=bool)

    def prepare(self, dtype, device, noise):
        self._dev = {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in self.tables.items()}
        self.noise = noise
        return self

    def linear_part(self):
        """``dPhi_i/dx = r_i - 1`` with the clean-sample predictions held fixed (Newton's ``prior="step"``)."""
        return torch.from_numpy(self.tables["r"] - 1)

    def increments(self, drift, t, idx, y, prev=None):
        if not self._dev:
            raise ValueError("unipc: call prepare(dtype, device, noise) before increments(); sample() does.")
        n, K = len(idx), self.depth
        shape = (-1, *([1] * (y.dim() - 1)))
        out = drift(t[idx], y)
        a, s = (self._dev[k][idx].reshape(shape) for k in ("a", "s"))
        x0 = clip_x0(to_x0(self.prediction_type, out, y, a, s), self.settings)
        if prev is None:
            if int(idx[0]) > 0:
                raise ValueError(f"unipc: step {int(idx[0])} is a multistep step and needs `prev`, the clean-sample "
                                 f"predictions of the steps before it.")
            prev = torch.zeros((K, *y.shape[1:]), dtype=y.dtype, device=y.device)
        seq = torch.cat([prev.flip(0), x0])  # x0_{i0-K} .. x0_{i0+n-1}
        hist = torch.stack([seq[K - j:K - j + n] for j in range(K + 1)], dim=1)  # (n, K+1, *state): x0_{i-j}
        W = self._dev["W"][idx].reshape(n, K + 1, *([1] * (y.dim() - 1)))
        x_next = self._dev["r"][idx].reshape(shape) * y + (W * hist).sum(1)
        return Increments(x_next - y, hist[:, :K])


def schedule(den, st: dict, steps: int, sigmas=None, mu=None):
    """``(timesteps (N,) int64, sigmas (N+1,) float32)`` as ``UniPCMultistepScheduler.set_timesteps``."""
    T = den.num_train_timesteps
    if sigmas is not None and not st["use_flow_sigmas"]:
        raise ValueError("Custom `sigmas` need a flow UniPC scheduler (use_flow_sigmas=True).")
    if st["use_flow_sigmas"] and st["use_karras_sigmas"]:
        raise ValueError("UniPC with both use_flow_sigmas and use_karras_sigmas is not supported; supported: one of them.")
    if st["use_dynamic_shifting"] and mu is None:
        raise ValueError("This UniPC scheduler shifts its sigmas by resolution (use_dynamic_shifting=True): pass `mu=`.")
    ts = spaced_timesteps(st["timestep_spacing"], T, steps, st["steps_offset"], endpoint_dropped=True)
    if st["use_flow_sigmas"]:
        sig = np.linspace(1, 1 / T, steps + 1)[:-1] if sigmas is None else np.asarray(sigmas, dtype=np.float64)
        sig = sg.time_shift(sig, mu, st["time_shift_type"]) if st["use_dynamic_shifting"] else sg.shift(sig, st["flow_shift"])
        if abs(sig[0] - 1) < 1e-6:
            sig[0] -= 1e-6
        ts = (sig * T).astype(np.int64)
        last = sig[-1] if st["final_sigmas_type"] == "sigma_min" else 0.0
    else:
        train = sg.vp_sigmas(den.alphas_cumprod)
        if st["use_karras_sigmas"]:
            flipped = np.flip(train).copy()
            hi = st["sigma_max"] if st["sigma_max"] is not None else flipped[0].item()
            lo = st["sigma_min"] if st["sigma_min"] is not None else flipped[-1].item()
            sig = sg.karras(hi, lo, steps)
            ts = sg.sigma_to_t(sig, np.log(train)).round().astype(np.int64)
            last = sig[-1] if st["final_sigmas_type"] == "sigma_min" else 0.0
        else:
            sig = sg.interpolate(ts, train)
            last = train[0] if st["final_sigmas_type"] == "sigma_min" else 0.0
    return ts, np.concatenate([sig, [last]]).astype(np.float32)


def _alpha_sigma(sig: np.ndarray, flow: bool):
    if flow:
        return 1 - sig, sig
    alpha = 1 / (sig ** 2 + 1) ** 0.5
    return alpha, sig * alpha


def _b_vector(hh: float, order: int, bh2: bool):
    """``B(h)`` and the right-hand side ``b`` of UniPC's order conditions."""
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    B_h = math.expm1(hh) if bh2 else hh
    b, fact = [], 1
    for i in range(1, order + 1):
        b.append(h_phi_k * fact / B_h)
        fact *= i + 1
        h_phi_k = h_phi_k / hh - 1 / fact
    return h_phi_1, B_h, np.array(b)


def coefficients(sig: np.ndarray, st: dict, flow: bool):
    """``r`` (N,) and ``W`` (N, K+1) of the step map, plus ``a``, ``s`` (alpha_t, sigma_t) of each step."""
    n, p_max = len(sig) - 1, st["solver_order"]
    alpha, sigma = _alpha_sigma(sig.astype(np.float64), flow)
    with np.errstate(divide="ignore"):
        lam = np.log(alpha) - np.log(sigma)
    bh2 = st["solver_type"] == "bh2"
    orders = [min(p_max, n - i if st["lower_order_final"] else p_max, i + 1) for i in range(n)]
    K = p_max
    r, W = np.zeros(n), np.zeros((n, K + 1))
    pred_rho = [None] * n  # predictor's rho_p and rks of each step, reused by the next step's corrector
    for i in range(n):
        p = orders[i]
        h = lam[i + 1] - lam[i]
        hh = -h
        rks = np.array([(lam[i - k] - lam[i]) / h for k in range(1, p)] + [1.0])
        h_phi_1, B_h, b = _b_vector(hh, p, bh2)
        if p == 1:
            rho_p = np.zeros(0)
        elif p == 2:
            rho_p = np.array([0.5])
        else:
            R = np.stack([rks ** (q - 1) for q in range(1, p + 1)])
            rho_p = np.linalg.solve(R[:-1, :-1], b[:-1])
        pred_rho[i] = (rho_p, rks)
        # corrector of this step (uses step i-1's order, rks and B(h)), as weights on x_i and x0_{i-j}
        u = np.zeros(K + 1)
        if i > 0 and (i - 1) not in st["disable_corrector"]:
            pc = orders[i - 1]
            rho_pp, rks_c = pred_rho[i - 1]
            hc = lam[i] - lam[i - 1]
            _, B_c, b_c = _b_vector(-hc, pc, bh2)
            if pc == 1:
                rho_c = np.array([0.5])
            else:
                R = np.stack([rks_c ** (q - 1) for q in range(1, pc + 1)])
                rho_c = np.linalg.solve(R, b_c)
            g = alpha[i] * B_c
            for k in range(1, pc):  # D_k = (x0_{i-1-k} - x0_{i-1}) / rk
                w = g * (rho_pp[k - 1] - rho_c[k - 1]) / rks_c[k - 1]
                u[1 + k] += w
                u[1] -= w
            u[0] -= g * rho_c[-1]  # - rho_c_last (x0_i - x0_{i-1})
            u[1] += g * rho_c[-1]
        # predictor: x_{i+1} = (sigma_{i+1} / sigma_i) c_i - alpha_{i+1} (h_phi_1 x0_i + B_h sum_k rho_k D_k)
        r[i] = sigma[i + 1] / sigma[i]
        wp = np.zeros(K + 1)
        wp[0] = -alpha[i + 1] * h_phi_1
        for k in range(1, p):  # D_k = (x0_{i-k} - x0_i) / rk
            w = alpha[i + 1] * B_h * rho_p[k - 1] / rks[k - 1]
            wp[k] -= w
            wp[0] += w
        W[i] = r[i] * u + wp
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(r))):
        raise ValueError("These UniPC settings give non-finite coefficients (e.g. a higher-order last step onto a zero "
                         "final sigma): use lower_order_final=True or final_sigmas_type='sigma_min'.")
    return dict(r=r, W=W, a=alpha[:-1], s=sigma[:-1])


def build(den, st: dict, steps: int, sampler: str, sigmas=None, mu=None):
    """The timesteps and the :class:`UniPCStep` of ``steps`` steps."""
    flow = bool(st["use_flow_sigmas"])
    if flow != (den.prediction_type == "flow_prediction"):
        raise ValueError(f"{den.name}: UniPC with use_flow_sigmas={flow} cannot sample a model with prediction_type="
                         f"{den.prediction_type!r}; flow sigmas go with 'flow_prediction' and only with it.")
    ts, sig = schedule(den, st, steps, sigmas, mu)
    return ts, UniPCStep(den.prediction_type, st, coefficients(sig, st, flow))
