"""Picard iteration in a sliding window (the ParaDiGMS scheme): the engine's default update.

Each sweep sets ``x_{j+1} = x_a + sum_{i=a}^{j} Phi_i(x_i)`` for the open slots, anchored at the
window's new start ``a``; the loop, the stop rule and the bookkeeping are the engine's
(:mod:`parasolve.schemes.engine`).
"""

from __future__ import annotations

from .base import register_scheme
from .engine import WindowedScheme


@register_scheme
class Picard(WindowedScheme):
    """Sliding-window Picard iteration (ParaDiGMS): ``x_{j+1} = x_b + sum_{i<=j} Phi_i(x_i)``."""

    name = "picard"
