"""Parallel vs sequential diffusion sampling on the pretrained digits model.

    python benchmarks/bench_diffusion.py                       # DDPM-1000, DDIM-100, DPM-Solver++-25
    python benchmarks/bench_diffusion.py --windows 64,128 --tols 1e-2,1e-3 --methods picard,anderson
    python benchmarks/bench_diffusion.py --quality 64          # also the sample-quality table
    python benchmarks/bench_diffusion.py --out docs/benchmarks/diffusion.md

For every sampler it runs the sequential sampler once (the baseline, same process, same threads,
same x_T and noise), then every (method, window, tol): sweeps, model evaluations, wall and CPU
time, speedup over sequential (in CPU time: single-threaded, it does not count other jobs on a
shared machine), the ideal speedup ``steps / sweeps`` (what a device whose batched call
costs as much as one call would give), max|x - x_sequential| and the certified defect sum.
With ``--quality N`` it samples N digits sequentially and in parallel (same noise) and reports a
classifier's confidence and the sliced-Wasserstein distance to held-out real digits.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from parasolve import diffusion, zoo

SAMPLERS = {"ddpm": ("ddpm", 1000), "ddim": ("ddim", 100), "dpm": ("dpmsolver++", 25)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", load average {:.1f}".format(os.getloadavg()[0]) if hasattr(os, "getloadavg") else ""
    return (f"{cpu}, {os.cpu_count()} cores visible{load}, torch {torch.__version__} "
            f"({torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}), Python {platform.python_version()}")


def scheme_spec(spec: str):
    """``"newton@prior=step+clip=2"`` -> ``("newton", {"prior": "step", "clip": 2.0})``."""
    name, _, opts = spec.partition("@")
    options = {}
    for item in filter(None, opts.split("+")):
        key, _, value = item.partition("=")
        try:
            options[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            options[key] = value
    return name, options or None


def timed(den, shape, **kw):
    """The run, its wall time and its CPU time (single-threaded, CPU time is immune to other jobs)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = diffusion.sample(den, shape, throw=False, **kw)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def speed_rows(den, args):
    shape = (args.samples, 1, 16, 16)
    rows = []
    for key in args.samplers.split(","):
        sampler, steps = SAMPLERS[key]
        gen = torch.Generator().manual_seed(args.seed)
        seq, w_seq, t_seq = timed(den, shape, sampler=sampler, steps=steps, method="sequential", generator=gen)
        print(f"{sampler}-{steps} sequential: {w_seq:.1f} s wall, {t_seq:.1f} s CPU", flush=True)
        rows.append(dict(sampler=f"{sampler}-{steps}", method="sequential", window="-", tol="-",
                         sweeps=seq.stats.iterations, nfe=seq.stats.nfe, wall=w_seq, cpu=t_seq, speedup=1.0,
                         ideal=1.0, gap=0.0, defects="-", converged=True))
        windows = [min(int(w), steps) for w in args.windows.split(",")]
        for method in args.methods.split(","):
            name, options = scheme_spec(method)
            for window in dict.fromkeys(windows):
                for tol in (float(t) for t in args.tols.split(",")):
                    try:
                        out, wall, cpu = timed(den, shape, sampler=sampler, steps=steps, method=name, window=window,
                                          tol=tol, x_T=seq.x_T, noise=seq.noise, options=options)
                    except Exception as exc:  # a scheme that cannot run this problem: record why
                        print(f"  {method} w={window} tol={tol:g}: failed: {exc}", flush=True)
                        rows.append(dict(sampler=f"{sampler}-{steps}", method=method, window=window, tol=f"{tol:g}",
                                         sweeps="failed", nfe="-", wall=float("nan"), cpu=float("nan"),
                                         speedup=float("nan"),
                                         ideal=float("nan"), gap=float("nan"), defects=str(exc)[:60],
                                         converged=False))
                        continue
                    gap = float((out.x - seq.x).abs().max())
                    row = dict(sampler=f"{sampler}-{steps}", method=method, window=window, tol=f"{tol:g}",
                               sweeps=out.stats.iterations, nfe=out.stats.nfe, wall=wall, cpu=cpu, speedup=t_seq / cpu,
                               ideal=steps / out.stats.iterations, gap=gap, defects=f"{out.stats.weighted_defect_sum:.1e}",
                               converged=out.converged)
                    rows.append(row)
                    print(f"  {method} w={window} tol={tol:g}: {row['sweeps']} sweeps, {row['nfe']} evals, "
                          f"{wall:.1f} s wall, {cpu:.1f} s CPU, gap {gap:.1e}", flush=True)
    return rows


def speed_table(rows) -> str:
    head = ("| sampler | method | window | tol | sweeps | model evals | wall (s) | CPU (s) | speedup (CPU) "
            "| steps/sweeps | max abs x - x_seq | weighted defect sum (the bound) | converged |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    def num(value, spec, suffix=""):
        return "-" if value != value else f"{value:{spec}}{suffix}"  # NaN (a failed run) as "-"

    body = "".join(
        f"| {r['sampler']} | {r['method']} | {r['window']} | {r['tol']} | {r['sweeps']} | {r['nfe']} | "
        f"{num(r['wall'], '.2f')} | {num(r['cpu'], '.2f')} | {num(r['speedup'], '.2f', 'x')} | {num(r['ideal'], '.1f')} | "
        f"{num(r['gap'], '.1e')} | {r['defects']} | {'yes' if r['converged'] else 'no'} |\n" for r in rows)
    return head + body


def quality_rows(den, args):
    """Sequential vs parallel samples (same noise): classifier confidence and SW distance to held-out digits."""
    from parasolve.zoo import digits

    clf = digits.classifier()
    test_x, _ = digits.load_digits_16("test")
    train_x, _ = digits.load_digits_16("train")
    shape = (args.quality, 1, 16, 16)
    gen = torch.Generator().manual_seed(args.seed + 1)

    def scores(x):
        with torch.no_grad():
            prob = torch.softmax(clf(x.clamp(-1, 1)), dim=1)
        conf, label = prob.max(dim=1)
        return dict(conf=float(conf.mean()), confident=float((conf >= 0.9).float().mean()),
                    classes=int(label.unique().numel()), sw=digits.sliced_wasserstein(x, test_x), label=label)

    rows = [dict(name="real digits (train split)", **scores(train_x[:args.quality]), sweeps="-", gap="-", agree="-")]
    for sampler, steps in (("ddpm", 1000), ("ddim", 100)):
        seq, *_ = timed(den, shape, sampler=sampler, steps=steps, method="sequential", generator=gen)
        par, *_ = timed(den, shape, sampler=sampler, steps=steps, window=args.quality_window, tol=1e-3,
                       x_T=seq.x_T, noise=seq.noise)
        s_seq, s_par = scores(seq.x), scores(par.x)
        agree = float((s_seq["label"] == s_par["label"]).float().mean())
        rows.append(dict(name=f"{sampler.upper()}-{steps} sequential", **s_seq, sweeps=steps, gap="-", agree="-"))
        rows.append(dict(name=f"{sampler.upper()}-{steps} picard (w={args.quality_window}, tol=1e-3)", **s_par,
                         sweeps=par.stats.iterations, gap=f"{float((par.x - seq.x).abs().max()):.1e}",
                         agree=f"{agree:.0%}"))
        print(rows[-2]["name"], rows[-1]["name"], flush=True)
    rows.append(dict(name="Gaussian noise (reference)", **scores(torch.randn(shape, generator=gen)), sweeps="-",
                     gap="-", agree="-"))
    return rows


def quality_table(rows) -> str:
    head = ("| samples | sweeps | mean classifier confidence | confident (p >= 0.9) | classes seen | "
            "sliced W2 to held-out digits | max abs x - x_seq | same label as sequential |\n"
            "|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['name']} | {r['sweeps']} | {r['conf']:.3f} | {r['confident']:.0%} | {r['classes']} | {r['sw']:.3f} | "
        f"{r['gap']} | {r['agree']} |\n" for r in rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samplers", default="ddpm,ddim,dpm", help="comma list of: " + ",".join(SAMPLERS))
    p.add_argument("--methods", default="picard",
                   help="comma list of parasolve schemes, each with options as name@key=value+key=value")
    p.add_argument("--windows", default="32,64,128")
    p.add_argument("--tols", default="1e-1,1e-2,1e-3")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quality", type=int, default=0, help="also the quality table with this many samples")
    p.add_argument("--quality-window", type=int, default=64)
    p.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    den = zoo.pretrained("digits")
    report = ["# Benchmarks: parallel diffusion sampling on the digits model", "",
              "Written by `benchmarks/bench_diffusion.py`; the reading is in [docs/diffusion.md](../diffusion.md#results).", "",
              f"Machine: {machine()}.", "",
              f"Command: `python benchmarks/bench_diffusion.py {' '.join(sys.argv[1:] if argv is None else argv)}`", ""]
    if args.samplers:
        report += [f"### Speed: digits UNet, {args.samples} samples, same x_T and noise in every run", "",
                   speed_table(speed_rows(den, args))]
    if args.quality:
        report += [f"### Quality: {args.quality} samples, sequential vs parallel (same noise)", "",
                   quality_table(quality_rows(den, args))]
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
