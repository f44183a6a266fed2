"""Turn a user's drift ``f(t, y)`` into one batched call over many time points.

``BatchedDrift(t, y)`` takes ``t`` of shape ``(n,)`` and ``y`` of shape ``(n, *state)``. A drift
written for one time point is batched with :func:`torch.func.vmap` when it can be, else by a loop
(with one warning). Every evaluation is counted per time point in ``nfe``; the first call checks
the output's shape, dtype and device, so a wrong drift fails at once with a clear message.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

from .evaluators.protocol import EvaluatorError, local_evaluator

Drift = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class BatchedDrift:
    """Counting, validating, batched view of ``f``.

    ``mode`` is ``"vectorized"`` (``f`` is batched already), ``"vmap"`` or ``"loop"``; ``None``
    picks vmap and falls back to a loop if vmap fails on the first call.
    ``broadcast=True`` accepts outputs that broadcast to the state shape (e.g. a scalar noise scale).
    """

    def __init__(self, f: Drift, state_shape: torch.Size, dtype: torch.dtype, device: torch.device,
                 *, vectorized: bool = False, name: str = "f", broadcast: bool = False, evaluator=None):
        if not callable(f):
            raise TypeError(f"`{name}` must be callable as {name}(t, y); got {type(f).__name__}.")
        self.f = f
        self.name = name
        self.state_shape = torch.Size(state_shape)
        self.dtype = dtype
        self.device = device
        self.broadcast = broadcast
        self.mode = "vectorized" if vectorized else None
        self.evaluator = evaluator if evaluator is not None else local_evaluator
        self.nfe = 0
        self.calls = 0
        self._checked = False

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = t.shape[0]
        if self.mode is None:
            try:
                out = self.evaluator(torch.func.vmap(self.f), t, y)
                self.mode = "vmap"
            except EvaluatorError:  # the evaluator failed, not vmap: no fallback hides that
                raise
            except Exception as exc:  # vmap does not support every op: fall back once, say so once.
                warnings.warn(f"parasolve: `{self.name}` could not be batched with torch.func.vmap "
                              f"({type(exc).__name__}: {exc}); evaluating time points in a loop. "
                              f"Pass vectorized=True with a batched `{self.name}` for speed.",
                              RuntimeWarning, stacklevel=4)
                self.mode = "loop"
                out = self.evaluator(self._loop, t, y)
        else:
            out = self.evaluator(self.batched, t, y)
        if not self._checked:
            self._check(out, n)
        if self.broadcast and out.shape[1:] != self.state_shape:
            lead = (1,) * (len(self.state_shape) - (out.dim() - 1))
            out = out.reshape(n, *lead, *out.shape[1:]).expand(n, *self.state_shape)
        self.nfe += n
        self.calls += 1
        return out

    @property
    def batched(self):
        """``f`` as a batched callable in the resolved mode."""
        return {"vectorized": self.f, "vmap": torch.func.vmap(self.f), "loop": self._loop}[self.mode]

    def _loop(self, t, y):
        return torch.stack([torch.as_tensor(self.f(t[i], y[i])) for i in range(t.shape[0])])

    def _check(self, out, n):
        name, shape = self.name, self.state_shape
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"`{name}` must return a torch.Tensor; got {type(out).__name__}.")
        per_point = tuple(out.shape[1:]) if out.dim() > 0 and out.shape[0] == n else None
        ok_shape = per_point == tuple(shape) or (
            self.broadcast and per_point is not None and _broadcasts(per_point, shape))
        if not ok_shape:
            got = per_point if per_point is not None else tuple(out.shape)
            batched = self.mode == "vectorized"
            raise ValueError(
                f"`{name}` returned shape {got if not batched else tuple(out.shape)} "
                f"{'for a batch of ' + str(n) + ' time points ' if batched else ''}"
                f"but the state has shape {tuple(shape)}; return one value per state entry"
                f"{' with a leading batch dimension of ' + str(n) if batched else ''}.")
        if out.dtype != self.dtype:
            raise TypeError(f"`{name}` returned dtype {out.dtype} but y0 has dtype {self.dtype}; "
                            f"return the state's dtype (e.g. build constants with y.dtype).")
        if out.device != self.device:
            raise ValueError(f"`{name}` returned a tensor on {out.device} but y0 is on {self.device}; "
                             f"keep the drift on the state's device.")
        self._checked = True


def _broadcasts(shape, target) -> bool:
    try:
        return torch.broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except RuntimeError:
        return False
