"""The shipped digits flow-matching model and its training script."""

import pytest
import torch

from parasolve import diffusion, zoo
from parasolve.zoo import digits
from parasolve.zoo.digits_flow import WEIGHTS, load_flow_unet
from parasolve.zoo.training import train_flow

pytestmark = pytest.mark.usefixtures("one_thread")

# Measured on the shipped weights (16 samples, 25 flow-Euler steps, seed 0): confidence 0.949, sliced
# W2 0.182 (train split: 0.147, Gaussian noise: 0.938), Picard 13 sweeps with max|x - x_seq| = 3.5 x
# the defect sum. The thresholds leave room for other BLAS/CPU round-off, not for a worse model.
CONFIDENCE, SW_FACTOR, SWEEPS_25, STABILITY = 0.85, 1.5, 16, 6.0


def test_training_script_runs_and_is_seeded(tmp_path):
    """A few steps end to end: the weights are written, load into the shipped architecture, and a
    rerun with the same seed writes the same weights."""
    train_flow.main(["--out", str(tmp_path / "a"), "--steps", "3", "--batch-size", "8"])
    train_flow.main(["--out", str(tmp_path / "b"), "--steps", "3", "--batch-size", "8"])
    a, b = (torch.load(tmp_path / d / WEIGHTS.name, weights_only=True) for d in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    net = load_flow_unet(tmp_path / "a" / WEIGHTS.name)
    assert net(torch.zeros(2, 1, 16, 16), torch.tensor([1000.0, 500.0])).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="--steps must be >= 1"):
        train_flow.main(["--out", str(tmp_path), "--steps", "0"])


@pytest.fixture(scope="module")
def flow_samples():
    den = zoo.pretrained("digits-flow")
    return den, diffusion.sample(den, (16, 1, 16, 16), steps=25, method="sequential",
                                 generator=torch.Generator().manual_seed(0))


def test_shipped_flow_model_samples_look_like_digits(flow_samples):
    """Measured criterion: the held-out classifier is confident on the samples, and their sliced W2
    distance to held-out digits is close to the train split's and far from noise's."""
    den, out = flow_samples
    assert den.sampler == "flow-euler" and den.prediction_type == "flow_prediction"
    x = out.x
    assert torch.isfinite(x).all() and x.abs().max() < 1.6
    with torch.no_grad():
        conf = digits.classifier()(x.clamp(-1, 1)).softmax(1).max(1).values
    test_x, _ = digits.load_digits_16("test")
    train_x, _ = digits.load_digits_16("train")
    sw = digits.sliced_wasserstein(x, test_x)
    sw_real = digits.sliced_wasserstein(train_x[:16], test_x)
    sw_noise = digits.sliced_wasserstein(torch.randn(16, 1, 16, 16, generator=torch.Generator().manual_seed(1)), test_x)
    assert float(conf.mean()) >= CONFIDENCE
    assert sw <= SW_FACTOR * sw_real and sw <= 0.25 * sw_noise


def test_shipped_flow_model_parallel_matches_sequential_in_fewer_sweeps(flow_samples):
    den, seq = flow_samples
    par = diffusion.sample(den, seq.x.shape, steps=25, window=25, tol=1e-3, x_T=seq.x_T)
    assert par.converged and par.stats.iterations <= SWEEPS_25
    assert float((par.x - seq.x).abs().max()) <= STABILITY * par.stats.defect_sum + 1e-5
