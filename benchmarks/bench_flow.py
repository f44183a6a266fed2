"""Parallel vs sequential flow-matching Euler on the shipped digits flow model.

    python benchmarks/bench_flow.py                                  # 25/50/100 steps
    python benchmarks/bench_flow.py --methods picard,anderson,newton@prior=step --out docs/benchmarks/flow.md

For every step count it runs the sequential flow Euler sampler (diffusers'
``FlowMatchEulerDiscreteScheduler`` loop; the baseline, same process, same threads, same x_T),
then every (method, window, tol): sweeps, model evaluations, wall and CPU time, the ideal
speedup ``steps / sweeps``, max|x - x_sequential| and the certified defect sum; and a quality
line (classifier confidence, sliced W2 to held-out digits) for the sequential samples.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_diffusion import machine, scheme_spec, timed  # noqa: E402

from parasolve import zoo  # noqa: E402
from parasolve.zoo import digits  # noqa: E402


def rows_for(den, steps: int, args):
    shape = (args.samples, 1, 16, 16)
    seq, w_seq, t_seq = timed(den, shape, sampler="flow-euler", steps=steps, method="sequential",
                              generator=torch.Generator().manual_seed(args.seed))
    rows = [dict(steps=steps, method="sequential", window="-", tol="-", sweeps=seq.stats.iterations,
                 nfe=seq.stats.nfe, wall=w_seq, cpu=t_seq, ideal=1.0, gap=0.0, defects="-", converged=True)]
    for method, window, tol in ((m, w, t) for m in args.methods.split(",")
                                for w in dict.fromkeys(min(int(w), steps) for w in args.windows.split(","))
                                for t in (float(t) for t in args.tols.split(","))):
        name, options = scheme_spec(method)
        out, wall, cpu = timed(den, shape, sampler="flow-euler", steps=steps, method=name, options=options,
                               window=window, tol=tol, x_T=seq.x_T)
        rows.append(dict(steps=steps, method=method, window=window, tol=f"{tol:g}", sweeps=out.stats.iterations,
                         nfe=out.stats.nfe, wall=wall, cpu=cpu, ideal=steps / out.stats.iterations,
                         gap=float((out.x - seq.x).abs().max()), defects=f"{out.stats.defect_sum:.1e}",
                         converged=out.converged))
        r = rows[-1]
        print(f"flow-euler-{steps} {method} w={window} tol={tol:g}: {r['sweeps']} sweeps, {r['nfe']} evals, "
              f"gap {r['gap']:.1e}", flush=True)
    return rows, seq


def table(rows) -> str:
    head = ("| steps | method | window | tol | sweeps | model evals | wall (s) | CPU (s) | steps/sweeps "
            "| max abs x - x_seq | defect sum | converged |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['steps']} | {r['method']} | {r['window']} | {r['tol']} | {r['sweeps']} | {r['nfe']} | {r['wall']:.2f} | "
        f"{r['cpu']:.2f} | {r['ideal']:.1f} | {r['gap']:.1e} | {r['defects']} | {'yes' if r['converged'] else 'no'} |\n"
        for r in rows)


def quality(samples: dict) -> str:
    clf = digits.classifier()
    test_x, _ = digits.load_digits_16("test")
    lines = ["| samples | mean classifier confidence | sliced W2 to held-out digits |", "|---|---|---|"]
    for name, x in samples.items():
        with torch.no_grad():
            conf = torch.softmax(clf(x.clamp(-1, 1)), dim=1).max(dim=1).values.mean()
        lines.append(f"| {name} | {float(conf):.3f} | {digits.sliced_wasserstein(x, test_x):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", default="25,50,100")
    p.add_argument("--methods", default="picard", help="comma list of schemes, options as name@key=value+key=value")
    p.add_argument("--windows", default="8,100")
    p.add_argument("--tols", default="1e-2,1e-3")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    den = zoo.pretrained("digits-flow")
    rows, samples = [], {}
    for steps in (int(s) for s in args.steps.split(",")):
        r, seq = rows_for(den, steps, args)
        rows += r
        samples[f"flow Euler, {steps} steps (sequential)"] = seq.x
    samples["Gaussian noise (reference)"] = torch.randn((args.samples, 1, 16, 16),
                                                        generator=torch.Generator().manual_seed(args.seed + 1))
    report = ["# Benchmarks: parallel flow-matching Euler on the digits flow model", "",
              "Written by `benchmarks/bench_flow.py`; the reading is in [docs/diffusion.md](../diffusion.md).", "",
              f"Machine: {machine()}.", "",
              f"Command: `python benchmarks/bench_flow.py {' '.join(sys.argv[1:] if argv is None else argv)}`", "",
              f"### Speed: digits flow UNet, {args.samples} samples, same x_T in every run", "", table(rows),
              f"### Quality of the sequential samples ({args.samples} each)", "", quality(samples)]
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
