"""Drift evaluators: how one batched drift call is spread over devices and processes.

The core calls ``evaluator(fn, t, y)`` for every batch of time points and expects ``fn(t, y)``
back (``solve(..., evaluator=...)``). Pick one:

- default (``None``): one call on the state's device;
- :class:`DeviceEvaluator`: several devices in one process, with :func:`replicate` for models;
- :class:`DistributedEvaluator`: the ranks of a ``torch.distributed`` job (``torchrun``);
- :class:`CudaGraphEvaluator`: CUDA-graph replay at a fixed batch size (one GPU);
- :class:`FixedBatchEvaluator`: fixed-size, padded chunks without graphs.

:func:`choose_window` measures the drift and picks the window; see docs/distributed.md.
"""

from ..drift import local_evaluator
from .chunks import padded_rows, split_bounds
from .cuda_graph import CudaGraphEvaluator, FixedBatchEvaluator
from .devices import DeviceEvaluator, Replicas, replicate
from .distributed import DistributedEvaluator, init_distributed
from .errors import DistributedEvaluatorError, EvaluatorError
from .window import Probe, WindowChoice, WindowEstimate, choose_window, cost_curve, estimate_speedups, time_call

__all__ = ["local_evaluator", "DeviceEvaluator", "Replicas", "replicate", "DistributedEvaluator",
           "init_distributed", "CudaGraphEvaluator", "FixedBatchEvaluator", "EvaluatorError",
           "DistributedEvaluatorError", "choose_window", "cost_curve", "time_call", "WindowChoice",
           "WindowEstimate", "Probe", "estimate_speedups", "split_bounds", "padded_rows"]
