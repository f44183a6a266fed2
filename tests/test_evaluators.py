"""In-process evaluators: multi-device splitting, replicas, fixed batches, the window chooser."""

import time

import pytest
import torch

import parasolve
from parasolve.evaluators import local_evaluator  # references: the same scheme, no cost model
from parasolve.evaluators import (CudaGraphEvaluator, DeviceEvaluator, DistributedEvaluator, EvaluatorError,
                                  FixedBatchEvaluator, Replicas, padded_rows, replicate, split_bounds)
from parasolve.testing import CountingEvaluator
from parasolve.tuning import Probe, choose_window, cost_curve, estimate_speedups

from conftest import oscillator, oscillator_point

DT = torch.float64


Y0 = torch.tensor([1.0, 0.0], dtype=DT)
T = torch.linspace(0, 3, 101, dtype=DT)


@pytest.mark.parametrize("n,parts", [(10, 3), (3, 5), (1, 2), (16, 4), (7, 1)])
def test_split_bounds_is_a_contiguous_balanced_cover(n, parts):
    bounds = split_bounds(n, parts)
    assert len(bounds) == parts and bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(b0[1] == b1[0] for b0, b1 in zip(bounds, bounds[1:]))
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_padded_rows_repeats_the_last_real_row():
    x = torch.arange(10.0).reshape(5, 2)
    assert torch.equal(padded_rows(x, 1, 3, 4), x[[1, 2, 2, 2]])
    assert torch.equal(padded_rows(x, 5, 5, 2), x[[4, 4]])  # an empty range still gets valid rows
    assert torch.equal(padded_rows(x, 0, 5, 5), x)


@pytest.mark.parametrize("threads", [True, False])
def test_device_evaluator_on_several_cpu_devices_matches_local_bitwise(threads):
    ev = DeviceEvaluator(["cpu"] * 3, threads=threads)
    for step in ("euler", "heun"):
        ref = parasolve.solve(oscillator, Y0, T, vectorized=True, window=16, step=step, evaluator=local_evaluator)
        got = parasolve.solve(oscillator, Y0, T, vectorized=True, window=16, step=step, evaluator=ev)
        assert torch.equal(got.ys, ref.ys)
        assert (got.stats.nfe, got.stats.iterations) == (ref.stats.nfe, ref.stats.iterations)
    ev.close()


def test_device_evaluator_sde_with_vmap_batching_matches_local_bitwise():
    noise = torch.randn(100, 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    g = lambda t, y: 0.2 + 0.1 * torch.cos(y)  # noqa: E731
    ref = parasolve.solve_sde(oscillator_point, g, Y0, T, noise=noise, window=32, evaluator=local_evaluator)
    got = parasolve.solve_sde(oscillator_point, g, Y0, T, noise=noise, window=32,
                              evaluator=DeviceEvaluator(["cpu", "cpu"]))
    assert torch.equal(got.ys, ref.ys) and got.stats.nfe == ref.stats.nfe


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([0.5, -0.3], dtype=DT))

    def forward(self, t, y):
        return self.scale * y + torch.cos(t)[:, None]


def test_replicate_copies_the_module_per_device_and_routes_by_input_device():
    net = TinyNet()
    reps = replicate(net, ["cpu", "meta"])
    assert reps.by_device[torch.device("cpu")] is net  # the module serves its own device
    meta = reps.by_device[torch.device("meta")]
    assert meta is not net and meta.scale.device.type == "meta" and net.scale.device.type == "cpu"
    with torch.no_grad():
        ref = parasolve.solve(net, Y0, T, vectorized=True, window=20, evaluator=local_evaluator)
        got = parasolve.solve(reps, Y0, T, vectorized=True, window=20, evaluator=DeviceEvaluator(["cpu"] * 2))
    assert torch.equal(got.ys, ref.ys)
    with pytest.raises(ValueError, match="No replica of the drift on cpu"):
        Replicas([meta], ["meta"])(T[:2], Y0.expand(2, 2))


def test_replicated_digits_unet_on_split_batches_matches_one_call():
    from parasolve.zoo.unet import DigitsUNet

    torch.manual_seed(0)
    net = DigitsUNet().eval()
    for p in net.parameters():  # the zero-initialised output layers would make every output 0
        torch.nn.init.normal_(p, std=0.05)
    reps = replicate(net, ["cpu"], build=lambda m: (lambda t, y: m(y, t)))
    t = torch.linspace(999, 0, 7)
    y = torch.randn(7, 1, 16, 16)
    with torch.no_grad():
        ref = net(y, t)
        got = DeviceEvaluator(["cpu"] * 3)(reps, t, y)
    assert got.abs().max() > 0 and torch.allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_fixed_batch_evaluator_pads_and_matches_local_bitwise():
    ev = FixedBatchEvaluator(7)
    ref = parasolve.solve(oscillator, Y0, T, vectorized=True, window=16, evaluator=local_evaluator)
    got = parasolve.solve(oscillator, Y0, T, vectorized=True, window=16, evaluator=ev)
    assert torch.equal(got.ys, ref.ys) and got.stats.nfe == ref.stats.nfe
    assert ev.padded_rows > 0  # 16-point windows are 7 + 7 + 2 padded to 7


def test_cuda_graph_evaluator_refuses_cpu_states():
    with pytest.raises(ValueError, match="CUDA device; got cpu"):
        parasolve.solve(oscillator, Y0, T, vectorized=True, evaluator=CudaGraphEvaluator(8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_evaluator_matches_eager_on_gpu():
    y0, t = Y0.cuda(), T.cuda()
    ref = parasolve.solve(oscillator, y0, t, vectorized=True, window=16, evaluator=local_evaluator)
    ev = CudaGraphEvaluator(16)
    got = parasolve.solve(oscillator, y0, t, vectorized=True, window=16, evaluator=ev)
    assert torch.equal(got.ys, ref.ys)
    again = parasolve.solve(oscillator, y0, t, vectorized=True, window=16, evaluator=ev)
    assert torch.equal(again.ys, ref.ys) and ev.captures == 1  # every call of both solves replays one graph
    seq = parasolve.solve(oscillator, y0, t, vectorized=True, method="sequential")
    seq_graph = parasolve.solve(oscillator, y0, t, vectorized=True, method="sequential",
                                evaluator=CudaGraphEvaluator(1))
    assert torch.equal(seq_graph.ys, seq.ys)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_device_evaluator_on_two_gpus_matches_one():
    net = TinyNet().cuda()
    devices = ["cuda:0", "cuda:1"]
    y0, t = Y0.cuda(), T.cuda()
    with torch.no_grad():
        ref = parasolve.solve(net, y0, t, vectorized=True, window=32, evaluator=local_evaluator)
        got = parasolve.solve(replicate(net, devices), y0, t, vectorized=True, window=32,
                              evaluator=DeviceEvaluator(devices))
    assert torch.equal(got.ys, ref.ys)


def test_estimate_speedups_extrapolates_a_growing_advance():
    probes = [Probe(4, 8, 16, False, 0.8), Probe(16, 8, 64, False, 1.6), Probe(64, 3, 100, True, 0.9)]
    table = estimate_speedups(100, 0.01, probes)
    # Growing advance c k (c = 2 advanced / sweeps^2), capped by the window: w=4: c = 0.5, the
    # cap from sweep 8 (18 steps), then 4 per sweep: 8 + ceil(82 / 4) = 29 < ceil(100 / 2);
    # w=16: c = 2, 72 steps by sweep 8, then 16 per sweep: 10 < ceil(100 / 8); w=64: exact.
    assert [e.sweeps for e in table] == [29, 10, 3]
    assert [round(e.speedup, 6) for e in table] == [round(1.0 / (29 * 0.1), 6), round(1.0 / (10 * 0.2), 6),
                                                     round(1.0 / (3 * 0.3), 6)]


def test_choose_window_probes_are_exact_when_they_converge():
    const = lambda t, y: torch.ones_like(y)  # noqa: E731  Picard is exact after two sweeps
    choice = choose_window(const, Y0, T[:33], vectorized=True, candidates=[8, 32], probe_sweeps=4)
    full = next(e for e in choice.table if e.window == 32)
    assert full.sweeps == parasolve.solve(const, Y0, T[:33], vectorized=True, evaluator=local_evaluator).stats.iterations == 2
    assert choice.window in (8, 32) and choice.speedup == max(e.speedup for e in choice.table)


def test_cost_curve_returns_one_positive_time_per_batch():
    curve = cost_curve(oscillator_point, Y0, T, [1, 4, 16], repeats=2, warmup=1)
    assert sorted(curve) == [1, 4, 16] and all(v > 0 for v in curve.values())


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="`devices` must be a list"):
        DeviceEvaluator("cpu")
    with pytest.raises(ValueError, match="at least one device"):
        DeviceEvaluator([])
    with pytest.raises(ValueError, match="Not a device: 'gpu0'"):
        DeviceEvaluator(["gpu0"])
    with pytest.raises(ValueError, match="one drift per device"):
        Replicas([oscillator], ["cpu", "cpu"])
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        replicate(oscillator, ["cpu"])
    with pytest.raises(ValueError, match="`batch` must be an integer >= 1"):
        FixedBatchEvaluator(0)
    with pytest.raises(ValueError, match=r"`timeout` must be a real number in \(0, inf\); got 0"):
        DistributedEvaluator(timeout=0)
    with pytest.raises(RuntimeError, match="initialised process group"):
        parasolve.solve(oscillator, Y0, T, vectorized=True, evaluator=DistributedEvaluator())
    with pytest.raises(TypeError, match="sets `window` itself"):
        choose_window(oscillator, Y0, T, window=4)
    with pytest.raises(ValueError, match=r"`timeout` must be a real number in \(0, inf\) or None; got 0"):
        DeviceEvaluator(["cpu"], timeout=0)
    with pytest.raises(TypeError, match="`inner` must be an evaluator .* a list of 2 of them"):
        DeviceEvaluator(["cpu"] * 2, inner=[CountingEvaluator()])
    with pytest.raises(TypeError, match="`inner` must be an evaluator"):
        DistributedEvaluator(inner="graph")
    with pytest.raises(TypeError, match="`evaluator_factory` must be callable"):
        choose_window(oscillator, Y0, T, evaluator_factory=16)
    with pytest.raises(TypeError, match="either `evaluator`"):
        choose_window(oscillator, Y0, T, evaluator=FixedBatchEvaluator(4), evaluator_factory=FixedBatchEvaluator)
    with pytest.raises(ValueError, match="`candidates` must be an integer >= 1; got 0"):
        choose_window(oscillator, Y0, T, candidates=[0])


def test_device_evaluator_times_out_naming_the_hung_device():
    calls = [0]

    def f(t, y):  # the second chunk (rows from the middle on) hangs once
        calls[0] += 1
        if float(t[0]) > 1.0 and calls[0] <= 4:
            time.sleep(3.0)
        return oscillator(t, y)

    ev = DeviceEvaluator(["cpu", "cpu"], timeout=0.3)
    start = time.monotonic()
    with pytest.raises(EvaluatorError, match=r"device 1 \(cpu, rows 50:100\) did not return within the 0.3 s"):
        parasolve.solve(f, Y0, T, vectorized=True, evaluator=ev, method="picard")
    assert time.monotonic() - start < 2.0  # it did not wait for the sleeping thread
    calls[0] = 10  # no more hangs; fresh threads serve the next solve (the old one is abandoned)
    ref = parasolve.solve(oscillator, Y0, T, vectorized=True, method="picard")
    assert torch.equal(parasolve.solve(f, Y0, T, vectorized=True, evaluator=ev, method="picard").ys, ref.ys)
    ev.close()


@pytest.mark.parametrize("per_device", [False, True], ids=["shared", "per-device"])
def test_device_evaluator_runs_each_chunk_through_inner(per_device):
    inners = [CountingEvaluator() for _ in range(3)]
    ev = DeviceEvaluator(["cpu"] * 3, inner=inners if per_device else inners[0])
    ref = parasolve.solve(oscillator, Y0, T, vectorized=True, window=16, step="heun", evaluator=local_evaluator)
    got = parasolve.solve(oscillator, Y0, T, vectorized=True, window=16, step="heun", evaluator=ev)
    assert torch.equal(got.ys, ref.ys)
    used = inners if per_device else inners[:1]
    assert sum(i.rows for i in used) == got.stats.nfe and all(i.calls > 0 for i in used)
    ev.close()


def test_distributed_evaluator_runs_the_rank_slice_through_inner(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        inner = CountingEvaluator()
        ref = parasolve.solve(oscillator, Y0, T, vectorized=True, window=16, evaluator=local_evaluator)
        got = parasolve.solve(oscillator, Y0, T, vectorized=True, window=16,
                              evaluator=DistributedEvaluator(timeout=30.0, inner=inner))
        assert torch.equal(got.ys, ref.ys) and inner.rows == got.stats.nfe and inner.calls == got.stats.drift_calls
    finally:
        dist.destroy_process_group()


class FakeGraph:
    """Stands in for a captured CUDA graph on CPU: replay() re-runs the function on the static inputs."""

    def __init__(self, fn, t_in, y_in, out):
        self.fn, self.t_in, self.y_in, self.out = fn, t_in, y_in, out

    def replay(self):
        self.out.copy_(self.fn(self.t_in, self.y_in))


def test_cuda_graph_keying_and_lru_without_cuda(monkeypatch):
    def capture(self, fn, t, y):
        t_in, y_in = t.clone(), y.clone()
        out = fn(t_in, y_in)
        return FakeGraph(fn, t_in, y_in, out), t_in, y_in, out

    monkeypatch.setattr(CudaGraphEvaluator, "_capture", capture)
    ev = CudaGraphEvaluator(4, max_graphs=2)

    def call(fn, n, dtype=DT):  # the chunking of __call__, without its CUDA-device check
        return FixedBatchEvaluator.__call__(ev, fn, T[:n].to(dtype), Y0.expand(n, 2).to(dtype))

    double = lambda t, y: 2 * y  # noqa: E731
    assert torch.equal(call(oscillator, 10), oscillator(T[:10], Y0.expand(10, 2)))  # 3 chunks, padded
    call(oscillator, 3)
    assert ev.captures == 1 and ev.padded_rows == 2 + 1  # one shape: one graph for every chunk
    wrapped = torch.func.vmap(double)  # keyed by the function it wraps, and by the wrapping
    assert torch.equal(call(wrapped, 4), 2 * Y0.expand(4, 2)) and ev.captures == 2
    call(torch.func.vmap(double), 4)
    assert ev.captures == 2  # a fresh vmap of the same function replays the same graph
    call(oscillator, 4)  # touch: oscillator's graph becomes the most recently used
    call(oscillator, 4, torch.float32)  # another dtype: a third graph evicts the least recently used
    assert ev.captures == 3 and len(ev.graphs) == 2
    assert [key[0] for key in ev.graphs] == [oscillator, oscillator]
    call(wrapped, 4)
    assert ev.captures == 4  # evicted, so captured again


def test_choose_window_builds_one_evaluator_per_candidate():
    built = []

    def factory(window):
        built.append(FixedBatchEvaluator(window))
        return built[-1]

    choice = choose_window(oscillator, Y0, T[:33], vectorized=True, candidates=[8, 32], probe_sweeps=2,
                           evaluator_factory=factory)
    assert [ev.batch for ev in built] == [1, 8, 32] and choice.window in (8, 32)
    assert built[0].padded_rows == built[1].padded_rows == 0  # one evaluator(32) would pad these to 32


def test_default_candidates_stop_once_the_estimates_have_passed_their_peak():
    from parasolve.tuning import WindowEstimate, past_the_peak

    def table(*speedups):
        return [WindowEstimate(2 ** (k + 1), 1.0, 1.0, 1, s) for k, s in enumerate(speedups)]

    assert past_the_peak(table(1.0, 3.0, 2.0, 1.0))  # fell twice, below 0.8 x the best
    assert not past_the_peak(table(1.0, 3.0, 2.9, 2.6))  # fell twice, but still near the best
    assert not past_the_peak(table(0.97, 0.72, 2.4))  # one dip (timing noise), then rising
    assert not past_the_peak(table(3.0, 2.0))  # too few to tell
    # a real solve: the default candidates are probed from the smallest, in order, the choice among them
    choice = choose_window(oscillator, Y0, T, vectorized=True, probe_sweeps=2)
    probed = [e.window for e in choice.table]
    assert probed == sorted(probed) and probed[0] == 2 and choice.window in probed
    everything = choose_window(oscillator, Y0, T, vectorized=True, probe_sweeps=2,
                               candidates=[2, 4, 8, 16, 32, 64, len(T) - 1])
    assert len(everything.table) == 7  # given candidates are all probed
