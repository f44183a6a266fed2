"""The conformance kit (parasolve.testing.check_step_map / check_scheme and their per-rule checks):
every registered step map and scheme passes it, read from the registries, one pytest test per
(map or scheme, rule); the maps outside the registries (SDE, the diffusion samplers) pass it on their
own problems; and it catches deliberately broken ones, naming exactly the rules they break."""

import dataclasses

import numpy as np
import pytest
import torch

import parasolve
from parasolve import diffusion, testing as pt
from parasolve.conformance import failures, scheme_checks, step_map_checks
from parasolve.diffusion import samplers
from parasolve.drift import BatchedDrift
from parasolve.schemes import Parareal, Picard, Scheme, Sequential, Update
from parasolve.sde import EulerMaruyama
from parasolve.steps import ExplicitRK, Increments, StepMap

pytestmark = pytest.mark.usefixtures("one_thread")


def _euler_maruyama():
    y0 = torch.tensor([0.5, -1.0], dtype=torch.float64)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    g = BatchedDrift(lambda t, y: 0.3 + 0.1 * torch.sin(y), y0.shape, y0.dtype, y0.device, vectorized=True,
                     name="g", broadcast=True)
    noise = torch.randn(10, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    step = EulerMaruyama(g, noise)
    assert step.stochastic and not step.ode_rhs and step.callables == ("f", "g")
    return "euler-maruyama", step, dict(t=t, y0=y0)


def _on_its_grid(label, den, name, eta=0.0):
    """A diffusion sampler's map with the problem it is built for: its grid, a (2, 4) sample, the model."""
    ts, step = samplers.build(den, name, 12, eta, torch.float64)
    assert step.linear == (step.linear_part() is not None)  # rule 7 holds before prepare()
    shape = (2, 4)
    step.prepare(torch.float64, torch.device("cpu"), torch.randn(12, *shape, dtype=torch.float64))
    t = torch.from_numpy(ts.astype("float64"))
    t = torch.cat([t, t[-1:] - 1])
    drift = den.drift(shape, integer_timesteps=step.integer_timesteps)
    return label, step, dict(t=t, y0=torch.randn(shape, dtype=torch.float64), drift=drift)


def _ddpm_family():
    den = diffusion.exact_denoiser(torch.rand(8, 4, generator=torch.Generator().manual_seed(0),
                                              dtype=torch.float64) * 2 - 1)
    return [_on_its_grid(f"{name}-eta{eta}", den, name, eta) for name, eta in
            [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.5), ("dpmsolver++", 0.0), ("sde-dpmsolver++", 0.0)]]


def _sigma_space(name, config):
    """The Euler-family, Heun, UniPC and flow samplers on a closed-form denoiser (a flow model: the
    exact x0 of the same data turned into a velocity)."""
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
    label = "-".join([name, *(f"{k}={v}" for k, v in config.items())])
    return _on_its_grid(label, den, name)


SIGMA_SPACE = [("euler", {}), ("euler", dict(use_karras_sigmas=True)), ("euler-ancestral", {}), ("heun", {}),
               ("unipc", {}), ("unipc", dict(solver_order=3)), ("flow-euler", {}),
               ("flow-euler", dict(stochastic_sampling=True))]


@pt.parametrize_with_checks([parasolve.STEPS[name] for name in sorted(parasolve.STEPS)] + [_euler_maruyama()]
                            + _ddpm_family() + [_sigma_space(name, config) for name, config in SIGMA_SPACE])
def test_step_map(check):
    """Every registered map, Euler-Maruyama and the diffusion samplers keep each rule (1-13)."""
    check()


@pt.parametrize_with_checks([parasolve.SCHEMES[name]() for name in sorted(parasolve.SCHEMES)]
                            + [("parareal-odeint", Parareal(fine="odeint", coarse="rk4"),
                                dict(steps=["euler", "rk4"]))])
def test_scheme(check):
    """Every registered scheme keeps each rule (1-6); parareal with odeint the ones it declares
    (it converges to glued odeint solutions, not the discrete problem: ``discrete`` is False)."""
    check()


def test_the_rule_ids_are_the_pytest_ids():
    ids = [rule for rule, _ in step_map_checks(parasolve.STEPS["rk4"])]
    assert ids == ["rule8-declarations", "rule1-increments", "rule2-batched-one-at-a-time", "rule3-declared-order",
                   "rule4-declared-stages", "rule5-carry", "rule6-deterministic", "rule7-linear-part", "rule9-gains",
                   "rule10-predict", "rule11-implicit", "rule12-sampler-step", "rule13-compute-dtype"]
    assert [rule for rule, _ in scheme_checks(Picard())] == [
        "rule1-refusal", "rule2-answer", "rule3-sweeps", "rule4-honest-stats", "rule5-settings", "rule6-bad-input"]
    assert not Parareal(fine="odeint").discrete


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


class BrokenThreeWays(StepMap):
    """Forward Euler that calls the drift twice for one declared stage (rule 4), hands a carry from
    a one-step map (rule 5) and names its callables as a string (rule 8); nothing else is wrong."""

    name, order, stages, callables = "broken_three_ways", 1, 1, "f"

    def increments(self, drift, t, idx, y, prev=None):
        drift(t[idx], y)
        f = drift(t[idx], y)
        return Increments((t[idx + 1] - t[idx]).reshape(-1, *([1] * (y.dim() - 1))) * f, f)


def test_a_broken_step_map_fails_exactly_the_rules_it_breaks():
    broken = failures(step_map_checks(BrokenThreeWays()))
    assert [rule for rule, _ in broken] == ["rule8-declarations", "rule4-declared-stages", "rule5-carry"]
    for rule, error in broken:  # each failure names its own rule and the map
        number = rule.split("-")[0][4:]
        assert str(error).startswith(f"rule {number} (") and "broken_three_ways" in str(error)
    with pytest.raises(AssertionError, match=r"^rule 8 \(declarations\).*callables.*\n\(also broken: "
                                             r"rule4-declared-stages, rule5-carry\)$"):
        pt.check_step_map(BrokenThreeWays())


class PredictsBadly(ExplicitRK):
    """Euler declaring predict_new with a guess that ignores the step it is told (the last state again)."""

    predict_new = True

    def predict(self, start, count, last, hint):
        return last.expand(count, *last.shape).clone()


class PredictsNothing(ExplicitRK):
    predict_new = True


class ImplicitWithoutNewton(ExplicitRK):
    implicit = True


class HalfASampler(ExplicitRK):
    init_noise_sigma = 1.0  # but no integer_timesteps, no prepare


class GainsOfAnotherGrid(ExplicitRK):
    def gains(self):
        return np.full(5, 0.9)


def _euler(cls):
    return cls(cls.__name__.lower(), [[]], [1.0], [0.0], order=1)


def _f16_drift(t, y):
    return torch.tanh(y)


_f16_drift.compute_dtype = "float16"  # a string, not a torch.dtype


@pytest.mark.parametrize("step,drift,rule", [
    (_euler(GainsOfAnotherGrid), None, "rule9-gains"),
    (_euler(PredictsBadly), None, "rule10-predict"),
    (_euler(PredictsNothing), None, "rule10-predict"),
    (_euler(ImplicitWithoutNewton), None, "rule11-implicit"),
    (_euler(HalfASampler), None, "rule12-sampler-step"),
    (parasolve.STEPS["euler"], _f16_drift, "rule13-compute-dtype"),
], ids=lambda v: v if isinstance(v, str) else getattr(v, "name", None))
def test_the_kit_checks_each_declared_capability(step, drift, rule):
    """A map (or drift) that gets one optional capability wrong fails that capability's rule only."""
    assert [r for r, _ in failures(step_map_checks(step, drift=drift))] == [rule]


# ---------------------------------------------------------------------------- broken schemes
class ClaimsConvergence(Picard):
    """Stops after two sweeps and reports success."""

    name = "claims_convergence"

    def _run(self, problem):
        sol = super()._run(dataclasses.replace(problem, max_iters=2))
        return dataclasses.replace(sol, status=parasolve.Status.SUCCESS)


class HidesCalls(Sequential):
    """The sequential loop reporting half its drift evaluations."""

    name = "hides_calls"

    def _run(self, problem):
        sol = super()._run(problem)
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


class HidesCallsTakesAnything(HidesCalls):
    """Under-reports its evaluations (rule 4) and swallows unknown options (rule 6)."""

    name = "hides_calls_takes_anything"

    def __init__(self, **ignored):
        pass


def test_a_broken_scheme_fails_exactly_the_rules_it_breaks():
    broken = failures(scheme_checks(HidesCallsTakesAnything(), steps=["euler", "ab2"]))
    assert [rule for rule, _ in broken] == ["rule4-honest-stats", "rule6-bad-input"]


def test_run_checks_the_step_map_before_the_scheme_runs():
    """Rule 1 by construction: Scheme.run calls check_step, then _run; overriding run is refused."""
    ran = []

    class NoMultistep(Sequential):
        name = "no_multistep"

        def check_step(self, step):
            if step.multistep:
                raise self.refuse(step, "it is multistep", "Use a one-step map.")

        def _run(self, problem):
            ran.append(problem.step.name)
            return super()._run(problem)

    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    with pytest.raises(parasolve.UnsupportedStepError, match="no_multistep.*'ab2'"):
        parasolve.solve(lambda t, y: -y, torch.ones(2, dtype=torch.float64), t, method=NoMultistep(), step="ab2")
    assert ran == []
    parasolve.solve(lambda t, y: -y, torch.ones(2, dtype=torch.float64), t, method=NoMultistep(), step="euler")
    assert ran == ["euler"]
    with pytest.raises(TypeError, match="OwnRun overrides Scheme.run; implement _run"):
        class OwnRun(Scheme):
            def run(self, problem):
                return None


def test_a_map_with_gains_succeeds_on_the_weighted_sum():
    """Scheme rule 2 bounds the gain-weighted defects, not the plain ones: for y' = -5 y with Euler's
    exact gains 1 - 5 h_i (save="last"), a SUCCESS has defect_sum above tol, the weighted sum and
    the final state's distance to the sequential one within it."""
    t = torch.linspace(0, 3, 61, dtype=torch.float64) ** 1.2

    class GainedEuler(ExplicitRK):
        def gains(self):
            return (1 - 5 * (t[1:] - t[:-1])).numpy()

    step = GainedEuler("gained_euler", [[]], [1.0], [0.0], order=1)
    y0, tol = torch.ones(3, dtype=torch.float64), 1e-4
    sol = parasolve.solve(lambda t, y: -5 * y, y0, t, step=step, method="picard", save="last", tol=tol)
    ref = parasolve.solve(lambda t, y: -5 * y, y0, t, step=step, method="sequential", save="last")
    assert sol.status is parasolve.Status.SUCCESS
    assert sol.stats.defect_sum > tol >= sol.stats.weighted_defect_sum
    pt.assert_near_sequential(sol, ref, weighted=True, slack=0.0)
    pt.check_scheme(Picard(), steps=[GainedEuler("gained_euler", [[]], [1.0], [0.0], order=1)], n_steps=60)


def test_the_kit_rejects_what_is_not_a_step_map_or_a_scheme():
    with pytest.raises(TypeError, match="StepMap"):
        pt.check_step_map("euler")
    with pytest.raises(TypeError, match="Scheme"):
        pt.check_scheme(Picard)


def test_the_extending_page_examples_pass_the_kit(clean_registries):
    """docs/extending.md's step map and scheme run and pass the kit as the page says."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", page, flags=re.S))
    exec(compile(code, "docs/extending.md", "exec"), {})
    assert parasolve.solve(lambda t, y: -y, torch.ones(2, dtype=torch.float64),
                           torch.linspace(0, 1, 9, dtype=torch.float64), step="ralston",
                           method="half_step_picard", tol=1e-10).converged
