"""Watching a solve: what a scheme reports after each sweep, and the observers that use it.

``solve(..., callback=fn)`` calls ``fn(info)`` with a :class:`SweepInfo` after every sweep of a
windowed scheme, every iteration of parareal and every step of the sequential loop (diffrax's
progress meters and torchdiffeq's step callbacks watch a solve the same way). ``progress=True``
is one such observer, :class:`ProgressBar`. Observers only read: what they get is a snapshot,
and the solve's result does not depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class SweepInfo:
    """One sweep, as the stop rule saw it.

    ``method``: the scheme; ``n_steps``: the grid's steps; ``sweep``, ``start``, ``end``,
    ``residual``, ``accepted``: as in the :class:`~parasolve.SweepRecord` appended to
    ``stats.history`` (the window ``[start, end)``, its largest defect before the update, the
    steps the front advanced). The measured side, ``None`` for a step of the sequential loop
    (nothing is measured there): ``defects`` (float64, host) of the window's steps (parareal: of
    its segments' ends); ``allowances``: each one's own allowance, ``tol`` times its share over
    its gain, at least the floating-point floor the rule applied; ``budget``: where unused shares
    carry over (the step map declares gains), ``tol`` times the shares up to each step, the bound
    on ``spent`` plus the weighted defects so far (``None`` otherwise); ``spent``: the
    gain-weighted defects accepted before this sweep; ``met``: the leading defects the stop rule
    accepted (a windowed sweep then computes one more step exactly, so ``accepted`` is one more
    where ``met`` falls short of the window).
    """

    method: str
    n_steps: int
    sweep: int
    start: int
    end: int
    residual: float
    accepted: int
    defects: torch.Tensor | None = None
    allowances: torch.Tensor | None = None
    budget: torch.Tensor | None = None
    spent: float = 0.0
    met: int | None = None


class ProgressBar:
    """``progress=True``: a tqdm bar over the grid's steps, moved by the steps each sweep accepts,
    with the sweep count and the residual (redrawn at most every tqdm ``mininterval``). Use as a
    context manager around the solve (the bar is closed, and cleared, at its end)."""

    def __init__(self):
        self._bar = None

    def __call__(self, info: SweepInfo) -> None:
        if self._bar is None or (info.sweep == 1 and self._bar.n):  # a new solve (e.g. a re-run): a new bar
            self.close()
            self._bar = tqdm(total=info.n_steps, desc=info.method, leave=False, unit="step")
        if info.defects is not None:
            self._bar.set_postfix(sweep=info.sweep, residual=f"{info.residual:.2e}", refresh=False)
        self._bar.update(info.accepted)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.refresh()  # the final state, once
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_callback(callback) -> Callable | None:
    """``callback`` if it is ``None`` or callable, else a ``TypeError`` naming it."""
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable as callback(info) with a parasolve.observers.SweepInfo, "
                        f"or None; got {type(callback).__name__}.")
    return callback


def combine(*observers) -> Callable | None:
    """One observer calling each of ``observers`` that is not ``None`` in turn (``None`` if none is)."""
    present = tuple(o for o in observers if o is not None)
    if len(present) <= 1:
        return present[0] if present else None

    def each(info: SweepInfo) -> None:
        for observer in present:
            observer(info)
    return each
