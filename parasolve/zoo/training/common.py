"""What the in-repo training scripts share: one optimiser step with gradient clipping and an EMA copy,
the warm-up + cosine learning-rate schedule, and saving weights atomically."""

from __future__ import annotations

import math
from pathlib import Path

import torch


def save_state_dict(state_dict: dict, path: Path) -> None:
    """Save ``state_dict`` as float32 tensors, atomically (write then rename)."""
    tmp = path.with_suffix(".tmp")
    torch.save({k: v.detach().float().clone() for k, v in state_dict.items()}, tmp)
    tmp.replace(path)


def warmup_cosine(opt, decay_steps: int):
    """Linear warm-up over ``min(200, decay_steps // 10)`` steps, then cosine decay to 5% at ``decay_steps``."""
    warmup = min(200, decay_steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(warmup, 1)) * (
        0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s / decay_steps, 1.0)))))


def step_with_ema(loss, model, ema, opt, sched, step: int, ema_decay: float) -> None:
    """Back-propagate ``loss``, clip the gradient norm to 1, step ``opt`` and ``sched``, then move
    ``ema`` towards ``model`` with the warm-up decay ``min(ema_decay, (1 + step) / (10 + step))``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    decay = min(ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters()):
            pe.lerp_(p, 1 - decay)
