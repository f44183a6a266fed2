"""The stiff test problems of the benchmark and the tests: Robertson, Van der Pol (mu = 1000),
HIRES and the Oregonator (Hairer & Wanner, Solving ODEs II, IV.10), as batched torch drifts
``f(t, y)`` with ``y`` of shape ``(..., D)``, and scipy versions of the same right-hand sides."""

from __future__ import annotations

import numpy as np
import torch


def robertson(t, y):
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    return torch.stack([-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 ** 2, 3e7 * y2 ** 2], -1)


def vdp(mu):
    def f(t, y):
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, mu * (1 - x ** 2) * v - x], -1)
    return f


def hires(t, y):
    y1, y2, y3, y4, y5, y6, y7, y8 = (y[..., k] for k in range(8))
    return torch.stack([
        -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
        1.71 * y1 - 8.75 * y2,
        -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
        8.32 * y2 + 1.71 * y3 - 1.12 * y4,
        -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
        -280.0 * y6 * y8 + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
        280.0 * y6 * y8 - 1.81 * y7,
        -280.0 * y6 * y8 + 1.81 * y7], -1)


def oregonator(t, y):
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    return torch.stack([77.27 * (y2 + y1 * (1 - 8.375e-6 * y1 - y2)),
                        (y3 - (1 + y1) * y2) / 77.27,
                        0.161 * (y1 - y3)], -1)


#: name -> (drift, y0, t_end, atol): the spans and tolerances of the usual test set.
PROBLEMS = {
    "robertson": (robertson, [1.0, 0.0, 0.0], 40.0, 1e-10),
    "vdp1000": (vdp(1000.0), [2.0, 0.0], 3000.0, 1e-6),
    "hires": (hires, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057], 321.8122, 1e-10),
    "oregonator": (oregonator, [1.0, 2.0, 3.0], 360.0, 1e-8),
}


def problem(name):
    """``(f, y0 (float64 tensor), t_end, atol)``."""
    f, y0, t_end, atol = PROBLEMS[name]
    return f, torch.tensor(y0, dtype=torch.float64), t_end, atol


def _np_robertson(t, y):
    return np.array([-0.04 * y[0] + 1e4 * y[1] * y[2], 0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2,
                     3e7 * y[1] ** 2])


def _np_vdp(t, y):
    return np.array([y[1], 1000.0 * (1 - y[0] ** 2) * y[1] - y[0]])


def _np_hires(t, y):
    y1, y2, y3, y4, y5, y6, y7, y8 = y
    return np.array([-1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007, 1.71 * y1 - 8.75 * y2,
                     -10.03 * y3 + 0.43 * y4 + 0.035 * y5, 8.32 * y2 + 1.71 * y3 - 1.12 * y4,
                     -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
                     -280.0 * y6 * y8 + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
                     280.0 * y6 * y8 - 1.81 * y7, -280.0 * y6 * y8 + 1.81 * y7])


def _np_oregonator(t, y):
    y1, y2, y3 = y
    return np.array([77.27 * (y2 + y1 * (1 - 8.375e-6 * y1 - y2)), (y3 - (1 + y1) * y2) / 77.27, 0.161 * (y1 - y3)])


#: The same right-hand sides on NumPy arrays, written as a scipy user would (no torch overhead).
NUMPY = {"robertson": _np_robertson, "vdp1000": _np_vdp, "hires": _np_hires, "oregonator": _np_oregonator}


def jax_rhs(name, jnp):
    """The right-hand side of problem ``name`` for diffrax (``f(t, y, args)``), written with ``jnp``
    (``jax.numpy``, passed in: this module does not import jax)."""
    def robertson_j(t, y, args):
        return jnp.stack([-0.04 * y[0] + 1e4 * y[1] * y[2], 0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2,
                          3e7 * y[1] ** 2])

    def vdp_j(t, y, args):
        return jnp.stack([y[1], 1000.0 * (1 - y[0] ** 2) * y[1] - y[0]])

    def hires_j(t, y, args):
        y1, y2, y3, y4, y5, y6, y7, y8 = (y[k] for k in range(8))
        return jnp.stack([-1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007, 1.71 * y1 - 8.75 * y2,
                          -10.03 * y3 + 0.43 * y4 + 0.035 * y5, 8.32 * y2 + 1.71 * y3 - 1.12 * y4,
                          -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
                          -280.0 * y6 * y8 + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
                          280.0 * y6 * y8 - 1.81 * y7, -280.0 * y6 * y8 + 1.81 * y7])

    def oregonator_j(t, y, args):
        return jnp.stack([77.27 * (y[1] + y[0] * (1 - 8.375e-6 * y[0] - y[1])), (y[2] - (1 + y[0]) * y[1]) / 77.27,
                          0.161 * (y[0] - y[2])])

    return {"robertson": robertson_j, "vdp1000": vdp_j, "hires": hires_j, "oregonator": oregonator_j}[name]
