"""benchmarks/bench_paradigms.py: its ParaDiGMS loop solves the same chain as parasolve (window 1 is
the sequential sampler exactly; tol 0 makes every sweep exact), and the report is written."""

import runpy
from pathlib import Path

import pytest
import torch

from parasolve import diffusion, zoo

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_paradigms.py"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bench():
    return runpy.run_path(str(BENCH), run_name="bench_paradigms")


@pytest.mark.parametrize("sampler,steps", [("ddpm", 30), ("dpmsolver++", 10)])
def test_paradigms_loop_is_the_sequential_chain(bench, sampler, steps):
    den = zoo.pretrained("digits")
    shape = (1, 1, 16, 16)
    seq = diffusion.sample(den, shape, sampler=sampler, steps=steps, method="sequential",
                           generator=torch.Generator().manual_seed(0))
    one, sweeps, evals = bench["paradigms"](den, shape, sampler, steps, 1, 0.1, seq.x_T, seq.noise)
    assert torch.equal(one, seq.x) and sweeps == evals == steps
    exact, sweeps, _ = bench["paradigms"](den, shape, sampler, steps, steps, 0.0, seq.x_T, seq.noise)
    assert sweeps <= steps and float((exact - seq.x).abs().max()) < 1e-5  # summation order only


def test_bench_paradigms_writes_report_csv_and_png(bench, tmp_path):
    threads = torch.get_num_threads()
    try:
        rows = bench["main"](["--samplers", "dpm", "--windows", "25", "--paradigms-tols", "1e-2", "--samples", "1",
                              "--out", str(tmp_path / "p.md"), "--img", str(tmp_path / "p")])
    finally:
        torch.set_num_threads(threads)
    assert [r["loop"] for r in rows] == ["sequential", "paradigms", "parasolve default"]
    assert (tmp_path / "p.csv").read_text().count("\n") == 4 and (tmp_path / "p.png").stat().st_size > 0
    assert "| dpmsolver++-25 | parasolve default |" in (tmp_path / "p.md").read_text()
