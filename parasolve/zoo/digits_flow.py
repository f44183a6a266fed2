"""The shipped flow-matching model: rectified flow on the 16x16 digits (:mod:`.digits` data).

Trained with :mod:`parasolve.zoo.training.train_flow`: the net predicts the velocity
``eps - x0`` of ``x_sigma = (1 - sigma) x0 + sigma eps`` at timestep ``1000 sigma``, the
convention of diffusers' ``FlowMatchEulerDiscreteScheduler`` (no shift), so
``sample(zoo.pretrained("digits-flow"), (B, 1, 16, 16), steps=25)`` runs flow Euler.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..diffusion.denoiser import Denoiser
from .unet import DigitsUNet

WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits_flow_unet.pt"
#: widths of the flow net at 16, 8 and 4 pixels (a narrower :class:`DigitsUNet` than the DDPM's)
CHANNELS = (16, 32, 64)


def flow_unet() -> DigitsUNet:
    """The flow net's architecture (untrained)."""
    return DigitsUNet(channels=CHANNELS)


def load_flow_unet(path: str | Path | None = None) -> DigitsUNet:
    """The trained (EMA) flow net in eval mode, float32, on the CPU (default: the shipped weights)."""
    model = flow_unet()
    model.load_state_dict(torch.load(WEIGHTS if path is None else path, map_location="cpu", weights_only=True))
    return model.float().eval()


def flow_denoiser(device=None) -> Denoiser:
    """The shipped flow model as a :class:`Denoiser` (``prediction_type="flow_prediction"``, sampler ``flow-euler``)."""
    net = load_flow_unet()
    if device is not None:
        net = net.to(device)

    def model(x, t, cond):
        return net(x, t)

    param = next(net.parameters())
    return Denoiser(model, None, prediction_type="flow_prediction", config={"num_train_timesteps": 1000, "shift": 1.0},
                    device=param.device, dtype=param.dtype, name="digits flow UNet", sampler="flow-euler")
