"""torchsde's SDE methods as stochastic step maps over Brownian increments queried up front.

Each map computes step ``i``'s increment ``x_{i+1} - x_i`` from the state ``x_i``, the step
``h_i`` and the stored ``dW_i`` (SRK: also the space-time Lévy area ``U_i``) with torchsde's
formulas, so the sequential loop is torchsde's solve to round-off and every parasolve scheme
applies. ``stages`` counts the batched calls of the drift ``f`` (the solve's ``drift_calls``);
the diffusion ``g`` is called in the same rounds, counted apart (``SDEStats.g_calls``).

Which map serves which SDE: :data:`SUPPORT` (torchsde's own table); :func:`select` refuses the
rest with a ``ValueError`` naming the method, the SDE and what would work.
"""

from __future__ import annotations

import torch

from ..steps import Increments, StepMap
from .functions import NOISE_TYPES, prod

ALL_LEVY = ("none", "space-time", "davie", "foster")

#: method -> (sde types, noise types, Lévy-area approximations the Brownian motion may have)
SUPPORT = {
    "euler": (("ito",), NOISE_TYPES, ALL_LEVY),
    "milstein": (("ito", "stratonovich"), ("additive", "diagonal", "scalar"), ALL_LEVY),
    "srk": (("ito",), ("additive", "diagonal", "scalar"), ("space-time", "davie", "foster")),
    "euler_heun": (("stratonovich",), NOISE_TYPES, ALL_LEVY),
    "heun": (("stratonovich",), NOISE_TYPES, ALL_LEVY),
    "midpoint": (("stratonovich",), NOISE_TYPES, ALL_LEVY),
    "reversible_heun": (("stratonovich",), NOISE_TYPES, ALL_LEVY),
}


def default_method(sde_type: str, noise_type: str) -> str:
    """torchsde's default: SRK for Itô SDEs (Euler for general noise), midpoint for Stratonovich."""
    if sde_type == "ito":
        return "euler" if noise_type == "general" else "srk"
    return "midpoint"


def _b(x, y):
    """Per-step scalars ``(n,)`` shaped to broadcast against ``(n, batch, ...)``."""
    return x.reshape(x.shape[0], *([1] * (y.dim() - 1)))


class SDEStep(StepMap):
    """A stochastic step map of an SDE: ``fns`` (:class:`~parasolve.sdeint.functions.SDEFunctions`)
    and the Brownian increments ``bm`` (:class:`~parasolve.sdeint.brownian.Increments`).
    ``strong_order``: see :func:`strong_order` (some depend on the noise type)."""

    stochastic, ode_rhs = True, False
    callables = ("f", "g")
    strong_order = 0.5
    #: The method reads the space-time Levy area ``U`` of each Brownian increment (SRK) besides ``dW``.
    needs_U = False

    def __init__(self, fns, bm, options=None):
        self.fns, self.bm, self.noise_type = fns, bm, fns.noise_type
        self.options = dict(options or {})

    def _common(self, t, idx, y):
        t0 = t[idx]
        h = t[idx + 1] - t0
        dW, U = self.bm.at(idx)
        return t0, h, dW, U

    def g_prod(self, t, y, v):
        return self.fns.g_prod(t, y, v)


class Euler(SDEStep):
    """Euler–Maruyama (Itô): ``h f(t, x) + g(t, x) dW``."""

    name, order, stages = "euler", 1, 1

    def increments(self, drift, t, idx, y, prev=None):
        t0, h, dW, _ = self._common(t, idx, y)
        return Increments(drift(t0, y) * _b(h, y) + self.g_prod(t0, y, dW))


class EulerHeun(SDEStep):
    """Euler–Heun (Stratonovich): Heun's average on the noise term only."""

    name, order, stages = "euler_heun", 1, 1

    def increments(self, drift, t, idx, y, prev=None):
        t0, h, dW, _ = self._common(t, idx, y)
        f, gp = drift(t0, y), self.g_prod(t0, y, dW)
        gp2 = self.g_prod(t0 + h, y + gp, dW)
        return Increments(_b(h, y) * f + (gp + gp2) * 0.5)


class Heun(SDEStep):
    """Stochastic Heun (Stratonovich), two drift rounds per step."""

    name, order, stages = "heun", 2, 2

    def increments(self, drift, t, idx, y, prev=None):
        t0, h, dW, _ = self._common(t, idx, y)
        hb = _b(h, y)
        f, gp = drift(t0, y), self.g_prod(t0, y, dW)
        y2 = y + hb * f + gp
        f2, gp2 = drift(t0 + h, y2), self.g_prod(t0 + h, y2, dW)
        return Increments((hb * (f + f2) + gp + gp2) * 0.5)


class Midpoint(SDEStep):
    """Stochastic midpoint (Stratonovich), two drift rounds per step."""

    name, order, stages = "midpoint", 2, 2

    def increments(self, drift, t, idx, y, prev=None):
        t0, h, dW, _ = self._common(t, idx, y)
        half = _b(0.5 * h, y)
        f, gp = drift(t0, y), self.g_prod(t0, y, dW)
        y2 = y + half * f + 0.5 * gp
        t2 = t0 + 0.5 * h
        return Increments(_b(h, y) * drift(t2, y2) + self.g_prod(t2, y2, dW))


class Milstein(SDEStep):
    """Milstein, Itô or Stratonovich: Euler plus ``0.5 (g dg/dx) (dW^2 - h)`` (Stratonovich:
    ``dW^2``), the derivative by autograd -- or, with ``options={"grad_free": True}``, by a
    difference of ``g`` at ``x`` and ``x + g sqrt(h)`` (Itô: ``+ h f``)."""

    name, order, stages, strong_order = "milstein", 1, 1, 1.0

    def __init__(self, fns, bm, options=None):
        super().__init__(fns, bm, options)
        self.ito = fns.sde_type == "ito"
        self.grad_free = bool(self.options.get("grad_free", False)) and fns.noise_type != "additive"
        if self.grad_free or fns.noise_type != "additive":
            fns.need_g(self.name)

    def increments(self, drift, t, idx, y, prev=None):
        t0, h, dW, _ = self._common(t, idx, y)
        hb = _b(h, y)
        v = dW ** 2 - _b(h, dW) if self.ito else dW ** 2
        f = drift(t0, y)
        if self.noise_type == "additive":
            return Increments(f * hb + self.g_prod(t0, y, dW))
        if self.grad_free:
            g = self.fns.g(t0, y)
            flat = g.squeeze(-1) if g.dim() == y.dim() + 1 else g
            root = hb.sqrt()
            shifted = y + (hb * f if self.ito else 0.0) + flat * root
            g2 = self.fns.g(t0, shifted)
            gdg = prod(g2 - g, v, self.noise_type) / (2 * root)
        else:
            g, gdg = self._g_and_gdg(t0, y, 0.5 * v)
        return Increments(f * hb + prod(g, dW, self.noise_type) + gdg)

    def _g_and_gdg(self, t0, y, v2):
        """``g`` and ``sum_{j,l} g_{jl} dg_{jl}/dx_i v2_l`` (a vector-Jacobian product of ``g``),
        with a graph when grad mode is on (the adjoint differentiates it)."""
        keep = torch.is_grad_enabled() and y.requires_grad  # the adjoint's linearisation
        with torch.enable_grad():
            x = y if y.requires_grad else y.detach().requires_grad_(True)
            g = self.fns.g(t0, x)
            weight = g * v2 if self.noise_type == "diagonal" else g * v2.unsqueeze(-2)
            (gdg,) = torch.autograd.grad(g, x, weight, create_graph=keep, allow_unused=True)
        if gdg is None:
            gdg = torch.zeros_like(y)
        return (g if keep else g.detach()), gdg


# Rößler (2010) SRID2 (diagonal/scalar noise, strong order 1.5) and SRA1 (additive noise).
_SRID2 = dict(
    c0=(0.0, 1.0, 0.5, 0.0), c1=(0.0, 0.25, 1.0, 0.25),
    a0=((), (1.0,), (0.25, 0.25), (0.0, 0.0, 0.0)), a1=((), (0.25,), (1.0, 0.0), (0.0, 0.0, 0.25)),
    b0=((), (0.0,), (1.0, 0.5), (0.0, 0.0, 0.0)), b1=((), (-0.5,), (1.0, 0.0), (2.0, -1.0, 0.5)),
    alpha=(1 / 6, 1 / 6, 2 / 3, 0.0), beta1=(-1.0, 4 / 3, 2 / 3, 0.0), beta2=(1.0, -4 / 3, 1 / 3, 0.0),
    beta3=(2.0, -4 / 3, -2 / 3, 0.0), beta4=(-2.0, 5 / 3, -2 / 3, 1.0))
_SRA1 = dict(c0=(0.0, 0.75), c1=(1.0, 0.0), a0=((), (0.75,)), b0=((), (1.5,)), alpha=(1 / 3, 2 / 3),
             beta1=(1.0, 0.0), beta2=(-1.0, 1.0))


class SRK(SDEStep):
    """Rößler's stochastic Runge–Kutta methods (Itô): SRID2 for diagonal and scalar noise (4 drift
    rounds per step), SRA1 for additive noise (2 rounds). Strong order 1.5; needs the space-time
    Lévy area of the Brownian motion."""

    name, order, strong_order = "srk", 2, 1.5
    needs_U = True

    def __init__(self, fns, bm, options=None):
        super().__init__(fns, bm, options)
        self.additive = fns.noise_type == "additive"
        self.stages = 2 if self.additive else 4
        if not self.additive:
            fns.need_g(self.name)

    def increments(self, drift, t, idx, y, prev=None):
        t0, h, dW, U = self._common(t, idx, y)
        hb = _b(h, y)
        u_over_h = U / _b(h, U)
        if self.additive:
            return Increments(self._additive(drift, t0, h, hb, y, dW, u_over_h))
        T = _SRID2
        root = _b(h, dW).sqrt()
        i2 = (dW ** 2 - _b(h, dW)) * 0.5
        i3 = (dW ** 3 - 3 * _b(h, dW) * dW) / 6
        fs, gs, inc = [], [], 0.0
        for s in range(4):
            H0, H1 = y, y
            for j in range(s):
                if T["a0"][s][j]:
                    H0 = H0 + T["a0"][s][j] * fs[j] * hb
                if T["b0"][s][j]:
                    H0 = H0 + T["b0"][s][j] * gs[j] * u_over_h
                if T["a1"][s][j]:
                    H1 = H1 + T["a1"][s][j] * fs[j] * hb
                if T["b1"][s][j]:
                    H1 = H1 + T["b1"][s][j] * gs[j] * root
            fs.append(drift(t0 + T["c0"][s] * h, H0))
            g = self.fns.g(t0 + T["c1"][s] * h, H1)
            gs.append(g.squeeze(-1) if g.dim() == y.dim() + 1 else g)
            weight = T["beta1"][s] * dW + T["beta2"][s] * i2 / root + T["beta3"][s] * u_over_h \
                + T["beta4"][s] * i3 / _b(h, dW)
            inc = inc + T["alpha"][s] * fs[s] * hb + gs[s] * weight
        return Increments(inc)

    def _additive(self, drift, t0, h, hb, y, dW, u_over_h):
        T = _SRA1
        gp = [self.g_prod(t0 + T["c1"][j] * h, y, v) for j, v in
              ((0, T["b0"][1][0] * u_over_h), (0, T["beta1"][0] * dW + T["beta2"][0] * u_over_h),
               (1, T["beta1"][1] * dW + T["beta2"][1] * u_over_h))]
        f0 = drift(t0 + T["c0"][0] * h, y)
        f1 = drift(t0 + T["c0"][1] * h, y + T["a0"][1][0] * f0 * hb + gp[0])
        return T["alpha"][0] * f0 * hb + gp[1] + T["alpha"][1] * f1 * hb + gp[2]


class ReversibleHeun(SDEStep):
    """Reversible Heun (Stratonovich; Kidger et al. 2021) on the augmented state ``(y, z, f, g)``:
    ``z`` is its second state, ``f, g`` the drift and diffusion at ``z`` -- each step one drift
    round at the new ``z``, as torchsde reuses them. :meth:`pack` builds the augmented ``x_0``."""

    name, order, stages = "reversible_heun", 2, 1

    def __init__(self, fns, bm, options=None):
        super().__init__(fns, bm, options)
        fns.need_g(self.name)
        self.d = self.gshape = None

    def pack(self, y, f, g):
        self.d, self.gshape = y.shape[-1], tuple(g.shape[1:])
        return torch.cat([y, y, f, g.reshape(g.shape[0], -1)], -1)

    def unpack(self, x):
        d = self.d
        g = x[..., 3 * d:].reshape(*x.shape[:-1], *self.gshape)
        return x[..., :d], x[..., d:2 * d], x[..., 2 * d:3 * d], g

    def increments(self, drift, t, idx, x, prev=None):
        t0, h, dW, _ = self._common(t, idx, x)
        y, z, f0, g0 = self.unpack(x)
        hb = _b(h, y)
        z1 = 2 * y - z + f0 * hb + prod(g0, dW, self.noise_type)
        f1, g1 = drift(t0 + h, z1), self.fns.g(t0 + h, z1)
        dy = (f0 + f1) * (0.5 * hb) + prod(g0 + g1, 0.5 * dW, self.noise_type)
        return Increments(torch.cat([dy, z1 - z, f1 - f0, (g1 - g0).reshape(*dy.shape[:-1], -1)], -1))


METHODS = {"euler": Euler, "euler_heun": EulerHeun, "heun": Heun, "midpoint": Midpoint, "milstein": Milstein,
           "srk": SRK, "reversible_heun": ReversibleHeun}


def select(method, sde_type: str, noise_type: str, levy_area: str) -> type[SDEStep]:
    """The step map class of ``method`` for this SDE and Brownian motion, or a ``ValueError``
    saying why not and what would work (torchsde refuses the same combinations)."""
    if not isinstance(method, str) or method not in METHODS:
        hint = " ('adjoint_reversible_heun' and 'log_ode' are not offered)" if method in (
            "adjoint_reversible_heun", "log_ode") else ""
        raise ValueError(f"Unknown `method` {method!r}; valid: {sorted(METHODS)}{hint}. Parallel schemes go in "
                         f"options={{'scheme': ...}}.")
    sde_types, noise_types, levy = SUPPORT[method]
    works = sorted(m for m, (s, n, _) in SUPPORT.items() if sde_type in s and noise_type in n)
    if sde_type not in sde_types:
        raise ValueError(f"method {method!r} solves {'/'.join(sde_types)} SDEs, but sde.sde_type is {sde_type!r}; "
                         f"for this SDE use one of {works}.")
    if noise_type not in noise_types:
        raise ValueError(f"method {method!r} supports noise types {list(noise_types)}, but sde.noise_type is "
                         f"{noise_type!r}; for this SDE use one of {works}.")
    if levy_area not in levy:
        raise ValueError(f"method {method!r} needs a Brownian motion with levy_area_approximation in {list(levy)}; "
                         f"`bm` has {levy_area!r}. Build it with e.g. torchsde.BrownianInterval(..., "
                         f"levy_area_approximation='space-time').")
    return METHODS[method]


def strong_order(method: str, noise_type: str) -> float:
    """The strong order of ``method`` for ``noise_type`` (torchsde's table; docs/sde.md)."""
    if method in ("euler", "reversible_heun"):
        return 1.0 if noise_type == "additive" else 0.5
    if method in ("euler_heun", "heun", "midpoint"):
        return 0.5 if noise_type == "general" else 1.0
    return METHODS[method].strong_order
