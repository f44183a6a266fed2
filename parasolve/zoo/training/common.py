"""What the in-repo training scripts share: one optimiser step with gradient clipping and an EMA copy."""

from __future__ import annotations

import torch


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
