"""benchmarks/bench_pilot.py runs end to end on one suite row and one other problem (a smoke test
of its counts, not a timing): the pilot's variants take fewer sweeps than the ones without it, and
every variant's error stays within 3x of torchdiffeq's."""

import csv
import runpy
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pilot.py"


def test_bench_pilot_counts(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "pilot.csv"
    try:
        code = runpy.run_path(str(BENCH), run_name="bench_pilot")["main"](
            ["--repeats", "1", "--rtol", "1e-8", "--problems", "all", "--only", "vdp-mu1", "duffing", "--no-flat",
             "--csv", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    rows = {(r["row"], r["variant"]): r for r in csv.DictReader(out.open())}
    for name in ("vdp-mu1-rtol1e-08", "duffing-rtol1e-08"):
        assert rows[name, "sequential"]["sweeps"] == "0"
        assert 2 * int(rows[name, "newton, pilot on"]["sweeps"]) <= int(rows[name, "newton, pilot off"]["sweeps"])
        assert rows[name, "newton, pilot on"]["pilot_steps"] and not rows[name, "newton, pilot off"]["pilot_steps"]
        for r in (v for (row, _), v in rows.items() if row == name):
            assert float(r["err"]) <= 3 * float(r["td_err"])
