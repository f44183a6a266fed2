"""parasolve.odeint vs torchdiffeq's dopri5: error, evaluations, sequential drift rounds, wall time.

Problems: Van der Pol (mu = 1 and 5), Lotka–Volterra, a Kepler orbit (e = 0.5, five periods) and
a small random MLP drift (a neural ODE), each at rtol 1e-5 and 1e-8 (atol = 1e-3 rtol). Error:
max over the output times and components against scipy's DOP853 at rtol = atol = 1e-12.
torchdiffeq's sequential drift rounds are its drift calls (one per stage per step, in sequence);
parasolve's are ``stats.drift_rounds`` (batched calls in sequence, all passes included).
Wall times are for this CPU (both sides in one process, interleaved), not the parallel hardware
the rounds are meant for.

    PYTHONPATH=. python benchmarks/bench_odeint.py [--quick] [--out docs/benchmarks/odeint.md]
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import torch
import torchdiffeq
from scipy.integrate import solve_ivp

import parasolve


def van_der_pol(mu):
    def f(t, y):
        return torch.stack([y[..., 1], mu * (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)
    return f, torch.tensor([2.0, 0.0], dtype=torch.float64), 20.0


def lotka_volterra():
    def f(t, y):
        x, z = y[..., 0], y[..., 1]
        return torch.stack([1.5 * x - x * z, -3.0 * z + x * z], -1)
    return f, torch.tensor([10.0, 5.0], dtype=torch.float64), 15.0


def kepler(e=0.5, periods=5):
    def f(t, y):
        q, p = y[..., :2], y[..., 2:]
        r3 = (q * q).sum(-1, keepdim=True) ** 1.5
        return torch.cat([p, -q / r3], -1)
    y0 = torch.tensor([1 - e, 0.0, 0.0, math.sqrt((1 + e) / (1 - e))], dtype=torch.float64)
    return f, y0, 2 * math.pi * periods


def mlp(dim=4, width=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    W1 = torch.randn(width, dim + 1, generator=gen, dtype=torch.float64) / math.sqrt(dim + 1) * 1.5
    b1 = torch.randn(width, generator=gen, dtype=torch.float64) * 0.5
    W2 = torch.randn(dim, width, generator=gen, dtype=torch.float64) / math.sqrt(width) * 1.5

    def f(t, y):
        t = torch.as_tensor(t, dtype=y.dtype).expand(y.shape[:-1])[..., None]
        return torch.tanh(torch.cat([y, t], -1) @ W1.T + b1) @ W2.T
    return f, torch.linspace(-1, 1, dim, dtype=torch.float64), 10.0


def lorenz(T=10.0):
    def f(t, y):
        x, v, z = y[..., 0], y[..., 1], y[..., 2]
        return torch.stack([10 * (v - x), x * (28 - z) - v, x * v - 8 / 3 * z], -1)
    return f, torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64), T


def arenstorf():
    """The restricted three-body orbit of Hairer-Norsett-Wanner (I, II.0), one period."""
    m = 0.012277471

    def f(t, y):
        q1, q2, p1, p2 = y[..., 0], y[..., 1], y[..., 2], y[..., 3]
        d1 = ((q1 + m) ** 2 + q2 ** 2) ** 1.5
        d2 = ((q1 - 1 + m) ** 2 + q2 ** 2) ** 1.5
        return torch.stack([p1, p2, q1 + 2 * p2 - (1 - m) * (q1 + m) / d1 - m * (q1 - 1 + m) / d2,
                            q2 - 2 * p1 - (1 - m) * q2 / d1 - m * q2 / d2], -1)
    y0 = torch.tensor([0.994, 0.0, 0.0, -2.00158510637908252240537862224], dtype=torch.float64)
    return f, y0, 17.0652165601579625588917206249


def brusselator():
    def f(t, y):
        x, z = y[..., 0], y[..., 1]
        return torch.stack([1 + x * x * z - 4 * x, 3 * x - x * x * z], -1)
    return f, torch.tensor([1.5, 3.0], dtype=torch.float64), 20.0


def pendulum():
    def f(t, y):
        return torch.stack([y[..., 1], -torch.sin(y[..., 0])], -1)
    return f, torch.tensor([2.5, 0.0], dtype=torch.float64), 30.0


def rigid_body():
    """Euler's equations of a free rigid body (Hairer-Norsett-Wanner's test problem)."""
    def f(t, y):
        a, b, c = y[..., 0], y[..., 1], y[..., 2]
        return torch.stack([-2 * b * c, 1.25 * a * c, -0.5 * a * b], -1)
    return f, torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64), 40.0


def forced_decay():
    """Mildly stiff: decay rates 1, 10 and 50 with a cosine forcing."""
    lam = torch.tensor([-1.0, -10.0, -50.0], dtype=torch.float64)

    def f(t, y):
        return lam * y + torch.cos(torch.as_tensor(t, dtype=y.dtype))[..., None]
    return f, torch.ones(3, dtype=torch.float64), 10.0


PROBLEMS = {"Van der Pol mu=1": lambda: van_der_pol(1.0), "Van der Pol mu=5": lambda: van_der_pol(5.0),
            "Lotka-Volterra": lotka_volterra, "Kepler e=0.5, 5 periods": kepler, "MLP neural ODE": mlp}
# Problems outside the list, to see whether the gains carry over (``--problems extra``).
EXTRA = {"Lorenz, T=10": lorenz, "Arenstorf orbit": arenstorf, "Brusselator": brusselator,
         "pendulum, T=30": pendulum, "rigid body, T=40": rigid_body, "forced decay (rates 1-50)": forced_decay,
         "MLP neural ODE, 16 states": lambda: mlp(dim=16), "MLP neural ODE, 32 states": lambda: mlp(dim=32)}


def reference(f, y0, t):
    sol = solve_ivp(lambda s, y: f(torch.tensor(s), torch.from_numpy(y)).numpy(), (float(t[0]), float(t[-1])),
                    y0.numpy(), method="DOP853", rtol=1e-12, atol=1e-12, t_eval=t.numpy())
    return torch.from_numpy(sol.y.T)


def run_torchdiffeq(f, y0, t, rtol, atol):
    calls = [0]

    def counted(s, y):
        calls[0] += 1
        return f(s, y)
    start = time.perf_counter()
    ys = torchdiffeq.odeint(counted, y0, t, rtol=rtol, atol=atol, method="dopri5")
    return ys, calls[0], time.perf_counter() - start


def run_parasolve(f, y0, t, rtol, atol, options):
    start = time.perf_counter()
    res = parasolve.odeint(f, y0, t, rtol=rtol, atol=atol, method="dopri5", options=options, full_output=True)
    return res, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="rtol 1e-5 only")
    parser.add_argument("--out", default=None, help="write a markdown table here")
    parser.add_argument("--window", type=int, default=None)
    parser.add_argument("--scheme", default=None, help="odeint's options['scheme'] (default: odeint's own choice)")
    parser.add_argument("--scheme-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an entry of options['scheme_options'], e.g. --scheme-option jacobian=full")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an odeint option (a number), e.g. --option initial_steps=2048")
    parser.add_argument("--only", default=None, help="run the problems whose name contains this")
    parser.add_argument("--problems", choices=("issue", "extra"), default="issue",
                        help="the issue's problems (default) or others not tuned for")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    options = {"window": args.window}
    if args.scheme is not None:
        options["scheme"] = args.scheme
    for item in args.option:
        key, value = item.split("=", 1)
        options[key] = _number(value)
    if args.scheme_option:
        options["scheme_options"] = {k: _value(v) for k, v in (o.split("=", 1) for o in args.scheme_option)}
    rows = []
    for name, make in (PROBLEMS if args.problems == "issue" else EXTRA).items():
        if args.only and args.only not in name:
            continue
        f, y0, T = make()
        t = torch.linspace(0.0, T, 11, dtype=torch.float64)
        ref = reference(f, y0, t)
        for rtol in ([1e-5] if args.quick else [1e-5, 1e-8]):
            atol = 1e-3 * rtol
            td, td_rounds, td_wall = run_torchdiffeq(f, y0, t, rtol, atol)
            res, ps_wall = run_parasolve(f, y0, t, rtol, atol, options)
            td_err = float((td - ref).abs().max())
            ps_err = float((res.ys - ref).abs().max())
            s = res.stats
            td_steps = (td_rounds - 2) // 6  # dopri5: 6 calls per attempted step (FSAL) + 2 for the first step
            row = dict(problem=name, rtol=rtol, td_err=td_err, ps_err=ps_err, td_steps=td_steps, td_rounds=td_rounds,
                       ps_steps=s.accepted_steps, passes=s.passes, sweeps=s.sweeps, ps_rounds=s.drift_rounds,
                       ratio=s.drift_rounds / td_rounds, td_nfe=td_rounds, ps_nfe=s.nfe, td_wall=td_wall, ps_wall=ps_wall,
                       history=[(h.steps, h.sweeps, h.failed) for h in s.history])
            rows.append(row)
            print(f"{name:26s} rtol={rtol:.0e} | torchdiffeq err {td_err:.2e} steps~{td_steps} rounds {td_rounds} "
                  f"{td_wall:.2f}s | parasolve err {ps_err:.2e} steps {s.accepted_steps} passes {s.passes} "
                  f"sweeps {s.sweeps} rounds {s.drift_rounds} ({row['ratio']:.2f}x) nfe {s.nfe} {ps_wall:.2f}s "
                  f"{row['history']}", flush=True)
    if args.out:
        write_markdown(rows, args, args.out)
    return rows


def _number(value: str):
    return int(value) if value.isdigit() else float(value)


def _value(value: str):
    """A scheme option from the command line: a bool, a number or a string."""
    if value in ("True", "False"):
        return value == "True"
    try:
        return _number(value)
    except ValueError:
        return value


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_markdown(rows, args, path):
    flags = " ".join(["--quick"] * args.quick + [f"--problems {args.problems}"] * (args.problems != "issue") + [f"--scheme {args.scheme}"] * (args.scheme is not None)
                     + [f"--scheme-option {o}" for o in args.scheme_option]
                     + [f"--window {args.window}"] * (args.window is not None) + [f"--option {o}" for o in args.option])
    lines = [f"Machine: {cpu_name()} ({torch.get_num_threads()} torch thread), torch {torch.__version__}. "
             f"Command: `PYTHONPATH=. python benchmarks/bench_odeint.py{' ' * bool(flags)}{flags}`.", "",
             "| problem | rtol | torchdiffeq error | parasolve error | torchdiffeq steps | parasolve steps | passes | "
             "sweeps | torchdiffeq rounds | parasolve rounds | rounds ratio | parasolve nfe | torchdiffeq wall | "
             "parasolve wall |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['problem']} | {r['rtol']:.0e} | {r['td_err']:.1e} | {r['ps_err']:.1e} | {r['td_steps']} | "
                     f"{r['ps_steps']} | {r['passes']} | {r['sweeps']} | {r['td_rounds']} | {r['ps_rounds']} | "
                     f"{r['ratio']:.2f} | {r['ps_nfe']} | {r['td_wall']:.2f} s | {r['ps_wall']:.2f} s |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
