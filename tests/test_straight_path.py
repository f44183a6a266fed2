"""The solve is one straight line: ``y0`` and ``t`` validated once, an immutable problem, a
solution built once and never changed, and the private solve reached only from the entry points."""

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

import parasolve
from parasolve import _checks

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


@pytest.fixture
def validations(monkeypatch):
    counts = {"check_y0": 0, "check_grid": 0}
    for name in counts:
        original = getattr(_checks, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)
        monkeypatch.setattr(_checks, name, counted)
    return counts


@pytest.mark.parametrize("method", ["sequential", "picard", "parareal"])
def test_y0_and_t_are_validated_once(validations, method):
    y0 = torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True)
    sol = parasolve.solve(lambda t, y: -y, y0, torch.linspace(0, 1, 41, dtype=F64), method=method, window=8)
    sol.ys.sum().backward()  # the gradient's node wraps the run: no second validation either
    assert validations == {"check_y0": 1, "check_grid": 1}


def test_the_window_tuner_validates_once_not_per_probe(validations):
    sol = parasolve.solve(lambda t, y: -y, torch.ones(4, dtype=F64), torch.linspace(0, 1, 257, dtype=F64),
                          method="picard", window="auto", vectorized=True)
    assert sol.converged
    # the public layer, and choose_window (public itself) once: not once per probe solve
    assert validations == {"check_y0": 2, "check_grid": 2}


def test_a_built_solution_and_its_problem_are_immutable():
    seen = []
    sol = parasolve.solve(lambda t, y: -y, torch.ones(2, dtype=F64), torch.linspace(0, 1, 11, dtype=F64),
                          method="picard", callback=seen.append)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sol.ys = sol.ys * 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen[0].accepted = 0
    changed = dataclasses.replace(sol, ys=sol.ys * 2)
    assert changed is not sol and torch.equal(changed.ys, 2 * sol.ys)
    problem = parasolve.discrete_problem.Problem(drift=None, step=None, t=torch.zeros(2), y0=torch.zeros(1), tol=1e-3,
                                        window=1, max_iters=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.tol = 0.0


def test_only_the_entry_points_reach_the_private_solve():
    spec = importlib.util.spec_from_file_location("make_architecture", ROOT / "docs" / "make_architecture.py")
    arch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arch)
    importers = {a for a, deps in arch.import_graph().items() if "parasolve._solve" in deps}
    # the public layer, the tuner's probes, sdeint's built step maps, and the conformance kit's
    # solves (without the public layer's 16-bit widening and coarse-grid warning)
    assert importers == {"parasolve._api", "parasolve.tuning", "parasolve.sdeint.api",
                         "parasolve.conformance.schemes"}
