"""A small plain-torch UNet epsilon-predictor for 1x16x16 images (the digits DDPM)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DigitsUNet", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` of timesteps ``t`` of shape ``(B,)`` (integer or float)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, with the time embedding added in between, plus a skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class DigitsUNet(nn.Module):
    """UNet over three resolutions (16 -> 8 -> 4) predicting the noise ``epsilon``.

    ``forward(x, t)`` takes images ``x`` of shape ``(B, 1, 16, 16)`` and timesteps ``t`` of shape
    ``(B,)`` (integers or floats in ``[0, 1000)``; a scalar is broadcast) and returns a tensor shaped
    like ``x``. There is no dropout or batch statistics, so outputs are per-sample and deterministic.
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128), emb_dim: int = 128):
        super().__init__()
        self.channels, self.emb_dim = tuple(channels), emb_dim
        c0 = channels[0]
        self.time_mlp = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(1, c0, 3, padding=1)
        self.down_blocks, self.downsamples = nn.ModuleList(), nn.ModuleList()
        for i, c in enumerate(channels):
            self.down_blocks.append(_ResBlock(channels[i - 1] if i else c0, c, emb_dim))
            if i < len(channels) - 1:
                self.downsamples.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = _ResBlock(channels[-1], channels[-1], emb_dim)
        self.up_blocks, self.upsamples = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(channels))):
            c_below = channels[-1] if i == len(channels) - 1 else channels[i + 1]
            self.up_blocks.append(_ResBlock(c_below + channels[i], channels[i], emb_dim))
            if i > 0:
                self.upsamples.append(nn.Conv2d(channels[i], channels[i], 3, padding=1))
        self.norm_out = _norm(c0)
        self.conv_out = nn.Conv2d(c0, 1, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 16, 16):
            raise ValueError(f"x must have shape (B, 1, 16, 16), got {tuple(x.shape)}")
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},) or be a scalar, got {tuple(t.shape)}")
        emb = self.time_mlp(timestep_embedding(t, self.channels[0]))
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)
        h = self.mid(h, emb)
        for j, block in enumerate(self.up_blocks):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if j < len(self.upsamples):
                h = self.upsamples[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
