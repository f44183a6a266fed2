"""scikit-learn's 8x8 digits at 16x16: data, a pretrained DDPM denoiser, an evaluation classifier
and a sliced-Wasserstein metric.

The raw digits (uint8 values 0..16, labels, and a fixed stratified 80/20 train/test split) are
shipped in ``data/digits.npz`` so that nothing here needs scikit-learn. The denoiser was trained
with :mod:`parasolve.zoo.training.train_digits` on the ``"train"`` split as a standard DDPM:
``ddpm_betas()`` (1000 linear steps, 1e-4..0.02), epsilon prediction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_choice
from .unet import DigitsUNet

__all__ = [
    "DigitsClassifier",
    "classifier",
    "ddpm_betas",
    "load_digits_16",
    "load_unet",
    "sliced_wasserstein",
]

_HERE = Path(__file__).resolve().parent
DATA_PATH = _HERE / "data" / "digits.npz"
UNET_WEIGHTS = _HERE / "weights" / "digits_unet.pt"
CLASSIFIER_WEIGHTS = _HERE / "weights" / "digits_classifier.pt"
SPLITS = ("train", "test", "all")


def load_digits_16(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The digits of ``split`` (``"train"``: 1438, ``"test"``: 359 held out, or ``"all"``: 1797).

    Returns ``(images, labels)``: float32 images ``(N, 1, 16, 16)`` in ``[-1, 1]`` (the 8x8 values
    0..16 mapped linearly, then bilinearly upsampled) and int64 labels ``(N,)``, always in the same
    order. The split is fixed (stored with the data) and stratified by label.
    """
    check_choice("split", split, SPLITS)
    with np.load(DATA_PATH) as data:
        images, labels, is_train = data["images"], data["labels"], data["is_train"]
    keep = np.ones_like(is_train) if split == "all" else (is_train if split == "train" else ~is_train)
    x = torch.from_numpy(images[keep].astype(np.float32)).unsqueeze(1) / 8.0 - 1.0
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    return x, torch.from_numpy(labels[keep].astype(np.int64))


def ddpm_betas(num_steps: int = 1000) -> torch.Tensor:
    """The training noise schedule: ``num_steps`` betas linear from 1e-4 to 0.02 (float64).

    The pretrained denoiser takes the step index ``t`` in ``[0, 1000)``, where
    ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` with ``abar_t = prod(1 - betas[:t + 1])``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return torch.linspace(1e-4, 0.02, num_steps, dtype=torch.float64)


def load_unet(path: str | Path | None = None) -> DigitsUNet:
    """The pretrained (EMA) :class:`DigitsUNet` in eval mode, on the CPU, float32, from ``path``
    (default: the shipped ``weights/digits_unet.pt``)."""
    model = DigitsUNet()
    model.load_state_dict(torch.load(UNET_WEIGHTS if path is None else path, map_location="cpu", weights_only=True))
    return model.float().eval()


class DigitsClassifier(nn.Module):
    """Small CNN mapping images ``(B, 1, 16, 16)`` in ``[-1, 1]`` to 10 class logits."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
                                  nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 16, 16):
            raise ValueError(f"x must have shape (B, 1, 16, 16), got {tuple(x.shape)}")
        return self.head(self.features(x))


def classifier(path: str | Path | None = None) -> DigitsClassifier:
    """The pretrained :class:`DigitsClassifier` in eval mode, on the CPU, from ``path``
    (default: the shipped ``weights/digits_classifier.pt``)."""
    model = DigitsClassifier()
    model.load_state_dict(torch.load(CLASSIFIER_WEIGHTS if path is None else path, map_location="cpu",
                                     weights_only=True))
    return model.float().eval()


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, n_projections: int = 256,
                       generator: torch.Generator | None = None) -> float:
    """Sliced 2-Wasserstein distance between the sample sets ``x`` ``(N, ...)`` and ``y`` ``(M, ...)``.

    Samples are flattened to vectors; ``n_projections`` directions are drawn uniformly on the unit
    sphere (from ``generator``, default a CPU generator seeded with 0, so the value is reproducible)
    and the result is ``sqrt(mean over directions of W2(projected x, projected y)**2)``. Each 1-D W2
    is exact for the two empirical measures, unequal sizes included: the squared difference of the
    two step quantile functions is integrated over ``(0, 1)`` on the merged breakpoints
    ``{i/N} | {j/M}`` (for ``N == M`` this is the mean squared difference of the sorted values).
    Computed in float64 on the CPU.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"x must be a tensor with at least one sample, got {getattr(x, 'shape', type(x))}")
    if not isinstance(y, torch.Tensor) or y.dim() < 1 or y.shape[0] < 1:
        raise ValueError(f"y must be a tensor with at least one sample, got {getattr(y, 'shape', type(y))}")
    x = x.detach().reshape(x.shape[0], -1).to("cpu", torch.float64)
    y = y.detach().reshape(y.shape[0], -1).to("cpu", torch.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of features, got {x.shape[1]} and {y.shape[1]}")
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    theta = torch.randn(x.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    xs, ys = (x @ theta).sort(dim=0).values, (y @ theta).sort(dim=0).values
    n, m = xs.shape[0], ys.shape[0]
    if n == m:
        w2 = (xs - ys).square().mean(dim=0)
    else:
        cuts = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n,
                          torch.arange(1, m + 1, dtype=torch.float64) / m]).unique()
        weights = torch.diff(cuts, prepend=cuts.new_zeros(1))
        mids = cuts - weights / 2
        ix = (mids * n).long().clamp_(max=n - 1)
        iy = (mids * m).long().clamp_(max=m - 1)
        w2 = ((xs[ix] - ys[iy]).square() * weights[:, None]).sum(dim=0)
    return float(w2.mean().sqrt())
