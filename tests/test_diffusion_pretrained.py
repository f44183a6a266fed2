"""The shipped digits model through ``diffusion.pretrained``: a trained model, where Picard pays off."""

import pytest
import torch

from parasolve import diffusion, zoo
from parasolve import testing as pt


pytestmark = pytest.mark.usefixtures("one_thread")


def test_digits_denoiser_has_the_training_schedule():
    den = zoo.pretrained("digits")
    assert den.prediction_type == "epsilon" and not den.conditional and den.num_train_timesteps == 1000
    betas = 1 - den.alphas_cumprod[1:] / den.alphas_cumprod[:-1]
    assert torch.allclose(betas[[0, -1]], torch.tensor([1e-4 + 0.0199 / 999, 0.02]), atol=1e-6)


@pytest.mark.parametrize("sampler,steps", [("ddim", 25), ("dpmsolver++", 25)])
def test_digits_parallel_sample_matches_sequential_in_fewer_sweeps(sampler, steps):
    den = zoo.pretrained("digits")
    shape = (2, 1, 16, 16)
    seq = diffusion.sample(den, shape, sampler=sampler, steps=steps, method="sequential",
                           generator=torch.Generator().manual_seed(0))
    par = diffusion.sample(den, shape, sampler=sampler, steps=steps, window=steps, tol=1e-3, x_T=seq.x_T)
    assert par.stats.iterations <= 0.6 * steps  # measured: 13 and 12 sweeps
    pt.assert_near_sequential(par, seq, tol=1e-3, atol=2e-3)  # S * tol with S ~ 1 for these samplers (docs/diffusion.md)


def test_unknown_pretrained_name():
    with pytest.raises(ValueError, match="Unknown pretrained model 'cifar'; available: \\['digits', 'digits-flow', 'trajectory'\\]"):
        zoo.pretrained("cifar")
