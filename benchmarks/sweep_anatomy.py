"""Where a parallel diffusion solve spends its sweeps: per-sweep advance, slot ages, the bound's slack.

    python benchmarks/sweep_anatomy.py                                  # the default set of problems
    python benchmarks/sweep_anatomy.py --runs digits:ddpm:1000:128 --out docs/benchmarks/sweep-anatomy.md

Each run (``model:sampler:steps:window``; models ``digits``, ``digits-flow``, ``trajectory``) samples
sequentially and with ``diffusion.sample``'s defaults (method, tol) from the same x_T and noise,
and records every sweep's measured defects as the stop rule sees them (``callback=``, the solve's
observer: :class:`parasolve.observers.SweepInfo`). Reported:

- sweeps, evaluations, max|x - x_seq| (the gap), ``Stats.weighted_defect_sum`` (the bound) and the
  **slack** bound / gap;
- where the budget ran out (maps that declare gains): the first window start at which the
  weighted sum accepted before it exceeded ``tol`` times the shares up to it (from there on,
  steps are accepted mostly at the floating-point floor; ``-``: never, or no gains declared);
- the sweeps per tenth of the grid (by the window's start) and the advance of every sweep;
- **slot ages**: for every (sweep, step) pair in a window, how many sweeps ago the step entered
  the window, and the ratio of its defect to its allowance ``max(tol w_i / G_i, floor_i)``
  (median of log10, the share of steps within it): how many sweeps a fresh slot needs.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
import torch

from parasolve import diffusion, zoo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_diffusion import machine  # noqa: E402

RUNS = ("digits:ddpm:1000:128", "digits:ddim:100:100", "digits:dpmsolver++:25:25", "digits:euler:50:50",
        "digits:unipc:25:25", "digits-flow:flow-euler:50:50", "trajectory:ddpm:100:100")


def _inputs(name: str, samples: int):
    """The model, the sample shape and the condition of a run."""
    den = zoo.pretrained(name)
    if name == "trajectory":
        from parasolve.zoo import trajectory
        _, cond = trajectory.make_dataset(samples, torch.Generator().manual_seed(1))
        return den, (samples, trajectory.HORIZON, 2), cond
    return den, (samples, 1, 16, 16), None


def anatomy(spec: str, samples: int = 4, seed: int = 0) -> dict:
    """One run's record (see the module docstring)."""
    model, sampler, steps, window = spec.split(":")
    steps, window = int(steps), int(window)
    den, shape, cond = _inputs(model, samples)
    seq = diffusion.sample(den, shape, sampler=sampler, steps=steps, method="sequential", cond=cond,
                           generator=torch.Generator().manual_seed(seed))
    sweeps = []  # (start, defects, allowances, spent before, met, budgets)

    def recording(info):  # the solve's observer: what the stop rule compared in each sweep
        if info.defects is not None:
            sweeps.append((info.start, info.defects, info.allowances, info.spent, info.met, info.budget))

    out = diffusion.sample(den, shape, sampler=sampler, steps=steps, window=window, cond=cond,
                           x_T=seq.x_T, noise=seq.noise, throw=False, callback=recording)
    st = out.stats
    gap = float((out.x - seq.x).abs().max())
    entered, ages = {}, collections.defaultdict(list)
    exhausted = None
    for k, (start, defects, own, spent, m, budget) in enumerate(sweeps):
        for j in range(len(defects)):
            entered.setdefault(start + j, k)
            ages[k - entered[start + j]].append(float(defects[j] / own[j]) if own[j] > 0 else np.inf)
        if exhausted is None and budget is not None and m and spent > float(budget[0]):
            exhausted = start
    tenth = collections.Counter(min(9, 10 * r.start // steps) for r in st.history)
    return dict(run=f"{model} {sampler}-{steps}", window=window, sweeps=st.iterations, evals=st.nfe, gap=gap,
                bound=st.weighted_defect_sum, plain=st.defect_sum, exhausted=exhausted,
                tenths=[tenth.get(i, 0) for i in range(10)],
                advance=" ".join(f"{r.start}+{r.accepted}" for r in st.history),
                ages={a: (float(np.median(np.log10(np.maximum(v, 1e-30)))), float(np.mean(np.asarray(v) <= 1)), len(v))
                      for a, v in sorted(ages.items())},
                converged=out.converged)


def report(records) -> str:
    lines = ["| run | window | sweeps | evals | gap | bound (weighted sum) | slack bound/gap | plain defect sum "
             "| budget spent by step | sweeps per tenth of the grid |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['run']} | {r['window']} | {r['sweeps']}{'' if r['converged'] else ' (unconverged)'} | "
                     f"{r['evals']} | {r['gap']:.1e} | {r['bound']:.1e} | {r['bound'] / max(r['gap'], 1e-30):.1f} | "
                     f"{r['plain']:.1e} | {'-' if r['exhausted'] is None else r['exhausted']} | "
                     f"{' '.join(map(str, r['tenths']))} |")
    lines += ["", "Slot ages: median log10(defect / allowance) and the share within the allowance, by the sweeps "
              "since the step entered the window (0 = its first evaluation).", "",
              "| run | " + " | ".join(f"age {a}" for a in range(7)) + " |", "|---|" + "---|" * 7]
    for r in records:
        cells = [f"{r['ages'][a][0]:+.1f} / {r['ages'][a][1]:.0%}" if a in r["ages"] else "-" for a in range(7)]
        lines.append(f"| {r['run']} | " + " | ".join(cells) + " |")
    lines += ["", "Advance per sweep (window start + steps accepted):", ""]
    lines += [f"- {r['run']}, window {r['window']}: {r['advance']}" for r in records]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=",".join(RUNS), help="comma list of model:sampler:steps:window")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    records = []
    for spec in args.runs.split(","):
        records.append(anatomy(spec, args.samples, args.seed))
        print(records[-1]["run"], records[-1]["sweeps"], records[-1]["evals"], f"{records[-1]['gap']:.1e}", flush=True)
    text = "\n".join(["# Where the sweeps go", "", "Written by `benchmarks/sweep_anatomy.py`; the reading is in "
                      "[docs/tolerance.md](../tolerance.md#where-the-sweeps-go).", "",
                      f"Machine: {machine()}.", "",
                      f"Command: `python benchmarks/sweep_anatomy.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
                      "", f"{args.samples} samples, `diffusion.sample` defaults (method, tol), the same x_T and noise "
                      "as the sequential run.", "", report(records)])
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return records


if __name__ == "__main__":
    main()
