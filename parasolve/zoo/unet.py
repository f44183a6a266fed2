"""A small plain-torch UNet epsilon-predictor for 1x16x16 images (the digits DDPM, see :mod:`.digits`)."""

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
    like ``x``. There is no dropout and no batch statistics, so every sample is processed
    independently and eval-mode outputs are deterministic.

    ``channels[i]`` is the width at resolution ``16 / 2**i``; ``enc_blocks[i]`` is the number of
    residual blocks on the way down at that resolution (after a stride-2 conv for ``i > 0``); the
    way up has one block per resolution, fed with the nearest-upsampled features concatenated with
    the skip connection. The digits are 8x8 images upsampled, so the default spends no encoder
    block at 16x16, which keeps sequential 1000-step sampling cheap on a CPU. The defaults are the
    architecture of the shipped weights (885,881 parameters).
    """

    def __init__(self, channels: tuple[int, ...] = (24, 48, 96), enc_blocks: tuple[int, ...] = (0, 1, 1),
                 emb_dim: int = 128):
        super().__init__()
        if len(channels) != len(enc_blocks) or len(channels) < 2:
            raise ValueError(f"channels and enc_blocks must have the same length >= 2, got {channels}, {enc_blocks}")
        self.channels, self.enc_blocks, self.emb_dim = tuple(channels), tuple(enc_blocks), emb_dim
        c = self.channels
        self.time_mlp = nn.Sequential(nn.Linear(64, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv2d(1, c[0], 3, padding=1)
        self.downs = nn.ModuleList(nn.Conv2d(c[i - 1], c[i], 3, stride=2, padding=1) for i in range(1, len(c)))
        self.encoders = nn.ModuleList(
            nn.ModuleList(_ResBlock(ci, ci, emb_dim) for _ in range(n)) for ci, n in zip(c, enc_blocks))
        self.mid = _ResBlock(c[-1], c[-1], emb_dim)
        self.decoders = nn.ModuleList(_ResBlock(c[min(i + 1, len(c) - 1)] + c[i], c[i], emb_dim) for i in range(len(c)))
        self.norm_out = _norm(c[0])
        self.conv_out = nn.Conv2d(c[0], 1, 3, padding=1)
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
        emb = self.time_mlp(timestep_embedding(t, 64))
        h, skips = self.stem(x), []
        for i, blocks in enumerate(self.encoders):
            if i > 0:
                h = self.downs[i - 1](h)
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        for i in reversed(range(len(self.channels))):
            h = self.decoders[i](torch.cat([h, skips[i]], dim=1), emb)
            if i > 0:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        return self.conv_out(F.silu(self.norm_out(h)))
