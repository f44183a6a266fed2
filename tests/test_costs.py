"""The cost model's record (what it measured, why it said no) and its sweep probe (parasolve.costs).

Oracles: drifts whose cost per batch size is set by ``time.sleep`` (sleeping takes no CPU, so the
verdicts hold on a loaded machine), the calls they saw, and the closed-form arithmetic of
:func:`parasolve.costs.probed_sweeps`.
"""

from __future__ import annotations

import time

import pytest
import torch

import parasolve
from parasolve import costs
from parasolve._solve import sweeps_probe
from parasolve.drift import BatchedDrift
from parasolve.steps import resolve_step

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64


def _drift(per_call_s, per_point_s, sizes):
    def f(t, y):
        sizes.append(y.shape[0] if y.dim() > 1 else 1)
        time.sleep(per_call_s + per_point_s * sizes[-1])
        return -y
    return f


def test_the_record_explains_a_no():
    """A call costs its points: the ladder says no, and its record holds the sizes it timed (the
    calls the drift saw), their times (at least the sleep), the price they passed and why."""
    per_point, sizes = 1e-3, []
    drift = _drift(0.0, per_point, sizes)
    y0, t = torch.ones(2, dtype=D), torch.linspace(0.0, 1.0, 11, dtype=D)
    record = {}
    assert not costs.parallel_pays(drift, t, y0, 1000, 10, 1.0, call_s=per_point, record=record)
    assert record["pays"] is False and record["verdict"] in ("too dear", "measuring share")
    assert [m for m, _ in record["rungs"]] == sorted(set(sizes)) and record["rungs"]
    assert all(seconds >= per_point * m for m, seconds in record["rungs"])
    assert record["call_budget_s"] == pytest.approx(1.0 / (costs.MARGIN * costs.SWEEP_OVERHEAD * 10))
    if record["verdict"] == "too dear":
        assert f"{record['call_budget_s']:.3g} s" in record["reason"]
    else:
        assert "MEASURE_SHARE" in record["reason"]


def test_a_sequential_solve_too_short_to_measure_is_not_measured():
    sizes, record = [], {}
    y0, t = torch.ones(2, dtype=D), torch.linspace(0.0, 1.0, 11, dtype=D)
    assert not costs.parallel_pays(_drift(0.0, 0.0, sizes), t, y0, 100, 10, 0.5 * costs.MIN_SEQUENTIAL_S,
                                   record=record)
    assert sizes == [] and record["rungs"] == [] and record["verdict"] == "too short"


def test_a_grid_too_short_to_time_one_step_on_is_not_timed():
    """Timing a step takes ``STEP_TIMING_CALLS`` calls: on fewer than ``STEP_TIMING_CALLS /
    MEASURE_SHARE`` steps that alone would pass the share, so the drift is not called at all;
    one step more and it is."""
    short = int(costs.STEP_TIMING_CALLS / costs.MEASURE_SHARE) - 1
    y0 = torch.ones(2, dtype=D)
    for steps, timed in ((short, False), (short + 2, True)):
        sizes, record = [], {}
        drift = BatchedDrift(_drift(0.0, 0.0, sizes), y0.shape, y0.dtype, y0.device, vectorized=True)
        grid = torch.linspace(0.0, 1.0, steps + 1, dtype=D)
        assert not costs.pays_on_grid(drift, resolve_step("euler"), grid, y0, "picard", {}, steps, record=record)
        assert record["verdict"] == "too short" and bool(sizes) == timed
        assert ("MEASURE_SHARE" in record["reason"]) != timed  # else: under MIN_SEQUENTIAL_S


def test_a_record_is_judged_again_not_timed_again():
    """The same rungs priced for fewer rounds: the first answer no (each call over its price),
    the second yes, timing only the sizes the first had not reached."""
    sizes, record = [], {}
    drift = _drift(2e-3, 0.0, sizes)  # every call 2 ms, whatever its batch
    y0, t = torch.ones(2, dtype=D), torch.linspace(0.0, 1.0, 11, dtype=D)
    assert not costs.parallel_pays(drift, t, y0, 64, 1000, 1.0, record=record)  # a call may take 0.44 ms
    first = sorted(set(sizes))
    assert record["verdict"] == "too dear" and [m for m, _ in record["rungs"]] == first == [8]
    del sizes[:]
    assert costs.parallel_pays(drift, t, y0, 64, 10, 1.0, record=record)  # a call may take 44 ms
    assert record["verdict"] == "pays" and sorted(set(sizes)) == [64] and [m for m, _ in record["rungs"]] == [8, 64]


def test_probed_sweeps():
    """Exact for a converged probe; else the growing advance ``c k`` (``c = 2 advanced / done^2``)
    capped by the window, or the constant advance where that is fewer; never past ``steps``."""
    assert costs.probed_sweeps(3, 100, True, 1000, 64) == 3
    # c = 2 * 32 / 16 = 4: sweeps 1..16 advance 4, 8, ..., 64 (544 steps), then 64 a sweep: 16 + 8 = 24
    assert costs.probed_sweeps(4, 32, False, 1000, 64) == 24
    # c = 2 * 8 / 16 = 1 with the window never reached: k (k + 1) / 2 >= 100 -> 14 (constant: 50)
    assert costs.probed_sweeps(4, 8, False, 100, 1000) == 14
    assert costs.probed_sweeps(4, 0, False, 10, 10) == 10


def test_the_probe_turns_a_no_on_expected_sweeps_into_a_measured_yes():
    """A drift whose call costs the same for any batch, a window of 64 steps on 2000: priced on
    ``expected_sweeps`` (40 a window) a call is too dear; four Picard sweeps measure far fewer,
    and the price passes. The solve that was predicted to pay takes fewer rounds than the
    sequential loop by more than the margin (every round sleeps the same: rounds are time)."""
    sizes = []
    f = _drift(2e-4, 0.0, sizes)
    y0, grid = torch.ones(2, dtype=D), torch.linspace(0.0, 2.0, 2001, dtype=D)
    step = resolve_step("euler")

    def pays(probe):
        drift = BatchedDrift(f, y0.shape, y0.dtype, y0.device, vectorized=True)
        record = {}
        answer = costs.pays_on_grid(drift, step, grid, y0, "picard", {}, 64, record=record,
                                    probe=sweeps_probe(drift, step, y0, grid, "picard", None, None) if probe else None)
        assert drift.nfe == drift.calls == 0  # the measuring and the probe are not counted
        return answer, record

    no, expected = pays(False)
    assert not no and expected["verdict"] == "too dear" and expected["sweeps_from"] == "expected"
    yes, probed = pays(True)
    assert yes and probed["sweeps_from"] == "probe" and probed["sweeps"] < expected["sweeps"]
    assert probed["probe"]["sweeps"] == costs.PROBE_SWEEPS and probed["measure_s"] > 0
    sol = parasolve.solve(f, y0, grid, method="picard", window=64, vectorized=True)
    assert sol.stats.iterations * costs.MARGIN * costs.SWEEP_OVERHEAD < 2000


def _sde_parts(f_sleep_s, g_sleep_per_point_s):
    def f(t, y):
        time.sleep(f_sleep_s)
        return -y

    def g(t, y):
        time.sleep(g_sleep_per_point_s * (y.shape[0] if y.dim() > 1 else 1))
        return 0.1 * torch.ones_like(y)
    return f, g


def test_solve_sde_prices_the_whole_step():
    """``solve_sde``'s Euler–Maruyama step calls ``g`` too: a ``g`` whose batch costs its
    points rules parallel sweeps out although ``f`` batches for free (timing ``f`` alone would
    say they pay); with ``g`` free as well they pay. The noise is the same: the answers agree."""
    y0, grid = torch.ones(2, dtype=D), torch.linspace(0.0, 2.0, 2001, dtype=D)
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(3), dtype=D)
    f, g = _sde_parts(2e-4, 2e-4)
    dear = parasolve.solve_sde(f, g, y0, grid, noise=noise, vectorized=True)
    f, g = _sde_parts(2e-4, 0.0)
    cheap = parasolve.solve_sde(f, g, y0, grid, noise=noise, vectorized=True)
    assert dear.method == "sequential" and cheap.method != "sequential"
    assert float((dear.ys - cheap.ys).abs().max()) <= 10 * cheap.stats.defect_sum + 1e-12
