"""parasolve.sdeint against torchsde.sdeint on the same neural SDE and the same Brownian path.

    python benchmarks/bench_sdeint.py [--full] [--repeats 3] [--out docs/benchmarks/sdeint.md]

Itô SDE with diagonal noise (torchsde's default method ``srk``), ``f`` and ``g`` small MLPs
(d = 4, width 32), float32, T = 1, dt = 1/N, a batch of B paths. For each (B, N), interleaved and
repeated (median wall and CPU seconds): torchsde; parasolve with ``scheme="sequential"``; the
default (``"auto"``); and ``"picard"`` (the parallel scheme), with its sweeps and batched drift
rounds. "Sequential rounds" are the dependent drift rounds: torchsde's calls of ``f`` (its SRK
recomputes stage drifts: 10 calls a step) and parasolve's ``stages * steps`` (4 a step). Default
run: B in (1, 16, 256), N in (100, 1000); ``--full`` adds N = 10000 and B = 64.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torchsde

import parasolve


class NeuralSDE(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, d=4, width=32):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.drift = torch.nn.Sequential(torch.nn.Linear(d + 1, width), torch.nn.Tanh(), torch.nn.Linear(width, d))
        self.diff = torch.nn.Sequential(torch.nn.Linear(d + 1, width), torch.nn.Tanh(), torch.nn.Linear(width, d))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
        self.f_calls = 0

    def _in(self, t, y):
        return torch.cat([y, t.expand(*y.shape[:-1], 1)], -1)

    def f(self, t, y):
        self.f_calls += 1
        return self.drift(self._in(t, y)) - 0.5 * y

    def g(self, t, y):
        return 0.3 * torch.sigmoid(self.diff(self._in(t, y)))


def bm_for(batch, seed, dt):
    """The shared path; ``dt`` given, as torchsde advises for fixed steps (without it the interval
    builds a dependency tree of ~50k nodes on its first query, about 1 s on this machine, which
    would dominate both libraries' times alike)."""
    return torchsde.BrownianInterval(0.0, 1.0, size=(batch, 4), dtype=torch.float32, entropy=seed, dt=dt,
                                     levy_area_approximation="space-time")


def run_case(sde, batch, n, repeats):
    y0 = torch.randn(batch, 4, generator=torch.Generator().manual_seed(1))
    ts = torch.tensor([0.0, 1.0])
    dt = 1.0 / n
    runs = {"torchsde": lambda: torchsde.sdeint(sde, y0, ts, bm=bm_for(batch, 7, dt), dt=dt),
            "sequential": lambda: parasolve.sdeint(sde, y0, ts, bm=bm_for(batch, 7, dt), dt=dt, full_output=True,
                                                   options={"scheme": "sequential"}),
            "auto": lambda: parasolve.sdeint(sde, y0, ts, bm=bm_for(batch, 7, dt), dt=dt, full_output=True),
            "picard": lambda: parasolve.sdeint(sde, y0, ts, bm=bm_for(batch, 7, dt), dt=dt, full_output=True,
                                               options={"scheme": "picard"})}
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    out = {}
    with torch.no_grad():
        for _ in range(repeats):
            for name, fn in runs.items():  # interleaved
                sde.f_calls = 0
                w0, c0 = time.perf_counter(), time.process_time()
                res = fn()
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
                out[name] = (res, sde.f_calls)
    ref = out["torchsde"][0]
    row = {"B": batch, "N": n, "torchsde_f_calls": out["torchsde"][1]}
    for name in runs:
        row[f"{name}_wall"] = statistics.median(wall[name])
        row[f"{name}_cpu"] = statistics.median(cpu[name])
    for name in ("sequential", "auto", "picard"):
        res = out[name][0]
        row[f"{name}_rounds"] = res.stats.drift_calls
        row[f"{name}_sweeps"] = res.stats.sweeps
        row[f"{name}_scheme"] = res.stats.scheme
        row[f"{name}_diff"] = float((res.ys - ref).abs().max())
    row["auto_reason"] = out["auto"][0].stats.auto.get("reason", "")
    return row


def table(rows):
    lines = ["| B | N | torchsde s | parasolve sequential s | default s (scheme) | default / torchsde, wall (CPU) | "
             "default / parasolve sequential, CPU | seq. rounds: torchsde f calls / parasolve | picard sweeps | "
             "picard rounds / parasolve seq. rounds | picard s | max diff to torchsde: seq. / picard |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def s(name, r=r):
            return f"{r[name + '_wall']:.3f} ({r[name + '_cpu']:.3f})"
        lines.append(
            f"| {r['B']} | {r['N']} | {s('torchsde')} | {s('sequential')} | {s('auto')} {r['auto_scheme']} | "
            f"{r['auto_wall'] / r['torchsde_wall']:.2f} ({r['auto_cpu'] / r['torchsde_cpu']:.2f}) | "
            f"{r['auto_cpu'] / r['sequential_cpu']:.2f} | "
            f"{r['torchsde_f_calls']} / {r['sequential_rounds']} | {r['picard_sweeps']} | "
            f"{r['picard_rounds']} / {r['sequential_rounds']} = {r['picard_rounds'] / r['sequential_rounds']:.3f} | "
            f"{s('picard')} | {r['sequential_diff']:.1e} / {r['picard_diff']:.1e} |")
    reasons = [f"- B={r['B']}, N={r['N']}: default chose {r['auto_scheme']}: {r['auto_reason']}" for r in rows]
    return "\n".join(lines + [""] + reasons)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        return f"{len(names)} x {names[0]}"
    except (OSError, IndexError):
        return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="*")
    parser.add_argument("--steps", type=int, nargs="*")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    batches = args.batches or ((1, 16, 64, 256) if args.full else (1, 16, 256))
    steps = args.steps or ((100, 1000, 10000) if args.full else (100, 1000))
    sde = NeuralSDE()
    load0 = os.getloadavg()
    rows = []
    for n in steps:
        for b in batches:
            rows.append(run_case(sde, b, n, args.repeats))
            print(table(rows[-1:]).splitlines()[-3], flush=True)
    text = (f"seconds: median wall (CPU) of {args.repeats} interleaved runs\n\nmachine: {cpu_name()}, torch {torch.__version__}, torchsde "
            f"{torchsde.__version__}, 1 torch thread; load average before {load0[0]:.2f}, after "
            f"{os.getloadavg()[0]:.2f} (shared machine)\n\n{table(rows)}\n")
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return rows


if __name__ == "__main__":
    main()
