"""Torch threads for the commands' small models: digits-UNet calls at 1 and 2 threads.

    python benchmarks/bench_threads.py             # 5 interleaved repeats per setting
    python benchmarks/bench_threads.py --repeats 3

Times calls of the shipped digits UNet on batches of 4 images (a sequential DDPM step of
`parasolve demo`), 64 and 256 (one Picard sweep of window 64 over 4 samples), alternating the
thread count between repeats so that both see the same machine load. For each setting it prints
the median wall time per call (min, max) and the median CPU time per call of this process
(``time.process_time``, all threads together), and the load average before and after. CPU time
above wall time means a second thread ran; CPU time far above the 1-thread CPU time for the same
work is time the threads spent waiting for each other (spinning) rather than computing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from parasolve import zoo

BATCHES = {4: 20, 64: 4, 256: 2}  # batch -> calls per timing


def main(repeats: int = 5) -> dict:
    den = zoo.pretrained("digits")
    xs = {b: torch.randn(b, 1, 16, 16, generator=torch.Generator().manual_seed(b)) for b in BATCHES}
    wall = {(n, b): [] for n in (1, 2) for b in BATCHES}
    cpu = {key: [] for key in wall}
    load_before = os.getloadavg()[0]
    for rep in range(repeats):
        for n in ((1, 2) if rep % 2 == 0 else (2, 1)):
            torch.set_num_threads(n)
            for b, calls in BATCHES.items():
                t = torch.full((b,), 500)
                with torch.no_grad():
                    den.model(xs[b], t, None)  # warm the thread pool at this count
                    start, start_cpu = time.perf_counter(), time.process_time()
                    for _ in range(calls):
                        den.model(xs[b], t, None)
                wall[(n, b)].append((time.perf_counter() - start) / calls * 1e3)
                cpu[(n, b)].append((time.process_time() - start_cpu) / calls * 1e3)
    print(f"{os.cpu_count()} cores, torch {torch.__version__}, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; {repeats} interleaved repeats")
    print("| batch | threads | wall per call, ms: median (min-max) | CPU per call, ms (median) |")
    print("|---|---|---|---|")
    for b in BATCHES:
        for n in (1, 2):
            w, c = wall[(n, b)], cpu[(n, b)]
            print(f"| {b} | {n} | {statistics.median(w):.1f} ({min(w):.1f}-{max(w):.1f}) | {statistics.median(c):.1f} |")
    return {"wall": wall, "cpu": cpu}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    main(parser.parse_args().repeats)
