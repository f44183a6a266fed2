"""The shipped weights' training scripts still run (a few steps each), so they cannot rot."""

import torch

from parasolve.zoo.training import train_digits, train_trajectory


def test_digits_training_runs_and_saves(tmp_path):
    model = train_digits.train_unet(tmp_path, steps=3, batch_size=4, log_every=1, save_every=2)
    assert (tmp_path / "digits_unet.pt").exists()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_trajectory_training_runs_and_saves(tmp_path):
    out = tmp_path / "trajectory.pt"
    train_trajectory.main(["--steps", "3", "--batch", "8", "--out", str(out)])
    saved = torch.load(out, weights_only=False)
    assert saved["info"]["steps"] == 3 and set(saved) >= {"config", "state_dict", "schedule"}
