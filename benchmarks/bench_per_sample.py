"""Per-sample acceptance on and off, on the shipped digits models, same x_T and noise, one run.

    python benchmarks/bench_per_sample.py                                   # all four, 8 samples
    python benchmarks/bench_per_sample.py --runs ddim,flow --out docs/benchmarks/per-sample.md

For every run (DDPM-1000 at window 128, DDIM-100, DPM-Solver++-25 and the flow model's Euler-50,
each at a window of all its steps but DDPM; ``exact``: DDPM-1000 on a near-free exact denoiser,
where CPU time is the solver's own) it draws ``x_T`` (and a stochastic sampler's noise)
once, runs the sequential sampler as the reference, then ``per_sample=False`` (one joint solve:
a step is accepted when every sample's defect allows it) and ``per_sample=True`` (each sample's
window advances on its own defects; one merged model call per round), interleaved (the order
alternates between repeats). Reported: sweeps (the rounds of model calls; with per-sample, the
slowest sample's sweeps, and the fastest's), model evaluations counted per sample (a joint
call on ``n`` time points evaluates ``n * B``), model calls, max|x - x_sequential| over the
samples, the largest weighted defect sum (the estimated bound the stop rule keeps within tol) and
CPU time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_diffusion import machine, scheme_spec  # noqa: E402

from parasolve import diffusion, zoo  # noqa: E402

#: name -> (model, sampler, steps, window); "exact": a near-free model, to see the lanes' own cost
RUNS = {"ddpm": ("digits", "ddpm", 1000, 128), "ddim": ("digits", "ddim", 100, 100),
        "dpm": ("digits", "dpmsolver++", 25, 25), "flow": ("digits-flow", "flow-euler", 50, 50),
        "exact": ("exact", "ddpm", 1000, 128)}


def model(name):
    """A shipped model, or ``"exact"``: the exact denoiser of 4 random 16x16 Gaussians (std 0.1)."""
    if name != "exact":
        return zoo.pretrained(name)
    means = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return diffusion.exact_denoiser(means, std=0.1, config={"data_std": 1.0})


def measure(den, shape, per_sample, **kw):
    """One run: its output, model evaluations per sample, CPU and wall seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = diffusion.sample(den, shape, throw=False, per_sample=per_sample, **kw)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    evals = out.stats.nfe if out.stats.per_sample else out.stats.nfe * shape[0]
    return out, evals, cpu, wall


def rows_for(key, args):
    name_of_model, sampler, steps, window = RUNS[key]
    den = model(name_of_model)
    shape = (args.samples, 1, 16, 16)
    name, options = scheme_spec(args.method)
    label = f"{name_of_model} {sampler}-{steps}"
    seq, evals, cpu, wall = measure(den, shape, False, sampler=sampler, steps=steps, method="sequential",
                                    generator=torch.Generator().manual_seed(args.seed))
    rows = [dict(run=label, per_sample="sequential", window="-", tol="-", sweeps=steps, lanes="-", evals=evals,
                 calls=seq.stats.drift_calls, gap=0.0, bound="-", cpu=cpu, wall=wall)]
    tols = [None if t == "default" else float(t) for t in args.tols.split(",")]
    for repeat, tol in ((r, t) for t in tols for r in range(args.repeats)):
        for per_sample in ((False, True) if repeat % 2 == 0 else (True, False)):
            out, evals, cpu, wall = measure(den, shape, per_sample, sampler=sampler, steps=steps, method=name,
                                            options=options, window=window, tol=tol, x_T=seq.x_T,
                                            noise=seq.noise)
            st = out.stats
            lanes = [p.iterations for p in st.per_sample] if st.per_sample else None
            rows.append(dict(run=label, per_sample="on" if per_sample else "off", window=window,
                             tol="default" if tol is None else f"{tol:g}",
                             sweeps=st.iterations if out.converged else f"{st.iterations} (unconverged)",
                             lanes=f"{min(lanes)}-{max(lanes)}" if lanes else "-", evals=evals,
                             calls=st.drift_calls, gap=float((out.x - seq.x).abs().max()),
                             bound=f"{st.weighted_defect_sum:.1e}", cpu=cpu, wall=wall))
            print(rows[-1], flush=True)
    return rows


def table(rows) -> str:
    head = ("| run | per-sample | window | tol | sweeps | per-sample sweeps (min-max) | model evaluations "
            "| model calls | max abs x - x_seq | weighted defect sum | CPU (s) | wall (s) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(f"| {r['run']} | {r['per_sample']} | {r['window']} | {r['tol']} | {r['sweeps']} | {r['lanes']} | "
                          f"{r['evals']} | {r['calls']} | {r['gap']:.1e} | {r['bound']} | {r['cpu']:.1f} | "
                          f"{r['wall']:.1f} |\n" for r in rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="ddpm,ddim,dpm,flow", help="comma list of: " + ",".join(RUNS))
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--method", default="newton", help="scheme, with options as name@key=value")
    p.add_argument("--tols", default="default", help="comma list of tolerances ('default': sample()'s, 1e-3 "
                   "for float32); both modes run at each")
    p.add_argument("--repeats", type=int, default=1, help="on/off pairs per run (the order alternates)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [r for key in args.runs.split(",") for r in rows_for(key, args)]
    command = " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join([
        "# Per-sample acceptance on the digits models", "",
        "Written by `benchmarks/bench_per_sample.py`; what it means is in "
        "[docs/diffusion.md](../diffusion.md#per-sample-acceptance).", "",
        f"Machine: {machine()}.", "", f"Command: `python benchmarks/bench_per_sample.py {command}`", "",
        f"{args.samples} samples, method {args.method!r}; "
        "the same x_T and noise for every run of a model. Model evaluations count one sample at one time "
        "point; sweeps are rounds of (merged) model calls.", "", table(rows)])
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return rows


if __name__ == "__main__":
    main()
