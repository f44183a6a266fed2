"""Fixed-size batches, and CUDA-graph replay of the drift for one captured batch size.

A sliding-window solve calls the drift with the window size on every sweep except near the
end of the grid. :class:`FixedBatchEvaluator` cuts every batch into chunks of exactly
``batch`` rows (the last one padded by repeating its last row, the padding discarded), so the
drift only ever sees one shape. :class:`CudaGraphEvaluator` adds the fast path: the drift is
captured once per shape as a CUDA graph and every chunk is a graph replay -- no per-kernel
launch cost, which dominates small models (an eager call costs about as much at batch 4 as
at 1024 on an H100; docs/benchmarks/gpu.md). Use ``CudaGraphEvaluator(1)`` for the
sequential baseline so that comparisons run in the same execution mode.

The drift must be capturable: no host synchronisation (``.item()``, ``.cpu()``, printing a
tensor), no data-dependent shapes, no new allocations that outlive the call. The nfe counted
by the core is the number of real points, not the padding.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict

import torch

from .._checks import check_positive_int
from .chunks import padded_rows
from .protocol import in_contract_check, local_evaluator

_THREAD_LOCAL = ({"capture_error_mode": "thread_local"}
                 if "capture_error_mode" in inspect.signature(torch.cuda.graph.__init__).parameters else {})


class FixedBatchEvaluator:
    """Evaluate every batch as chunks of exactly ``batch`` rows (the last chunk padded).

    ``inner(fn, t, y)`` evaluates one chunk (default: a plain call).
    """

    def __init__(self, batch: int, inner=None):
        check_positive_int("batch", batch,
                           fix="It is the fixed number of time points per drift call, usually the window.")
        self.batch = batch
        self.inner = inner if inner is not None else local_evaluator
        self.padded_rows = 0  # evaluations spent on padding, for the benchmarks

    def __call__(self, fn, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, size = t.shape[0], self.batch
        outs = []
        for a in range(0, n, size):
            b = min(a + size, n)
            self.padded_rows += 0 if in_contract_check() else size - (b - a)  # the solve's padding
            out = self._one(fn, padded_rows(t, a, b, size), padded_rows(y, a, b, size))
            outs.append(out[:b - a])
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _one(self, fn, t, y):
        return self.inner(fn, t, y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch={self.batch})"


class CudaGraphEvaluator(FixedBatchEvaluator):
    """Replay a CUDA graph of ``fn`` captured for ``batch`` rows (one graph per function and shape).

    The first call for a new drift or state shape captures it (after ``warmup`` eager calls on a
    side stream, as CUDA-graph capture requires); later calls copy the chunk into the graph's
    static inputs, replay, and copy the output out. Graphs are keyed by the drift *object*: a
    solve that builds a new closure each time (e.g. ``diffusion.sample``) captures again; the
    ``max_graphs`` most recently used graphs are kept. States not on a CUDA device raise a
    ``ValueError``: graphs exist only on CUDA (use the default evaluator on CPU).
    """

    def __init__(self, batch: int, *, warmup: int = 3, max_graphs: int = 8):
        super().__init__(batch)
        check_positive_int("warmup", warmup, fix="It counts the eager calls before a graph is captured.")
        check_positive_int("max_graphs", max_graphs, fix="It counts the graphs (batch shapes) kept.")
        self.warmup = warmup
        self.max_graphs = max_graphs
        self.graphs: OrderedDict = OrderedDict()
        self.captures = 0
        self._pool = None

    def __call__(self, fn, t, y):
        if y.device.type != "cuda":
            raise ValueError(f"CudaGraphEvaluator needs the state on a CUDA device; got {y.device}. "
                             f"Use the default evaluator (or FixedBatchEvaluator) off CUDA.")
        return super().__call__(fn, t, y)

    def _one(self, fn, t, y):
        # The core re-wraps f in a fresh vmap object per call; torch.func.vmap keeps the user's
        # function as __wrapped__, which identifies the graph (and the wrapping is part of the key).
        wrapped = getattr(fn, "__wrapped__", None)
        key = (fn if wrapped is None else wrapped, wrapped is not None, t.dtype, y.dtype, tuple(y.shape), y.device)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self.graphs[key] = self._capture(fn, t, y)
            self.captures += 1
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        self.graphs.move_to_end(key)
        graph, t_in, y_in, out = entry
        t_in.copy_(t)
        y_in.copy_(y)
        graph.replay()
        return out.clone()  # the next replay overwrites `out`

    def _capture(self, fn, t, y):
        t_in, y_in = t.clone(), y.clone()
        side = torch.cuda.Stream(device=y.device)
        side.wait_stream(torch.cuda.current_stream(y.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                fn(t_in, y_in)
        torch.cuda.current_stream(y.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (a DeviceEvaluator's workers on other GPUs) may allocate meanwhile.
        with torch.cuda.graph(graph, pool=self._pool, **_THREAD_LOCAL):
            out = fn(t_in, y_in)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"The drift must return a torch.Tensor to be captured; got {type(out).__name__}.")
        return graph, t_in, y_in, out
