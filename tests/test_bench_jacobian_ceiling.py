"""benchmarks/jacobian_ceiling.py: the truncation is the best rank-r model (Eckart-Young), full rank
reproduces the measured Jacobian, and a tiny run writes every row."""

import runpy
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "jacobian_ceiling.py"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bench():
    return runpy.run_path(str(BENCH), run_name="jacobian_ceiling")


def test_truncation_is_the_best_rank_r_model(bench):
    jac = torch.randn(3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s = torch.diagonal(jac, dim1=-2, dim2=-1).mean(-1)[:, None, None]
    rest = jac - s * torch.eye(12, dtype=jac.dtype)
    sv = torch.linalg.svdvals(rest)
    for r in (0, 3, 7):
        left = torch.linalg.matrix_norm(jac - bench["truncated"](jac, r))
        torch.testing.assert_close(left, sv[:, r:].pow(2).sum(-1).sqrt())  # Eckart-Young: the optimum
    torch.testing.assert_close(bench["truncated"](jac, 12), jac)


def test_tiny_run_writes_every_row(bench, tmp_path):
    threads = torch.get_num_threads()
    try:
        results = bench["main"](["--runs", "digits:ddim:4:4:0", "--oracle", "digits:ddim:4:4:0", "--ranks", "256",
                                 "--jobs", "1", "--out", str(tmp_path / "c.md")])
    finally:
        torch.set_num_threads(threads)
    full, oracle = results
    scalar, exact = full["rows"]
    assert (scalar["label"], exact["label"], oracle["rows"][0]["label"]) == ("scalar", "full", "rank 256")
    assert exact["nfe"] >= 257 * 4 and scalar["nfe"] <= scalar["sweeps"] * 4  # 256 probes per step and sweep
    # rank 256 keeps the whole measured Jacobian: the same solve as full Newton
    assert oracle["rows"][0]["sweeps"] == exact["sweeps"] and oracle["rows"][0]["nfe"] == exact["nfe"]
    assert all(r["gap"] < 2e-3 for r in (scalar, exact, oracle["rows"][0]))
    assert [row["step"] for row in full["structure"]] == [0, 1, 2, 3]
    text = (tmp_path / "c.md").read_text()
    assert "| digits:ddim:4:4:0 | " in text and "rank 256 oracle" in text
