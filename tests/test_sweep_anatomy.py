"""benchmarks/sweep_anatomy.py: its recording is passive (it watches through ``callback=``; the
solve is the same as without it), and its counts add up to the solve's own stats."""

import runpy
from pathlib import Path

import pytest
import torch

from parasolve import diffusion, zoo

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_anatomy.py"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("spec", ["digits:ddpm:40:16", "digits:euler:10:10"])
def test_anatomy_is_passive_and_adds_up(spec):
    bench = runpy.run_path(str(BENCH), run_name="sweep_anatomy")
    rec = bench["anatomy"](spec, samples=1)
    model, sampler, steps, window = spec.split(":")
    den = zoo.pretrained(model)
    seq = diffusion.sample(den, (1, 1, 16, 16), sampler=sampler, steps=int(steps), method="sequential",
                           generator=torch.Generator().manual_seed(0))
    plain = diffusion.sample(den, (1, 1, 16, 16), sampler=sampler, steps=int(steps), window=int(window),
                             x_T=seq.x_T, noise=seq.noise)
    assert (rec["sweeps"], rec["evals"]) == (plain.stats.iterations, plain.stats.nfe)
    assert rec["gap"] == float((plain.x - seq.x).abs().max())
    assert sum(rec["tenths"]) == rec["sweeps"]
    assert sum(int(item.split("+")[1]) for item in rec["advance"].split()) == int(steps)
    assert sum(n for _, _, n in rec["ages"].values()) == plain.stats.nfe  # one (sweep, step) pair per evaluation
    assert rec["bound"] == pytest.approx(plain.stats.weighted_defect_sum)
