"""The shipped digits data, evaluation classifier, sliced-Wasserstein metric and pretrained DDPM denoiser."""

import pytest
import torch

from parasolve.zoo.digits import (
    DigitsClassifier,
    classifier,
    ddpm_betas,
    load_digits_16,
    load_unet,
    sliced_wasserstein,
)
from parasolve.zoo.unet import DigitsUNet


@pytest.fixture(scope="module")
def unet():
    return load_unet()


@pytest.fixture(scope="module")
def clf():
    return classifier()


def test_data_shapes_ranges_and_split():
    (x_tr, y_tr), (x_te, y_te), (x_all, y_all) = (load_digits_16(s) for s in ("train", "test", "all"))
    assert x_tr.shape == (1438, 1, 16, 16) and x_te.shape == (359, 1, 16, 16) and x_all.shape == (1797, 1, 16, 16)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.int64
    assert x_all.min() == -1.0 and x_all.max() == 1.0
    assert set(y_tr.tolist()) == set(y_te.tolist()) == set(range(10))
    assert len(y_tr) + len(y_te) == len(y_all)
    assert torch.bincount(y_te, minlength=10).min() >= 35  # stratified
    train_rows = {row.tobytes() for row in x_tr.flatten(1).numpy()}
    assert not any(row.tobytes() in train_rows for row in x_te.flatten(1).numpy())
    assert torch.equal(load_digits_16("test")[0], x_te)  # deterministic
    with pytest.raises(ValueError, match="split"):
        load_digits_16("validation")


def test_classifier_held_out_accuracy(clf):
    x, y = load_digits_16("test")
    with torch.no_grad():
        acc = (clf(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.95
    assert isinstance(clf, DigitsClassifier) and not clf.training


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_unet_shape_and_batch_independence(unet, batch):
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 1, 16, 16, generator=gen)
    t = torch.randint(0, 1000, (batch,), generator=gen)
    with torch.no_grad():
        out = unet(x, t)
        singles = torch.cat([unet(x[i:i + 1], t[i:i + 1]) for i in range(batch)])
        assert out.shape == (batch, 1, 16, 16) and out.dtype == torch.float32
        # (torch.allclose, not torch.testing.assert_close: its first call imports for seconds)
        assert torch.allclose(out, singles, rtol=1e-4, atol=1e-5)
        assert torch.allclose(unet(x, t.float()), out, rtol=1e-5, atol=1e-6)
        assert torch.equal(unet(x, t), out)  # deterministic in eval mode


def test_unet_rejects_bad_shapes():
    model = DigitsUNet().eval()
    with pytest.raises(ValueError, match="x"):
        model(torch.zeros(2, 1, 8, 8), torch.zeros(2))
    with pytest.raises(ValueError, match="t"):
        model(torch.zeros(2, 1, 16, 16), torch.zeros(3))


def test_sliced_wasserstein():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 1, 16, 16, generator=gen), torch.randn(300, 1, 16, 16, generator=gen)
    assert sliced_wasserstein(x, x) == pytest.approx(0.0, abs=1e-12)
    # the same empirical measure with every point twice: exact quantile matching gives 0 too
    assert sliced_wasserstein(x, torch.cat([x, x])) == pytest.approx(0.0, abs=1e-12)
    # a translation by c gives W2 = |<theta, c>| per direction, so SW = |c| / sqrt(dim) = 0.5 here
    assert sliced_wasserstein(x, x + 0.5, n_projections=2000) == pytest.approx(0.5, rel=0.05)
    d_xy = sliced_wasserstein(x, y)
    assert sliced_wasserstein(y, x) == pytest.approx(d_xy)
    assert d_xy < sliced_wasserstein(x, y + 0.5)
    assert sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(0)) == pytest.approx(d_xy)
    with pytest.raises(ValueError, match="features"):
        sliced_wasserstein(x, torch.zeros(5, 10))
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(x, y, n_projections=0)


def test_ddpm_ancestral_sampling_gives_digits(unet, clf):
    """1000-step sequential DDPM (posterior variance beta-tilde) from the pretrained denoiser."""
    n = 2  # 1000 sequential steps: a few seconds on one core for 2 samples
    betas = ddpm_betas()
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    sigma = (betas * (1 - abar_prev) / (1 - abar)).sqrt().tolist()
    coef_eps = (betas / (1 - abar).sqrt()).tolist()
    inv_sqrt_alpha = alphas.rsqrt().tolist()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 16, 16, generator=gen)
    with torch.inference_mode():
        for t in range(999, -1, -1):
            eps = unet(x, torch.full((n,), t))
            x = (x - coef_eps[t] * eps) * inv_sqrt_alpha[t]
            if t > 0:
                x = x + sigma[t] * torch.randn(x.shape, generator=gen)
        probs = clf(x.clamp(-1, 1)).softmax(1)
    assert torch.isfinite(x).all() and x.abs().max() < 1.5
    assert probs.max(1).values.mean() >= 0.8
