"""The parallel driver's pilot start (parasolve/odeint/pilot.py): with and without it, against torchdiffeq.

For each classic row of the suite (Van der Pol mu=1 and 5, Lorenz, Kepler; dopri5, atol = 1e-3
rtol), interleaved, one torch thread, CPU time (``time.process_time``): torchdiffeq's dopri5;
``parasolve.odeint``'s default (``"auto"``, which decides on the pilot); ``"auto"`` with
``options["pilot"]`` False and True; and Newton forced (full Jacobians) without and with the
pilot. Each row: the median of paired ratios parasolve / torchdiffeq, the sweeps, drift rounds,
evaluations (over torchdiffeq's) and steps, the error against scipy's DOP853 at rtol 1e-12, and
the pilot's own steps. A last group: a drift whose every call sleeps 2 ms whatever its batch (a
launch-bound GPU call's cost curve), wall time, where ``"auto"`` should skip the pilot.

    python benchmarks/bench_pilot.py [--repeats 5] [--rtol 1e-8] [--csv docs/benchmarks/pilot.csv]
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

import parasolve  # noqa: E402

NEWTON = {"scheme": "newton", "scheme_options": {"jacobian": "full"}}
VARIANTS = {"auto": {}, "auto, pilot off": {"pilot": False}, "auto, pilot on": {"pilot": True},
            "newton, pilot off": {**NEWTON, "pilot": False}, "newton, pilot on": {**NEWTON, "pilot": True}}
PROBLEMS = {"vdp-mu1": lambda: rows.van_der_pol(1.0), "vdp-mu5": lambda: rows.van_der_pol(5.0),
            "lorenz": rows.lorenz, "kepler": rows.kepler}


class Counted:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, t, y):
        self.calls += 1
        return self.f(t, y)


def measure(name, problem, rtol, repeats, clock=time.process_time):
    atol = 1e-3 * rtol
    ref = rows.reference(problem)
    counted = Counted(problem.f)
    theirs = torchdiffeq.odeint(counted, problem.y0, problem.t, rtol=rtol, atol=atol)
    td_err, td_evals = float((theirs - ref).abs().max()), counted.calls
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
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, one thread, "
          f"load {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    results = []
    for rtol in args.rtol:
        for name, make in PROBLEMS.items():
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
