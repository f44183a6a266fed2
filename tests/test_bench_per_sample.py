"""benchmarks/bench_per_sample.py: both modes run on the same x_T, the rows say what was measured,
and the report is written."""

import runpy
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_per_sample.py"
pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_per_sample_writes_both_modes(tmp_path):
    bench = runpy.run_path(str(BENCH), run_name="bench_per_sample")
    threads = torch.get_num_threads()
    try:
        rows = bench["main"](["--runs", "dpm", "--samples", "2", "--out", str(tmp_path / "p.md")])
    finally:
        torch.set_num_threads(threads)
    assert [r["per_sample"] for r in rows] == ["sequential", "off", "on"]
    seq, off, on = rows
    assert seq["evals"] == 2 * 25 and seq["calls"] == 25
    assert off["lanes"] == "-" and on["lanes"].count("-") == 1
    assert on["sweeps"] == on["calls"] == int(on["lanes"].split("-")[1])  # rounds = the slowest sample's sweeps
    assert off["evals"] <= off["sweeps"] * 25 * 2 and on["evals"] <= on["sweeps"] * 25 * 2
    assert 0 < on["gap"] < 1e-2 and 0 < off["gap"] < 1e-2
    assert "| digits dpmsolver++-25 | on | 25 | default |" in (tmp_path / "p.md").read_text()
