"""benchmarks/bench_diffusion.py runs end to end with tiny settings (a smoke test, not a timing)."""

import runpy
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_diffusion.py"


def test_bench_diffusion_writes_its_report(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "diffusion.md"
    try:
        runpy.run_path(str(BENCH), run_name="bench_diffusion")["main"](
            ["--samplers", "dpm", "--methods", "picard,anderson", "--windows", "25", "--tols", "1e-2",
             "--samples", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| dpmsolver++-25 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["sequential", "picard", "anderson"]
    assert all(r.rstrip().endswith("| yes |") for r in rows)  # every run converged
