"""`parasolve reproduce` in fast mode: every reproduction runs and writes consistent CSV/PNG."""

import csv

import pytest

from parasolve.apps import figures, reproduce


@pytest.mark.parametrize("name", sorted(reproduce.REPRODUCTIONS))
def test_reproduction_runs_and_writes_its_outputs(name, tmp_path, capsys):
    rows = reproduce.run(name, tmp_path, fast=True)
    with (tmp_path / f"{name}.csv").open() as fh:
        written = list(csv.DictReader(fh))
    assert len(written) == len(rows) >= 1
    assert (tmp_path / f"{name}.png").stat().st_size > 2000
    for row in written:  # parallel runs reach the sequential sample within S * tol
        gap = row.get("max_abs_diff") or row.get("max|x-x_seq|")
        tol = float(row.get("tol", 1e-3))
        assert gap is not None and float(gap) <= 10 * tol  # S of these short samplers is below 10
    assert name in capsys.readouterr().out
    if name in ("table", "quality-vs-tolerance"):  # quality: seq, par and their difference per metric
        metrics = {row["metric"] for row in written}
        assert {"sliced W2", "confident share", "label agreement"} <= metrics
        assert ("task success" in metrics) == (name == "table")
        for row in written:
            seq, par, diff = (float(row[k].split(" ± ")[0]) for k in ("seq", "par", "par - seq"))
            assert diff == pytest.approx(par - seq, abs=1e-3)


def test_h100_cost_curve_interpolates_the_measured_points():
    assert figures.h100_ms(64) == pytest.approx(2.08)
    assert 2.08 < figures.h100_ms(128) < 3.56
