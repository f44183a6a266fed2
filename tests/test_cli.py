"""The `parasolve` command: solve a user's drift file, clear one-line errors, demo."""

import re
import subprocess
import sys

import numpy as np
import pytest

from parasolve.apps.cli import main

DRIFT = """
import torch
RATE = 3.0
def decay(t, y):
    return -y
def not_a_function():
    pass
def broken(t, y):
    return undefined_name * y
def raises(t, y):
    raise RuntimeError("boom")
def one_argument(y):
    return -y
def blows_up(t, y):
    return y * y
def needs_a_loop(t, y):
    return -y * float(y[0])
"""


@pytest.fixture
def drift_file(tmp_path):
    path = tmp_path / "mydrift.py"
    path.write_text(DRIFT)
    return path


def test_solve_prints_stats_and_saves_trajectory(drift_file, tmp_path, capsys):
    out_npy, out_csv, png = tmp_path / "traj.npy", tmp_path / "traj.csv", tmp_path / "traj.png"
    code = main(["solve", f"{drift_file}:decay", "--y0", "1,2", "--t1", "2", "--steps", "50", "--tol", "1e-10",
                 "--window", "10", "--method", "newton", "--compare", "--save", str(out_npy), "--plot", str(png)])
    assert code == 0
    text = capsys.readouterr().out
    assert "sequential" in text and "newton" in text and "sweeps" in text
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
    (["solve", "{file}:decay", "--y0", "1", "--window", "0"], "--window must be an integer >= 1 or None; got 0"),
    (["solve", "{file}:decay", "--y0", "1", "--method", "magic"], "Unknown --method 'magic'"),
    (["solve", "no_such_module_xyz:f", "--y0", "1"], "cannot be imported"),
    (["reproduce", "nonsense"], "unknown reproduction 'nonsense'"),
    (["solve", "{file}:broken", "--y0", "1"], "the drift raised NameError: name 'undefined_name' is not defined"),
    (["solve", "{file}:raises", "--y0", "1", "--method", "sequential"], "the drift raised RuntimeError: boom"),
    (["solve", "{file}:one_argument", "--y0", "1"], "must take two arguments f(t, y); its signature is (y)"),
    (["solve", "{file}:decay", "--y0", "1", "--t0", "1"], "--t0 and --t1 must differ; both are 1.0"),
    (["solve", "parasolve.no_such_module:f", "--y0", "1"], "cannot be imported"),
    (["solve", "{file}:blows_up", "--y0", "1", "--t1", "10"], "NaN or Inf at step"),
    # output paths are checked before the solve (the broken drift would fail it)
    (["solve", "{file}:broken", "--y0", "1", "--save", "out.txt"], "--save 'out.txt': use a file name ending in .npy"),
    (["solve", "{file}:broken", "--y0", "1", "--save", "/no/such/dir/t.npy"], "folder '/no/such/dir' does not exist"),
    (["solve", "{file}:broken", "--y0", "1", "--save", "{dir}"], "use a file name ending in .npy or .csv"),
    (["solve", "{file}:broken", "--y0", "1", "--plot", "/no/such/dir/t.png"], "folder '/no/such/dir' does not exist"),
    (["solve", "{file}:broken", "--y0", "1", "--plot", "t.xyz"], "--plot 't.xyz': use a file name ending in .png"),
    (["demo", "--out", "{file}"], "is a file, not a folder"),
    (["reproduce", "table", "--out", "{file}/sub"], "is a file, so the folder cannot be created"),
])
def test_bad_arguments_give_one_line_and_status_2(drift_file, capsys, args, message):
    args = [a.replace("{file}", str(drift_file)).replace("{dir}", str(drift_file.parent)) for a in args]
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


@pytest.mark.parametrize("args, message", [
    (["solve", "f.py:f", "--y0", "1", "--steps", "abc"],
     "parasolve solve: error: argument --steps: invalid int value: 'abc'"),
    (["solve", "f.py:f", "--y0", "1", "--window", "wide"], "invalid window 'wide': give a positive integer or 'auto'"),
    (["solve"], "parasolve solve: error: the following arguments are required"),
    (["frobnicate"], "parasolve: error: argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_argparse_errors_are_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and message in err and len(err.splitlines()) == 1
    assert err.endswith("--help)") and "usage:" not in err


def test_write_errors_and_warnings_are_one_line(drift_file, tmp_path, capsys, monkeypatch):
    import parasolve.apps.cli as cli

    def no_space(*args):
        raise OSError(28, "No space left on device", str(tmp_path / "t.npy"))
    monkeypatch.setattr(cli, "save_trajectory", no_space)
    assert main(["solve", f"{drift_file}:decay", "--y0", "1", "--save", str(tmp_path / "t.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert "parasolve solve: error: [Errno 28] No space left on device" in err and len(err.splitlines()) == 1
    assert main(["solve", f"{drift_file}:needs_a_loop", "--y0", "1"]) == 0  # vmap fails: one warning line
    err = capsys.readouterr().err.strip()
    assert err.startswith("parasolve solve: warning: parasolve: `f` could not be batched")
    assert len(err.splitlines()) == 1


def test_solve_progress_and_help_strings(drift_file, capsys):
    assert main(["solve", f"{drift_file}:decay", "--y0", "1", "--steps", "20", "--progress"]) == 0
    assert "20/20" in capsys.readouterr().err  # the tqdm bar ran
    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for piece in ("--t0 T0 start time", "--t1 T1 end time", "picard, sequential, anderson", "--window WINDOW steps",
                  "--tol TOL accepted", "--max-iters MAX_ITERS sweep limit", "--progress show a progress bar"):
        assert piece in text


def test_demo_fast_in_process(tmp_path, capsys):
    assert main(["demo", "--fast", "--out", str(tmp_path / "demo")]) == 0
    text = capsys.readouterr().out
    for png in ("convergence.png", "digits_samples.png"):
        assert (tmp_path / "demo" / png).stat().st_size > 2000
    for row in ("sequential", "picard window=100", "picard window=200", "DDPM sequential", "DDPM picard window=64"):
        assert row in text
    assert "sweeps" in text and "evals" in text and "max|x - x_seq|" in text and "unavailable" not in text
    speedups = [float(w[:-1]) for line in text.splitlines() for w in line.split() if re.fullmatch(r"\d+\.\dx", w)]
    assert len(speedups) == 5  # a slower parallel run is explained, and only then
    assert ("A speed-up below 1x is expected on a CPU" in text) == (min(speedups) < 1)


def test_module_spec_imports_from_the_working_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "cwd_drift_mod.py").write_text("def f(t, y):\n    return -y\n")
    (tmp_path / "cwd_broken_mod.py").write_text("raise RuntimeError('bad import')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert main(["solve", "cwd_drift_mod:f", "--y0", "1", "--steps", "5"]) == 0
    assert main(["solve", "cwd_broken_mod:f", "--y0", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "parasolve solve: error: importing 'cwd_broken_mod' failed: RuntimeError: bad import"


def test_solve_prints_the_end_state_and_the_window_auto_chose(drift_file, capsys):
    assert main(["solve", f"{drift_file}:decay", "--y0", "1,2", "--t1", "2", "--steps", "40", "--window", "auto",
                 "--tol", "1e-12", "--step", "rk4"]) == 0
    out = capsys.readouterr().out
    window = int(next(line for line in out.splitlines() if line.startswith("--window auto chose")).split()[3])
    assert 1 <= window <= 40
    end = next(line for line in out.splitlines() if line.startswith("y(t1=2) = ["))
    values = [float(v) for v in end.split("[")[1].rstrip("]").split(",")]
    assert values == pytest.approx([np.exp(-2.0), 2 * np.exp(-2.0)], rel=1e-6)  # rk4, 40 steps: y0 e^-t


@pytest.mark.parametrize("args, message", [
    (["--y0", "-1,0"], "must be attached with '=', e.g. --y0=-1,0"),
    (["--y0", "1", "--method", "rk4"], "valid: auto, anderson, newton"),
    (["--y0", "1", "--device", "cuda:7"], "--device 'cuda:7'"),
    (["--y0", "1", "--device", "gpu"], "is not a torch device"),
])
def test_solve_flag_errors_say_the_fix(drift_file, capsys, args, message):
    with pytest.raises(SystemExit) if args[1] == "-1,0" else _no_exit():
        assert main(["solve", f"{drift_file}:decay", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_solve_negative_y0_attached_and_warnings_in_flag_spelling(drift_file, capsys):
    assert main(["solve", f"{drift_file}:decay", "--y0=-1,0", "--steps", "200", "--method", "picard",
                 "--max-iters", "2"]) == 1
    captured = capsys.readouterr()
    assert "y(t1=1) = [-" in captured.out
    assert "--max-iters" in captured.err and "max_iters" not in captured.err and "len(t)" not in captured.err


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
