"""benchmarks/bench_flow.py runs end to end with tiny settings (a smoke test, not a timing)."""

import runpy
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_flow.py"


def test_bench_flow_writes_its_report(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "flow.md"
    try:
        runpy.run_path(str(BENCH), run_name="bench_flow")["main"](
            ["--steps", "6", "--windows", "6", "--tols", "1e-2", "--samples", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 6 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["sequential", "picard"]
    assert all(r.rstrip().endswith("| yes |") for r in rows)
