"""Many processes (``torch.distributed``): each rank evaluates its slice of the batch, then all-gather.

Every rank runs the same solve. At each batched drift call, rank ``r`` evaluates the contiguous
chunk ``r`` of the time points (chunks padded to one size by repeating their last row, so every
rank calls the drift with the same shape), the chunks are all-gathered, and every rank goes on
with the full, identical batch -- so every rank makes the same decisions and ends with the
same solution. Launch with ``torchrun --nproc_per_node=K script.py`` (see docs/distributed.md).

A rank that dies or hangs cannot hang the others: each gather waits at most ``timeout``
seconds, then the ranks that are still alive find out, through the process group's store,
which ranks never reached that gather, and raise :class:`DistributedEvaluatorError` naming them.
"""

from __future__ import annotations

import datetime
import inspect
import itertools
import os
import time

import torch
import torch.distributed as dist

from .._checks import check_real
from .chunks import padded_rows, split_bounds
from .protocol import DistributedEvaluatorError, local_evaluator

_instances = itertools.count()
# Newer torch names it all_gather_single (the old name warns); older releases have only the old name.
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def all_gather_tensor(out: torch.Tensor, local: torch.Tensor, *, group=None, async_op: bool = False):
    """``out = cat(local of every rank)``: ``all_gather_single`` where torch has it, else
    ``all_gather_into_tensor`` (older releases). Returns the work handle with ``async_op``."""
    return _all_gather(out, local, group=group, async_op=async_op)


def init_distributed(backend: str | None = None, *, timeout: float = 60.0):
    """Join the process group that ``torchrun`` describes in the environment.

    ``backend`` defaults to ``"nccl"`` when CUDA is available, else ``"gloo"``. With NCCL the
    rank's GPU (``LOCAL_RANK``) becomes the current device. ``timeout`` (seconds) bounds the
    rendezvous and the backend's own collectives. If a process group already exists it is kept:
    its backend (``dist.get_backend()``) decides the device, and a different ``backend`` is an
    error. Returns ``(rank, world_size, device)``.
    """
    _check_timeout(timeout)
    if dist.is_initialized():
        existing = dist.get_backend()
        if backend is not None and str(backend).lower() not in str(existing).lower():
            raise ValueError(f"init_distributed(backend={backend!r}): the process group is already initialised "
                             f"with backend {existing!r}; pass backend=None (or {existing!r}), or call "
                             f"torch.distributed.destroy_process_group() first.")
        return dist.get_rank(), dist.get_world_size(), _rank_device(existing)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError("init_distributed() reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT from the "
                           "environment; launch the script with `torchrun --nproc_per_node=K script.py`.")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    device = _rank_device(backend)
    extra = {}
    if device.type == "cuda" and "device_id" in inspect.signature(dist.init_process_group).parameters:
        extra["device_id"] = device  # binds the communicator to this GPU at once
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout), **extra)
    return dist.get_rank(), dist.get_world_size(), device


def _rank_device(backend: str) -> torch.device:
    """The rank's device for ``backend``: ``cuda:LOCAL_RANK`` (made current) with NCCL, else the CPU."""
    if "nccl" not in str(backend).lower():
        return torch.device("cpu")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.cuda.set_device(device)
    return device


class DistributedEvaluator:
    """Split every batch over the ranks of ``group`` (default: the whole world) and all-gather.

    ``timeout``: seconds one gather may wait for the other ranks before the solve fails with
    :class:`DistributedEvaluatorError` naming the missing ranks (keep it above the slowest
    drift call). ``grace``: seconds the surviving ranks then wait for each other to report
    (default ``min(timeout, 5)``). The result is ``fn(t, y)`` bit for bit when ``fn``'s rows do
    not depend on the batch size (element-wise drifts); the same on every rank in any case.

    With NCCL, waiting with a timeout polls the work from the host, one synchronisation per
    drift call; ``timeout=None`` skips it and relies on the process group's own timeout.

    ``inner``: the evaluator ``inner(fn, t, y)`` of this rank's slice (default: a plain call),
    e.g. ``CudaGraphEvaluator(math.ceil(window / world_size))`` to replay a CUDA graph: every
    rank's slice has ``ceil(batch / world_size)`` rows, so that one size covers every call.
    """

    def __init__(self, *, timeout: float | None = 60.0, group=None, grace: float | None = None, inner=None):
        if timeout is not None:
            _check_timeout(timeout)
        if inner is not None and not callable(inner):
            raise TypeError(f"`inner` must be an evaluator callable as inner(fn, t, y) (e.g. CudaGraphEvaluator) "
                            f"or None; got {type(inner).__name__}.")
        self.inner = inner if inner is not None else local_evaluator
        self.timeout = timeout
        self.grace = min(timeout or 5.0, 5.0) if grace is None else float(grace)
        self.group = group
        self.calls = 0
        self._tag = next(_instances)
        self._failure: DistributedEvaluatorError | None = None
        self._checked_shapes = False

    @property
    def rank(self) -> int:
        return dist.get_rank(self.group)

    @property
    def world_size(self) -> int:
        return dist.get_world_size(self.group)

    def __call__(self, fn, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._failure is not None:
            raise DistributedEvaluatorError(f"The process group already failed: {self._failure}",
                                            ranks=self._failure.ranks, call=self._failure.call)
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("DistributedEvaluator needs an initialised process group: call "
                               "parasolve.evaluators.init_distributed() (or torch.distributed."
                               "init_process_group) first, under torchrun.")
        self.calls += 1
        n, world, rank = t.shape[0], self.world_size, self.rank
        if not self._checked_shapes:
            self._check_same_batch(y)
        bounds = split_bounds(n, world)
        size = bounds[0][1] - bounds[0][0]
        a, b = bounds[rank]
        local = self.inner(fn, padded_rows(t, a, b, size), padded_rows(y, a, b, size))
        if not isinstance(local, torch.Tensor):
            return local  # the core's first-call check reports the wrong type
        local = local.contiguous()
        gathered = local.new_empty((world * size, *local.shape[1:]))
        self._gather(gathered, local)
        if n == world * size:
            return gathered
        return torch.cat([gathered[k * size:k * size + (stop - start)] for k, (start, stop) in enumerate(bounds)])

    # -- communication ---------------------------------------------------------------------
    def _gather(self, out: torch.Tensor, local: torch.Tensor) -> None:
        try:
            work = all_gather_tensor(out, local, group=self.group, async_op=True)
            self._wait(work)
        except DistributedEvaluatorError:
            raise
        except Exception as exc:  # a peer closed its connection, or the wait timed out
            raise self._diagnose(exc) from exc

    def _wait(self, work) -> None:
        if self.timeout is None:
            work.wait()
        elif dist.get_backend(self.group) == "gloo":
            work.wait(datetime.timedelta(seconds=self.timeout))
        else:  # NCCL's wait() only orders streams: watch completion from the host.
            deadline = time.monotonic() + self.timeout
            while not work.is_completed():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the all-gather did not complete within {self.timeout:g} s")
                time.sleep(1e-5)
            work.wait()

    def _check_same_batch(self, y: torch.Tensor) -> None:
        """Once: every rank must batch the same number of points of the same shape."""
        mine = torch.tensor([y.shape[0], y[0].numel()], dtype=torch.int64, device=y.device)
        every = mine.new_empty(2 * self.world_size)
        self._gather(every, mine)
        every = every.view(-1, 2).cpu()
        if (every != every[:1]).any():
            raise ValueError(f"Ranks disagree on the batch: (points, values per point) per rank = "
                             f"{every.tolist()}; every rank must run the same solve (same y0 shape, grid, "
                             f"window and method).")
        self._checked_shapes = True

    def _diagnose(self, exc: Exception) -> DistributedEvaluatorError:
        """Ask the store which ranks reached this call; build (and remember) the error."""
        world, rank, call = self.world_size, self.rank, self.calls
        key = f"parasolve/evaluator{self._tag}/call{call}"
        missing, note = None, ""
        try:
            store = dist.distributed_c10d._get_default_store()
            store.set(f"{key}/rank{rank}", "1")
            deadline = time.monotonic() + self.grace
            while True:
                missing = [r for r in range(world) if not store.check([f"{key}/rank{r}"])]
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        except Exception as store_exc:  # the store's host (rank 0 or the launcher) may be gone too
            note = f" The rendezvous store could not be read ({type(store_exc).__name__}: {store_exc})."
        limit = f"{self.timeout:g} s" if self.timeout is not None else "process group's"
        if missing:
            what = (f"rank(s) {missing} of {world} did not reach drift call #{call} (dead, hung, or "
                    f"slower than the {limit} timeout)")
        elif missing == []:
            what = (f"every rank reached drift call #{call}, but the all-gather failed or outlasted the "
                    f"{limit} timeout (a rank may have failed during the exchange, or the network)")
        else:
            what = f"the all-gather of drift call #{call} failed or outlasted the {limit} timeout"
        err = DistributedEvaluatorError(
            f"Distributed drift evaluation failed on rank {rank}: {what}. Backend said: "
            f"{type(exc).__name__}: {exc}.{note} Check those ranks' logs; raise `timeout` if they are only "
            f"slow. The process group is unusable now: call torch.distributed.destroy_process_group().",
            ranks=missing or [], call=call)
        self._failure = err
        return err

    def __repr__(self) -> str:
        inner = "" if self.inner is local_evaluator else f", inner={self.inner!r}"
        return f"DistributedEvaluator(timeout={self.timeout}, grace={self.grace}{inner})"


def _check_timeout(timeout) -> None:
    check_real("timeout", timeout, low=0.0, open_low=True, fix="Give the seconds a gather may take.")
