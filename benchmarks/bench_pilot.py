"""The parallel driver's pilot start (parasolve/odeint/pilot.py): with and without it, against torchdiffeq.

For each classic row of the suite (Van der Pol mu=1 and 5, Lorenz, Kepler; dopri5, atol = 1e-3
rtol), interleaved, one torch thread, CPU time (``time.process_time``): torchdiffeq's dopri5;
``parasolve.odeint``'s default (``"auto"``, which decides on the pilot); the sequential stepper
(``"auto"`` must not lose to it); ``"auto"`` with
``options["pilot"]`` False and True; and Newton forced (full Jacobians) without and with the
pilot. Each row: the median of paired ratios parasolve / torchdiffeq, the sweeps, drift rounds,
evaluations (over torchdiffeq's) and steps, the error against scipy's DOP853 at rtol 1e-12, and
the pilot's own steps. ``--problems others``: five problems outside the suite (Arenstorf's orbit,
Lotka-Volterra, the Brusselator, a forced Duffing oscillator, Euler's rigid body). A last group: a
drift whose every call sleeps 2 ms whatever its batch (a launch-bound GPU call's cost curve),
wall time, where ``"auto"`` should skip the pilot.

    python benchmarks/bench_pilot.py [--repeats 5] [--rtol 1e-8] [--problems suite|others|all] [--csv F]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import sys
import time

import torch
import torchdiffeq

sys.path.insert(0, os.path.dirname(__file__))
import suite_rows as rows  # noqa: E402
from suite_solvers import Counter, counted  # noqa: E402

import parasolve  # noqa: E402

NEWTON = {"scheme": "newton", "scheme_options": {"jacobian": "full"}}
VARIANTS = {"auto": {}, "sequential": {"scheme": "sequential"}, "auto, pilot off": {"pilot": False},
            "auto, pilot on": {"pilot": True}, "newton, pilot off": {**NEWTON, "pilot": False},
            "newton, pilot on": {**NEWTON, "pilot": True}}
SUITE = {"vdp-mu1": lambda: rows.van_der_pol(1.0), "vdp-mu5": lambda: rows.van_der_pol(5.0),
         "lorenz": rows.lorenz, "kepler": rows.kepler}


def _problem(f, y0, T):
    return rows.Problem(f, torch.tensor(y0, dtype=rows.DTYPE), torch.linspace(0.0, T, 11, dtype=rows.DTYPE))


def arenstorf():
    """The restricted three-body orbit of Hairer, Norsett & Wanner (I.0.1), two periods."""
    mu, period = 0.012277471, 17.0652165601579625588917206249

    def f(t, y):
        x, v, vx, vy = y[..., 0], y[..., 1], y[..., 2], y[..., 3]
        d1 = ((x + mu) ** 2 + v ** 2) ** 1.5
        d2 = ((x - 1 + mu) ** 2 + v ** 2) ** 1.5
        return torch.stack([vx, vy, x + 2 * vy - (1 - mu) * (x + mu) / d1 - mu * (x - 1 + mu) / d2,
                            v - 2 * vx - (1 - mu) * v / d1 - mu * v / d2], -1)
    return _problem(f, [0.994, 0.0, 0.0, -2.00158510637908252240537862224], 2 * period)


def others():
    """Problems outside the suite: tuning on the suite's rows must not be all that works."""
    def lotka(t, y):
        return torch.stack([1.5 * y[..., 0] - y[..., 0] * y[..., 1], -3 * y[..., 1] + y[..., 0] * y[..., 1]], -1)

    def brusselator(t, y):
        return torch.stack([1 + y[..., 0] ** 2 * y[..., 1] - 4 * y[..., 0], 3 * y[..., 0] - y[..., 0] ** 2 * y[..., 1]],
                           -1)

    def duffing(t, y):  # forced: the drift depends on t
        force = 0.3 * torch.cos(1.2 * t) * torch.ones_like(y[..., 0])
        return torch.stack([y[..., 1], -0.1 * y[..., 1] - y[..., 0] ** 3 + force], -1)

    def rigid(t, y):  # Euler's rigid body
        return torch.stack([-2 * y[..., 1] * y[..., 2], 1.25 * y[..., 0] * y[..., 2], -0.5 * y[..., 0] * y[..., 1]], -1)
    return {"arenstorf": arenstorf, "lotka-volterra": lambda: _problem(lotka, [1.0, 1.0], 60.0),
            "brusselator": lambda: _problem(brusselator, [1.5, 3.0], 40.0),
            "duffing": lambda: _problem(duffing, [1.0, 0.0], 60.0),
            "rigid-body": lambda: _problem(rigid, [0.0, 1.0, 1.0], 60.0)}


def measure(name, problem, rtol, repeats, clock=time.process_time):
    atol = 1e-3 * rtol
    ref = rows.reference(problem)
    counter = Counter(problem.y0.numel())
    theirs = torchdiffeq.odeint(counted(problem.f, counter), problem.y0, problem.t, rtol=rtol, atol=atol)
    td_err, td_evals = float((theirs - ref).abs().max()), counter.calls
    out = {}
    for variant, options in VARIANTS.items():
        res = parasolve.odeint(problem.f, problem.y0, problem.t, rtol=rtol, atol=atol, options=dict(options),
                               full_output=True)
        s = res.stats
        out[variant] = {"row": f"{name}-rtol{rtol:.0e}", "variant": variant, "sweeps": s.sweeps,
                        "rounds": s.drift_rounds, "evals_ratio": s.nfe / td_evals, "steps": s.accepted_steps,
                        "td_steps": (td_evals - 2) // 6, "err": float((res.ys - ref).abs().max()), "td_err": td_err,
                        "pilot_steps": None if s.pilot is None else s.pilot.steps + s.pilot.failed, "ratios": []}
    for k in range(repeats):
        start = clock()
        torchdiffeq.odeint(problem.f, problem.y0, problem.t, rtol=rtol, atol=atol)
        td = clock() - start
        names = list(VARIANTS)
        for variant in names[k % len(names):] + names[:k % len(names)]:  # rotated order
            start = clock()
            parasolve.odeint(problem.f, problem.y0, problem.t, rtol=rtol, atol=atol, options=dict(VARIANTS[variant]))
            out[variant]["ratios"].append((clock() - start) / td)
    for r in out.values():
        r["ratio"] = statistics.median(r.pop("ratios"))
    return list(out.values())


def flat_cost(repeats):
    """Every call sleeps 2 ms, whatever its batch: the pilot's one-state calls cost as much as a
    round of the sweeps they save. Wall time (the sleeps are no CPU time)."""
    def f(t, y):
        time.sleep(0.002)
        return rows.kepler().f(t, y)
    problem = rows.kepler(periods=3)
    problem.f = f
    out = []
    for variant in ("auto", "auto, pilot off", "auto, pilot on"):
        times, res = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            res = parasolve.odeint(f, problem.y0, problem.t, rtol=1e-8, atol=1e-11, options=dict(VARIANTS[variant]),
                                   full_output=True)
            times.append(time.perf_counter() - start)
        out.append({"variant": variant, "wall_s": statistics.median(times), "sweeps": res.stats.sweeps,
                    "rounds": res.stats.drift_rounds, "pilot": res.stats.pilot is not None})
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rtol", type=float, nargs="+", default=[1e-8])
    parser.add_argument("--csv", default=None)
    parser.add_argument("--no-flat", action="store_true", help="skip the flat-cost drift")
    parser.add_argument("--problems", choices=["suite", "others", "all"], default="suite",
                        help="the suite's classic rows, five problems outside it, or both")
    parser.add_argument("--only", nargs="+", default=None, help="these problems only")
    args = parser.parse_args(argv)
    problems = {**(SUITE if args.problems != "others" else {}), **(others() if args.problems != "suite" else {})}
    if args.only:
        problems = {k: v for k, v in problems.items() if k in args.only}
    torch.set_num_threads(1)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, one thread, "
          f"load {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    results = []
    for rtol in args.rtol:
        for name, make in problems.items():
            results += measure(name, make(), rtol, args.repeats)
    print("| row | variant | ps/td CPU | sweeps | rounds | evals ps/td | steps ps / td | pilot steps | err ps | err td |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        pilot = "-" if r["pilot_steps"] is None else r["pilot_steps"]
        print(f"| {r['row']} | {r['variant']} | {r['ratio']:.3f} | {r['sweeps']} | {r['rounds']} | "
              f"{r['evals_ratio']:.1f} | {r['steps']} / {r['td_steps']} | {pilot} | {r['err']:.1e} | {r['td_err']:.1e} |")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(results[0]))
            writer.writeheader()
            writer.writerows(results)
    if not args.no_flat:
        print("\nflat-cost drift (2 ms a call), Kepler 3 orbits, rtol 1e-8, wall s (median of "
              f"{args.repeats}):")
        for r in flat_cost(min(args.repeats, 3)):
            print(f"| {r['variant']} | {r['wall_s']:.2f} | sweeps {r['sweeps']} | rounds {r['rounds']} | "
                  f"pilot {r['pilot']} |")
    print(f"# load at the end {os.getloadavg()}")
    return 0 if all(math.isfinite(r["ratio"]) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
