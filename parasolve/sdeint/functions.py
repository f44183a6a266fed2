"""The user's SDE object (torchsde's conventions) as calls batched over time points.

torchsde calls ``sde.f(t, y)`` with a 0-d ``t`` and ``y`` of shape ``(batch, d)``; a parallel
sweep evaluates many time points at once, so every method here takes ``t`` of shape ``(n,)`` and
``y`` of shape ``(n, batch, d)`` and returns ``(n, ...)``: one direct call when ``n == 1`` (the
sequential loop pays no batching overhead), else :func:`torch.func.vmap` over the time axis, or a
loop where vmap fails (one warning).
"""

from __future__ import annotations

import warnings

import torch

NOISE_TYPES = ("diagonal", "additive", "scalar", "general")
SDE_TYPES = ("ito", "stratonovich")
_RENAMABLE = {"drift": "f", "diffusion": "g", "prior_drift": "h", "diffusion_prod": "g_prod",
              "drift_and_diffusion": "f_and_g"}


class TimeBatched:
    """``fn(t, y, *args)`` of one time point, called on ``n`` of them; counts ``calls`` and ``points``."""

    def __init__(self, fn, name: str):
        self.fn, self.name, self.mode = fn, name, "vmap"
        self.calls = self.points = 0

    def __call__(self, t, y, *args):
        n = t.shape[0]
        self.calls += 1
        self.points += n
        if n == 1:
            return _lead(self.fn(t[0], y[0], *(a[0] for a in args)))
        if self.mode == "vmap":
            try:
                return torch.func.vmap(self.fn)(t, y, *args)
            except Exception as exc:  # noqa: BLE001 -- vmap lacks a rule: loop from now on, say so once
                self.mode = "loop"
                warnings.warn(f"parasolve.sdeint: `sde.{self.name}` could not be batched over time points with "
                              f"torch.func.vmap ({type(exc).__name__}: {exc}); evaluating them in a loop.",
                              RuntimeWarning, stacklevel=4)
        outs = [self.fn(t[i], y[i], *(a[i] for a in args)) for i in range(n)]
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(parts) for parts in zip(*outs))
        return torch.stack(outs)


def _lead(out):
    return tuple(o[None] for o in out) if isinstance(out, tuple) else out[None]


def prod(g: torch.Tensor, v: torch.Tensor, noise_type: str) -> torch.Tensor:
    """The diffusion applied to the Brownian quantity ``v``: ``g * v`` for diagonal noise, the
    matrix-vector product over the last axis otherwise (``g`` of shape ``(..., d, m)``)."""
    if noise_type == "diagonal":
        return g * v
    return (g @ v.unsqueeze(-1)).squeeze(-1)


class SDEFunctions:
    """What the step maps call: ``f``, ``g``, ``g_prod`` batched over time points, with the
    SDE's ``noise_type`` and ``sde_type``; with ``logqp`` the state carries one more column, the
    running ``0.5 * |(f - h) / g|^2`` of a latent SDE (``h`` the prior drift)."""

    def __init__(self, sde, names=None, logqp: bool = False):
        sde = _renamed(sde, names)
        self.sde = sde
        self.noise_type, self.sde_type = sde.noise_type, sde.sde_type
        self.logqp = logqp
        has = {name: callable(getattr(sde, name, None)) for name in ("f", "g", "h", "g_prod", "f_and_g")}
        if not (has["f"] or has["f_and_g"]):
            raise TypeError("`sde` must define `f(t, y)` (the drift) or `f_and_g(t, y)`; pass `names={'drift': "
                            "...}` if it is called otherwise.")
        if not (has["g"] or has["f_and_g"] or has["g_prod"]):
            raise TypeError("`sde` must define `g(t, y)` (the diffusion), `f_and_g(t, y)` or `g_prod(t, y, v)`; "
                            "pass `names={'diffusion': ...}` if it is called otherwise.")
        if logqp and not (has["f"] and has["g"] and has["h"]):
            raise TypeError("logqp=True needs `sde.f`, `sde.g` and `sde.h` (the prior drift), each defined; "
                            f"missing: {[k for k in ('f', 'g', 'h') if not has[k]]}.")
        one_f = sde.f if has["f"] else (lambda t, y: sde.f_and_g(t, y)[0])
        one_g = sde.g if has["g"] else (lambda t, y: sde.f_and_g(t, y)[1]) if has["f_and_g"] else None
        if logqp:
            one_f, one_g = self._logqp_f(sde), self._logqp_g(sde)
        self.has_g = one_g is not None
        self.one_f, self.one_g = one_f, one_g
        self.g = TimeBatched(one_g, "g") if one_g is not None else None
        user_prod = has["g_prod"] and not logqp
        self._g_prod = TimeBatched(sde.g_prod, "g_prod") if user_prod else None

    def g_prod(self, t, y, v):
        """``g(t, y) v`` batched over time points (the SDE's own ``g_prod`` where it has one)."""
        if self._g_prod is not None:
            return self._g_prod(t, y, v)
        return prod(self.g(t, y), v, self.noise_type)

    def need_g(self, method: str):
        if self.g is None:
            raise TypeError(f"method {method!r} needs the diffusion matrix itself: define `sde.g(t, y)` or "
                            f"`sde.f_and_g(t, y)`, not only `g_prod`.")

    @property
    def g_counts(self) -> tuple[int, int]:
        """Batched calls and time points of ``g`` and ``g_prod`` so far."""
        parts = [p for p in (self.g, self._g_prod) if p is not None]
        return sum(p.calls for p in parts), sum(p.points for p in parts)

    def _logqp_f(self, sde):
        diagonal = self.noise_type == "diagonal"

        def f(t, y):
            x = y[..., :-1]
            drift, diffusion, prior = sde.f(t, x), sde.g(t, x), sde.h(t, x)
            if diagonal:
                safe = torch.where(diffusion.abs().detach() > 1e-7, diffusion,
                                   torch.full_like(diffusion, 1e-7) * diffusion.sign())
                u = (drift - prior) / safe
            else:  # the least-squares u with g u = f - h
                u = (torch.linalg.pinv(diffusion) @ (drift - prior).unsqueeze(-1)).squeeze(-1)
            return torch.cat([drift, 0.5 * (u ** 2).sum(-1, keepdim=True)], -1)
        return f

    def _logqp_g(self, sde):
        diagonal = self.noise_type == "diagonal"

        def g(t, y):
            diffusion = sde.g(t, y[..., :-1])
            pad = diffusion.new_zeros(*diffusion.shape[:-1], 1) if diagonal else \
                diffusion.new_zeros(*diffusion.shape[:-2], 1, diffusion.shape[-1])
            return torch.cat([diffusion, pad], -2 if not diagonal else -1)
        return g


def _renamed(sde, names):
    """``sde`` with the methods named in ``names`` (torchsde's keys: ``drift``, ``diffusion``,
    ``prior_drift``, ``diffusion_prod``, ``drift_and_diffusion``) under their standard names."""
    if names is None:
        return sde
    if not isinstance(names, dict):
        raise TypeError(f"`names` must be a dict like {{'drift': 'f_name'}}; got {type(names).__name__}.")
    bad = sorted(set(names) - set(_RENAMABLE))
    if bad:
        raise ValueError(f"Unknown keys {bad} in `names`; valid: {sorted(_RENAMABLE)}.")
    view = _Renamed(sde)
    for key, attr in names.items():
        if not callable(getattr(sde, attr, None)):
            raise TypeError(f"names[{key!r}] = {attr!r}, but `sde` has no method {attr!r}.")
        setattr(view, _RENAMABLE[key], getattr(sde, attr))
    return view


class _Renamed:
    """A view of an SDE whose methods go by other names."""

    def __init__(self, sde):
        self.base, self.noise_type, self.sde_type = sde, sde.noise_type, sde.sde_type
        for name in ("f", "g", "h", "g_prod", "f_and_g"):
            if callable(getattr(sde, name, None)):
                setattr(self, name, getattr(sde, name))
