"""The `parasolve` command: solve a user's drift file, clear one-line errors, demo."""

import subprocess
import sys

import numpy as np
import pytest

from parasolve.cli import main

DRIFT = """
import torch
RATE = 3.0
def decay(t, y):
    return -y
def not_a_function():
    pass
"""


@pytest.fixture
def drift_file(tmp_path):
    path = tmp_path / "mydrift.py"
    path.write_text(DRIFT)
    return path


def test_solve_prints_stats_and_saves_trajectory(drift_file, tmp_path, capsys):
    out_npy, out_csv, png = tmp_path / "traj.npy", tmp_path / "traj.csv", tmp_path / "traj.png"
    code = main(["solve", f"{drift_file}:decay", "--y0", "1,2", "--t1", "2", "--steps", "50", "--tol", "1e-10",
                 "--window", "10", "--compare", "--save", str(out_npy), "--plot", str(png)])
    assert code == 0
    text = capsys.readouterr().out
    assert "sequential" in text and "picard" in text and "sweeps" in text
    data = np.load(out_npy)
    assert data.shape == (51, 3)
    assert abs(data[-1, 1] - (1 - 2 / 50) ** 50) < 1e-9  # the Euler solution of y' = -y
    assert png.stat().st_size > 1000
    assert main(["solve", f"{drift_file}:decay", "--y0", "1", "--steps", "5", "--save", str(out_csv)]) == 0
    assert np.loadtxt(out_csv, delimiter=",", skiprows=1).shape == (6, 2)


@pytest.mark.parametrize("args, message", [
    (["solve", "missing.py:f", "--y0", "1"], "file 'missing.py' not found"),
    (["solve", "{file}:nope", "--y0", "1"], "has no attribute 'nope'"),
    (["solve", "{file}:RATE", "--y0", "1"], "is a float, not a callable"),
    (["solve", "{file}", "--y0", "1"], "must be MODULE:FUNCTION"),
    (["solve", "{file}:decay", "--y0", "one"], "--y0 'one' must be comma-separated numbers"),
    (["solve", "{file}:decay", "--y0", "1", "--window", "0"], "`window` must be >= 1; got 0"),
    (["solve", "{file}:decay", "--y0", "1", "--method", "magic"], "Unknown `method` 'magic'"),
    (["solve", "no_such_module_xyz:f", "--y0", "1"], "cannot be imported"),
    (["reproduce", "nonsense"], "unknown reproduction 'nonsense'"),
])
def test_bad_arguments_give_one_line_and_status_2(drift_file, capsys, args, message):
    args = [a.replace("{file}", str(drift_file)) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_help_everywhere(capsys):
    proc = subprocess.run([sys.executable, "-m", "parasolve", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: parasolve" in proc.stdout  # `python -m parasolve` works
    for sub in (["solve"], ["demo"], ["reproduce"], ["bench"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*sub, "--help"])
        assert exit_info.value.code == 0 and f"usage: parasolve {sub[0]}" in capsys.readouterr().out


def test_bench_lists_the_benchmark_scripts(capsys):
    assert main(["bench"]) == 0
    listing = capsys.readouterr().out
    assert "schemes" in listing and "diffusion" in listing
    assert main(["bench", "nope"]) == 2 and "unknown benchmark 'nope'" in capsys.readouterr().err
