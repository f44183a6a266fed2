"""Smoke test of benchmarks/bench_suite.py (issue 22's evidence harness) and its measuring pieces."""

import argparse
import csv
import math
import pathlib
import runpy
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import suite_report  # noqa: E402
import suite_rows  # noqa: E402
import suite_solvers  # noqa: E402

BENCH = ROOT / "benchmarks" / "bench_suite.py"


def test_counter_reads_the_batch_inside_vmap():
    """A vmapped call over 5 states is one round and 5 points; a plain (B, D) call is one point."""
    counter = suite_solvers.Counter(numel=3)
    g = suite_solvers.counted(lambda t, y: -y, counter)
    torch.vmap(g, in_dims=(None, 0))(torch.tensor(0.0), torch.ones(5, 3))
    assert (counter.calls, counter.points) == (1, 5.0)
    g(torch.tensor(0.0), torch.ones(3))
    assert (counter.calls, counter.points) == (2, 6.0)


def test_counted_module_keeps_its_parameters():
    counter = suite_solvers.Counter(numel=2)
    inner = torch.nn.Linear(2, 2)
    wrapped = suite_solvers.counted(inner, counter)
    assert [id(p) for p in wrapped.parameters()] == [id(p) for p in inner.parameters()]


@pytest.mark.skipif(not suite_solvers.rss_peak_supported(), reason="needs /proc/self/clear_refs (Linux)")
def test_peak_extra_memory_sees_a_torch_allocation():
    """A 40 MB tensor alive inside the call shows as at least ~38 MiB and at most a little more."""
    def run():
        x = torch.ones(5_000_000, dtype=torch.float64)
        return float(x.sum())
    out, mib = suite_solvers.peak_extra_memory(run, "cpu")
    assert out == 5e6
    assert 36 < mib < 60


@pytest.mark.usefixtures("one_thread")
def test_a_solve_past_the_run_timeout_is_a_marked_failure():
    """Every solver stopped after 1 ms: the row names the timeout and counts as parasolve's miss."""
    measure_row = runpy.run_path(str(BENCH), run_name="bench_suite")["measure_row"]
    row = next(r for r in suite_rows.all_rows() if r.name == "vdp-mu1-rtol1e-05")
    args = argparse.Namespace(device="cpu", force=None, run_timeout=1e-3, slow=30.0, repeats=1)
    out = measure_row(row, args)
    assert out["parasolve_status"] == out["torchdiffeq_status"] == "timeout > 0.001 s"
    assert "parasolve_cpu_s" not in out and "parasolve_cpu_ratio" not in out
    assert suite_report.misses(out, None) == ["parasolve fails (torchdiffeq too)"]


def test_quick_rows_write_csv_and_markdown(tmp_path):
    rows = "vdp-mu1-rtol1e-05,rk4-pendulum-N100"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_suite.py"), "--quick", "--rows", rows,
                           "--repeats", "1", "--out-dir", str(tmp_path), "--name", "smoke"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "smoke.csv") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == suite_report.COLUMNS
        got = {r["row"]: r for r in reader}
    assert sorted(got) == sorted(rows.split(","))
    solvers = ["parasolve", "torchdiffeq"] + (["torchode"] if suite_solvers.torchode is not None else [])
    for r in got.values():
        for s in solvers:
            assert r[f"{s}_status"] == "ok", r
            assert float(r[f"{s}_cpu_s"]) > 0 and int(r[f"{s}_calls"]) > 0
            assert float(r[f"{s}_points"]) >= int(r[f"{s}_calls"])
            assert math.isfinite(float(r[f"{s}_err"])) and math.isfinite(float(r[f"{s}_mem_mb"]))
        assert float(r["parasolve_cpu_ratio"]) > 0
    vdp, rk4 = got["vdp-mu1-rtol1e-05"], got["rk4-pendulum-N100"]
    # dopri5 makes 6 calls per attempted step plus 2 for the first step: the counter sees each
    assert (int(vdp["torchdiffeq_calls"]) - 2) % 6 == 0
    for s in solvers:  # errors against the rtol 1e-12 reference at the rtol asked (1e-5)
        assert float(vdp[f"{s}_err"]) < 1e-2
    # the 3/8 rule: 4 calls a step, 100 steps; all solvers solve the same discrete problem
    assert int(rk4["torchdiffeq_calls"]) == 400
    for s in solvers:
        assert float(rk4[f"{s}_err"]) == pytest.approx(float(rk4["torchdiffeq_err"]), rel=1e-3)
    md = (tmp_path / "smoke.md").read_text()
    assert "shared with other engineers" in md and "load average" in md and "torch " + torch.__version__ in md
    assert "| vdp-mu1-rtol1e-05 |" in md and "rows miss a target" in md
