"""Per-sample acceptance (``sample(..., per_sample=True)``) and the lanes that merge its model calls.

Oracles: each sample's result is the solve of that sample alone (same sweeps, same answer up to
the round-off of evaluating its rows in a different batch); each sample is within its own
tolerance bound of its sequential chain; every round is one model call whose rows are those of
the samples still running; the joint and sequential paths are unchanged; failures propagate
without a hang.
"""

import threading

import pytest
import torch

from parasolve import ConvergenceError, NonFiniteError, diffusion, zoo
from parasolve.diffusion import Denoiser
from parasolve.drift import BatchedDrift
from parasolve.diffusion.lanes import run_lanes

from test_diffusion_sampling import points, stability_constant, start

pytestmark = pytest.mark.usefixtures("one_thread")


def counting(den):
    """``den`` with its model wrapped to record the batch size of every call; the model itself."""
    batches, inner = [], den.model
    den.model = lambda x, t, c: batches.append(x.shape[0]) or inner(x, t, c)
    return batches, inner


def no_lanes_left():
    return not any(t.name.startswith("parasolve-lane") for t in threading.enumerate())


@pytest.fixture(scope="module")
def digits():
    return zoo.pretrained("digits")


@pytest.mark.parametrize("sampler,steps,kw", [("ddim", 30, {}), ("ddpm", 40, {}), ("dpmsolver++", 20, {}),
                                              ("heun", 10, {}), ("euler-ancestral", 20, {}), ("unipc", 20, {}),
                                              ("ddim", 30, {"method": "picard"}), ("ddim", 30, {"method": "anderson"})])
def test_each_sample_is_its_own_solve(digits, sampler, steps, kw):
    """Real UNet, float32: sample s of the batch = sample s solved alone (its noise rows for the
    stochastic samplers), for one- and two-stage, multistep and stochastic step maps and every
    windowed scheme."""
    shape = (3, 1, 16, 16)
    run = dict(sampler=sampler, steps=steps, window=steps, **kw)
    batch = diffusion.sample(digits, shape, generator=torch.Generator().manual_seed(1), per_sample=True, **run)
    assert (batch.noise is not None) == (sampler in ("ddpm", "euler-ancestral"))
    for s, lane in enumerate(batch.stats.per_sample):
        alone = diffusion.sample(digits, (1, 1, 16, 16), x_T=batch.x_T[s:s + 1],
                                 noise=None if batch.noise is None else batch.noise[:, s:s + 1], **run)
        assert lane.iterations == alone.stats.iterations and lane.nfe == alone.stats.nfe
        assert float((batch.x[s] - alone.x[0]).abs().max()) <= 1e-5  # the model's batch round-off only
    assert batch.stats.iterations == max(p.iterations for p in batch.stats.per_sample)


def test_each_sample_meets_its_own_bound():
    """Gaussian data (x -> m_k x + c_k, S known), DDPM with per-sample noise: every sample is within
    S times its own defect sum of its sequential chain, and the defect sums are within tol."""
    dim, steps, tol = 16, 200, 0.05
    den = diffusion.exact_denoiser(torch.full((1, dim), 0.5, dtype=torch.float64), std=0.3)
    S = stability_constant(den, "ddpm", steps, 0.0, dim)
    shape = (4, dim)
    seq = diffusion.sample(den, shape, steps=steps, method="sequential", x_T=start(shape),
                           generator=torch.Generator().manual_seed(4))
    par = diffusion.sample(den, shape, steps=steps, window=32, tol=tol, x_T=seq.x_T, noise=seq.noise,
                           per_sample=True)
    lanes = par.stats.per_sample
    for s, lane in enumerate(lanes):
        assert 0 < lane.defect_sum <= tol
        assert float((par.x[s] - seq.x[s]).abs().max()) <= S * lane.defect_sum * (1 + 1e-9) + 1e-12
    assert par.stats.defect_sum == max(p.defect_sum for p in lanes)
    assert par.stats.weighted_defect_sum == max(p.weighted_defect_sum for p in lanes)


def test_one_model_call_per_round_on_the_rows_of_the_running_samples():
    """Guidance with a label per sample: every model call is one round; its rows are twice the
    running samples' window rows; the first round's contract checks are one extra call."""
    data, labels = points(12, 6), torch.arange(12) % 3
    den = diffusion.exact_denoiser(data, labels=labels)
    batches, inner = counting(den)
    cond = torch.tensor([0, 1, 2])
    kw = dict(guidance_scale=3.0, sampler="ddim", steps=40, window=8, x_T=start((3, 6)))
    out = diffusion.sample(den, (3, 6), cond=cond, per_sample=True, **kw)
    lanes = out.stats.per_sample
    check = BatchedDrift.CHECK_POINTS
    assert len(batches) == out.stats.drift_calls + 1 == max(p.drift_calls for p in lanes) + 1
    assert sum(batches) == 2 * (out.stats.nfe + 3 * check) and out.stats.nfe == sum(p.nfe for p in lanes)
    assert batches[0] == 2 * 3 * 8 and batches[1] == 2 * 3 * check
    assert out.stats.iterations == max(p.iterations for p in lanes) < 40
    den.model = inner
    for s in range(3):  # guidance towards each sample's own label
        alone = diffusion.sample(den, (1, 6), cond=cond[s:s + 1], **{**kw, "x_T": kw["x_T"][s:s + 1]})
        assert lanes[s].iterations == alone.stats.iterations
        assert torch.allclose(out.x[s], alone.x[0], atol=1e-12, rtol=0)


def test_joint_sequential_and_single_sample_paths_are_unchanged(digits):
    shape = (2, 1, 16, 16)
    x_T = start(shape, dtype=torch.float32)
    kw = dict(sampler="ddim", steps=20, x_T=x_T)
    seq = diffusion.sample(digits, shape, method="sequential", per_sample=True, **kw)
    assert seq.stats.per_sample is None
    assert torch.equal(seq.x, diffusion.sample(digits, shape, method="sequential", per_sample=False, **kw).x)
    one = diffusion.sample(digits, (1, 1, 16, 16), sampler="ddim", steps=20, x_T=x_T[:1], per_sample=True)
    assert one.stats.per_sample is None
    joint = diffusion.sample(digits, shape, window=20, per_sample=False, **kw)
    assert joint.stats.per_sample is None and joint.stats.nfe <= joint.stats.iterations * 20


def test_save_all_init_and_unconverged_lanes(digits):
    shape = (3, 1, 16, 16)
    kw = dict(sampler="ddim", steps=20, window=20, x_T=start(shape, dtype=torch.float32), per_sample=True)
    full = diffusion.sample(digits, shape, save="all", **kw)
    assert full.solution.ys.shape == (21, *shape) and torch.equal(full.solution.ys[-1], full.x)
    warm = diffusion.sample(digits, shape, init=full.solution.ys, **kw)  # each sample warm-started on its rows
    assert all(p.iterations <= 2 for p in warm.stats.per_sample)
    with pytest.raises(ConvergenceError, match="stopped after 2 sweeps") as info:
        diffusion.sample(digits, shape, max_iters=2, **kw)
    sol = info.value.solution
    assert not sol.converged and sol.stats.iterations == 2 and len(sol.stats.per_sample) == 3
    partial = diffusion.sample(digits, shape, max_iters=2, throw=False, **kw)
    assert not partial.converged and partial.x.shape == shape


def test_a_failing_lane_or_model_propagates_without_a_hang():
    """Sample 1's model rows turn NaN late in the chain: its lane raises, the others are stopped,
    the caller gets the error; a model that raises on a later call: its error, no lane left."""
    ac = diffusion.exact_denoiser(points()).alphas_cumprod
    exact = diffusion.exact_denoiser(points()).model

    def nan_for_sample_1(x, t, cond):
        out = exact(x, t)
        return torch.where(((cond == 1) & (t < 300)).reshape(-1, 1), float("nan"), out)

    den = Denoiser(nan_for_sample_1, ac, conditional=True, device="cpu")
    done = {}

    def attempt():
        try:
            diffusion.sample(den, (3, 6), sampler="ddim", steps=30, window=10, x_T=start((3, 6)),
                             cond=torch.tensor([0, 1, 2]), per_sample=True)
        except Exception as exc:  # noqa: BLE001 -- inspected below
            done["error"] = exc

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "per-sample solve hung after a lane failed"
    assert isinstance(done.get("error"), NonFiniteError) and no_lanes_left()

    calls = []

    def breaks_on_call_3(x, t, cond):
        calls.append(x.shape[0])
        if len(calls) == 3:
            raise RuntimeError("model failed")
        return exact(x, t)

    with pytest.raises(RuntimeError, match="model failed"):
        diffusion.sample(Denoiser(breaks_on_call_3, ac, device="cpu"), (3, 6), sampler="ddim", steps=30,
                         window=10, x_T=start((3, 6)), per_sample=True)
    assert len(calls) == 3 and no_lanes_left()


def test_per_sample_is_refused_where_it_cannot_apply(digits):
    from parasolve.evaluators import FixedBatchEvaluator
    shape = (2, 1, 16, 16)
    kw = dict(sampler="ddim", steps=10, x_T=start(shape, dtype=torch.float32))
    with pytest.raises(ValueError, match="`evaluator`"):
        diffusion.sample(digits, shape, evaluator=FixedBatchEvaluator(4), per_sample=True, **kw)
    with pytest.raises(ValueError, match="`window`='auto'"):
        diffusion.sample(digits, shape, window="auto", per_sample=True, **kw)
    with pytest.raises(ValueError, match="gradients"):
        diffusion.sample(digits, shape, adjoint_params=(), per_sample=True, **kw)
    with pytest.raises(TypeError, match="`per_sample`"):
        diffusion.sample(digits, shape, per_sample="yes", **kw)
    assert diffusion.sample(digits, shape, **kw).stats.per_sample is None  # off by default


def test_lanes_merge_rounds_in_lane_order_and_keep_the_callers_modes():
    """Lanes making 3, 1 and 2 calls: rounds of 3, 2, 1 requests in lane order; the workers see
    the caller's grad and inference modes."""
    rounds = []

    def merged(requests):
        rounds.append(list(requests))
        return [r * 10 for r in requests]

    def job(lane, calls):
        def run(call):
            return [call(100 * lane + k) for k in range(calls)], torch.is_grad_enabled(), \
                torch.is_inference_mode_enabled()
        return run

    with torch.inference_mode():
        results = run_lanes([job(0, 3), job(1, 1), job(2, 2)], merged)
    assert rounds == [[0, 100, 200], [1, 201], [2]]
    assert [r[0] for r in results] == [[0, 10, 20], [1000], [2000, 2010]]
    assert all(r[1] is False and r[2] is True for r in results)
    with torch.enable_grad():
        assert run_lanes([job(0, 1)], merged)[0][1:] == (True, False)


@pytest.mark.filterwarnings("ignore")  # diffusers' config notices; float32's floor at tol=1e-4, as in its own tests
def test_parallelize_solves_each_image_on_its_own(tmp_path):
    """Two prompts x two images with guidance: four lanes, each image's latents within the bound
    of the pipeline's own loop, as in the joint solve."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from diffusers import EulerAncestralDiscreteScheduler

    import tiny_pipelines as tiny
    pipe = tiny.stable_diffusion(str(tmp_path), EulerAncestralDiscreteScheduler())
    pipe.set_progress_bar_config(disable=True)
    args = dict(prompt=["a cat", "a dog"], num_images_per_prompt=2, num_inference_steps=6, guidance_scale=5.0,
                output_type="latent")
    ref = pipe(generator=torch.Generator().manual_seed(0), **args).images
    for per_sample in (False, True):
        wrapper = diffusion.parallelize(pipe, window=3, tol=1e-4, per_sample=per_sample)
        latents = wrapper(generator=torch.Generator().manual_seed(0), **args).images
        stats = wrapper.stats
        lanes = stats.per_sample if per_sample else [stats] * 4
        assert len(lanes) == 4 and (stats.per_sample is None) != per_sample
        for s, lane in enumerate(lanes):
            bound = 3 * lane.defect_sum + 2e-5 * max(1.0, float(ref.abs().max()))  # as test_diffusion_pipelines
            assert float((latents[s] - ref[s]).abs().max()) <= bound
