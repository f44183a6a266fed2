"""Shared by the bench_gpu_* scripts: the machine's description and the digits model."""

from __future__ import annotations

import os
import platform

import torch


def machine(device: torch.device) -> str:
    """One line naming the hardware and software the numbers were measured on."""
    if device.type == "cuda":
        hw = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        hw = f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return f"{hw}; torch {torch.__version__}"


def digits_unet(device: torch.device):
    """The trained digits UNet if it ships, else the same architecture untrained (timing only)."""
    from parasolve.zoo.unet import DigitsUNet

    try:
        from parasolve.zoo.digits import load_unet

        model, what = load_unet(), "trained digits UNet (parasolve.zoo.digits.load_unet)"
    except (ImportError, FileNotFoundError, OSError, RuntimeError):
        torch.manual_seed(0)
        model, what = DigitsUNet(), "untrained DigitsUNet (same architecture; timing only)"
    params = sum(p.numel() for p in model.parameters())
    return model.to(device).eval(), f"{what}, {params / 1e6:.2f} M parameters"


def default_device(name: str | None) -> torch.device:
    """``--device`` checked (a ValueError naming it where torch cannot use it), or the default."""
    from parasolve.evaluators.devices import as_device

    return as_device(name, "--device") if name else torch.device("cuda" if torch.cuda.is_available() else "cpu")
