"""Torch threads for the commands' small models: one digits-UNet call at 1 and 2 threads.

    python benchmarks/bench_threads.py          # 5 interleaved repeats per setting

Times one call of the shipped digits UNet on a batch of 4 images (a sequential DDPM step of
`parasolve demo`) and of 256 (one Picard sweep of window 64 over 4 samples), alternating the
thread count between repeats so that both see the same machine load; prints median, min and max
(ms) and the load average. On a shared machine more threads than free cores make every call
wait for the slowest thread, which is why the commands default to ``--threads 1``.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from parasolve import zoo


def main(repeats: int = 5) -> dict:
    den = zoo.pretrained("digits")
    batches = {4: torch.randn(4, 1, 16, 16), 256: torch.randn(256, 1, 16, 16)}
    calls = {4: 20, 256: 2}
    times = {(n, b): [] for n in (1, 2) for b in batches}
    for rep in range(repeats):
        for n in ((1, 2) if rep % 2 == 0 else (2, 1)):
            torch.set_num_threads(n)
            for b, x in batches.items():
                t = torch.full((b,), 500)
                start = time.perf_counter()
                with torch.no_grad():
                    for _ in range(calls[b]):
                        den.model(x, t, None)
                times[(n, b)].append((time.perf_counter() - start) / calls[b] * 1e3)
    print(f"{os.cpu_count()} cores, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    for (n, b), v in times.items():
        print(f"threads {n}, batch {b:3d}: median {statistics.median(v):7.1f} ms  (min {min(v):.1f}, max {max(v):.1f})")
    return times


if __name__ == "__main__":
    main()
