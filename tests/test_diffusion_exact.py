"""The exact denoiser: E[x0 | x_t] of a Gaussian mixture / finite data set, checked independently."""

import math

import pytest
import torch

from parasolve import diffusion


pytestmark = pytest.mark.usefixtures("one_thread")

AC = diffusion.alphas_cumprod("linear", 1000)


def quadrature_posterior_mean(x_t, a, means, stds, weights, grid):
    """E[x0 | x_t] by brute-force quadrature over a 2-D grid of x0 (independent of the closed form)."""
    x0 = grid  # (G, 2)
    prior = sum(w * torch.exp(-((x0 - m) ** 2).sum(1) / (2 * s * s)) / (2 * math.pi * s * s)
                for m, s, w in zip(means, stds, weights))
    like = torch.exp(-((x_t - math.sqrt(a) * x0) ** 2).sum(1) / (2 * (1 - a)))
    post = prior * like
    return (post[:, None] * x0).sum(0) / post.sum()


@pytest.mark.parametrize("t", [50, 300, 700])
def test_mixture_posterior_mean_matches_quadrature(t):
    means = torch.tensor([[1.0, -0.5], [-1.2, 0.8], [0.3, 1.5]], dtype=torch.float64)
    stds = torch.tensor([0.3, 0.5, 0.4], dtype=torch.float64)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    model = diffusion.GaussianMixtureDenoiser(means, AC, std=stds, weights=weights, prediction_type="sample")
    axis = torch.linspace(-4, 4, 401, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    a = float(AC[t].double())
    gen = torch.Generator().manual_seed(t)
    for x_t in torch.randn(4, 2, generator=gen, dtype=torch.float64):
        ours = model(x_t[None], torch.tensor([t]))[0]
        ref = quadrature_posterior_mean(x_t, a, means, stds, weights, grid)
        assert torch.allclose(ours, ref, atol=1e-6), (x_t, ours, ref)


def test_finite_data_denoiser_is_the_softmax_over_points():
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(20, 4, 8, generator=gen, dtype=torch.float64)
    model = diffusion.GaussianMixtureDenoiser(data, AC, prediction_type="sample")
    t = torch.tensor([10, 200, 900])
    x = torch.randn(3, 4, 8, generator=gen, dtype=torch.float64)
    a = AC[t].double()[:, None]
    d2 = ((x.reshape(3, 1, -1) - a.sqrt()[:, :, None] * data.reshape(1, 20, -1)) ** 2).sum(-1)
    p = torch.softmax(-d2 / (2 * (1 - a)), dim=1)
    ref = (p @ data.reshape(20, -1)).reshape(3, 4, 8)
    assert torch.allclose(model(x, t), ref, atol=1e-10)


def test_prediction_types_describe_the_same_denoiser():
    gen = torch.Generator().manual_seed(1)
    data = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    t = torch.tensor([3, 400, 999])
    x = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    a = AC[t].double()[:, None]
    x0, eps, v = (diffusion.GaussianMixtureDenoiser(data, AC, prediction_type=k)(x, t)
                  for k in ("sample", "epsilon", "v_prediction"))
    assert torch.allclose(a.sqrt() * x0 + (1 - a).sqrt() * eps, x, atol=1e-12)
    assert torch.allclose(v, a.sqrt() * eps - (1 - a).sqrt() * x0, atol=1e-12)


def test_labels_restrict_the_posterior_and_minus_one_means_unconditional():
    data = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1])
    model = diffusion.GaussianMixtureDenoiser(data, AC, labels=labels, prediction_type="sample")
    x = torch.zeros(3, 2, dtype=torch.float64)
    t = torch.full((3,), 5)  # almost clean: the posterior picks the nearest allowed point (ties split evenly)
    out = model(x + torch.tensor([[1.9, 0.1]], dtype=torch.float64), t, torch.tensor([0, 1, -1]))
    assert torch.allclose(out[0], data[0], atol=1e-8)  # label 0: the only point with that label
    assert torch.allclose(out[1], data[2], atol=1e-8)  # label 1: the nearer of its two points
    assert torch.allclose(out[2], data[0], atol=1e-8)  # unconditional: the nearest point overall
    uncond = model(x + torch.tensor([[1.9, 0.1]], dtype=torch.float64), t)
    assert torch.allclose(uncond, out[2].expand(3, 2), atol=1e-8)


def test_exact_denoiser_argument_errors():
    data = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="shape \\(K, \\*sample_shape\\)"):  # a tensor of the wrong shape: a value error
        diffusion.exact_denoiser(torch.zeros(3))
    with pytest.raises(TypeError, match="`means` must be a torch.Tensor"):
        diffusion.exact_denoiser([[0.0, 1.0]])
    with pytest.raises(ValueError, match="`weights` must be 3 positive numbers"):
        diffusion.exact_denoiser(data, weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="`labels` must have shape \\(3,\\)"):
        diffusion.exact_denoiser(data, labels=[0, 1])
    with pytest.raises(ValueError, match="`prediction_type` must be one of"):
        diffusion.exact_denoiser(data, prediction_type="noise")
    with pytest.raises(ValueError, match="`beta_schedule` must be one of"):
        diffusion.exact_denoiser(data, beta_schedule="cosine")
