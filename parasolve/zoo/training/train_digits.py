"""Train the digits DDPM denoiser and, with ``--classifier``, the evaluation classifier (CPU is enough).

    python -m parasolve.zoo.training.train_digits --out parasolve/zoo/weights --steps 2500 \
        --decay-steps 5000 --classifier

(the command that made the shipped weights: the step-2500 EMA of a 5000-step cosine schedule, about
35 minutes on one CPU thread).

The denoiser is a standard DDPM on the ``"train"`` split: 1000 steps, linear betas 1e-4..0.02
(:func:`~parasolve.zoo.digits.ddpm_betas`), MSE on the predicted noise, Adam with warmup and
cosine decay, and an exponential moving average of the weights, which is what gets saved (as a
float32 state_dict, also every ``--save-every`` steps). Seeds are fixed.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from ..digits import DigitsClassifier, ddpm_betas, load_digits_16
from .common import save_state_dict, step_with_ema, warmup_cosine
from ..unet import DigitsUNet


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator, vertical: bool = False) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels horizontally (and vertically if ``vertical``),
    filling with the background value -1."""
    if max_shift <= 0:
        return x
    b, k = x.shape[0], max_shift
    padded = F.pad(x, (k, k, k, k), value=-1.0)
    dx = torch.randint(0, 2 * k + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * k + 1, (b,), generator=generator) if vertical else torch.full((b,), k)
    return torch.stack([padded[i, :, dy[i]:dy[i] + 16, dx[i]:dx[i] + 16] for i in range(b)])


def train_unet(out: Path, steps: int, batch_size: int = 64, lr: float = 1e-3, ema_decay: float = 0.999,
               shift: int = 0, seed: int = 0, log_every: int = 100, save_every: int = 500,
               decay_steps: int | None = None) -> DigitsUNet:
    """Train :class:`DigitsUNet`; the EMA weights are saved to ``out / "digits_unet.pt"`` and returned.

    The learning rate warms up, then follows a cosine decay (to 5%) over ``decay_steps`` (default
    ``steps``); a run with ``decay_steps > steps`` is exactly the prefix of the longer run.
    """
    decay_steps = steps if decay_steps is None else decay_steps
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data, _ = load_digits_16("train")
    abar = torch.cumprod(1 - ddpm_betas(), 0).float()
    model = DigitsUNet()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    print(f"DigitsUNet: {sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = warmup_cosine(opt, decay_steps)
    start, running = time.perf_counter(), 0.0
    for step in range(1, steps + 1):
        x0 = random_shift(data[torch.randint(0, len(data), (batch_size,), generator=gen)], shift, gen)
        t = torch.randint(0, len(abar), (batch_size,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = abar[t][:, None, None, None]
        loss = F.mse_loss(model(a.sqrt() * x0 + (1 - a).sqrt() * eps, t), eps)
        step_with_ema(loss, model, ema, opt, sched, step, ema_decay)
        running += loss.item()
        if step % log_every == 0:
            print(f"step {step:6d}  loss {running / log_every:.4f}  lr {sched.get_last_lr()[0]:.2e}  "
                  f"{time.perf_counter() - start:7.1f}s", flush=True)
            running = 0.0
        if step % save_every == 0 or step == steps:
            save_state_dict(ema.state_dict(), out / "digits_unet.pt")
    return ema


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` (put in eval mode) labels as ``y``."""
    model.eval()
    return (model(x).argmax(1) == y).float().mean().item()


def train_classifier(out: Path, steps: int = 1500, batch_size: int = 128, lr: float = 1e-3, noise: float = 0.1,
                     seed: int = 0) -> tuple[DigitsClassifier, float]:
    """Train :class:`DigitsClassifier` with +-1 pixel shifts and Gaussian noise of std up to ``noise``;
    saves it to ``out / "digits_classifier.pt"`` and returns it with its held-out ("test") accuracy."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    (x, y), (x_test, y_test) = load_digits_16("train"), load_digits_16("test")
    model = DigitsClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for step in range(1, steps + 1):
        model.train()
        idx = torch.randint(0, len(x), (batch_size,), generator=gen)
        xb = random_shift(x[idx], 1, gen, vertical=True)
        xb = xb + noise * torch.rand(batch_size, 1, 1, 1, generator=gen) * torch.randn(xb.shape, generator=gen)
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps:
            print(f"classifier step {step:5d}  loss {loss.item():.4f}  held-out acc "
                  f"{accuracy(model, x_test, y_test):.4f}", flush=True)
    acc = accuracy(model, x_test, y_test)
    save_state_dict(model.state_dict(), out / "digits_classifier.pt")
    return model, acc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "weights")
    parser.add_argument("--steps", type=int, default=6000, help="denoiser steps (0: skip the denoiser)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--shift", type=int, default=0, help="random horizontal shift augmentation, pixels")
    parser.add_argument("--decay-steps", type=int, default=None, help="cosine LR horizon (default: --steps)")
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--classifier", action="store_true", help="also train the evaluation classifier")
    parser.add_argument("--classifier-steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.classifier:
        start = time.perf_counter()
        _, acc = train_classifier(args.out, args.classifier_steps, seed=args.seed)
        print(f"classifier held-out accuracy {acc:.4f} ({time.perf_counter() - start:.0f}s)", flush=True)
    if args.steps:
        start = time.perf_counter()
        train_unet(args.out, args.steps, args.batch_size, args.lr, args.ema, args.shift, args.seed,
                   save_every=args.save_every, decay_steps=args.decay_steps)
        print(f"denoiser trained in {time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
