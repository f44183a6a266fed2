"""The conformance kit (parasolve.testing.check_step_map / check_scheme): every registered step
map and scheme passes it, read from the registries; the maps outside the registries (SDE, the
diffusion samplers) pass it on their own problems; and it catches deliberately broken ones,
naming the broken rule."""

import dataclasses

import pytest
import torch

import parasolve
from parasolve import diffusion, testing as pt
from parasolve.diffusion import samplers
from parasolve.drift import BatchedDrift
from parasolve.schemes import Parareal, Picard, Sequential, Update
from parasolve.sde import EulerMaruyama
from parasolve.steps import ExplicitRK, Increments, StepMap

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", sorted(parasolve.STEPS))
def test_every_registered_step_map_keeps_the_contract(name):
    pt.check_step_map(parasolve.STEPS[name])


@pytest.mark.parametrize("name", sorted(parasolve.SCHEMES))
def test_every_registered_scheme_keeps_the_contract(name):
    pt.check_scheme(parasolve.SCHEMES[name]())


def test_parareal_with_odeint_keeps_the_contract_it_declares():
    scheme = Parareal(fine="odeint", coarse="rk4")
    assert not scheme.discrete  # converges to glued odeint solutions, not the discrete problem
    pt.check_scheme(scheme, steps=["euler", "rk4"])


def test_euler_maruyama_keeps_the_contract():
    y0 = torch.tensor([0.5, -1.0], dtype=torch.float64)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    g = BatchedDrift(lambda t, y: 0.3 + 0.1 * torch.sin(y), y0.shape, y0.dtype, y0.device, vectorized=True,
                     name="g", broadcast=True)
    noise = torch.randn(10, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    step = EulerMaruyama(g, noise)
    assert step.stochastic and not step.ode_rhs and step.callables == ("f", "g")
    pt.check_step_map(step, t=t, y0=y0)


@pytest.mark.parametrize("name,eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.5), ("dpmsolver++", 0.0),
                                      ("sde-dpmsolver++", 0.0)])
def test_diffusion_step_maps_keep_the_contract(name, eta):
    den = diffusion.exact_denoiser(torch.rand(8, 4, generator=torch.Generator().manual_seed(0),
                                              dtype=torch.float64) * 2 - 1)
    ts, step = samplers.build(den, name, 12, eta, torch.float64)
    assert step.linear_part().shape == (12,)  # rule 7 holds before prepare()
    shape = (2, 4)
    step.prepare(torch.float64, torch.device("cpu"), torch.randn(12, *shape, dtype=torch.float64))
    t = torch.from_numpy(ts.astype("float64"))
    t = torch.cat([t, t[-1:] - 1])
    pt.check_step_map(step, t=t, y0=torch.randn(shape, dtype=torch.float64), drift=den.drift(shape))


def test_a_scheme_refuses_a_map_it_cannot_handle_naming_both():
    den = diffusion.exact_denoiser(torch.rand(8, 4, dtype=torch.float64))
    _, ddim = samplers.build(den, "ddim", 10, 0.0, torch.float64)
    with pytest.raises(parasolve.UnsupportedStepError, match="parareal.*'ddim'.*ODE right-hand side") as info:
        Parareal(fine="odeint").check_step(ddim)
    assert info.value.scheme == "parareal" and info.value.step == "ddim"
    with pytest.raises(parasolve.UnsupportedStepError, match="odeint"):
        diffusion.sample(den, (2, 4), sampler="ddim", steps=10, method="parareal", options={"fine": "odeint"})
    with pytest.raises(parasolve.UnsupportedStepError, match="'ab2'.*multistep"):
        Parareal().check_step(parasolve.STEPS["ab2"])
    Parareal().check_step(ddim)  # the step propagator handles any one-step map


# ---------------------------------------------------------------------------- broken step maps
class SameTimeEverywhere(ExplicitRK):
    """Evaluates every step of a batch at the batch's first time: wrong batched increments."""

    def increments(self, drift, t, idx, y, prev=None):
        h = (t[idx + 1] - t[idx]).reshape(-1, *([1] * (y.dim() - 1)))
        return Increments(h * drift(t[idx[:1]].expand(len(idx)), y))


class DrawsTwice(StepMap):
    """Forward Euler that calls the drift twice while declaring one stage."""

    name, order, stages = "draws_twice", 1, 1

    def increments(self, drift, t, idx, y, prev=None):
        drift(t[idx], y)
        h = (t[idx + 1] - t[idx]).reshape(-1, *([1] * (y.dim() - 1)))
        return Increments(h * drift(t[idx], y))


class GuessingAB2(type(parasolve.STEPS["ab2"])):
    """AB2 that silently assumes a zero previous drift where `prev` is missing."""

    def increments(self, drift, t, idx, y, prev=None):
        return super().increments(drift, t, idx, y, torch.zeros_like(y[0]) if prev is None else prev)


@pytest.mark.parametrize("step,rule", [
    (SameTimeEverywhere("same_time", [[]], [1.0], [0.0], order=1), "rule 2 (batched = one at a time)"),
    (ExplicitRK("euler_claiming_2", [[]], [1.0], [0.0], order=2), "rule 3 (declared order)"),
    (ExplicitRK("heun_claiming_1", [[], [1.0]], [0.5, 0.5], [0.0, 1.0], order=1), "rule 3 (declared order)"),
    (DrawsTwice(), "rule 4 (declared stages)"),
    (GuessingAB2(), "rule 5 (carry)"),
], ids=lambda v: getattr(v, "name", v))
def test_the_kit_catches_a_broken_step_map(step, rule):
    with pytest.raises(AssertionError, match=rf"^{rule.replace('(', '[(]').replace(')', '[)]')}.*{step.name}"):
        pt.check_step_map(step)


def test_the_kit_catches_bad_declarations():
    step = ExplicitRK("euler_no_stages", [[]], [1.0], [0.0], order=1)
    step.stages = 0
    with pytest.raises(AssertionError, match=r"rule 8 \(declarations\).*stages"):
        pt.check_step_map(step)


# ---------------------------------------------------------------------------- broken schemes
class ClaimsConvergence(Picard):
    """Stops after two sweeps and reports success."""

    name = "claims_convergence"

    def run(self, problem):
        sol = super().run(dataclasses.replace(problem, max_iters=2))
        return dataclasses.replace(sol, status=parasolve.Status.SUCCESS)


class HidesCalls(Sequential):
    """The sequential loop reporting half its drift evaluations."""

    name = "hides_calls"

    def run(self, problem):
        sol = super().run(problem)
        sol.stats.nfe //= 2
        return sol


class RemembersSolves(Picard):
    """Keeps per-solve state on itself: every other solve relaxes the update."""

    name = "remembers_solves"

    def __init__(self):
        self.solves = 0

    def init(self, problem):
        self.solves += 1
        return None

    def update(self, state, window):
        if self.solves % 2:
            return Update(window.picard, state)
        return Update(0.5 * window.picard + 0.5 * window.ys[window.shift + 1:], state)


class RefusesUntyped(Picard):
    name = "refuses_untyped"

    def check_step(self, step):
        if step.multistep:
            raise ValueError("no multistep maps")


@pytest.mark.parametrize("scheme,rule", [
    (ClaimsConvergence(), r"rule 2 \(answer\).*claims convergence"),
    (HidesCalls(), r"rule 4 \(honest stats\)"),
    (RemembersSolves(), r"rule 5 \(settings\).*second solve"),
    (RefusesUntyped(), r"rule 1 \(refusal\).*not UnsupportedStepError"),
], ids=lambda v: getattr(v, "name", v))
def test_the_kit_catches_a_broken_scheme(scheme, rule):
    with pytest.raises(AssertionError, match=rule):
        pt.check_scheme(scheme)


def test_the_kit_rejects_what_is_not_a_step_map_or_a_scheme():
    with pytest.raises(TypeError, match="StepMap"):
        pt.check_step_map("euler")
    with pytest.raises(TypeError, match="Scheme"):
        pt.check_scheme(Picard)


def test_the_extending_page_examples_pass_the_kit():
    """docs/extending.md's step map and scheme run and pass the kit as the page says."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", page, flags=re.S))
    try:
        exec(compile(code, "docs/extending.md", "exec"), {})
        assert parasolve.solve(lambda t, y: -y, torch.ones(2, dtype=torch.float64),
                               torch.linspace(0, 1, 9, dtype=torch.float64), step="ralston",
                               method="half_step_picard", tol=1e-10).converged
    finally:
        parasolve.STEPS.pop("ralston", None)
        parasolve.SCHEMES.pop("half_step_picard", None)


@pytest.mark.parametrize("name,config", [("euler", {}), ("euler", dict(use_karras_sigmas=True)), ("euler-ancestral", {}),
                                         ("heun", {}), ("unipc", {}), ("unipc", dict(solver_order=3)),
                                         ("flow-euler", {}), ("flow-euler", dict(stochastic_sampling=True))])
def test_sigma_space_step_maps_keep_the_contract(name, config):
    """The Euler-family, Heun, UniPC and flow samplers on a closed-form denoiser (a flow model:
    the exact x0 of the same data turned into a velocity)."""
    data = torch.rand(8, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    if name == "flow-euler":
        exact = diffusion.exact_denoiser(data, prediction_type="sample")

        def velocity(x, t, cond):  # a smooth velocity field: x minus the data's x0 at t = 0, over sigma
            sigma = (t / 1000).reshape(-1, *([1] * (x.dim() - 1)))
            return (x - exact.model(x, torch.zeros_like(t).long(), cond)) / sigma
        den = diffusion.Denoiser(velocity, None, prediction_type="flow_prediction", config=config, sampler=name)
    else:
        exact = diffusion.exact_denoiser(data, prediction_type="epsilon")
        den = diffusion.Denoiser(lambda x, t, cond: exact.model(x, t.round().long(), cond), exact.alphas_cumprod,
                                 prediction_type="epsilon", config=config, sampler=name)
    ts, step = samplers.build(den, name, 12, 0.0, torch.float64)
    assert step.linear == (step.linear_part() is not None)
    shape = (2, 4)
    step.prepare(torch.float64, torch.device("cpu"), torch.randn(12, *shape, dtype=torch.float64))
    t = torch.from_numpy(ts.astype("float64"))
    t = torch.cat([t, t[-1:] - 1])
    pt.check_step_map(step, t=t, y0=torch.randn(shape, dtype=torch.float64),
                      drift=den.drift(shape, integer_timesteps=step.integer_timesteps))
