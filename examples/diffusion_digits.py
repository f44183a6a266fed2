"""Sample the shipped digits diffusion model sequentially and in parallel, same noise.

    python examples/diffusion_digits.py            # DDPM-1000 and DDIM-100, 4 samples
    python examples/diffusion_digits.py --fast     # DDPM-50 and DDIM-20, 1 sample
    python examples/diffusion_digits.py --threads 2

One torch thread by default, as the `parasolve` commands: with more threads on a busy machine the
sequential run's small calls slow down far more than the parallel run's batched ones, which
inverts the comparison (docs/reproduce.md#threads). On a CPU the parallel runs are expected to
be slower than the sequential ones.
"""

import argparse
import time

import torch

from parasolve import diffusion, zoo


def main(fast: bool = False, threads: int = 1):
    torch.set_num_threads(threads)
    print(f"torch threads: {threads}")
    den = zoo.pretrained("digits")
    shape = (1, 1, 16, 16) if fast else (4, 1, 16, 16)
    runs = []
    for sampler, steps in ((("ddpm", 50), ("ddim", 20)) if fast else (("ddpm", 1000), ("ddim", 100))):
        for method in ("sequential", "picard"):
            start = time.perf_counter()
            out = diffusion.sample(den, shape, sampler=sampler, steps=steps, method=method, window=64,
                                   tol=1e-3, generator=torch.Generator().manual_seed(0))
            runs.append((sampler, steps, method, out, time.perf_counter() - start))
    print(f"{'sampler':>10} {'method':>10} {'sweeps':>7} {'evals':>7} {'wall [s]':>9} {'max|x - x_seq|':>15}")
    for sampler, steps, method, out, wall in runs:
        ref = next(o for s, n, m, o, _ in runs if (s, n, m) == (sampler, steps, "sequential"))
        gap = float((out.x - ref.x).abs().max())
        print(f"{sampler}-{steps:<5} {method:>10} {out.stats.iterations:7d} {out.stats.nfe:7d} {wall:9.2f} {gap:15.2e}")
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = parser.parse_args()
    main(args.fast, args.threads)
