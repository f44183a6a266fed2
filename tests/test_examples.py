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


def test_diffusion_example_parallel_equals_sequential_within_tol():
    runs = load("diffusion_digits").main(fast=True)
    for sampler, steps, method, out, _ in runs:
        ref = next(o for s, n, m, o, _ in runs if (s, n, m) == (sampler, steps, "sequential"))
        assert out.converged and float((out.x - ref.x).abs().max()) <= 10 * 1e-3
        if method == "picard":
            assert out.stats.iterations < steps


def test_property_example_runs_its_hypothesis_check():
    load("property_test").main(fast=True)


def test_plot_example_writes_a_png(tmp_path):
    curves = load("plot_convergence").main(fast=True, out=str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 5000
    assert all(sol.converged for sol in curves.values())


def test_neural_ode_example_trains_the_same_as_torchdiffeq():
    runs = load("neural_ode_spiral").main(quick=True, iters=6, png=False)
    para, ode, adj = runs
    assert max(abs(a - b) for a, b in zip(para["losses"], ode["losses"])) < 1e-10  # the same discrete gradient
    assert para["losses"][-1] < para["losses"][0] and len(para["rounds"]) == 6


def test_latent_sde_trains_like_torchsde_on_the_same_paths():
    ref, par = load("latent_sde").main(fast=True)
    assert len(ref) == len(par) == 4 and par[-1] < 0.5 * par[0]  # it learns
    assert max(abs(a - b) for a, b in zip(ref, par)) <= 1e-8  # same gradients on the same paths
