"""Grid economy of odeint's parallel driver: final steps and error against torchdiffeq's.

The parallel driver (forced with ``options={"scheme": "newton", "scheme_options": {"jacobian":
"full"}}``) against ``torchdiffeq.odeint`` (dopri5) on the same problems and tolerances, with the
old defaults (2048 first steps, no coarsening passes) beside the new ones (256, ``coarsen=0.7``):
final steps, passes, batched drift rounds, error against a tight torchdiffeq solve (rtol 1e-12), as
a ratio to torchdiffeq's error, and CPU seconds (one thread). Prints a markdown table.

    python benchmarks/bench_grids.py [--out docs/benchmarks/grids.md]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch
import torchdiffeq

import parasolve

D = torch.float64
PARALLEL = {"scheme": "newton", "scheme_options": {"jacobian": "full"}}


def vdp(t, y):
    return torch.stack([y[..., 1], (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)


def kepler(t, y):
    q, p = y[..., :2], y[..., 2:]
    return torch.cat([p, -q / (q * q).sum(-1, keepdim=True) ** 1.5], -1)


def lorenz(t, y):
    x, v, z = y[..., 0], y[..., 1], y[..., 2]
    return torch.stack([10 * (v - x), x * (28 - z) - v, x * v - 8 / 3 * z], -1)


PROBLEMS = [("Van der Pol mu=1", vdp, [2.0, 0.0], 20.0), ("Kepler e=0.4", kepler, [0.6, 0, 0, math.sqrt(1.4 / 0.6)],
                                                              4 * math.pi), ("Lorenz", lorenz, [1.0, 1.0, 1.0], 5.0)]
SETTINGS = {"old (2048, no coarsening)": {"initial_steps": 2048, "coarsen": 0.0},
            "new (256, coarsen 0.7)": {"initial_steps": 256, "coarsen": 0.7}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the markdown table here too")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}, one torch thread; load average before: {os.getloadavg()[0]:.2f}.", "",
             "| problem | rtol | torchdiffeq steps | settings | steps | passes | drift rounds | error / torchdiffeq's | CPU s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, f, y0, T in PROBLEMS:
        y0 = torch.tensor(y0, dtype=D)
        t = torch.tensor([0.0, T], dtype=D)
        ref = torchdiffeq.odeint(f, y0, t, rtol=1e-12, atol=1e-14)
        for rtol in (1e-5, 1e-8):
            calls = [0]

            def counted(s, y):
                calls[0] += 1
                return f(s, y)

            theirs = torchdiffeq.odeint(counted, y0, t, rtol=rtol, atol=rtol * 1e-2)
            their_err = float((theirs - ref).abs().max())
            for label, opts in SETTINGS.items():
                start = time.process_time()
                res = parasolve.odeint(f, y0, t, rtol=rtol, atol=rtol * 1e-2, options={**PARALLEL, **opts},
                                       full_output=True)
                cpu = time.process_time() - start
                err = float((res.ys - ref).abs().max())
                lines.append(f"| {name} | {rtol:g} | {calls[0] // 6} | {label} | {res.stats.accepted_steps} | "
                             f"{res.stats.passes} | {res.stats.drift_rounds} | {err / their_err:.3g} | {cpu:.3f} |")
    lines += ["", f"Load average after: {os.getloadavg()[0]:.2f}. torchdiffeq steps: its drift calls / 6."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("# Grid economy of odeint's parallel driver\n\n`python benchmarks/bench_grids.py`"
                     " (the parallel driver forced; the default `\"auto\"` may step sequentially instead).\n\n"
                     + text + "\n")


if __name__ == "__main__":
    main()
