"""Drift evaluators: how one batched drift call is spread over devices and processes.

The core calls ``evaluator(fn, t, y)`` for every batch of time points and expects ``fn(t, y)``
back (``solve(..., evaluator=...)``). Pick one:

- default (``None``): one call on the state's device;
- :class:`DeviceEvaluator`: several devices in one process, with :func:`replicate` for models;
- :class:`DistributedEvaluator`: the ranks of a ``torch.distributed`` job (``torchrun``);
- :class:`CudaGraphEvaluator`: CUDA-graph replay at a fixed batch size (one GPU);
- :class:`FixedBatchEvaluator`: fixed-size, padded chunks without graphs;
- :class:`CountingEvaluator`: counts the calls and time points of another evaluator.

The window tuner (:func:`parasolve.tuning.choose_window`) measures them; see docs/distributed.md.
"""

from .chunks import padded_rows, split_bounds
from .counting import CountingEvaluator
from .cuda_graph import CudaGraphEvaluator, FixedBatchEvaluator
from .devices import DeviceEvaluator, Replicas, replicate
from .distributed import DistributedEvaluator, init_distributed
from .protocol import (DistributedEvaluatorError, Evaluator, EvaluatorError, in_contract_check, local_evaluator,
                       tangents_per_point)

__all__ = ["Evaluator", "local_evaluator", "DeviceEvaluator", "Replicas", "replicate", "DistributedEvaluator",
           "init_distributed", "CudaGraphEvaluator", "FixedBatchEvaluator", "EvaluatorError",
           "DistributedEvaluatorError", "split_bounds", "padded_rows", "CountingEvaluator", "in_contract_check",
           "tangents_per_point"]
