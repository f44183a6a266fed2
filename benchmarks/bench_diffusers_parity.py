"""How closely the sequential samplers reproduce diffusers' own ``scheduler.step`` loops, by chain length.

    python benchmarks/bench_diffusers_parity.py             # DDPM, DDIM, DPM-Solver++ at 3 lengths each
    python benchmarks/bench_diffusers_parity.py --fast      # shorter chains

The model is the small randomly initialised ``UNet2DModel`` of tests/test_diffusion_diffusers.py
(float32, 3 samples of 2x8x8). For each sampler and number of steps it reports the parity error
``max|x - x_diffusers| / max(1, max|x_diffusers|)`` and, as the chain's own sensitivity to float32
round-off, the same measure between diffusers' loop from ``x_T`` and from ``x_T`` perturbed by
one float32 ulp (relative 1.2e-7): a long or poorly conditioned chain amplifies any round-off,
parasolve's and diffusers' alike.
"""

from __future__ import annotations

import argparse
import platform

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel

from parasolve import diffusion

SHAPE = (3, 2, 8, 8)


def rel_err(a, b) -> float:
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


def diffusers_loop(unet, scheduler, steps, seed, scale=1.0):
    """diffusers' loop from ``scale * x_T``, x_T and DDPM's noise drawn from one generator in order."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=gen) * scale
    noisy = isinstance(scheduler, DDPMScheduler)
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t).sample, t, x, **({"generator": gen} if noisy else {})).prev_sample
    return x


def measure(unet, name, scheduler, steps, seed=0):
    den = diffusion.from_diffusers(unet, scheduler)
    sampler = {"ddpm": "ddpm", "ddim": "ddim", "dpm": "dpmsolver++"}[name]
    ours = diffusion.sample(den, SHAPE, sampler=sampler, steps=steps, method="sequential",
                            generator=torch.Generator().manual_seed(seed))
    ref = diffusers_loop(unet, scheduler, steps, seed)
    bumped = diffusers_loop(unet, scheduler, steps, seed, scale=1 + torch.finfo(torch.float32).eps)
    return rel_err(ours.x, ref), rel_err(bumped, ref)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fast", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=2, out_channels=2, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4).eval()
    lengths = {"ddpm": [20, 100] if args.fast else [20, 100, 1000],
               "ddim": [20, 100] if args.fast else [20, 200, 1000],
               "dpm": [10, 25] if args.fast else [10, 25, 100]}
    make = {"ddpm": lambda: DDPMScheduler(num_train_timesteps=1000),
            "ddim": lambda: DDIMScheduler(num_train_timesteps=1000),
            "dpm": lambda: DPMSolverMultistepScheduler(num_train_timesteps=1000)}
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread")
    print("| sampler | steps | parity error vs diffusers | diffusers vs itself from x_T (1 + eps) |")
    print("|---|---|---|---|")
    for name, steps_list in lengths.items():
        for steps in steps_list:
            parity, sensitivity = measure(unet, name, make[name](), steps)
            print(f"| {name} | {steps} | {parity:.1e} | {sensitivity:.1e} |", flush=True)


if __name__ == "__main__":
    main()
