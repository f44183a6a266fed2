"""Every example runs in its fast mode, so none can rot."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_user_ode_parallel_matches_sequential(capsys):
    rows = load("user_ode").main(fast=True)
    (_, seq, _), (_, par, _) = rows
    assert par.converged and par.stats.iterations < seq.stats.iterations / 4
    assert float((par.ys - seq.ys).abs().max()) < 1e-6
    assert "picard" in capsys.readouterr().out


def test_sde_example_matches_the_exact_law():
    seq, par = load("sde_ou").main(fast=True)
    assert float((par.ys - seq.ys).abs().max()) < 1e-6
    assert abs(float(par.y.mean()) - 0.8347) < 0.05
