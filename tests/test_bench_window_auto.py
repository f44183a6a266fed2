"""benchmarks/bench_window_auto.py: both windows solve the same problem and the row says which won."""

import runpy
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_window_auto.py"
pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_window_auto_reports_both_windows(tmp_path):
    bench = runpy.run_path(str(BENCH), run_name="bench_window_auto")
    threads = torch.get_num_threads()
    try:
        (row,) = bench["main"](["--problems", "vdp-64", "--repeats", "2", "--out", str(tmp_path / "w.md")])
    finally:
        torch.set_num_threads(threads)
    assert row["default"] == 64 and row["window"][64] == 64
    assert 1 <= row["picked"] <= 64 and set(row["sweeps"]) == {64, row["picked"]}
    assert all(1 <= row["sweeps"][w] <= 64 for w in row["sweeps"])  # never more sweeps than steps
    assert row["ratio"] == pytest.approx(row["seconds"][64] / row["seconds"][row["picked"]])
    assert f"| vdp-64 | 64: {row['sweeps'][64]} / " in (tmp_path / "w.md").read_text()
