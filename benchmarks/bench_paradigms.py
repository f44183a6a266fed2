"""ParaDiGMS's own sliding-window loop next to parasolve's defaults, same model, same noise, one run.

    python benchmarks/bench_paradigms.py --samplers ddpm --windows 32,64,128,256
    python benchmarks/bench_paradigms.py --samplers ddim,dpm --out docs/benchmarks/paradigms-ddim-dpm.md

The ParaDiGMS loop is written here after the reference implementation (diffusers'
``StableDiffusionParadigmsPipeline`` with ``DDPMParallelScheduler``/``DDIMParallelScheduler``;
docs/reference-figures.md): every trajectory point starts at ``x_T``; a sweep makes one batched
model call on the window ``[b, e)``, forms ``x_new[b+1..e] = x_b + cumsum(step(x) - x)`` (the
pre-drawn noise is part of the step), and accepts up to the first step whose change
``||x_new - x_old||^2 / (var * dim)`` exceeds ``tol^2`` for any sample (``var``: the DDPM
posterior variance, as its parallel schedulers use for DDPM and DDIM, see
:func:`inverse_variance_norm`); the window then moves past the first failing point (whose new
value is exact) and new slots copy the last state.
The step itself is parasolve's step map (tested equal to the diffusers schedulers' ``step``), so
both loops solve the same chain and "max gap" is measured against the same sequential sample.

Per run: sweeps, model evaluations (per sample), max|x - x_sequential| and CPU time; the
sweeps-vs-evaluations points over windows go to a CSV and a PNG (``--img``).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

from parasolve import diffusion, zoo
from parasolve.diffusion import samplers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_diffusion import SAMPLERS, machine, timed  # noqa: E402


def inverse_variance_norm(den, timesteps: np.ndarray, dim: int) -> torch.Tensor:
    """ParaDiGMS's weights ``1 / (var * dim)`` of the points ``x_0 .. x_N``: point ``j`` is weighed
    by the DDPM posterior variance of the step *from* timestep ``j`` (clamped at 1e-20, as
    ``_get_variance`` does; the end point by a zero variance), so the last two points are
    accepted only once they are exact -- the reference implementation's behaviour."""
    ac = den.alphas_cumprod.double().numpy()
    a_t = ac[timesteps]
    a_prev = np.append(ac[timesteps[1:]], 1.0)
    var = np.maximum((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev), 1e-20)
    return torch.from_numpy(np.append(1.0 / (var * dim), 1e20))


def paradigms(den, shape, sampler, steps, window, tol, x_T, noise):
    """ParaDiGMS's loop on ``sampler``: the sample, sweeps and model evaluations (per sample)."""
    ts, step = samplers.build(den, sampler, steps, 0.0, x_T.dtype)
    step.prepare(x_T.dtype, x_T.device, noise)
    drift = den.drift(shape)
    inv = inverse_variance_norm(den, ts, int(np.prod(shape[1:])))
    grid = torch.as_tensor(ts, dtype=torch.float64)
    buf = x_T.expand(steps + 1, *shape).clone()            # x_0 .. x_N, every point at x_T
    x0s = torch.zeros_like(buf)                            # latest clean-sample prediction per step
    b, sweeps, evals = 0, 0, 0
    with torch.no_grad():
        while b < steps:
            e = min(b + window, steps)
            idx = torch.arange(b, e)
            out = drift(grid[idx].to(x_T.dtype), buf[b:e])
            prev = x0s[b - 1] if step.multistep and b > 0 else None
            x_next, x0 = step.advance(idx, buf[b:e], out, prev)
            new = buf[b] + torch.cumsum(x_next - buf[b:e], 0)
            err = ((new - buf[b + 1:e + 1]).reshape(e - b, shape[0], -1).double().pow(2).sum(-1)
                   * inv[b + 1:e + 1, None])
            fail = (err > tol ** 2).any(1)
            ind = int(torch.nonzero(fail)[0]) if bool(fail.any()) else e - b
            buf[b + 1:e + 1] = new
            x0s[b:e] = x0
            sweeps, evals = sweeps + 1, evals + (e - b)
            b_new = b + min(ind + 1, window)
            e_new = min(b_new + window, steps)
            buf[e + 1:e_new + 1] = buf[e]
            b = b_new
    return buf[-1], sweeps, evals


def run(den, args):
    shape = (args.samples, 1, 16, 16)
    rows = []
    for key in args.samplers.split(","):
        sampler, steps = SAMPLERS[key]
        seq, _, cpu = timed(den, shape, sampler=sampler, steps=steps, method="sequential",
                            generator=torch.Generator().manual_seed(args.seed))
        rows.append(dict(sampler=f"{sampler}-{steps}", loop="sequential", window="-", tol="-",
                         sweeps=steps, evals=steps, gap=0.0, cpu=cpu))
        windows = list(dict.fromkeys(min(int(w), steps) for w in args.windows.split(",")))
        for window in windows:
            for tol in (float(t) for t in args.paradigms_tols.split(",") if t):
                t0 = time.process_time()
                x, sweeps, evals = paradigms(den, shape, sampler, steps, window, tol, seq.x_T, seq.noise)
                rows.append(dict(sampler=f"{sampler}-{steps}", loop="paradigms", window=window, tol=f"{tol:g}",
                                 sweeps=sweeps, evals=evals, gap=float((x - seq.x).abs().max()),
                                 cpu=time.process_time() - t0))
                print(rows[-1], flush=True)
            out, _, cpu = timed(den, shape, sampler=sampler, steps=steps, window=window, x_T=seq.x_T,
                                noise=seq.noise)  # parasolve's defaults: method, tol
            rows.append(dict(sampler=f"{sampler}-{steps}", loop="parasolve default", window=window, tol="default",
                             sweeps=out.stats.iterations if out.converged else f"{out.stats.iterations} (unconverged)",
                             evals=out.stats.nfe, gap=float((out.x - seq.x).abs().max()), cpu=cpu))
            print(rows[-1], flush=True)
    return rows


def table(rows) -> str:
    head = ("| sampler | loop | window | tol | sweeps | model evals | max abs x - x_seq | CPU (s) |\n"
            "|---|---|---|---|---|---|---|---|\n")
    return head + "".join(f"| {r['sampler']} | {r['loop']} | {r['window']} | {r['tol']} | {r['sweeps']} | "
                          f"{r['evals']} | {r['gap']:.1e} | {r['cpu']:.1f} |\n" for r in rows)


def plot(rows, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["sampler"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        sel = [r for r in rows if r["sampler"] == name and r["loop"] != "sequential" and isinstance(r["sweeps"], int)]
        for label in dict.fromkeys((r["loop"], r["tol"]) for r in sel):
            pts = sorted((r["evals"], r["sweeps"], r["window"]) for r in sel if (r["loop"], r["tol"]) == label)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-",
                    label=f"{label[0]}" + (f" tol={label[1]}" if label[1] != "default" else ""))
            for ev, sw, w in pts:
                ax.annotate(f"w={w}", (ev, sw), fontsize=7, textcoords="offset points", xytext=(3, 3))
        ax.set(title=f"{name} (4 samples)", xlabel="model evaluations per sample", ylabel="sweeps")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samplers", default="ddpm", help="comma list of: " + ",".join(SAMPLERS))
    p.add_argument("--windows", default="32,64,128,256")
    p.add_argument("--paradigms-tols", default="1e-2,1e-3",
                   help="ParaDiGMS tolerances (its convention); empty: parasolve's defaults only")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    p.add_argument("--img", type=Path, default=None, help="write <img>.csv and <img>.png (sweeps vs evaluations)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    den = zoo.pretrained("digits")
    rows = run(den, args)
    text = "\n".join(["# ParaDiGMS's loop vs parasolve's defaults on the digits model", "",
                      "Written by `benchmarks/bench_paradigms.py`; the reading is in "
                      "[docs/tolerance.md](../tolerance.md#measured-against-paradigms).", "",
                      f"Machine: {machine()}.", "",
                      f"Command: `python benchmarks/bench_paradigms.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
                      "", f"{args.samples} samples, the same x_T and noise for every run.", "", table(rows)])
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.img:
        args.img.parent.mkdir(parents=True, exist_ok=True)
        with open(args.img.with_suffix(".csv"), "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        plot(rows, args.img.with_suffix(".png"))
    return rows


if __name__ == "__main__":
    main()
