"""Train the digits flow-matching model (rectified flow) on the 16x16 digits (CPU is enough).

    python -m parasolve.zoo.training.train_flow --out parasolve/zoo/weights --steps 2500

(the command that made the shipped weights: 1250 s wall niced on one thread of the shared, loaded
2-core sandbox, about 0.12 s of CPU time per step; final training loss 0.16).

Rectified flow: ``x_sigma = (1 - sigma) x0 + sigma eps`` with ``sigma ~ U(0, 1)``; the net sees
``x_sigma`` at timestep ``1000 sigma`` and regresses the velocity ``eps - x0`` (MSE) -- what
diffusers' ``FlowMatchEulerDiscreteScheduler`` integrates. The net is a narrower
:class:`~parasolve.zoo.unet.DigitsUNet` (:data:`~parasolve.zoo.digits_flow.CHANNELS`); Adam with
warm-up and cosine decay, an EMA of the weights (what is saved, float32). Seeds are fixed.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from ..digits import load_digits_16
from ..digits_flow import WEIGHTS, flow_unet
from .common import save_state_dict, step_with_ema, warmup_cosine


def train_flow(out: Path, steps: int, batch_size: int = 64, lr: float = 1e-3, ema_decay: float = 0.999,
               seed: int = 0, log_every: int = 100) -> torch.nn.Module:
    """Train the flow net; the EMA weights are saved to ``out / WEIGHTS.name`` and returned."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data, _ = load_digits_16("train")
    model = flow_unet()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    print(f"flow net: {sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = warmup_cosine(opt, steps)
    start, running = time.perf_counter(), 0.0
    for step in range(1, steps + 1):
        x0 = data[torch.randint(0, len(data), (batch_size,), generator=gen)]
        sigma = torch.rand(batch_size, generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        s = sigma[:, None, None, None]
        loss = F.mse_loss(model((1 - s) * x0 + s * eps, 1000 * sigma), eps - x0)
        step_with_ema(loss, model, ema, opt, sched, step, ema_decay)
        running += loss.item()
        if step % log_every == 0:
            print(f"step {step:6d}  loss {running / log_every:.4f}  lr {sched.get_last_lr()[0]:.2e}  "
                  f"{time.perf_counter() - start:7.1f}s", flush=True)
            running = 0.0
    save_state_dict(ema.state_dict(), out / WEIGHTS.name)
    return ema


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS.parent)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train_flow(args.out, args.steps, args.batch_size, args.lr, args.ema, args.seed)
    print(f"flow model trained in {time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
