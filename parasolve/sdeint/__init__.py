"""``parasolve.sdeint``: torchsde's ``sdeint``/``sdeint_adjoint`` with the Brownian path queried
up front, so every method is a deterministic step map and every parallel scheme applies
(docs/sde.md)."""

from .api import SDEResult, SDEStats, sdeint, sdeint_adjoint
from .methods import METHODS, SUPPORT, SDEStep, default_method

__all__ = ["sdeint", "sdeint_adjoint", "SDEResult", "SDEStats", "METHODS", "SUPPORT", "SDEStep", "default_method"]
