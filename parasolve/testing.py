"""Property-test your drift, step map or scheme the way parasolve tests its own.

Two parts:

* **Hypothesis strategies** (need ``hypothesis``, in the ``dev`` extra) for problems whose constants
  are known: :func:`linear_drifts` (``f = A y`` with ``||A||_inf = L``), :func:`tanh_drifts`
  (``f = W2 tanh(W1 y + b + c t) + d`` with ``||W2||_inf ||W1||_inf <= L``), :func:`drifts` (either),
  :func:`grids` (random non-uniform, increasing or decreasing), :func:`windows`, :func:`tolerances`,
  :func:`states`. Every drift carries ``.lipschitz`` (in the max-norm, the norm of parasolve's
  stop rule) and works per point, batched by vmap, or with ``vectorized=True``.
* **Assertions**: :func:`assert_near_sequential` (a solve you ran is within ``S * defect_sum`` of
  the sequential solve you ran: the one place that states the tolerance bound),
  :func:`assert_matches_sequential` (runs both solves, then checks the same bound),
  :func:`assert_within_bound` (a measured error is below a bound, pointwise),
  :func:`assert_exact_prefix` (the first ``k`` points equal the sequential ones), with
  :func:`picard_iterate` (the iterate after exactly ``k`` sweeps, by default of
  :class:`PlainPicard`, the unguarded iteration the bounds describe) and :func:`roundoff` (the
  justified float slack).

Example -- a user's scheme ``MyScheme`` must match the sequential solution on random problems::

    import torch
    from hypothesis import given, settings
    from parasolve import testing as pt

    @settings(max_examples=25, deadline=None)
    @given(pt.drifts(max_lipschitz=2.0), pt.grids(max_steps=30), pt.windows(), pt.tolerances())
    def test_my_scheme(f, t, window, tol):
        y0 = torch.ones(f.dim, dtype=torch.float64)
        pt.assert_matches_sequential(f, y0, t, method=MyScheme(), window=window, tol=tol,
                                     lipschitz=f.lipschitz)

and the bounds of ``theory/`` (see docs/theory.md) are checked the same way, e.g.::

    sol = pt.picard_iterate(f, y0, t, k)
    pt.assert_within_bound(error_per_point, theory.discrete.bound(ell, k, e0), slack=pt.roundoff(...))
"""

from __future__ import annotations

import math

import torch

import parasolve
from parasolve._checks import check_choice, check_positive_int
from parasolve.conformance import (CountingDrift, CountingEvaluator, check_scheme, check_step_map,
                                   parametrize_with_checks, scheme_checks, step_map_checks)
from parasolve.schemes import Picard
from parasolve.schemes.base import per_step
from parasolve.solution import Solution

__all__ = ["check_step_map", "check_scheme", "step_map_checks", "scheme_checks", "parametrize_with_checks", "CountingDrift", "CountingEvaluator", "LinearDrift", "TanhDrift", "linear_drifts", "tanh_drifts", "drifts", "grids", "windows",
           "tolerances", "states", "sequential", "PlainPicard", "picard_iterate", "roundoff", "max_error",
           "assert_near_sequential", "assert_matches_sequential", "assert_within_bound", "assert_exact_prefix"]

_EPS = {torch.float64: 2.0 ** -52, torch.float32: 2.0 ** -23, torch.float16: 2.0 ** -10,
        torch.bfloat16: 2.0 ** -7}


# --------------------------------------------------------------------------- drifts with known constants

class LinearDrift:
    """``f(t, y) = A y``; ``lipschitz = ||A||_inf`` (max row sum), exact in the max-norm."""

    def __init__(self, A: torch.Tensor):
        if not isinstance(A, torch.Tensor) or A.dim() != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"`A` must be a square torch.Tensor; got {getattr(A, 'shape', type(A))}.")
        self.A = A
        self.dim = A.shape[0]
        self.lipschitz = float(torch.linalg.matrix_norm(A, ord=float("inf")))

    def __call__(self, t, y):
        return y @ self.A.T  # y: (d,) per point, or (n, d) batched

    def __repr__(self) -> str:
        return f"LinearDrift(dim={self.dim}, lipschitz={self.lipschitz:.4g})"


class TanhDrift:
    """``f(t, y) = W2 tanh(W1 y + b + c t) + d``; ``lipschitz = ||W2||_inf ||W1||_inf`` (``tanh' <= 1``)."""

    def __init__(self, W1, b, c, W2, d):
        self.W1, self.b, self.c, self.W2, self.d = W1, b, c, W2, d
        self.dim = W1.shape[1]
        inf = float("inf")
        self.lipschitz = float(torch.linalg.matrix_norm(W2, ord=inf) * torch.linalg.matrix_norm(W1, ord=inf))

    def __call__(self, t, y):
        t = torch.as_tensor(t, dtype=y.dtype)
        pre = y @ self.W1.T + self.b + t[..., None] * self.c
        return torch.tanh(pre) @ self.W2.T + self.d

    def __repr__(self) -> str:
        return f"TanhDrift(dim={self.dim}, width={self.W1.shape[0]}, lipschitz={self.lipschitz:.4g})"


def _hypothesis():
    try:
        from hypothesis import strategies as st
    except ImportError as exc:
        raise ImportError("parasolve.testing's strategies need hypothesis: pip install 'parasolve[dev]' "
                          "(or pip install hypothesis).") from exc
    return st


def _generator(draw, st):
    return torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1)))


def _scaled(M: torch.Tensor, norm: float) -> torch.Tensor:
    """``M`` rescaled to max-norm ``norm`` (a zero matrix stays zero)."""
    current = torch.linalg.matrix_norm(M, ord=float("inf"))
    return M * (norm / current) if current > 0 else M


def linear_drifts(dim=None, max_lipschitz: float = 3.0, min_lipschitz: float = 0.0,
                  dtype=torch.float64, nonnegative: bool = False):
    """Strategy: :class:`LinearDrift` with ``||A||_inf`` drawn in ``[min_lipschitz, max_lipschitz]``.

    ``dim``: an int or a strategy of ints (default 1..4). ``nonnegative=True`` draws ``A >= 0``
    entrywise (then Picard errors keep one sign and the bounds of ``theory`` are attained).
    """
    st = _hypothesis()
    dims = _ints(st, dim, 1, 4)

    @st.composite
    def build(draw):
        d = draw(dims)
        L = draw(st.floats(min_lipschitz, max_lipschitz, allow_nan=False))
        A = torch.randn(d, d, dtype=torch.float64, generator=_generator(draw, st))
        A = A.abs() if nonnegative else A
        return LinearDrift(_scaled(A, L).to(dtype))

    return build()


def tanh_drifts(dim=None, width=None, max_lipschitz: float = 3.0, min_lipschitz: float = 0.0,
                dtype=torch.float64):
    """Strategy: :class:`TanhDrift` whose bound ``||W2||_inf ||W1||_inf`` is drawn in the range."""
    st = _hypothesis()
    dims, widths = _ints(st, dim, 1, 4), _ints(st, width, 1, 8)

    @st.composite
    def build(draw):
        d, w = draw(dims), draw(widths)
        L = draw(st.floats(min_lipschitz, max_lipschitz, allow_nan=False))
        gen = _generator(draw, st)
        rand = lambda *shape: torch.randn(*shape, dtype=torch.float64, generator=gen)  # noqa: E731
        W1 = _scaled(rand(w, d), 1.0)
        W2 = _scaled(rand(d, w), L)
        parts = (W1, rand(w), rand(w), W2, rand(d))
        return TanhDrift(*(p.to(dtype) for p in parts))

    return build()


def drifts(dim=None, max_lipschitz: float = 3.0, min_lipschitz: float = 0.0, dtype=torch.float64):
    """Strategy: a linear or a tanh-layer drift with known ``.lipschitz``."""
    st = _hypothesis()
    return st.one_of(linear_drifts(dim, max_lipschitz, min_lipschitz, dtype),
                     tanh_drifts(dim, None, max_lipschitz, min_lipschitz, dtype))


def grids(min_steps: int = 1, max_steps: int = 40, span=(0.1, 2.0), direction: str = "any",
          uniform: bool | None = None, dtype=torch.float64):
    """Strategy: a strictly monotone 1-D grid of ``min_steps..max_steps`` steps of total length in ``span``.

    ``direction``: ``"increasing"``, ``"decreasing"`` or ``"any"``; ``uniform``: equal steps (True),
    random positive step lengths within a factor 6 of each other (False) or either (None).
    """
    st = _hypothesis()
    check_choice("direction", direction, ("any", "increasing", "decreasing"))
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps; got {min_steps}, {max_steps}.")

    @st.composite
    def build(draw):
        n = draw(st.integers(min_steps, max_steps))
        T = draw(st.floats(*span, allow_nan=False))
        t0 = draw(st.floats(-1.0, 1.0, allow_nan=False))
        even = draw(st.booleans()) if uniform is None else uniform
        steps = torch.ones(n, dtype=torch.float64)
        if not even:
            steps = torch.rand(n, dtype=torch.float64, generator=_generator(draw, st)) + 0.2
        t = t0 + torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(steps, 0)]) * (T / steps.sum())
        down = direction == "decreasing" or (direction == "any" and draw(st.booleans()))
        return (t.flip(0) if down else t).to(dtype)

    return build()


def windows(max_window: int = 64, allow_none: bool = True):
    """Strategy: a ``window=`` argument: ``None`` (the whole grid) or ``1..max_window``."""
    st = _hypothesis()
    sizes = st.integers(1, max_window)
    return st.one_of(st.none(), sizes) if allow_none else sizes


def tolerances(low: float = 1e-12, high: float = 1e-3, zero: bool = True):
    """Strategy: ``tol`` log-uniform in ``[low, high]``, and 0 when ``zero`` (one exact step per sweep)."""
    st = _hypothesis()
    if not 0 < low <= high:
        raise ValueError(f"need 0 < low <= high; got {low}, {high}.")
    logs = st.floats(math.log10(low), math.log10(high), allow_nan=False).map(lambda x: 10.0 ** x)
    return st.one_of(st.just(0.0), logs) if zero else logs


def states(dim: int, scale: float = 1.0, dtype=torch.float64):
    """Strategy: an initial state of shape ``(dim,)`` with entries in ``[-scale, scale]``."""
    st = _hypothesis()
    return st.lists(st.floats(-scale, scale, allow_nan=False), min_size=dim, max_size=dim).map(
        lambda v: torch.tensor(v, dtype=dtype))


def _ints(st, value, lo, hi):
    if value is None:
        return st.integers(lo, hi)
    if isinstance(value, int):
        return st.just(value)
    return value


# --------------------------------------------------------------------------- running and measuring

def sequential(f, y0, t, **solve_kwargs):
    """The reference: the same discrete problem solved step after step."""
    kwargs = {k: v for k, v in solve_kwargs.items() if k not in ("window", "tol", "max_iters", "options", "init")}
    kwargs.update(method="sequential")
    return parasolve.solve(f, y0, t, **kwargs)


class PlainPicard(Picard):
    """Picard without the divergence guard: the iteration whose rates ``theory/`` bounds.

    ``method="picard"`` restarts slots whose defect dwarfs the accepted increments
    (``divergence_ratio``); that keeps exactness, the ``N``-sweep limit and the meaning of ``tol``,
    but the restarted iterate is no longer the Picard iterate, so the error-per-sweep bounds of
    ``theory.discrete``/``theory.window`` apply to this class (docs/theory.md).
    """

    divergence_ratio = None


def picard_iterate(f, y0, t, k: int, **solve_kwargs):
    """The trajectory after exactly ``k`` sweeps (``tol=0``, ``max_iters=k``, ``throw=False``).

    With ``tol=0`` a sweep accepts only exactly-zero defects, so (generically) it advances one exact
    step: the first ``k`` points are the sequential ones, the rest the current Picard iterate
    (slots past a window hold the window's last state). ``sol.stats.history`` shows each advance.
    ``method`` defaults to :class:`PlainPicard`; pass your own scheme to iterate it instead.
    """
    check_positive_int("k", k, fix="It counts the sweeps to run.")
    kwargs = dict(solve_kwargs, tol=0.0, max_iters=k, throw=False)
    kwargs.setdefault("method", PlainPicard())
    return parasolve.solve(f, y0, t, **kwargs)


def max_error(ys: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Max-norm error per grid point, shape ``(len(t),)``, in float64 (complex states: the modulus)."""
    wide = torch.complex128 if ys.is_complex() or reference.is_complex() else torch.float64
    return per_step(ys.to(wide) - reference.to(wide)).abs().amax(1).double()


def roundoff(reference: torch.Tensor, n_steps: int, stability: float = 1.0, units: float = 64.0) -> float:
    """Float slack for comparing two computations of the same discrete trajectory.

    Each of the ``N`` steps of either computation commits a rounding error of a few units of
    ``eps * max|x|`` (the addition, the drift's dot products, a cumulative sum in another order);
    the stability argument of ``theory.tolerance`` carries per-step errors to the trajectory with
    factor ``S``. So ``units * eps * N * S * max|x|`` (``units = 64`` covers ~8-term dot products
    with margin) bounds the difference of two correctly computed answers; a bug costs far more.
    """
    eps = _EPS.get(reference.dtype, 2.0 ** -52)
    scale = max(1.0, float(reference.abs().max()))  # (complex states: the modulus)
    return units * eps * max(1, n_steps) * stability * scale


# --------------------------------------------------------------------------- assertions

def assert_within_bound(measured, bound, *, slack: float = 0.0, what: str = "error"):
    """Assert ``measured <= bound + slack`` elementwise (arrays or numbers), naming the worst point."""
    m = torch.as_tensor(measured, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(bound, dtype=torch.float64).reshape(-1)
    b = b.expand_as(m) if b.numel() == 1 else b
    if b.shape != m.shape:
        raise ValueError(f"`measured` and `bound` must have the same number of entries; got {m.numel()} "
                         f"and {b.numel()}.")
    excess = m - (b + slack)
    worst = int(torch.argmax(excess))
    if excess[worst] > 0 or not torch.isfinite(m).all():
        raise AssertionError(f"{what} exceeds its bound at index {worst}: measured {float(m[worst]):.6e} > "
                             f"bound {float(b[worst]):.6e} + slack {slack:.3e}")


def assert_exact_prefix(ys: torch.Tensor, reference: torch.Tensor, k: int, *, atol: float = 0.0):
    """Assert the first ``k`` steps (points ``0..k``) equal the reference within ``atol`` (0: bitwise)."""
    err = max_error(ys[:k + 1], reference[:k + 1])
    if err.numel() and float(err.max()) > atol:
        bad = int(torch.nonzero(err > atol)[0])
        raise AssertionError(f"point {bad} of the first {k} steps differs from the reference by "
                             f"{float(err[bad]):.3e} > {atol:.3e}")


def _solution_of(result, name: str) -> Solution:
    """The :class:`~parasolve.Solution` of ``result``: itself, or what it holds as ``.solution``."""
    inner = result if isinstance(result, Solution) else getattr(result, "solution", None)
    if not isinstance(inner, Solution):
        raise TypeError(f"`{name}` must be a parasolve.Solution or hold one as `.solution` (a diffusion "
                        f"SampleOutput); got {type(result).__name__}.")
    return inner


def assert_near_sequential(sol, ref, *, stability: float = 1.0, tol: float | None = None,
                           slack: float | None = None, atol: float | None = None, weighted: bool = False) -> float:
    """Assert the converged solve ``sol`` is the sequential solve ``ref`` up to the tolerance bound.

    The bound (docs/tolerance.md): ``max|x - x_seq| <= S * defect_sum + slack`` with ``S =
    stability`` and ``slack`` the float slack (default :func:`roundoff`); ``weighted=True`` uses
    ``weighted_defect_sum``, the certificate of a map that declares gains (it carries the factors,
    so ``S`` stays 1). With ``tol``: the sum is at most ``tol`` too, and the allowed gap at most
    ``S * tol`` (never looser than ``tol``'s promise). ``atol``: a fixed allowed gap instead (for
    a comparison whose bound the caller argues itself, e.g. a warm start from the answer).
    ``sol``/``ref``: :class:`~parasolve.Solution` or anything holding one as ``.solution`` (a
    diffusion ``SampleOutput``) saving the same points, or ``sol`` only the last of ``ref``'s
    (``save="last"`` against ``save="all"``). Returns the gap.
    """
    sol, ref = _solution_of(sol, "sol"), _solution_of(ref, "ref")
    if not sol.converged:
        raise AssertionError(f"solve did not converge: {sol.message}")
    ref_ys = ref.ys
    if len(sol.ts) == 1 < len(ref.ts) and bool(sol.ts[0] == ref.ts[-1]):
        ref_ys = ref.ys[-1:]  # sol saved the last point only: compare it with ref's last
    if sol.ys.shape != ref_ys.shape:
        raise ValueError(f"`sol` and `ref` must save the same points (or `sol` the last of `ref`'s); got shapes "
                         f"{tuple(sol.ys.shape)} and {tuple(ref.ys.shape)} (pass the same `save=`).")
    reached = sol.stats.weighted_defect_sum if weighted else sol.stats.defect_sum
    if tol is not None and reached > tol * (1 + 1e-12):
        raise AssertionError(f"accepted defects sum to {reached:.3e} > tol = {tol:.3e}")
    if atol is None:
        slack = roundoff(ref.ys, ref.stats.iterations, stability) if slack is None else slack  # one per step
        atol = stability * reached + slack
        if tol is not None:
            atol = min(atol, stability * tol)
    gap = float(max_error(sol.ys, ref_ys).max())
    if not gap <= atol:
        raise AssertionError(f"max|x - x_sequential| = {gap:.3e} > allowed {atol:.3e} "
                             f"({'weighted_' * weighted}defect_sum {reached:.3e}, stability {stability:.3g}, "
                             f"{sol.stats.iterations} sweeps)")
    return gap


def assert_matches_sequential(f, y0, t, *, atol: float | None = None, lipschitz: float | None = None,
                              stability: float | None = None, **solve_kwargs):
    """Solve with ``solve_kwargs`` and the sequential loop, and assert they agree up to ``tol``'s guarantee.

    Checks: the solve converged in at most ``N`` sweeps, its accepted defects sum to at most
    ``tol``, and :func:`assert_near_sequential` with ``S = stability``, or ``exp(L |T|)`` from
    ``lipschitz`` (``exp(2 L |T|)`` for the two-step ``ab2``), unless ``atol`` is given.
    Returns ``(solution, sequential_solution)``.
    """
    if atol is None and lipschitz is None and stability is None:
        raise ValueError("assert_matches_sequential needs `atol`, `stability` (S) or `lipschitz` (L) "
                         "to know how close the answer must be.")
    sol = parasolve.solve(f, y0, t, **solve_kwargs)
    ref = sequential(f, y0, t, **solve_kwargs)
    n = len(t) - 1
    if not sol.converged:
        raise AssertionError(f"solve did not converge: {sol.message}")
    if not 1 <= sol.stats.iterations <= n:
        raise AssertionError(f"{sol.stats.iterations} sweeps for {n} steps: must be in 1..{n}")
    tol = solve_kwargs.get("tol")
    if tol is not None and sol.stats.defect_sum > tol * (1 + 1e-12):
        raise AssertionError(f"accepted defects sum to {sol.stats.defect_sum:.3e} > tol = {tol:.3e}")
    if atol is None and stability is None:
        two_step = solve_kwargs.get("step") == "ab2"
        span = abs(float(t[-1] - t[0]))
        stability = math.exp((2 if two_step else 1) * lipschitz * span)
    assert_near_sequential(sol, ref, stability=1.0 if stability is None else stability, atol=atol)
    return sol, ref
