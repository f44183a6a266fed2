"""Rules 9-13 of the :class:`~parasolve.steps.StepMap` contract: the optional capabilities declared
as the protocols of :mod:`parasolve.capabilities`, each checked for type and meaning."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .. import stop_rule
from ..capabilities import ComputesIn, SamplerStep
from ..steps import StepMap
from .rules import Rule


def _gains(case, fail):
    gains = case.step.gains()
    if gains is None:
        return
    if isinstance(gains, tuple) and len(gains) != 2:
        fail(f"gains() must return p or a pair (p, q); got a tuple of {len(gains)}")
    rows = []
    for part in gains if isinstance(gains, tuple) else (gains,):
        try:
            rows.append(np.asarray(part, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            fail(f"gains() returned {type(part).__name__}, not an array of numbers ({exc})")
    n = case.n
    for part in rows:
        if part.ndim not in (1, 2) or part.shape[-1] != n:
            fail(f"gains must have shape (N,) or (K, N) with N = {n} steps; got {part.shape}")
        if not np.all(np.isfinite(part)):
            fail("gains must be finite")
    if len(rows) == 2 and rows[0].shape != rows[1].shape:
        fail(f"the pair (p, q) must have one shape; got {rows[0].shape} and {rows[1].shape}")
    for save in ("all", "last"):  # what the stop rule makes of them: finite weights, one per step
        weights = stop_rule.amplification(gains, save, n)
        if weights.shape != (n,) or not bool(torch.isfinite(weights).all()):
            fail(f"the stop rule's weights from these gains (save={save!r}) are not {n} finite numbers")


def _predict(case, fail):
    step = case.step
    if not isinstance(step.predict_new, bool):
        fail(f"`predict_new` must be a bool; got {step.predict_new!r}")
    if not step.predict_new:
        return
    if type(step).predict is StepMap.predict:
        fail("declares predict_new=True but does not implement predict()")
    if case.n < 2:
        return
    j = case.n // 2 - 1
    inc, carry = step.increments(case.drift, case.t, case.idx[:j + 1], case.y[:j + 1], None)
    hint = (j, case.y[j], inc[j], carry[j] if isinstance(carry, torch.Tensor) else None)
    nxt = case.y[j] + inc[j]
    count = case.n - j - 1
    guess = step.predict(j + 2, count, nxt, hint)
    if not isinstance(guess, torch.Tensor) or guess.shape != (count, *nxt.shape) or guess.dtype != nxt.dtype:
        got = f"{tuple(guess.shape)} {guess.dtype}" if isinstance(guess, torch.Tensor) else type(guess).__name__
        fail(f"predict({j + 2}, {count}, x, hint) must return {count} states of shape {tuple(nxt.shape)} and "
             f"dtype {nxt.dtype}; got {got}")
    if not bool(torch.isfinite(guess).all()):
        fail("predict() returned NaN or Inf from finite states")
    if not step.multistep:  # the guess of the hint's own next state is that state
        again = step.predict(j + 1, 1, case.y[j], hint)[0]
        gap = float((again - nxt).abs().max())
        allowed = torch.finfo(nxt.dtype).eps ** 0.5 * max(1.0, float(nxt.abs().max()))
        if not gap <= allowed:
            fail(f"predict({j + 1}, 1, x_{j}, hint of step {j}) must be x_{j} + Phi_{j}(x_{j}); it is {gap:.3e} "
                 f"away (allowed {allowed:.1e})")


def _implicit(case, fail):
    step = case.step
    if not isinstance(step.implicit, bool):
        fail(f"`implicit` must be a bool; got {step.implicit!r}")
    if step.implicit and type(step).newton_solve is StepMap.newton_solve:
        fail("declares implicit=True but does not implement newton_solve(problem, name, damping)")


_SAMPLER = ("integer_timesteps", "init_noise_sigma", "prepare")


def _sampler(case, fail):
    step = case.step
    if isinstance(step, SamplerStep):
        if not isinstance(step.integer_timesteps, bool):
            fail(f"`integer_timesteps` must be a bool; got {step.integer_timesteps!r}")
        sigma = step.init_noise_sigma
        if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not 0 < sigma < math.inf:
            fail(f"`init_noise_sigma` must be a positive finite number; got {sigma!r}")
        if not callable(step.prepare):
            fail("`prepare` must be a method prepare(dtype, device, noise)")
        return
    partial = [name for name in _SAMPLER if hasattr(step, name)]
    if partial:
        fail(f"has {partial} of the sampler-step attributes {list(_SAMPLER)} but not all: declare every one "
             f"(parasolve.capabilities.SamplerStep)")


def _compute_dtype(case, fail):
    drift = case.drift
    if isinstance(drift, ComputesIn):
        value = drift.compute_dtype
        if value is not None and not (isinstance(value, torch.dtype) and value.is_floating_point):
            fail(f"the drift's `compute_dtype` must be None or a floating torch.dtype; got {value!r}")


RULES = (Rule(9, "gains", _gains), Rule(10, "predict", _predict), Rule(11, "implicit", _implicit),
         Rule(12, "sampler step", _sampler), Rule(13, "compute dtype", _compute_dtype))
