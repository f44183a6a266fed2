"""``window="auto"`` against the default window, on the problems the docs measure: same problem, one run.

    python benchmarks/bench_window_auto.py --out docs/benchmarks/window-auto.md
    python benchmarks/bench_window_auto.py --problems pendulum,ddim

For each problem it times the solve at the default window (``solve``: the whole grid;
``diffusion.sample``: 64) and at the window ``window="auto"`` picks (the pick from
:func:`parasolve.tuning.choose_window`, which is what ``window="auto"`` calls), interleaved,
``--repeats`` times each (median), after one ``window="auto"`` call (the tuner's probes and its
solve, timed: what a user pays for one solve). Reported: the windows, their sweeps and
evaluations, the solve times, the ratio default / picked (above 1: the pick is faster) and the
``window="auto"`` call's time. Every solve uses the defaults otherwise (``tol``; for the ODEs the
scheme ``method="auto"`` takes where it goes parallel, named, since its cost model may pick the
sequential loop for them on a CPU) and, for the diffusion problems, the same x_T and noise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import parasolve
from parasolve import diffusion, problems, zoo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_diffusion import machine  # noqa: E402


def _pendulum(t, y):
    return torch.stack([y[..., 1], -torch.sin(y[..., 0])], dim=-1)


#: The scheme ``method="auto"`` takes for these 2-component states where it goes parallel (its cost
#: model may pick the sequential loop instead; this benchmark compares windows of the parallel scheme).
PARALLEL = dict(method="newton", options={"jacobian": "full"})


def ode(name: str):
    """``(f, y0, t, kwargs, default window)`` of an ODE problem of the docs."""
    if name == "pendulum":  # the README's
        t = torch.linspace(0, 10, 2001, dtype=torch.float64)
        return _pendulum, torch.tensor([1.0, 0.0], dtype=torch.float64), t, dict(step="rk4", tol=1e-8, **PARALLEL)
    steps = int(name.split("-")[1])  # "vdp-N": Van der Pol mu = 1 on [0, 3], RK4, N steps
    p = problems.van_der_pol()
    return p.f, p.y0, torch.linspace(p.t0, p.t1, steps + 1, dtype=torch.float64), dict(step="rk4", tol=1e-8,
                                                                                       **PARALLEL)


DIFFUSION = {"ddpm": ("digits", "ddpm", 1000), "ddim": ("digits", "ddim", 100),
             "dpm": ("digits", "dpmsolver++", 25), "flow": ("digits-flow", "flow-euler", 50)}
PROBLEMS = ("pendulum", "vdp-256", "vdp-1024", "ddpm", "ddim", "dpm", "flow")


def setup(name: str):
    """``(solve_at(window) -> Solution, default window)`` for one problem."""
    if name in DIFFUSION:
        model, sampler, steps = DIFFUSION[name]
        den = zoo.pretrained(model)
        shape = (4, 1, 16, 16)
        seq = diffusion.sample(den, shape, sampler=sampler, steps=steps, method="sequential",
                               generator=torch.Generator().manual_seed(0))
        kw = dict(sampler=sampler, steps=steps, x_T=seq.x_T, noise=seq.noise)

        def solve_at(window):
            return diffusion.sample(den, shape, window=window, **kw)

        return solve_at, 64
    f, y0, t, kw = ode(name)

    def solve_at(window):
        return parasolve.solve(f, y0, t, window=window, vectorized=True, **kw)

    return solve_at, len(t) - 1


def measure(name: str, repeats: int) -> dict:
    solve_at, default = setup(name)
    began = time.perf_counter()
    picked = solve_at("auto").stats.window  # what a user pays: the probes and the solve
    auto_s = time.perf_counter() - began
    times = {default: [], picked: []}
    sols = {}
    for r in range(repeats):
        for w in ((default, picked) if r % 2 == 0 else (picked, default)):
            start = time.perf_counter()
            sols[w] = solve_at(w)
            times[w].append(time.perf_counter() - start)
    med = {w: statistics.median(v) for w, v in times.items()}
    return {"problem": name, "default": default, "picked": picked, "auto_s": auto_s,
            "window": {w: s.stats.window for w, s in sols.items()},
            "sweeps": {w: s.stats.iterations for w, s in sols.items()},
            "nfe": {w: s.stats.nfe for w, s in sols.items()}, "seconds": med,
            "ratio": med[default] / med[picked]}


def report(rows, command: str) -> str:
    lines = ["# `window=\"auto\"` against the default window", "",
             "Written by `benchmarks/bench_window_auto.py` (its docstring says what is measured).", "",
             f"Machine: {machine()}.", "", f"Command: `{command}`", "",
             "| problem | default window: sweeps / evals / s | picked window: sweeps / evals / s | "
             "default s / picked s | `window=\"auto\"` call (probes + solve), s |", "|---|---|---|---|---|"]
    for r in rows:
        d, p = r["default"], r["picked"]
        lines.append(f"| {r['problem']} | {r['window'][d]}: {r['sweeps'][d]} / {r['nfe'][d]} / {r['seconds'][d]:.2f} | "
                     f"{r['window'][p]}: {r['sweeps'][p]} / {r['nfe'][p]} / {r['seconds'][p]:.2f} | {r['ratio']:.2f} | "
                     f"{r['auto_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--problems", default=",".join(PROBLEMS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = [measure(name, args.repeats) for name in args.problems.split(",")]
    text = report(rows, "python benchmarks/bench_window_auto.py " + " ".join(argv or sys.argv[1:]))
    print(text)
    if args.out:
        args.out.write_text(text)
    return rows


if __name__ == "__main__":
    main()
