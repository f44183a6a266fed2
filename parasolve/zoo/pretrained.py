"""``pretrained(name)``: denoisers whose weights ship with parasolve (nothing is downloaded)."""

from __future__ import annotations

from ..diffusion.denoiser import Denoiser
from ..diffusion.schedules import alphas_cumprod

PRETRAINED = ("digits", "digits-flow", "trajectory")


def pretrained(name: str = "digits", *, device=None) -> Denoiser:
    """A shipped model as a :class:`Denoiser`.

    - ``"digits"``: the small UNet trained in-repo on scikit-learn's digits (16x16, one channel,
      values in [-1, 1]; :mod:`parasolve.zoo.digits`), epsilon prediction, DDPM with 1000
      linear betas 1e-4..0.02, x0 clipped to [-1, 1]; sample with ``shape=(B, 1, 16, 16)``.
    - ``"digits-flow"``: a rectified-flow model of the same digits trained in-repo
      (:mod:`parasolve.zoo.digits_flow`): velocity prediction at timestep ``1000 sigma``, sampled
      with ``"flow-euler"`` (diffusers' ``FlowMatchEulerDiscreteScheduler``); ``shape=(B, 1, 16, 16)``,
      e.g. ``steps=25``.
    - ``"trajectory"``: the conditional MLP policy of the toy planning task
      (:mod:`parasolve.zoo.trajectory`); ``shape=(B, 16, 2)``, ``cond=(B, 4)``, 100 steps.
    """
    if name not in PRETRAINED:
        raise ValueError(f"Unknown pretrained model {name!r}; available: {list(PRETRAINED)}.")
    if name == "trajectory":
        from . import trajectory

        return trajectory.trajectory_denoiser(device)
    if name == "digits-flow":
        from .digits_flow import flow_denoiser

        return flow_denoiser(device)
    from . import digits  # the model's own module: weights and architecture

    unet = digits.load_unet()
    if device is not None:
        unet = unet.to(device)

    def model(x, t, cond):
        return unet(x, t)

    param = next(unet.parameters())
    return Denoiser(model, alphas_cumprod("linear", 1000, 1e-4, 0.02), prediction_type="epsilon",
                    config={"clip_sample": True}, device=param.device, dtype=param.dtype, name="digits UNet")
