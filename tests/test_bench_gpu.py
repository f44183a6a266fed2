"""The bench_gpu_* scripts run end to end on CPU with their tiniest settings (smoke tests, not timings)."""

import json
import runpy
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _main(name):
    return runpy.run_path(str(BENCH / name), run_name=name.removesuffix(".py"))["main"]


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()  # the scripts set their own
    yield
    torch.set_num_threads(threads)


def test_bench_gpu_ddpm_runs_on_cpu(tmp_path, capsys):
    out = tmp_path / "ddpm.json"
    _main("bench_gpu_ddpm.py")(["--device", "cpu", "--steps", "2", "--samples", "1", "--windows", "2",
                                "--repeats", "1", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["method"], r["window"]) for r in rows] == [("sequential", 1), ("picard", 2)]
    assert rows[1]["max_diff"] < 1e-3 and rows[1]["sweeps"] <= 2
    assert "digits DDPM-2, 1 samples" in capsys.readouterr().out


def test_bench_gpu_cost_curve_runs_on_cpu(tmp_path, capsys):
    out = tmp_path / "curve.json"
    _main("bench_gpu_cost_curve.py")(["--device", "cpu", "--batches", "1,2", "--repeats", "1", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["batch"] for r in rows] == [1, 2] and all(r["eager_ms"] > 0 and r["graph_ms"] is None for r in rows)
    assert "n/a: CUDA graphs need a GPU" in capsys.readouterr().out


def test_bench_gpu_gather_runs_in_a_one_rank_gloo_group(tmp_path, capsys):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:  # init_distributed() inside the script keeps this group
        _main("bench_gpu_gather.py")(["--windows", "1,4", "--values", "8", "--repeats", "1"])
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if not line.startswith(("#", "window"))]
    assert "backend gloo, 1 ranks" in out and len(rows) == 2


def test_gpu_checks_script_runs_its_smoke_settings(tmp_path):
    """benchmarks/gpu_checks.sh, the prepared GPU run, end to end with SMOKE=1 on this CPU."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "SMOKE": "1", "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(["bash", str(BENCH / "gpu_checks.sh")], cwd=BENCH.parent, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (tmp_path / "summary.txt").read_text().strip() == \
        "exit codes: env/solve 0, tests 0, cost curve 0, ddpm 0"
    env_txt = (tmp_path / "env.txt").read_text()
    # auto's cost model: Newton where parallel sweeps pay, the sequential loop where they would not
    # (a 200-step smoke solve on a CPU is close to that line)
    assert "solve auto -> newton" in env_txt or "solve auto -> sequential" in env_txt
    assert "solve picard -> picard" in env_txt
    assert "digits DDPM-20 torch.float32:" in env_txt and "digits DDPM-20 torch.float16:" in env_txt
    assert "tests collected" in (tmp_path / "tests.txt").read_text()  # the selection exists (the suite runs it)
    assert json.loads((tmp_path / "ddpm.json").read_text())["rows"]
