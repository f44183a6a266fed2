"""Digits DDPM-1000, 4 samples: sequential vs parallel (Picard) wall time in the same execution mode.

    python benchmarks/bench_gpu_ddpm.py                      # GPU: eager and CUDA-graphed, windows 64,128,256
    python benchmarks/bench_gpu_ddpm.py --check-syncs        # also count host synchronisations per sweep
    python benchmarks/bench_gpu_ddpm.py --tols 1e-3,1e-2,1e-1    # sweeps and accuracy vs tol
    python benchmarks/bench_gpu_ddpm.py --device cpu --windows 64   # CPU numbers (slow: minutes)

For each mode (eager; graph = every model call a CUDA-graph replay, the sequential baseline
captured at batch 1, the parallel solve at the window) it prints: wall time, sweeps, model
evaluations, max |x_parallel - x_sequential|, the measured speedup, the bound implied by the
cost curve ``N / (sweeps * t(window) / t(1))`` and the fraction of wall time spent outside the
model call. Same model, x_T and noise in every run.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu_common import default_device, machine  # noqa: E402

from parasolve import diffusion, zoo  # noqa: E402
from parasolve.evaluators import local_evaluator  # noqa: E402
from parasolve.evaluators import CudaGraphEvaluator  # noqa: E402
from parasolve.tuning import synchronize, time_call  # noqa: E402


class ModelTimer:
    """Evaluator wrapper that adds up the time spent inside drift calls (CUDA events on a GPU)."""

    def __init__(self, inner, device):
        self.inner, self.cuda = inner, device.type == "cuda"
        self.events, self.host_s = [], 0.0

    def __call__(self, fn, t, y):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = self.inner(fn, t, y)
            end.record()
            self.events.append((start, end))
            return out
        began = time.perf_counter()
        out = self.inner(fn, t, y)
        self.host_s += time.perf_counter() - began
        return out

    def seconds(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return sum(s.elapsed_time(e) for s, e in self.events) / 1e3
        return self.host_s


def evaluator_for(mode, batch):
    return CudaGraphEvaluator(batch) if mode == "graph" else local_evaluator


def run(den, shape, steps, method, window, mode, x_T, noise, tol, device, warm=True):
    """One timed sample() (after an untimed warm-up with the same evaluator: capture, allocator)."""
    inner = evaluator_for(mode, 1 if method == "sequential" else window)
    kw = dict(sampler="ddpm", steps=steps, method=method, window=window, x_T=x_T, noise=noise, tol=tol)
    if warm:
        diffusion.sample(den, shape, **kw, evaluator=inner, max_iters=2, throw=False)
    timer = ModelTimer(inner, device)
    synchronize(device)
    began = time.perf_counter()
    out = diffusion.sample(den, shape, **kw, evaluator=timer)
    synchronize(device)
    wall = time.perf_counter() - began
    return out, wall, timer.seconds()


def call_cost(den, shape, batch, mode, device, repeats):
    """Seconds per drift call of ``batch`` time points (model batch = batch x samples) in ``mode``."""
    drift = den.drift(shape)
    t = torch.linspace(999, 0, batch, device=device)
    y = torch.randn(batch, *shape, device=device)
    ev = evaluator_for(mode, batch)
    with torch.no_grad():
        return time_call(lambda tt, yy: ev(drift, tt, yy), t, y, repeats=repeats, warmup=2)


def count_syncs(den, shape, steps, window, mode, x_T, noise, tol):
    """Host synchronisations during one parallel solve (torch's CUDA sync debug mode)."""
    ev = evaluator_for(mode, window)
    diffusion.sample(den, shape, sampler="ddpm", steps=steps, window=window, x_T=x_T, noise=noise, tol=tol,
                     evaluator=ev, max_iters=2, throw=False)  # capture outside the count
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = diffusion.sample(den, shape, sampler="ddpm", steps=steps, window=window, x_T=x_T, noise=noise,
                                   tol=tol, evaluator=ev)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    where = {}
    for w in syncs:
        where[f"{Path(w.filename).name}:{w.lineno}"] = where.get(f"{Path(w.filename).name}:{w.lineno}", 0) + 1
    return out.stats.iterations, len(syncs), where


def _print(r):
    tol = "default" if r["tol"] is None else f"{r['tol']:g}"
    print(f"{r['mode']:>5} {r['method']:>10} {r['window']:>6} {tol if r['method'] != 'sequential' else '':>7} "
          f"{r['wall_s']:8.3f} {r['sweeps']:>6} {r['evals']:>7} {r['max_diff']:9.2e} {r['speedup']:6.2f}x "
          f"{r['bound']:5.2f}x {100 * r['outside']:6.1f}%  t(call) {r['t_call_ms']:.3f} ms", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--windows", default=None, help="comma-separated windows (default 64,128,256 on GPU, 64 on CPU)")
    p.add_argument("--modes", default=None, help="eager,graph (graph needs CUDA; default: both on GPU)")
    p.add_argument("--tols", default="default", help="comma-separated solver tols ('default': 1e-3 in float32)")
    p.add_argument("--repeats", type=int, default=None, help="calls per cost-curve point")
    p.add_argument("--check-syncs", action="store_true", help="count host syncs per sweep (CUDA)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = default_device(a.device)
    cuda = device.type == "cuda"
    windows = [int(w) for w in (a.windows or ("64,128,256" if cuda else "64")).split(",")]
    modes = (a.modes or ("eager,graph" if cuda else "eager")).split(",")
    if "graph" in modes and not cuda:
        p.error("--modes graph needs a CUDA device")
    repeats = a.repeats or (50 if cuda else 3)
    den = zoo.pretrained("digits", device=device)
    # sample() builds its drift with den.drift(...) on every call; one drift object per shape lets
    # CudaGraphEvaluator replay the graph captured in the warm-up instead of capturing again.
    den.drift = functools.lru_cache(maxsize=None)(den.drift)
    shape = (a.samples, 1, 16, 16)
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn(shape, generator=gen).to(device)
    noise = torch.randn(a.steps, *shape, generator=gen).to(device)
    label = "GPU" if cuda else "CPU (no GPU here: these are CPU numbers)"
    print(f"# digits DDPM-{a.steps}, {a.samples} samples, {label}\n# machine: {machine(device)}")
    print(f"{'mode':>5} {'method':>10} {'window':>6} {'tol':>7} {'wall s':>8} {'sweeps':>6} {'evals':>7} {'max diff':>9} "
          f"{'speedup':>7} {'bound':>6} {'outside':>7}")
    tols = [None if x == "default" else float(x) for x in a.tols.split(",")]
    rows = []
    for mode in modes:
        seq, seq_wall, seq_model = run(den, shape, a.steps, "sequential", 1, mode, x_T, noise, None, device)
        cost = {b: call_cost(den, shape, b, mode, device, repeats) for b in [1, *windows]}
        rows.append(dict(mode=mode, method="sequential", window=1, tol=None, wall_s=seq_wall, sweeps=a.steps,
                         evals=seq.stats.nfe, max_diff=0.0, speedup=1.0, bound=1.0,
                         outside=1 - seq_model / seq_wall, t_call_ms=1e3 * cost[1]))
        _print(rows[-1])
        for tol in tols:
            for w in windows:
                par, wall, model_s = run(den, shape, a.steps, "picard", w, mode, x_T, noise, tol, device)
                sweeps = par.stats.iterations
                rows.append(dict(mode=mode, method="picard", window=w, tol=tol, wall_s=wall, sweeps=sweeps,
                                 evals=par.stats.nfe, max_diff=float((par.x - seq.x).abs().max()),
                                 speedup=seq_wall / wall, bound=a.steps / (sweeps * cost[w] / cost[1]),
                                 outside=1 - model_s / wall, t_call_ms=1e3 * cost[w]))
                _print(rows[-1])
    print("# speedup = sequential wall / parallel wall in the same mode; bound = steps / (sweeps * t(window)/t(1))"
          " from the cost curve in that mode; outside = share of wall time not inside the model call")
    if a.check_syncs:
        if not cuda:
            print("# --check-syncs needs CUDA (sync debug mode); skipped")
        else:
            for mode in modes:
                sweeps, n_syncs, where = count_syncs(den, shape, a.steps, windows[0], mode, x_T, noise, tols[0])
                print(f"# host syncs ({mode}, window {windows[0]}): {n_syncs} in {sweeps} sweeps; by line: {where}")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine(device), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
