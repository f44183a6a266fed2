"""Several devices in one process: split the batch, run the chunks concurrently, gather.

Two pieces, each with one job:

- :class:`DeviceEvaluator` splits a batch of time points into contiguous chunks, one per
  device, moves each chunk to its device, calls the batched drift there (one thread per
  device, so launches and transfers of different devices overlap) and concatenates the
  results on the state's device.
- :class:`Replicas` (built by :func:`replicate`) makes a drift with device-bound state (a
  model's weights) callable on any of those devices: it runs the copy that lives on the
  device of its input.

A drift without device-bound state (plain tensor arithmetic on ``t`` and ``y``) needs no
replicas: it already runs wherever its inputs are. So the evaluator keeps the core's contract
``evaluator(fn, t, y) -> fn(t, y)``: it always calls the ``fn`` it is given, never a function
of its own, which is what keeps ``solve_sde`` right (its drift ``f`` and diffusion ``g`` share
one evaluator)::

    devices = ["cuda:0", "cuda:1"]
    f = replicate(model, devices, build=lambda m: (lambda t, y: m(y, t)))
    sol = parasolve.solve(f, y0.to("cuda:0"), t, vectorized=True, evaluator=DeviceEvaluator(devices))
"""

from __future__ import annotations

import contextvars
import copy
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import nullcontext
from typing import Callable, Sequence

import torch

from .._checks import check_real
from .chunks import split_bounds
from ..errors import ParasolveValueError
from .protocol import EvaluatorError, local_evaluator


def as_device(device, name: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device` with an explicit index for CUDA (``"cuda"`` -> current);
    a device this torch cannot use (CUDA on a CPU-only build, a missing GPU) is a ``ValueError``
    naming the argument ``name``."""
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ParasolveValueError(f"Not a device: {device!r} in `{name}` ({exc}); use e.g. 'cpu', 'cuda:0' or "
                                  f"torch.device.") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            why = ("this torch was built without CUDA" if torch.version.cuda is None
                   else "torch sees no CUDA device")
            raise ParasolveValueError(f"`{name}`: {device!r} is not available: {why} "
                                      f"(torch {torch.__version__}); use 'cpu', or install a CUDA build of "
                                      f"torch on a machine with a GPU.")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= count:
            raise ParasolveValueError(f"`{name}`: {device!r} is not available: torch sees {count} CUDA "
                                      f"device(s), cuda:0 .. cuda:{count - 1}.")
    return dev


def _devices(devices, name: str = "devices") -> list[torch.device]:
    if isinstance(devices, (str, torch.device)) or not isinstance(devices, Sequence):
        raise TypeError(f"`{name}` must be a list of devices such as ['cuda:0', 'cuda:1']; got {devices!r}.")
    if len(devices) == 0:
        raise ValueError(f"`{name}` must name at least one device; got an empty list.")
    return [as_device(d, f"{name}[{k}]") for k, d in enumerate(devices)]


def _on(device: torch.device):
    """Make ``device`` current for CUDA work in this thread (a no-op elsewhere)."""
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    # Asynchronous only between CUDA devices: a non-blocking copy into host memory may be read
    # before it has landed.
    return x.to(device, non_blocking=x.device.type == "cuda" and device.type == "cuda")


class _Worker:
    """One daemon thread running submitted calls in order: a hung call cannot block the exit."""

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def submit(self, fn, *args) -> Future:
        """Run ``fn(*args)`` in the worker, in a copy of the caller's context variables (e.g.
        :func:`parasolve.evaluators.in_contract_check`)."""
        future: Future = Future()
        self._jobs.put((future, contextvars.copy_context(), fn, args))
        return future

    def stop(self) -> None:
        """Exit once the queued calls are done."""
        self._jobs.put(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, context, fn, args = job
            try:
                future.set_result(context.run(fn, *args))
            except BaseException as exc:  # handed to the caller by future.result()
                future.set_exception(exc)


class DeviceEvaluator:
    """Evaluate each batch as contiguous chunks on ``devices`` (one chunk per device), concurrently.

    ``fn`` must run on whichever device its inputs are on: true of plain tensor arithmetic, and
    of a :class:`Replicas` drift. Results are gathered on the state's device in order, so the
    solve sees exactly ``fn(t, y)`` (bit for bit when ``fn``'s rows do not depend on the batch
    size, as for element-wise drifts; batched matrix kernels may round differently per batch).
    The same device may be listed more than once (e.g. ``["cpu"] * 4`` uses four threads).
    ``threads=False`` launches the chunks one after another from the calling thread (CUDA
    still runs them concurrently, since launches are asynchronous).

    ``timeout``: seconds one batched call may take on all devices together before it raises
    :class:`~parasolve.evaluators.EvaluatorError` naming the devices that did not return
    (``None``: wait forever). It needs ``threads=True``: a call in the calling thread cannot be
    interrupted. A hung thread cannot be killed either; it is abandoned (a daemon, so it does
    not block the exit) and the next call starts fresh threads.

    ``inner``: the evaluator ``inner(fn, t, y)`` of each device's chunk (default: a plain call),
    or a list of them, one per device -- e.g. ``[CudaGraphEvaluator(math.ceil(window / k))
    for _ in devices]`` to replay a CUDA graph per GPU (chunks differ in size by at most one).
    One shared ``inner`` is called from several threads at once, so it must be thread-safe.
    """

    def __init__(self, devices, *, threads: bool = True, timeout: float | None = 300.0, inner=None):
        self.devices = _devices(devices)
        self.threads = bool(threads)
        check_real("timeout", timeout, low=0.0, open_low=True, none_ok=True,
                   fix="Give the seconds to wait for a device, or None (wait forever).")
        self.timeout = timeout
        self.inners = _inners(inner, len(self.devices))
        self._workers = None

    def __call__(self, fn, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        bounds = split_bounds(t.shape[0], len(self.devices))
        jobs = [(k, dev, bnd) for k, (dev, bnd) in enumerate(zip(self.devices, bounds)) if bnd[1] > bnd[0]]
        if self.threads and (len(jobs) > 1 or self.timeout is not None):
            outs = self._threaded(fn, t, y, jobs)
        else:
            outs = [self._chunk(self.inners[k], fn, t, y, dev, bnd) for k, dev, bnd in jobs]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _threaded(self, fn, t, y, jobs):
        if self._workers is None:
            self._workers = [_Worker(f"parasolve-device{k}") for k in range(len(self.devices))]
        futures = [self._workers[k].submit(self._chunk, self.inners[k], fn, t, y, dev, bnd) for k, dev, bnd in jobs]
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        outs = []
        for future in futures:
            try:
                outs.append(future.result(None if deadline is None else max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                late = [f"device {k} ({dev}, rows {a}:{b})" for (k, dev, (a, b)), f in zip(jobs, futures)
                        if not f.done()]
                self.close()  # abandon the hung threads; the next call starts fresh ones
                raise EvaluatorError(
                    f"DeviceEvaluator: the drift call on {', '.join(late)} did not return within the "
                    f"{self.timeout:g} s timeout (hung, or slower than that). Raise `timeout` if it is only "
                    f"slow, or pass timeout=None to wait forever.") from None
        return outs

    @staticmethod
    def _chunk(inner, fn, t, y, device, bounds):
        a, b = bounds
        with _on(device):
            out = inner(fn, _to(t[a:b], device), _to(y[a:b], device))
            if not isinstance(out, torch.Tensor):
                return out  # the core's first-call check reports the wrong type
            return _to(out, y.device)

    def close(self) -> None:
        """Stop the worker threads (they are also stopped when the evaluator is collected)."""
        for worker in getattr(self, "_workers", None) or ():
            worker.stop()
        self._workers = None

    def __del__(self):
        self.close()

    def __repr__(self) -> str:
        return f"DeviceEvaluator({[str(d) for d in self.devices]}, threads={self.threads}, timeout={self.timeout})"


def _inners(inner, count: int) -> list:
    """``inner`` as one evaluator per device (the plain call when ``None``)."""
    if inner is None:
        return [local_evaluator] * count
    if callable(inner):
        return [inner] * count
    if isinstance(inner, Sequence) and not isinstance(inner, str) and len(inner) == count and all(map(callable, inner)):
        return list(inner)
    raise TypeError(f"`inner` must be an evaluator callable as inner(fn, t, y), a list of {count} of them "
                    f"(one per device), or None; got {inner!r}.")


class Replicas:
    """One copy of a drift per device; a call runs the copy on the device of ``y``.

    ``drifts[k]`` is a drift ``(t, y) -> dy`` whose state lives on ``devices[k]``, in the same
    calling convention as the ``f`` given to ``solve`` (batched with ``vectorized=True``).
    """

    def __init__(self, drifts: Sequence[Callable], devices):
        devs = _devices(devices)
        if not isinstance(drifts, Sequence) or len(drifts) != len(devs):
            raise ValueError(f"`drifts` must be a list with one drift per device ({len(devs)} devices: "
                             f"{[str(d) for d in devs]}); got {drifts!r}.")
        for k, d in enumerate(drifts):
            if not callable(d):
                raise TypeError(f"`drifts[{k}]` must be callable as drift(t, y); got {type(d).__name__}.")
        self.by_device = {}
        for dev, drift in zip(devs, drifts):
            self.by_device.setdefault(dev, drift)

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dev = as_device(y.device)
        drift = self.by_device.get(dev)
        if drift is None:
            raise ValueError(f"No replica of the drift on {dev}; replicas exist on "
                             f"{[str(d) for d in self.by_device]}. Give the evaluator the same devices.")
        return drift(t, y)

    def __repr__(self) -> str:
        return f"Replicas({[str(d) for d in self.by_device]})"


def replicate(module: torch.nn.Module, devices, *, build: Callable | None = None) -> Replicas:
    """A :class:`Replicas` drift from ``module``: ``copy.deepcopy(module).to(device)`` per device.

    The module itself serves the device its parameters are on (no copy). ``build(replica)``
    turns a module copy into the drift ``(t, y) -> dy`` (default: the module itself, called as
    ``module(t, y)``); e.g. ``build=lambda m: (lambda t, y: m(y, t))`` for a model taking ``(x, t)``.
    Copies are made once, here: later changes to ``module``'s weights are not seen by them.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"`module` must be a torch.nn.Module; got {type(module).__name__}. "
                        f"For other drifts build one per device and pass them to Replicas(drifts, devices).")
    if build is not None and not callable(build):
        raise TypeError(f"`build` must be callable as build(module) -> drift; got {type(build).__name__}.")
    devs = _devices(devices)
    params = list(module.parameters()) + list(module.buffers())
    home = as_device(params[0].device) if params else None
    copies = {}
    for dev in devs:
        if dev not in copies:
            copies[dev] = module if dev == home else copy.deepcopy(module).to(dev)
    make = build if build is not None else (lambda m: m)
    return Replicas([make(copies[d]) for d in devs], devs)
