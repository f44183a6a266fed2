"""The three solvers of ``bench_suite.py`` behind one call, a drift counter and a memory probe.

``make_run(name, row, problem, f, force, info)`` returns a function of no arguments that solves
the row once and returns its answer: the states at ``problem.t`` (shape ``(len(t), *y0.shape)``)
or, for a training row, the loss's parameter gradient. ``force``: ``None`` (parasolve's defaults)
or ``(scheme, scheme_options)``.

torchode is a benchmark-only dependency (the batch-parallel PyTorch solver the issue compares
against): it is not in pyproject's dependencies; without it its columns say "not installed".
"""

from __future__ import annotations

import ctypes
import gc
import re

import torch
import torchdiffeq

import parasolve
from suite_rows import loss, train_target

try:
    import torchode
except ImportError:  # the suite runs without it and says so
    torchode = None

_functorch = torch._C._functorch


class Counter:
    """Counts the drift's calls (sequential rounds) and the states it evaluates (points).

    Inside ``vmap`` (and ``torch.func`` transforms) a call sees one state; the points are read
    from the unwrapped tensor: its size over ``y0.numel()``. Tangents of forward-mode probes
    are not states and are not counted.
    """

    def __init__(self, numel: int):
        self.numel = numel
        self.calls = 0
        self.points = 0.0

    def reset(self) -> None:
        self.calls, self.points = 0, 0.0

    def count(self, y: torch.Tensor) -> None:
        while _functorch.is_functorch_wrapped_tensor(y):
            y = _functorch.get_unwrapped(y)
        self.calls += 1
        self.points += y.numel() / self.numel


class CountedModule(torch.nn.Module):
    """An ``nn.Module`` drift with a counter (a module, so solvers still find its parameters)."""

    def __init__(self, inner: torch.nn.Module, counter: Counter):
        super().__init__()
        self.inner = inner
        self.counter = counter

    def forward(self, t, y):
        self.counter.count(y)
        return self.inner(t, y)


def counted(f, counter: Counter):
    """``f`` wrapped so that every call is counted."""
    if isinstance(f, torch.nn.Module):
        return CountedModule(f, counter)

    def g(t, y):
        counter.count(y)
        return f(t, y)
    return g


def _forward_parasolve(row, problem, f, force, info):
    scheme, scheme_options = force or (None, None)
    options = None
    if force:
        options = {"scheme": scheme, **({"scheme_options": scheme_options} if scheme_options else {})}
    method = {} if row.steps is None else {"method": "rk4"}  # fixed grids: torchdiffeq's call, its rk4 (3/8)
    tol = {} if row.rtol is None else {"rtol": row.rtol, "atol": row.atol}
    res = parasolve.odeint(f, problem.y0, problem.t, options=options, full_output=True, **tol, **method)
    info["stats"] = _stats(res.stats, accepted_steps="steps", passes="passes", sweeps="sweeps",
                           drift_rounds="rounds", nfe="nfe")
    return res.ys


def _stats(stats, **names) -> str:
    """parasolve's own counts for the details table (fields it no longer has are left out)."""
    return " ".join(f"{label}={getattr(stats, field)}" for field, label in names.items() if hasattr(stats, field))


def _forward_torchdiffeq(row, problem, f, force, info):
    tol = {} if row.rtol is None else {"rtol": row.rtol, "atol": row.atol}
    return torchdiffeq.odeint(f, problem.y0, problem.t, method=row.method, **tol)


class _RK38(torchode.single_step_methods.runge_kutta.ExplicitRungeKutta if torchode else object):
    """torchdiffeq's ``rk4`` (Kutta's 3/8 rule) as a torchode step, for the fixed-grid rows."""

    TABLEAU = torchode.single_step_methods.runge_kutta.ButcherTableau.from_lists(
        c=[0.0, 1 / 3, 2 / 3, 1.0], a=[[], [1 / 3], [-1 / 3, 1.0], [1.0, -1.0, 1.0]],
        b=[1 / 8, 3 / 8, 3 / 8, 1 / 8], b_low_order=[1 / 8, 3 / 8, 3 / 8, 1 / 8]) if torchode else None

    def __init__(self, term=None):
        super().__init__(term, _RK38.TABLEAU)

    def convergence_order(self):
        return 4

    def build_interpolation(self, data):
        return torchode.interpolation.LinearInterpolation(data.t0, data.dt, data.y0, data.y1)


def _forward_torchode(row, problem, f, force, info):
    y0 = problem.y0 if problem.y0.ndim == 2 else problem.y0[None]
    batch = y0.shape[0]
    term = torchode.ODETerm(f)
    if row.steps is None:
        step = torchode.Dopri5(term=term)
        controller = torchode.IntegralController(atol=row.atol, rtol=row.rtol, term=term)
        dt0 = None
    else:
        step, controller = _RK38(term), torchode.FixedStepController()
        dt0 = torch.full((batch,), float(problem.t[1] - problem.t[0]), dtype=y0.dtype, device=y0.device)
    t_eval = problem.t.expand(batch, -1)
    ivp = torchode.InitialValueProblem(y0=y0, t_start=t_eval[:, 0], t_end=t_eval[:, -1], t_eval=t_eval)
    sol = torchode.AutoDiffAdjoint(step, controller).solve(ivp, dt0=dt0)
    if bool((sol.status != 0).any()):
        raise RuntimeError(f"torchode status {sol.status.tolist()}")
    ys = sol.ys.transpose(0, 1)
    return ys if problem.y0.ndim == 2 else ys[:, 0]


FORWARD = {"parasolve": _forward_parasolve, "torchdiffeq": _forward_torchdiffeq, "torchode": _forward_torchode}
NAMES = tuple(FORWARD)


def available(name: str) -> bool:
    return name != "torchode" or torchode is not None


def make_run(name, row, problem, f, force, info):
    """A call that solves the row once with solver ``name``: the states, or the gradient."""
    forward = FORWARD[name]
    if row.kind != "train":
        def run():
            with torch.no_grad():
                return forward(row, problem, f, force, info)
        return run
    target = train_target(problem).to(problem.y0.device)
    params = list(problem.f.parameters())

    def step():
        for p in params:
            p.grad = None
        loss(forward(row, problem, f, force, info), target).backward()
        return torch.cat([p.grad.reshape(-1) for p in params]).detach()
    return step


# --- memory -----------------------------------------------------------------------------------

_libc = None


def _trim() -> None:
    """Give freed heap pages back to the OS (glibc), so that a later peak faults fresh pages."""
    global _libc
    try:
        _libc = _libc or ctypes.CDLL("libc.so.6")
        _libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(rf"^{key}:\s+(\d+)", fh.read(), re.MULTILINE).group(1))


def rss_peak_supported() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_extra_memory(run, device: str):
    """``(answer, MiB)``: the peak memory a call adds over what was live before it.

    CUDA: ``torch.cuda.max_memory_allocated`` over ``memory_allocated`` before the call (the
    caching allocator's live tensors). CPU: the resident set's high-water mark (``VmHWM``, reset
    through ``/proc/self/clear_refs``) over ``VmRSS`` before the call, freed heap trimmed first:
    every tensor, Python object and allocator page the call touches, its answer included.
    Peaks under ~1 MiB are at the level of heap noise.
    """
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = run()
        torch.cuda.synchronize()
        return out, (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    _trim()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status_kb("VmRSS")
    out = run()
    return out, max(0, _status_kb("VmHWM") - base) / 1024
