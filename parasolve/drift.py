"""Turn a user's drift ``f(t, y)`` into one batched call over many time points.

``BatchedDrift(t, y)`` takes ``t`` of shape ``(n,)`` and ``y`` of shape ``(n, *state)``. A drift
written for one time point is batched with :func:`torch.func.vmap` when it can be, else by a loop
(with one warning). Every evaluation of the solve is counted per time point in ``nfe``.

The first call checks the drift's contract, so a wrong drift fails at once with a clear message
instead of converging to a wrong answer: the output's type, shape, dtype and device; that the
drift left its input ``y`` unchanged (tensor version counter); and, for ``vectorized=True``, that
each row of the output depends only on its own ``(t[i], y[i])`` -- one extra call on two points,
``(t[-1], z)`` and ``(t[0], y[0])`` with ``z != y[0]``, whose second row must equal the first
call's row 0 (``CHECK_POINTS`` evaluations in one call through the evaluator, not counted in the
stats; a drift can tell it apart with :func:`~parasolve.evaluators.in_contract_check`). A first
call at a single time checks the rows at that time, and the first later call at two times once
more. Later calls skip all of it.
"""

from __future__ import annotations

import numbers
from typing import Callable

import torch

from .capabilities import compute_dtype
from .errors import warn
from .evaluators.protocol import CHECKING as _CHECKING, EvaluatorError, local_evaluator
from .evaluators.protocol import in_contract_check  # noqa: F401  (re-exported: drift authors' name for it)

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
        if evaluator is not None and not callable(evaluator):
            raise TypeError(f"`evaluator` must be callable as evaluator(fn, t, y) -> fn(t, y) (e.g. "
                            f"parasolve.evaluators.ChunkedEvaluator(...)) or None; got {type(evaluator).__name__}.")
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
        self._times_pending = False  # the row check waits for a call at two times
        self._vmapped = None

    #: Drift evaluations of the first call's row-independence check (vectorized drifts only).
    CHECK_POINTS = 2

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = t.shape[0]
        version = None if self._checked else _version(y)
        if self.mode is None:
            try:
                out = self.evaluator(torch.func.vmap(self._point), t, y)
                self.mode = "vmap"
            except EvaluatorError:  # the evaluator failed, not vmap: no fallback hides that
                raise
            except Exception as exc:  # vmap does not support every op: fall back once, say so once.
                self.mode = "loop"
                out = self.evaluator(self._loop, t, y)  # a drift that fails here too raises its own error
                warn(f"parasolve: `{self.name}` could not be batched with torch.func.vmap "
                     f"({type(exc).__name__}: {exc}); evaluating time points in a loop. "
                     f"Pass vectorized=True with a batched `{self.name}` for speed.",
                     RuntimeWarning)
        elif n == 1 and self.mode == "vmap":  # one point: the plain call, without vmap's overhead
            out = self.evaluator(self._single, t, y)
        else:
            out = self.evaluator(self.batched, t, y)
        if self.broadcast:
            out = self._spread(out, n)
        if not self._checked:
            out = self._check(out, n)
            if version is not None and _version(y) != version:
                raise ValueError(
                    f"`{self.name}` modified its input `y` in place (an in-place op such as y += ..., "
                    f"y.mul_(...) or y[0] = ...); the schemes pass their iterate itself, so the solve "
                    f"would differ from method to method. Return a new tensor instead "
                    f"(e.g. y * 2 rather than y.mul_(2), or work on y.clone()).")
            if self.mode == "vectorized":
                self._check_rows(t, y, out)
        elif self._times_pending and n > 1 and bool(t[-1] != t[0]):  # the other time, once one comes
            self._check_rows(t, y, out)
        if self.broadcast and out.shape[1:] != self.state_shape:
            lead = (1,) * (len(self.state_shape) - (out.dim() - 1))
            out = out.reshape(n, *lead, *out.shape[1:]).expand(n, *self.state_shape)
        self.nfe += n
        self.calls += 1
        return out

    @property
    def batched(self):
        """``f`` as a batched callable in the resolved mode."""
        if self.mode == "vmap":
            if self._vmapped is None:
                self._vmapped = torch.func.vmap(self._point)
            return self._vmapped
        return self.f if self.mode == "vectorized" else self._loop

    def _point(self, t, y):
        return self._tensor(self.f(t, y))

    def _single(self, t, y):
        return self._point(t[0], y[0])[None]

    def _loop(self, t, y):
        return torch.stack([self._point(t[i], y[i]) for i in range(t.shape[0])])

    def _tensor(self, value):
        """``value`` as a tensor: a Python number only where outputs broadcast (``g``), in y0's dtype."""
        if isinstance(value, torch.Tensor):
            return value
        if self.broadcast and isinstance(value, numbers.Real) and not isinstance(value, bool):
            return torch.tensor(value, dtype=self.dtype, device=self.device)
        scalar = " or a Python number" if self.broadcast else ""
        raise TypeError(f"`{self.name}` must return a torch.Tensor{scalar}; got {type(value).__name__}"
                        f"{' (did it forget a return statement?)' if value is None else ''}.")

    def _spread(self, out, n):
        """A broadcasting output (``g``) that is one number for the whole batch, as one per point."""
        out = self._tensor(out)
        return out.expand(n) if out.dim() == 0 and self.mode == "vectorized" else out

    def _check(self, out, n):
        """Validate the first output; returns it (a number or 0-d tensor of ``g`` spread over the batch)."""
        name, shape = self.name, self.state_shape
        out = self._tensor(out)
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
        return out

    def _check_rows(self, t, y, out):
        """A vectorized drift's rows must not depend on each other: re-evaluate ``(t[0], y[0])`` in
        a batch with a different first row and compare with row 0 of the first call."""
        z = _other_state(y[0])
        # Another time too, from the call itself: a time off the caller's grid may be off the
        # drift's domain (a diffusion model's timestep table). A first call at one time checks the
        # state alone, and the first later call at two times checks again.
        distinct = t.shape[0] > 1 and bool(t[-1] != t[0])
        self._times_pending = not distinct
        tz = t[-1] if distinct else t[0]
        token = _CHECKING.set(True)
        try:  # through the evaluator, as every call: its timeout (a DeviceEvaluator's) covers this one too
            got = self._spread(self.evaluator(self.f, torch.stack([tz, t[0]]), torch.stack([z, y[0]])), 2)[1]
        except EvaluatorError:  # the evaluator failed (a hang, a dead worker): never a mere warning
            raise
        except Exception as exc:  # noqa: BLE001 -- the check must not turn a working solve into a failure
            warn(f"parasolve: could not check that the vectorized `{self.name}` treats the rows "
                 f"of a batch independently: a call on 2 time points raised "
                 f"{type(exc).__name__}: {exc}", RuntimeWarning)
            return
        finally:
            _CHECKING.reset(token)
        want = out[0]
        finite = torch.isfinite(want)
        if got.shape != want.shape or not torch.equal(torch.isfinite(got), finite):
            gap = float("inf")
        else:  # entries non-finite in both are left to the NaN/Inf check of the schemes
            gap = float((got - want)[finite].abs().max()) if bool(finite.any()) else 0.0
        scale = float(want[finite].abs().max()) if bool(finite.any()) else 0.0
        if not gap <= row_tolerance(want, self.f) * scale:
            raise ValueError(
                f"`{self.name}` was passed with vectorized=True, but its output for one time point "
                f"depends on the other points of the batch: {self.name}(t[0], y[0]) changed by {gap:.3g} "
                f"(largest entry {scale:.3g}) when evaluated next to a different point. A vectorized `{self.name}` takes t of shape (n,) "
                f"and y of shape (n, *y0.shape) and must treat each row y[i] (at t[i]) on its own. "
                f"If `{self.name}` is written for one time point (e.g. it indexes y[0] for the first "
                f"state entry, or uses t as a scalar), drop vectorized=True and parasolve batches it "
                f"with torch.func.vmap.")


def row_tolerance(out: torch.Tensor, f) -> float:
    """Relative difference of a row between two batches that the row check takes for round-off:
    ``sqrt(eps)`` of the precision ``f`` computes in -- the ``compute_dtype`` it declares
    (:class:`parasolve.capabilities.ComputesIn`) (a diffusion model running in 16 bits on float32 states), TF32's for float32 on CUDA
    where torch allows TF32 (kernels then differ by batch size at that precision), else the
    output's dtype. Rows that depend on each other differ by far more (the check's purpose)."""
    real = out.real.dtype if out.is_complex() else out.dtype
    eps = torch.finfo(real).eps
    compute = compute_dtype(f)
    if isinstance(compute, torch.dtype) and compute.is_floating_point:
        eps = max(eps, torch.finfo(compute).eps)
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    if out.is_cuda and real == torch.float32 and tf32:
        eps = max(eps, 2.0 ** -10)  # TF32 keeps 10 mantissa bits
    return eps ** 0.5


def _version(y: torch.Tensor):
    """The version counter of ``y`` (bumped by in-place writes), or None where it has none."""
    try:
        return y._version
    except (AttributeError, RuntimeError):  # inference-mode tensors do not track versions
        return None


def _other_state(y: torch.Tensor) -> torch.Tensor:
    """A state unequal to ``y`` built from its own values (reversed, halved, or shifted)."""
    for z in (y.flip(tuple(range(y.dim()))) if y.dim() else y, 0.5 * y, y + 0.5):
        if not torch.equal(z, y):
            return z
    return y + 1


def _broadcasts(shape, target) -> bool:
    try:
        return torch.broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except RuntimeError:
        return False
