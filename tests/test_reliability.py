"""Regression tests of issue 23 ("silent wrong answers", "untyped errors") and issue 21's error
hierarchy: each test failed on the code before its fix."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import torch

import parasolve
from parasolve import NonFiniteError, Status, solve


# ------------------------------------------------------------------ one error hierarchy

def _package_exceptions():
    found = {}
    for info in pkgutil.walk_packages(parasolve.__path__, "parasolve."):
        if info.name.startswith("parasolve.zoo.training.train_") or info.name == "parasolve.__main__":
            continue  # scripts
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__.startswith("parasolve"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_parasolve_exception_derives_from_parasolve_error():
    ParasolveError = parasolve.ParasolveError
    found = _package_exceptions()
    assert {"parasolve.errors.ConvergenceError", "parasolve.adjoint.AdjointError",
            "parasolve.evaluators.protocol.EvaluatorError"} <= set(found)
    # LaneAborted is a control-flow signal between lane threads that must pass `except Exception`
    outside = sorted(name for name, cls in found.items()
                     if not issubclass(cls, ParasolveError) and name != "parasolve.lanes.LaneAborted")
    assert outside == []
    assert "ParasolveError" in parasolve.__all__
    # the built-in bases are kept: `except ValueError` catches what it caught before
    assert issubclass(parasolve.AdjointError, ValueError) and issubclass(NonFiniteError, FloatingPointError)
    assert issubclass(parasolve.ConvergenceError, RuntimeError)


# ------------------------------------------------------------------ throw=False covers NaN/Inf

def _nan_after_half(t, y):
    return -y * torch.sqrt(0.5 - t)  # NaN for t > 0.5


@pytest.mark.parametrize("method", ["picard", "sequential", "parareal"])
def test_throw_false_returns_non_finite_status(method):
    y0, t = torch.ones(2, dtype=torch.float64), torch.linspace(0, 1, 11, dtype=torch.float64)
    with pytest.raises(NonFiniteError):
        solve(_nan_after_half, y0, t, method=method)
    sol = solve(_nan_after_half, y0, t, method=method, throw=False)
    assert sol.status is Status.NON_FINITE and not sol.converged
    assert isinstance(sol.failure, NonFiniteError) and 5 <= sol.failure.index <= 6
    assert torch.isfinite(sol.ys[:6]).all()  # the accepted part is kept
    ref = solve(lambda t, y: -y * torch.sqrt(0.5 - t), y0, t[:6], method="sequential")
    torch.testing.assert_close(sol.ys[:6], ref.ys, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ devices this torch cannot use

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch that cannot use CUDA")


@no_cuda
def test_device_evaluator_on_cuda_without_cuda_is_a_typed_error():
    from parasolve.evaluators import DeviceEvaluator
    with pytest.raises(ValueError, match=r"`devices\[1\]`: 'cuda' is not available") as info:
        DeviceEvaluator(["cpu", "cuda"])
    assert isinstance(info.value, parasolve.ParasolveError)


@no_cuda
def test_bench_on_cuda_without_cuda_is_one_line(capsys):
    from parasolve.apps.cli import main
    assert main(["bench", "gpu_cost_curve", "--device", "cuda", "--batches", "1", "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "`--device`: 'cuda' is not available" in err and "Traceback" not in err
