"""torch.distributed (gloo, 2 processes): same bits as one process; a dead or hung rank is named in time.

Each scenario spawns two fresh processes (``torch.multiprocessing``, spawn) that join a gloo
group on a free local port through the environment (as under torchrun), run the solves and
save what they got (or the error they raised) for the parent to check.
"""

import importlib.util
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import parasolve
from parasolve.evaluators import DistributedEvaluator, DistributedEvaluatorError, init_distributed, local_evaluator
from parasolve.testing import CountingEvaluator

from conftest import oscillator, oscillator_point

DT = torch.float64
WORLD = 2


def diffusion(t, y):
    return 0.2 + 0.1 * torch.cos(y)


def solves(evaluator=None, f=oscillator):
    """The solves every scenario runs: odd window (uneven splits, 1-point windows at the end),
    a 2-stage step, vmap batching, and an SDE with fixed noise."""
    y0, t = torch.tensor([1.0, 0.0], dtype=DT), torch.linspace(0, 3, 61, dtype=DT)
    noise = torch.randn(60, 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    return {
        "euler_w7": parasolve.solve(f, y0, t, vectorized=True, window=7, evaluator=evaluator).ys,
        "heun_w16": parasolve.solve(oscillator, y0, t, vectorized=True, window=16, step="heun",
                                    evaluator=evaluator).ys,
        "vmap_w13": parasolve.solve(oscillator_point, y0, t, window=13, evaluator=evaluator).ys,
        "sde_w9": parasolve.solve_sde(oscillator, diffusion, y0, t, noise=noise, vectorized=True, window=9,
                                      evaluator=evaluator).ys,
    }


def _worker(rank, port, scenario, outdir):
    """``"solve"``: the solves, a batch mismatch, the example, then rank 0 hangs in its drift.
    ``"exit"``: rank 1 dies before the solve."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    assert init_distributed("gloo", timeout=30) == (rank, WORLD, torch.device("cpu"))  # as under torchrun
    result = {}
    try:
        if scenario == "exit" and rank == 1:
            os._exit(0)
        if scenario == "solve":
            result["ys"] = solves(DistributedEvaluator(timeout=30.0))
            inner = CountingEvaluator()  # each rank's slice through an inner evaluator: same bits
            result["inner_ys"] = solves(DistributedEvaluator(timeout=30.0, inner=inner))["euler_w7"]
            result["inner_rows"] = inner.rows
            y0, t = torch.zeros(2, dtype=DT), torch.linspace(0, 1, 21, dtype=DT)
            try:  # ranks that disagree on the window are told so, instead of gathering garbage
                parasolve.solve(oscillator, y0, t, vectorized=True, window=5 + rank, method="picard",
                                evaluator=DistributedEvaluator(timeout=30.0))
            except ValueError as exc:
                result["mismatch"] = str(exc)
            # window="auto": every rank runs the same probes (none stops early on its own timings)
            result["auto_window"] = parasolve.solve(oscillator, y0, t, vectorized=True, window="auto",
                                                    evaluator=DistributedEvaluator(timeout=30.0)).stats.window
            result["example"] = _example().main(["--steps", "100", "--window", "16"])
            if rank == 0:  # save now: this rank is about to hang
                _save(result, outdir, rank)
        calls = [0]

        def f(t, y):
            calls[0] += 1
            # f's 4th call is the evaluator's 4th (the first call's row check runs through the evaluator
            # too, as its second call, so that the timeout covers it): the solve's third drift call
            if scenario == "solve" and rank == 0 and calls[0] == 4:
                time.sleep(60)  # a worker stuck in its drift at the third call
            return oscillator(t, y)

        start = time.monotonic()
        try:
            solves(DistributedEvaluator(timeout=3.0, grace=1.0), f)
        except DistributedEvaluatorError as exc:
            result.update(error=str(exc), ranks=exc.ranks, call=exc.call, elapsed=time.monotonic() - start)
    finally:
        _save(result, outdir, rank)
        os._exit(0)  # skip process-group teardown, which may wait on a dead peer


def _save(result, outdir, rank):
    path = os.path.join(outdir, f"rank{rank}.pt")
    if not os.path.exists(path):
        torch.save(result, path + ".tmp")
        os.replace(path + ".tmp", path)  # the parent never sees a half-written file


def _example():
    path = Path(__file__).resolve().parents[1] / "examples" / "distributed_solve.py"
    spec = importlib.util.spec_from_file_location("distributed_solve", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(scenario, outdir, wait_for, limit=60):
    """Start both ranks; return their saved results once the ranks in ``wait_for`` have saved."""
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, scenario, str(outdir)), daemon=True) for r in range(WORLD)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + limit
    try:
        while not all((outdir / f"rank{r}.pt").exists() for r in wait_for):
            assert time.monotonic() < deadline, f"scenario {scenario!r}: ranks {wait_for} did not finish in {limit} s"
            time.sleep(0.1)
        return {r: torch.load(outdir / f"rank{r}.pt") for r in wait_for}
    finally:
        for rank, p in enumerate(procs):  # ours: the finished ones exit, a hung or stray one is killed
            p.join(timeout=5 if rank in wait_for else 0)
            if p.is_alive():
                p.kill()
                p.join()


def test_two_gloo_ranks_give_the_single_process_bits_and_name_a_hung_rank(tmp_path):
    reference = solves(local_evaluator)  # an evaluator: the same parallel scheme, no cost model
    results = _spawn("solve", tmp_path, wait_for=[0, 1])
    for rank in range(WORLD):
        for name, ys in reference.items():
            assert torch.equal(results[rank]["ys"][name], ys), (rank, name)
        assert "Ranks disagree on the batch" in results[rank]["mismatch"]
        assert torch.equal(results[rank]["inner_ys"], reference["euler_w7"]) and results[rank]["inner_rows"] > 0
        assert "[[5, 2], [6, 2]]" in results[rank]["mismatch"]
    assert results[0]["auto_window"] == results[1]["auto_window"] >= 1
    example = results[0]["example"]  # examples/distributed_solve.py in the same group
    assert example["world"] == WORLD and example["ode_same_bits"] and example["sde_same_bits"]
    hung = results[1]  # rank 0 sleeps in the evaluator's 4th call: rank 1 names it within the timeout
    assert hung["ranks"] == [0] and hung["call"] == 4
    assert "rank(s) [0] of 2 did not reach drift call #4 (dead, hung, or slower than the 3 s timeout)" in hung["error"]
    assert 3.0 <= hung["elapsed"] < 3.0 + 1.0 + 3.0  # timeout + grace + slack


def test_a_rank_that_exits_early_is_named(tmp_path):
    result = _spawn("exit", tmp_path, wait_for=[0])[0]
    assert result["ranks"] == [1] and result["call"] == 1
    assert "rank(s) [1] of 2 did not reach drift call #1 (dead, hung" in result["error"]
    assert result["elapsed"] < 3.0 + 1.0 + 3.0  # timeout + grace + slack: it never hangs


def test_init_distributed_keeps_an_existing_group_and_its_backend(tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # not needed once a group exists
        monkeypatch.delenv(name, raising=False)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert init_distributed() == (0, 1, torch.device("cpu"))  # gloo: the CPU, even where CUDA exists
        assert init_distributed("gloo") == (0, 1, torch.device("cpu"))
        with pytest.raises(ValueError, match="already initialised with backend 'gloo'"):
            init_distributed("nccl")
    finally:
        dist.destroy_process_group()
