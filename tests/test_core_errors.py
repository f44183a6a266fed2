"""Every bad input meets a typed error that names the argument."""

import numpy as np
import pytest
import torch

import parasolve
from parasolve import problems

P = problems.linear()
T = P.grid(10)


def solve(**kw):
    args = dict(f=P.f, y0=P.y0, t=T)
    args.update(kw)
    return parasolve.solve(args.pop("f"), args.pop("y0"), args.pop("t"), **args)


@pytest.mark.parametrize("t, match", [
    (torch.zeros(3, 2), "`t` must be 1-dimensional"),
    (torch.tensor([0.0]), "at least 2"),
    (torch.tensor([0.0, 1.0, 0.5]), "strictly increasing or strictly decreasing"),
    (torch.tensor([0.0, 0.5, 0.5, 1.0]), r"t\[1\] == t\[2\]"),
    (torch.tensor([0.0, float("nan"), 1.0]), "finite"),
])
def test_bad_grid(t, match):
    with pytest.raises(ValueError, match=match):
        solve(t=t)


def test_grid_type():
    with pytest.raises(TypeError, match="`t`"):
        solve(t="0..1")


def test_grid_from_list_and_numpy():
    a = solve(t=T.tolist())
    b = solve(t=np.asarray(T))
    assert torch.equal(a.ys, b.ys)


def test_y0_not_a_tensor():
    with pytest.raises(TypeError, match="`y0` must be a torch.Tensor"):
        solve(y0=[1.0, 1.0, 1.0])


def test_y0_integer_dtype():
    with pytest.raises(TypeError, match="`y0` must have a floating"):
        solve(y0=torch.ones(3, dtype=torch.long))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_y0_non_finite(bad):
    with pytest.raises(ValueError, match="`y0` contains NaN or Inf"):
        solve(y0=torch.tensor([1.0, bad, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("kw, exc, match", [
    (dict(window=0), ValueError, "`window` must be an integer >= 1 or None; got 0"),
    (dict(window=2.5), TypeError, "`window` must be an integer"),
    (dict(window="big"), ValueError, "`window` must be a positive integer, None or 'auto'; got 'big'"),
    (dict(tol=-1e-3), ValueError, r"`tol` must be a real number in \[0, inf\); got -0.001"),
    (dict(tol="small"), TypeError, "`tol` must be a real number"),
    (dict(max_iters=0), ValueError, "`max_iters` must be an integer >= 1; got 0"),
    (dict(save="some"), ValueError, "`save` must be one of"),
    (dict(method="newton-raphson"), ValueError, r"Unknown `method` 'newton-raphson'; valid: \["),
    (dict(step="rk45"), ValueError, r"Unknown `step` 'rk45'; valid: \["),
    (dict(windw=3), TypeError, r"unknown keyword argument\(s\) \['windw'\]"),
    (dict(options={"memory": 3}), TypeError, "Invalid `options`"),
    (dict(init=torch.zeros(5, 3, dtype=torch.float64)), ValueError, "`init` must have shape"),
])
def test_bad_settings(kw, exc, match):
    with pytest.raises(exc, match=match):
        solve(**kw)


def test_drift_not_callable():
    with pytest.raises(TypeError, match="`f` must be callable"):
        solve(f=3.0)


@pytest.mark.parametrize("vectorized", [False, True])
def test_drift_wrong_shape_caught_up_front(vectorized):
    calls = []

    def f(t, y):
        calls.append(1)
        return torch.zeros(*y.shape[:-1], 2, dtype=y.dtype)

    with pytest.raises(ValueError, match=r"`f` returned shape .*state has shape \(3,\)"):
        solve(f=f, vectorized=vectorized)
    assert len(calls) <= 2  # one probe (plus vmap's trial), never a whole solve


def test_drift_wrong_dtype():
    with pytest.raises(TypeError, match="`f` returned dtype torch.float32 but y0 has dtype torch.float64"):
        solve(f=lambda t, y: y.float())


def test_drift_returns_non_tensor():
    with pytest.raises(TypeError, match="must return a torch.Tensor"):
        solve(f=lambda t, y: 1.0, vectorized=True)


@pytest.mark.parametrize("method", ["sequential", "picard"])
def test_nan_from_drift_names_the_step(method):
    def f(t, y):
        bad = (torch.as_tensor(t) > 0.55).reshape(-1, *([1] * (y.dim() - torch.as_tensor(t).dim())))
        return torch.where(bad, torch.full_like(y, float("nan")), -y)

    with pytest.raises(parasolve.NonFiniteError, match="NaN or Inf at step 6") as info:
        solve(f=f, method=method, vectorized=True)
    assert info.value.index == 6 and abs(info.value.time - 0.6) < 1e-12


def test_sde_bad_noise_shape_and_generator():
    ou = problems.ornstein_uhlenbeck(paths=3)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"`noise` must have shape \(len\(t\) - 1, \*y0.shape\) = \(10, 3\)"):
        parasolve.solve_sde(ou.f, ou.g, ou.y0, t, noise=torch.zeros(11, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator"):
        parasolve.solve_sde(ou.f, ou.g, ou.y0, t, generator=0)
    with pytest.raises(ValueError, match="`step` must be one of"):
        parasolve.solve_sde(ou.f, ou.g, ou.y0, t, step="rk4")
    with pytest.raises(ValueError, match="`g` returned shape"):
        parasolve.solve_sde(ou.f, lambda t, y: torch.ones(5, dtype=y.dtype), ou.y0, t)
    with pytest.raises(ValueError, match="either `noise`.*or `generator`"):
        parasolve.solve_sde(ou.f, ou.g, ou.y0, t, noise=torch.zeros(10, 3, dtype=torch.float64),
                            generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", ["sequential", "picard"])
def test_nan_from_the_sde_diffusion_names_f_and_g(method):
    ou = problems.ornstein_uhlenbeck(paths=3)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)

    def g(t, y):
        return torch.where(torch.as_tensor(t) > 0.55, float("inf"), 1.0) * torch.ones_like(y)

    with pytest.raises(parasolve.NonFiniteError, match="step 6.*check `f` and `g`"):
        parasolve.solve_sde(ou.f, g, ou.y0, t, method=method, generator=torch.Generator().manual_seed(0))
