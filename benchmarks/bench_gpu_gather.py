"""Cost of the distributed evaluator's all-gather, per message size (the multi-node plan's input).

    torchrun --nproc_per_node=2 benchmarks/bench_gpu_gather.py              # gloo on CPU, NCCL on GPUs
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
        benchmarks/bench_gpu_gather.py                                      # across machines

Rank 0 prints, for each window (in time points) of the digits DDPM with 4 samples (1024 float32
values per point), the median time of one all-gather of the whole window (the library's
``all_gather_tensor``: ``all_gather_single``, or ``all_gather_into_tensor`` on older torch), and of
one full ``DistributedEvaluator`` call of a zero-cost drift (split, pad, gather, unpad).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu_common import machine  # noqa: E402

from parasolve.evaluators import DistributedEvaluator, init_distributed  # noqa: E402
from parasolve.tuning import time_call  # noqa: E402
from parasolve.evaluators.distributed import all_gather_tensor  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", default="1,16,64,128,256,512")
    p.add_argument("--values", type=int, default=4 * 256, help="float32 values per time point")
    p.add_argument("--repeats", type=int, default=30)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    rank, world, device = init_distributed(timeout=120)
    ev = DistributedEvaluator(timeout=60)
    if rank == 0:
        print(f"# all-gather cost, backend {dist.get_backend()}, {world} ranks\n# machine: {machine(device)}")
        print(f"{'window':>6} {'MB':>8} {'gather ms':>10} {'evaluator ms':>13}")
    for w in (int(x) for x in a.windows.split(",")):
        per_rank = -(-w // world)
        local = torch.randn(per_rank, a.values, device=device)
        out = torch.empty(per_rank * world, a.values, device=device)
        gather = time_call(lambda o, x: all_gather_tensor(o, x), out, local, repeats=a.repeats, warmup=3)
        t = torch.zeros(w, device=device)
        y = torch.zeros(w, a.values, device=device)
        whole = time_call(lambda tt, yy: ev(lambda t_, y_: y_, tt, yy), t, y, repeats=a.repeats, warmup=3)
        if rank == 0:
            print(f"{w:>6} {w * a.values * 4 / 1e6:8.3f} {1e3 * gather:10.3f} {1e3 * whole:13.3f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
