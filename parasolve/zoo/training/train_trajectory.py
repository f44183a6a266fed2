"""Train the trajectory diffusion policy shipped as ``weights/trajectory_mlp.pt``.

``python -m parasolve.zoo.training.train_trajectory [--steps 20000] [--out PATH]``

Recipe (fixed seeds, CPU, one thread): 100 000 expert demonstrations from
:func:`~parasolve.zoo.trajectory.make_dataset` (generator seed 0); DDPM with 100 timesteps and the
cosine ("squaredcos_cap_v2") schedule; epsilon-prediction with the mean-squared error, timesteps drawn
uniformly; Adam (lr 1e-3, cosine decay to 0 after a 500-step warm-up, gradient norm clipped at 1),
batch 256; the weights saved are an exponential moving average (decay 0.999). At the end the EMA
model samples 64 held-out start/goal pairs (seed 1) with the sequential DDPM-100 sampler and the task
score is printed and stored with the weights.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import torch

from parasolve.zoo.training.common import step_with_ema
from parasolve.zoo.trajectory import (NUM_TRAIN_TIMESTEPS, WEIGHTS_PATH, TrajectoryDenoiser, ddpm_sample,
                                            make_dataset, schedule, task_score)


def evaluate(model: TrajectoryDenoiser, pairs: int = 64, seed: int = 1) -> dict[str, float]:
    """Task-score summary of sequential DDPM-100 samples for ``pairs`` held-out start/goal pairs."""
    _, cond = make_dataset(pairs, torch.Generator().manual_seed(seed))
    actions = ddpm_sample(model, cond, torch.Generator().manual_seed(seed + 1000))
    return task_score(actions, cond[:, :2], cond[:, 2:]).summary()


def train(steps: int = 20000, batch: int = 256, lr: float = 1e-3, data: int = 100_000, seed: int = 0,
          ema_decay: float = 0.999, warmup: int = 500, log_every: int = 1000) -> tuple[TrajectoryDenoiser, dict]:
    """Train and return ``(ema_model, info)``; ``info`` holds the final loss, steps, seconds and the score."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    actions, cond = make_dataset(data, gen)
    print(f"dataset: {data} demonstrations in {time.perf_counter() - t0:.1f} s", flush=True)
    abar = schedule()
    model = TrajectoryDenoiser()
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    running = None
    for step in range(1, steps + 1):
        idx = torch.randint(0, data, (batch,), generator=gen)
        x0, c = actions[idx], cond[idx]
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        ab = abar[t][:, None, None]
        loss = ((model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t, cond=c) - noise) ** 2).mean()
        step_with_ema(loss, model, ema, opt, sched, step, ema_decay)
        running = loss.item() if running is None else 0.99 * running + 0.01 * loss.item()
        if step % log_every == 0 or step == steps:
            print(f"step {step:6d}  loss(avg) {running:.5f}  {time.perf_counter() - t0:7.1f} s", flush=True)
    seconds = time.perf_counter() - t0
    ema.eval()
    score = evaluate(ema)
    print("EMA model, sequential DDPM-100 on 64 held-out pairs:", score, flush=True)
    info = {"steps": steps, "batch": batch, "lr": lr, "data": data, "seed": seed, "ema_decay": ema_decay,
            "final_loss": running, "train_seconds": seconds, "score": score, "torch": str(torch.__version__)}
    return ema, info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ema, info = train(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in ema.state_dict().items()}
    torch.save({"config": ema.config(), "state_dict": state, "schedule": {
        "num_train_timesteps": NUM_TRAIN_TIMESTEPS, "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": "epsilon", "clip_sample": True}, "info": info}, args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
