"""benchmarks/fingerprint.py: the print is reproducible, bit for bit, and sees a changed answer;
the committed print is of this tree's configurations."""

import json
import runpy
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bench():
    return runpy.run_path(str(ROOT / "benchmarks" / "fingerprint.py"), run_name="fingerprint")


def test_the_print_is_reproducible_and_covers_every_scheme(bench):
    threads = torch.get_num_threads()
    try:
        first = bench["fingerprint"]("ode/harmonic/")
        again = bench["fingerprint"]("ode/harmonic/")
    finally:
        torch.set_num_threads(threads)
    assert first == again and len(first) >= 20
    assert {name.split("/")[2] for name in first} >= {"sequential", "picard", "newton", "anderson", "parareal"}
    assert all("error" not in rec for rec in first.values())


def test_the_digest_sees_one_ulp_and_the_dtype(bench):
    x = torch.linspace(0, 1, 7, dtype=torch.float64)
    y = x.clone()
    y[3] = torch.nextafter(y[3], torch.tensor(2.0, dtype=torch.float64))
    assert bench["digest"](x) == bench["digest"](x.clone())
    assert bench["digest"](x) != bench["digest"](y) != bench["digest"](x.float())


def test_the_committed_print_names_the_same_configurations(bench):
    committed = json.loads((ROOT / "docs" / "benchmarks" / "fingerprint.json").read_text())
    assert len(committed) > 150 and "ode/harmonic/picard/w16/last" in committed
    assert all("error" not in rec for rec in committed.values())
