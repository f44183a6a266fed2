"""Per-sample acceptance: each sample of a batch solved as its own problem, one model call per round.

A joint solve of ``B`` samples measures a step's defect as the largest over the samples, so
every sample's window advances only as fast as the slowest sample's. Here sample ``s`` is its
own discrete problem -- its ``x_T``, its noise rows, its condition rows, the same grid and step
map settings -- solved by the unchanged scheme in a lane of :func:`parasolve.diffusion.lanes.run_lanes`;
the lanes' model calls are merged, so each round is still one batched call of the denoiser on
the rows every running sample asks for (and a sample that has converged asks for none).

Each sample's answer is the one its solve alone would give (``x_s`` within ``tol`` of its own
sequential chain, ``Stats.per_sample[s]`` its sweeps), up to the round-off of evaluating its
rows next to other samples' rows in one batch.
"""

from __future__ import annotations

import copy

import torch

from .._api import solve
from ..drift import in_contract_check
from .lanes import run_lanes
from ..solution import Solution, Stats, Status, report
from .denoiser import Denoiser, concat, rows


def solve_per_sample(den: Denoiser, step, x_T: torch.Tensor, grid: torch.Tensor, *, noise, cond, uncond,
                     guidance_scale, init, throw: bool, progress: bool, callback=None, **solve_kw) -> Solution:
    """The solve of :func:`~parasolve.diffusion.sample`, sample by sample (arguments as there;
    ``step`` prepared for the whole batch, ``noise`` of shape ``(steps, B, *sample)``; ``progress``
    and ``callback`` watch the first sample's solve)."""
    batch = MergedModel(den)
    sample_shape = (1, *x_T.shape[1:])

    def lane(s: int):
        one = slice(s, s + 1)
        lane_step = copy.copy(step).prepare(x_T.dtype, x_T.device, None if noise is None else noise[:, one])

        def job(call):
            drift = den.drift(sample_shape, rows(cond, one, den.unbatched), rows(uncond, one, den.unbatched),
                              guidance_scale, integer_timesteps=step.integer_timesteps,
                              model=lambda x, t, c: call((x, t, c, in_contract_check())))
            return solve(drift, x_T[one], grid, step=lane_step, vectorized=True, throw=False,
                         progress=progress and s == 0, callback=callback if s == 0 else None,
                         init=None if init is None else init[:, one], **solve_kw)
        return job

    sols = run_lanes([lane(s) for s in range(x_T.shape[0])], batch)
    return report(merge(sols, batch.calls), throw, grid.shape[0] - 1)


class MergedModel:
    """``merged(requests)`` for :func:`~parasolve.diffusion.lanes.run_lanes`: the samples' model batches
    ``(x, t, cond, is_contract_check)`` in one call of ``den``; ``calls`` counts the calls the
    stats count (not the rounds made only of the first call's contract checks)."""

    def __init__(self, den: Denoiser):
        self.den = den
        self.calls = 0

    def __call__(self, requests):
        xs, ts, conds, checks = zip(*requests)
        out = self.den(torch.cat(xs), torch.cat(ts), concat(conds, self.den.unbatched))
        self.calls += not all(checks)
        return out.split([x.shape[0] for x in xs])


def merge(sols: list[Solution], calls: int) -> Solution:
    """One solution of the batch from the samples' (stats combined as :class:`Stats` documents)."""
    per = [s.stats for s in sols]
    slowest = max(range(len(per)), key=lambda s: per[s].iterations)
    stats = Stats(iterations=per[slowest].iterations, drift_calls=calls, nfe=sum(p.nfe for p in per),
                  window=per[0].window, defect_sum=max(p.defect_sum for p in per),
                  weighted_defect_sum=max(p.weighted_defect_sum for p in per),
                  fallbacks=sum(p.fallbacks for p in per), noise_floor=max(p.noise_floor for p in per),
                  history=per[slowest].history, per_sample=per)
    failure = next((s.failure for s in sols if s.failure is not None), None)
    status = (Status.NON_FINITE if failure is not None else Status.SUCCESS if all(s.converged for s in sols)
              else Status.MAX_ITERS)
    return Solution(ts=sols[0].ts, ys=torch.cat([s.ys for s in sols], dim=1), status=status, stats=stats,
                    method=sols[0].method, step=sols[0].step, failure=failure)
