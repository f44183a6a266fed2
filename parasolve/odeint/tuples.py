"""Tuple states for ``odeint``: ``y0`` a tuple of tensors, ``func`` returning one, the answer one.

As torchdiffeq does, the parts are flattened into one state vector for the solve and split back
afterwards; the error test's default norm for a tuple is the largest of the parts' RMS norms, and
a user's ``options["norm"]`` receives the tuple.
"""

from __future__ import annotations

import math
import numbers

import torch


class Packing:
    """How the parts of a tuple state sit in one flat vector: ``shapes`` and offsets."""

    def __init__(self, parts: tuple):
        if len(parts) == 0:
            raise ValueError("`y0` is an empty tuple; pass at least one tensor.")
        for i, p in enumerate(parts):
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"`y0[{i}]` must be a torch.Tensor; got {type(p).__name__}.")
        first = parts[0]
        for i, p in enumerate(parts[1:], 1):
            if p.dtype != first.dtype or p.device != first.device:
                raise ValueError(f"The parts of a tuple `y0` must share dtype and device: y0[0] is {first.dtype} "
                                 f"on {first.device}, y0[{i}] is {p.dtype} on {p.device}. Cast them alike.")
        self.shapes = [p.shape for p in parts]
        self.sizes = [math.prod(s) for s in self.shapes]

    def flat(self, parts, batch: tuple = ()) -> torch.Tensor:
        """``parts`` (each of shape ``batch + shape``) as one tensor of shape ``batch + (D,)``."""
        return torch.cat([p.reshape(*batch, n) for p, n in zip(parts, self.sizes)], -1)

    def split(self, y: torch.Tensor) -> tuple:
        """The inverse of :meth:`flat`: leading dimensions of ``y`` are kept."""
        batch = y.shape[:-1]
        return tuple(c.reshape(*batch, *s) for c, s in zip(torch.split(y, self.sizes, -1), self.shapes))

    def func(self, func, name: str = "func"):
        """``func`` on the flat state: split, call, check it returned a matching tuple, flatten."""
        def flat_func(t, y):
            out = func(t, self.split(y))
            if not isinstance(out, (tuple, list)) or len(out) != len(self.shapes):
                raise TypeError(f"`{name}` must return a tuple of {len(self.shapes)} tensors for a tuple `y0`; "
                                f"got {type(out).__name__}{'' if not isinstance(out, (tuple, list)) else f' of {len(out)}'}.")
            batch = y.shape[:-1]
            parts = [torch.as_tensor(o) for o in out]
            for i, (o, s) in enumerate(zip(parts, self.shapes)):  # as torchdiffeq: any shape of that size
                if o.numel() != math.prod(batch) * math.prod(s):
                    raise ValueError(f"`{name}` returned part {i} of shape {tuple(o.shape)} for y[{i}] of shape "
                                     f"{tuple((*batch, *s))}; each part of dy/dt must have its part's shape.")
            return torch.cat([o.reshape(*batch, n) for o, n in zip(parts, self.sizes)], -1)
        return flat_func

    def tolerance(self, name: str, value):
        """``rtol``/``atol``: a number (or 0-d tensor), or a tuple with one per part, as a flat tensor."""
        if not isinstance(value, (tuple, list)):
            return value
        if len(value) != len(self.shapes):
            raise ValueError(f"`{name}` has {len(value)} entries for a tuple `y0` of {len(self.shapes)} parts; "
                             f"give one per part or a single number.")
        out = []
        for i, (v, n) in enumerate(zip(value, self.sizes)):
            if isinstance(v, bool) or not isinstance(v, (numbers.Real, torch.Tensor)) or torch.as_tensor(v).numel() != 1:
                raise TypeError(f"`{name}[{i}]` must be a real number; got {v!r}.")
            out.append(torch.full((n,), float(v), dtype=torch.float64))
        return torch.cat(out)

    def norm(self, norm=None):
        """The error test's norm on the flat scaled error: ``norm(tuple)`` if given, else the
        largest RMS over the parts (torchdiffeq's default for tuples)."""
        if norm is None:
            return lambda x: torch.stack([p.abs().pow(2).mean().sqrt() for p in self.split(x)]).max()
        return lambda x: norm(self.split(x))


def unpack(ys: torch.Tensor, packing: Packing | None):
    """``odeint``'s answer in the user's form: a tuple of ``(len(t), *shape)`` tensors for a tuple ``y0``."""
    return ys if packing is None else packing.split(ys)
