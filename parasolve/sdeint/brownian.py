"""The Brownian path, queried once for the whole grid: what makes every step map deterministic.

torchsde's solvers ask the Brownian motion for ``W(t_{i+1}) - W(t_i)`` (and, for SRK, the
space-time Lévy area) one step at a time. :func:`query` asks for all of them up front, in the same
order, so a :class:`torchsde.BrownianInterval` built with the same entropy returns the same
numbers that torchsde would see; the step maps then only index the stored increments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LEVY_AREAS = ("none", "space-time", "davie", "foster")


@dataclass
class Increments:
    """The Brownian quantities of every step: ``dW`` of shape ``(N, batch, m)`` and, when the
    method asked for it, the space-time Lévy area ``U`` (torchsde's ``return_U=True``)."""

    dW: torch.Tensor
    U: torch.Tensor | None = None

    def at(self, idx):
        return self.dW[idx], (None if self.U is None else self.U[idx])


def step_grid(ts: torch.Tensor, dt) -> torch.Tensor:
    """torchsde's fixed-step grid: ``t_{k+1} = min(t_k + dt, ts[-1])`` accumulated in ``ts``'s
    precision from ``ts[0]`` until ``ts[-1]``; interior output times are not grid points (the
    outputs are interpolated, as torchsde does)."""
    kind = np.float32 if ts.dtype in (torch.float32, torch.float16, torch.bfloat16) else np.float64
    step = kind(float(dt))
    start, end = kind(float(ts[0])), kind(float(ts[-1]))
    points = [start]
    current = start
    while current < end:
        current = min(kind(current + step), end)
        points.append(current)
    return torch.as_tensor(np.asarray(points, dtype=kind), device=ts.device).to(ts.dtype)


def interpolate(grid: torch.Tensor, ys: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """``ys`` on ``grid`` at the output times ``ts``, as torchsde reports them: at ``ts[0]`` the
    initial state, elsewhere the linear interpolant over the step ``(t_{k-1}, t_k]`` holding it."""
    k = torch.searchsorted(grid, ts[1:]).clamp(1, grid.shape[0] - 1)
    t0, t1, q = grid[k - 1], grid[k], ts[1:]
    shape = (-1, *([1] * (ys.dim() - 1)))
    w0 = ((t1 - q) / (t1 - t0)).reshape(shape)
    w1 = ((q - t0) / (t1 - t0)).reshape(shape)
    return torch.cat([ys[:1], w0 * ys[k - 1] + w1 * ys[k]])


def default_levy_area(method: str) -> str:
    """The Lévy-area approximation torchsde gives the Brownian motion it draws for ``method``."""
    return "space-time" if method == "srk" else "none"


def make_bm(ts, size, dtype, device, method: str, generator=None):
    """A :class:`torchsde.BrownianInterval` on ``[ts[0], ts[-1]]``, as torchsde draws one: its
    entropy from numpy's global generator, or from ``generator`` (a ``torch.Generator``) if given."""
    import torchsde

    entropy = None
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"`generator` must be a torch.Generator; got {type(generator).__name__}.")
        entropy = int(torch.randint(0, 2 ** 31 - 1, (), generator=generator))
    return torchsde.BrownianInterval(t0=ts[0], t1=ts[-1], size=size, dtype=dtype, device=device,
                                     entropy=entropy, levy_area_approximation=default_levy_area(method))


def check_bm(bm, batch: int, noise: int | None):
    """``bm`` must be a torchsde Brownian motion of shape ``(batch, noise)``."""
    if not callable(bm) or not hasattr(bm, "shape") or not hasattr(bm, "levy_area_approximation"):
        raise TypeError(f"`bm` must be a torchsde Brownian motion (BrownianInterval, BrownianPath or "
                        f"BrownianTree); got {type(bm).__name__}.")
    shape = tuple(bm.shape)
    if len(shape) != 2 or shape[0] != batch or (noise is not None and shape[1] != noise):
        want = f"({batch}, {noise if noise is not None else 'm'})"
        raise ValueError(f"`bm` has shape {shape}; it must be (batch, noise channels) = {want} to match y0 and "
                         f"the diffusion.")


def query(bm, grid: torch.Tensor, want_U: bool) -> Increments:
    """Every step's increment (and space-time Lévy area with ``want_U``), in grid order."""
    dW, U = [], []
    for k in range(grid.shape[0] - 1):
        out = bm(grid[k], grid[k + 1], return_U=want_U) if want_U else bm(grid[k], grid[k + 1])
        if want_U:
            dW.append(out[0])
            U.append(out[1])
        else:
            dW.append(out)
    return Increments(torch.stack(dW), torch.stack(U) if want_U else None)
