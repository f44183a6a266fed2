"""Cost curve of the digits UNet: milliseconds per call vs batch size, eager and CUDA-graphed.

    python benchmarks/bench_gpu_cost_curve.py                 # on the GPU if there is one
    python benchmarks/bench_gpu_cost_curve.py --device cpu --batches 1,4,16,64,256

Prints one row per batch size (model batch = window x samples): eager ms, graphed ms (CUDA
only) and microseconds per sample; ``--json`` also writes the numbers. On a GPU the eager
column is launch-bound (nearly flat in the batch); the graphed column is the real cost curve.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu_common import default_device, digits_unet, machine  # noqa: E402

from parasolve.evaluators import CudaGraphEvaluator  # noqa: E402
from parasolve.tuning import time_call  # noqa: E402


def curve(model, device, batches, repeats, graphs):
    rows = []
    for b in batches:
        gen = torch.Generator().manual_seed(b)
        x = torch.randn(b, 1, 16, 16, generator=gen).to(device)
        t = torch.randint(0, 1000, (b,), generator=gen).to(device)
        fn = lambda tt, xx: model(xx, tt)  # noqa: E731  the drift convention (t, y)
        with torch.no_grad():
            eager = time_call(fn, t, x, repeats=repeats, warmup=2)
            graphed = None
            if graphs:
                ev = CudaGraphEvaluator(b)
                graphed = time_call(lambda tt, xx: ev(fn, tt, xx), t, x, repeats=repeats, warmup=2)
        rows.append({"batch": b, "eager_ms": 1e3 * eager, "graph_ms": None if graphed is None else 1e3 * graphed})
        g = "      n/a" if graphed is None else f"{1e3 * graphed:9.3f}"
        best = graphed if graphed is not None else eager
        print(f"{b:>6} {1e3 * eager:10.3f} {g} {1e6 * best / b:12.2f}", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--batches", default=None, help="comma-separated model batch sizes")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per point (median)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--json", default=None, help="write the rows to this file")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = default_device(a.device)
    cuda = device.type == "cuda"
    batches = [int(b) for b in a.batches.split(",")] if a.batches else (
        [1, 4, 16, 64, 128, 256, 512, 1024] if cuda else [1, 4, 16, 64, 128, 256])
    repeats = a.repeats or (50 if cuda else 5)
    model, what = digits_unet(device)
    print(f"# cost curve: {what}\n# machine: {machine(device)}\n# median of {repeats} calls; "
          f"graphed = CudaGraphEvaluator replay incl. input/output copies"
          f"{'' if cuda else ' (n/a: CUDA graphs need a GPU; these are CPU numbers)'}")
    print(f"{'batch':>6} {'eager ms':>10} {'graph ms':>9} {'us/sample':>12}")
    rows = curve(model, device, batches, repeats, graphs=cuda)
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine(device), "model": what, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
