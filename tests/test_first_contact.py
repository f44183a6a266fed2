"""What a new user meets first: the commands' output, errors in their own terms, the project files (issue #11)."""

import re
import sys
from pathlib import Path

import pytest
import torch

from parasolve.apps import figures, reproduce
from parasolve.apps.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def drift(tmp_path):
    path = tmp_path / "osc.py"
    path.write_text("import torch\ndef f(t, y):\n    return torch.stack([y[1], -y[0]])\n")
    return f"{path}:f"


def test_solve_prints_a_gap_only_against_a_sequential_run(drift, capsys):
    assert main(["solve", drift, "--y0", "1,0", "--steps", "50", "--method", "picard"]) == 0
    alone = capsys.readouterr().out
    assert "picard" in alone and "x_seq" not in alone and "0.00e+00" not in alone
    assert main(["solve", drift, "--y0", "1,0", "--steps", "50", "--compare", "--tol", "1e-10", "--method", "picard"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert any(line.split()[:1] == ["method"] and line.rstrip().endswith("max|x - x_seq|  converged")
               for line in table)
    picard = next(line.split() for line in table if line.split()[:1] == ["picard"])
    assert 0 < float(picard[-2]) <= 1e-8  # the gap column, just before "converged"


@pytest.mark.parametrize("args, message", [
    (["--max-iters", "0"], "--max-iters must be an integer >= 1; got 0"),
    (["--window", "0"], "--window must be an integer >= 1 or None; got 0"),
    (["--tol", "-1"], "--tol must be a real number in [0, inf); got -1.0"),
    (["--step", "rk45"], "Unknown --step 'rk45'"),
    (["--vectorized", "--method", "picard"], "the drift '{drift}' returned shape (2, 2) for a batch of 100 time points"),
])
def test_solve_errors_name_the_flags(drift, capsys, args, message):
    assert main(["solve", drift, "--y0", "1,0", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message.format(drift=drift) in err and len(err.splitlines()) == 1
    assert not re.search(r"`(max_iters|window|tol|step|f)`", err)


def test_an_output_folder_that_cannot_be_created_names_out(tmp_path, capsys):
    assert main(["reproduce", "table", "--out", "/proc/nope"]) == 2  # /proc: no new folders, even for root
    err = capsys.readouterr().err.strip()
    assert err.startswith("parasolve reproduce: error: --out '/proc/nope'") and len(err.splitlines()) == 1
    assert main(["demo", "--out", "/proc/nope/deeper"]) == 2
    assert "--out '/proc/nope/deeper'" in capsys.readouterr().err


def test_progress_bar_updates_are_throttled(drift, capsys):
    assert main(["solve", drift, "--y0", "1,0", "--t1", "5", "--steps", "2000", "--window", "50", "--progress",
                 "--method", "picard"]) == 0
    captured = capsys.readouterr()
    sweeps = int(next(line.split()[1] for line in captured.out.splitlines() if line.startswith("picard")))
    wall = float(next(line.split()[3] for line in captured.out.splitlines() if line.startswith("picard")))
    updates = captured.err.count("\r")
    assert sweeps > 100 and updates <= 4 + wall / 0.1  # tqdm's minimum interval, not one line per sweep


def test_commands_fix_and_print_their_thread_count(drift, capsys):
    before = torch.get_num_threads()
    try:
        assert main(["solve", drift, "--y0", "1,0", "--steps", "5", "--threads", "2"]) == 0
        assert "torch threads: 2 of" in capsys.readouterr().out and torch.get_num_threads() == 2
        assert main(["solve", drift, "--y0", "1,0", "--steps", "5"]) == 0
        assert "torch threads: 1 of" in capsys.readouterr().out and torch.get_num_threads() == 1
        assert main(["solve", drift, "--y0", "1,0", "--threads", "0"]) == 2
        assert "--threads must be an integer >= 1; got 0" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("seq, par, ideal, verdict", [
    ([2.0, 2.1, 2.0], [4.0, 4.1, 3.9], 4.0, "ok"),
    ([2.0, 3.0, 2.0], [4.0, 4.1, 3.9], 4.0, "repeats spread 50% > 25%"),
    ([40.0, 41.0, 40.0], [3.0, 3.0, 3.1], 4.3, "measured 13.33 > ideal 4.3"),
])
def test_speedup_timings_that_cannot_be_trusted_are_flagged(seq, par, ideal, verdict):
    assert figures.timing_verdict(seq, par, ideal) == verdict


def test_speedup_vs_window_times_interleaved_repeats(tmp_path, capsys):
    rows = reproduce.run("speedup-vs-window", tmp_path, fast=True)
    text = capsys.readouterr().out
    assert "torch threads: 1 of" in text and "(1 thread)" in text
    for row in rows:
        assert row["repeats"] == 2 and row["threads"] == 1 and row["timing"]
        flagged = float(row["measured_speedup"]) > float(row["ideal_speedup"])
        assert not flagged or row["timing"] != "ok"


def test_demo_convergence_figure_shows_the_tolerance_and_keeps_its_labels():
    import matplotlib.pyplot as plt
    from parasolve.apps import demo

    _, sol = demo.ode_demo(fast=True)
    fig = demo.convergence_figure(sol)
    try:
        ax = fig.axes[0]
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert [line.get_ydata()[0] for line in dashed] == [pytest.approx(demo.ODE_TOL / 500)]
        fig.canvas.draw()
        box = fig.bbox
        for label in (ax.yaxis.label, ax.xaxis.label, ax.title):
            extent = label.get_window_extent()
            assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0 and extent.y1 <= box.y1
    finally:
        plt.close(fig)


def _pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_project_files_first_contact():
    project = _pyproject()
    assert isinstance(project["project"]["license"], str)  # SPDX expression: no setuptools deprecation warning
    addopts = project["tool"]["pytest"]["ini_options"].get("addopts", "")
    assert "-q" not in addopts.split()  # README/CI pass -q: twice would hide the "N passed" line
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {"parasolve-demo/", "parasolve-reproduce/"} <= set(ignored)  # the commands' default --out


def test_pytest_warning_filters_are_precise():
    filters = _pyproject()["tool"]["pytest"]["ini_options"].get("filterwarnings", [])
    ignored = [f.split(":") for f in filters if f.startswith("ignore")]
    assert all(len(f) >= 4 and f[1] and f[2] and f[3] for f in ignored)  # message, category and module each
    assert "error::DeprecationWarning:parasolve" in filters


def test_distributed_example_under_plain_python_runs_one_rank_and_says_how_to_launch_more():
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "distributed_solve.py"), "--steps", "40"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "torchrun --standalone --nproc_per_node=K" in proc.stdout
    assert "1 ranks" in proc.stdout and "same bits as one process: ODE True, SDE True" in proc.stdout


def _python_blocks(page: Path):
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("where", ["anywhere", "checkout"])
def test_theory_page_test_blocks_run_without_pythonpath(tmp_path, where):
    """docs/theory.md's property tests: the first from any folder, the second (theory bounds) from the
    repository root, both with a plain `python -m pytest FILE` and no PYTHONPATH."""
    import os
    import subprocess

    blocks = [b for b in _python_blocks(ROOT / "docs" / "theory.md") if "def test_" in b]
    assert len(blocks) == 2
    code = blocks[0] if where == "anywhere" else blocks[1]
    code = code.replace("max_examples=25", "max_examples=5")  # the same test, fewer draws
    (tmp_path / "test_block.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cwd = tmp_path if where == "anywhere" else ROOT
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_block.py")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout


def _fake_checkout(tmp_path, stamp: bool):
    """A copy of .ci/setup and pyproject.toml with a .venv whose python is this one (parasolve from cwd)."""
    import hashlib
    import shutil

    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "setup", tmp_path / ".ci" / "setup")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "parasolve").mkdir()
    (tmp_path / "parasolve" / "__init__.py").write_text("")
    (tmp_path / "docs" / "javascripts").mkdir(parents=True)  # the docs' fetched assets
    (tmp_path / "docs" / "javascripts" / "mermaid.min.js").write_text("")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    (bin_dir / "python").chmod(0o755)
    if stamp:
        digest = hashlib.sha256((tmp_path / "pyproject.toml").read_bytes() + (tmp_path / ".ci" / "setup").read_bytes())
        (tmp_path / ".venv" / ".setup-stamp").write_text(digest.hexdigest() + "\n")
    fake = tmp_path / "fakebin"  # a python3 that records that a (re)install started, and stops it
    fake.mkdir()
    (fake / "python3").write_text(f"#!/bin/sh\ntouch {tmp_path}/installing\nexit 3\n")
    (fake / "python3").chmod(0o755)
    return fake


@pytest.mark.parametrize("current", [True, False])
def test_ci_setup_skips_the_install_only_when_the_venv_is_current(tmp_path, current):
    import os
    import subprocess

    fake = _fake_checkout(tmp_path, stamp=current)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", str(tmp_path / ".ci" / "setup")], env=env, capture_output=True, text=True,
                          timeout=120)
    if current:
        assert proc.returncode == 0 and ".venv is current" in proc.stdout
        assert not (tmp_path / "installing").exists()
    else:  # no stamp (a clean clone, or an edited pyproject.toml): the full setup runs
        assert proc.returncode == 3 and (tmp_path / "installing").exists()


_LIGHT = """
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {"diffusers", "transformers", "mkdocs", "material", "mkdocstrings", "sklearn", "hypothesis", "sympy"}

class Absent(MetaPathFinder):  # the light install: none of the extras is there
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed (light install)")
        return None

sys.meta_path.insert(0, Absent())
import torch
from parasolve.apps import cli, demo  # what `parasolve demo` imports
from parasolve import diffusion, zoo
den = zoo.pretrained("digits")
out = diffusion.sample(den, (1, 1, 16, 16), steps=5, method="sequential", generator=torch.Generator().manual_seed(0))
assert out.x.shape == (1, 1, 16, 16)
print("light ok")
"""


def test_the_demo_runs_on_the_light_install(tmp_path):
    """docs/install.md's light path: the demo's modules, the shipped model and a sample need none of
    the extras (test_cli runs the demo itself)."""
    import subprocess
    run = subprocess.run([sys.executable, "-c", _LIGHT], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0 and "light ok" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    pyproject = (ROOT / "pyproject.toml").read_text()
    core = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert not any(name in core for name in ("diffusers", "transformers", "mkdocs", "pytest"))


def test_docs_build_says_what_is_missing_up_front(tmp_path):
    import subprocess
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")  # a Python without the docs tooling
    fake.chmod(0o755)
    run = subprocess.run(["bash", str(ROOT / "docs" / "build.sh")], env={"PATH": "/usr/bin:/bin", "PYTHON": str(fake)},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert f'{fake} lacks the docs tooling; run: {fake} -m pip install -e ".[docs]"' in run.stderr


def test_more_threads_than_one_come_with_the_wait_policy_hint(monkeypatch):
    from parasolve.apps.common import use_threads
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        assert "OMP_WAIT_POLICY=PASSIVE" in use_threads(2) and "OMP_WAIT_POLICY" not in use_threads(1)
        monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
        assert "OMP_WAIT_POLICY" not in use_threads(2)
    finally:
        torch.set_num_threads(before)
