"""benchmarks/bench_stiff.py runs end to end on Robertson's problem (a smoke test, not a timing;
without diffrax's rows, so no test imports jax)."""

import runpy
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_stiff.py"


def test_bench_stiff_writes_its_report(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "stiff.md"
    try:
        runpy.run_path(str(BENCH), run_name="bench_stiff")["main"](
            ["--problems", "robertson", "--repeats", "1", "--methods", "radau", "--no-diffrax", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    rows = [line.split("|") for line in out.read_text().splitlines() if line.startswith("| robertson |")]
    assert [r[2].strip() for r in rows] == ["scipy Radau", "scipy BDF", "parasolve radau"]
    ours = rows[-1]
    assert float(ours[4].rstrip("x ")) <= 3  # error within 3x of scipy Radau's
    header = next(line.split("|") for line in out.read_text().splitlines() if line.startswith("| problem |"))
    column = [c.strip() for c in header].index("rounds / sequential")
    assert float(ours[column]) <= 0.25  # rounds at most a quarter of the sequential solver's on the same grid
