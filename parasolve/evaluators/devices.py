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

import copy
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Callable, Sequence

import torch

from .chunks import split_bounds


def as_device(device) -> torch.device:
    """``device`` as a :class:`torch.device` with an explicit index for CUDA (``"cuda"`` -> current)."""
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"Not a device: {device!r} ({exc}); use e.g. 'cpu', 'cuda:0' or torch.device.") from None
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _devices(devices, name: str = "devices") -> list[torch.device]:
    if isinstance(devices, (str, torch.device)) or not isinstance(devices, Sequence):
        raise TypeError(f"`{name}` must be a list of devices such as ['cuda:0', 'cuda:1']; got {devices!r}.")
    if len(devices) == 0:
        raise ValueError(f"`{name}` must name at least one device; got an empty list.")
    return [as_device(d) for d in devices]


def _on(device: torch.device):
    """Make ``device`` current for CUDA work in this thread (a no-op elsewhere)."""
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    # Asynchronous only between CUDA devices: a non-blocking copy into host memory may be read
    # before it has landed.
    return x.to(device, non_blocking=x.device.type == "cuda" and device.type == "cuda")


class DeviceEvaluator:
    """Evaluate each batch as contiguous chunks on ``devices`` (one chunk per device), concurrently.

    ``fn`` must run on whichever device its inputs are on: true of plain tensor arithmetic, and
    of a :class:`Replicas` drift. Results are gathered on the state's device in order, so the
    solve sees exactly ``fn(t, y)`` (bit for bit when ``fn``'s rows do not depend on the batch
    size, as for element-wise drifts; batched matrix kernels may round differently per batch).
    The same device may be listed more than once (e.g. ``["cpu"] * 4`` uses four threads).
    ``threads=False`` launches the chunks one after another from the calling thread (CUDA
    still runs them concurrently, since launches are asynchronous).
    """

    def __init__(self, devices, *, threads: bool = True):
        self.devices = _devices(devices)
        self.threads = bool(threads)
        self._pool = None

    def __call__(self, fn, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        bounds = [(a, b) for a, b in split_bounds(t.shape[0], len(self.devices)) if b > a]
        jobs = list(zip(self.devices, bounds))
        if self.threads and len(jobs) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(len(self.devices), thread_name_prefix="parasolve-device")
            outs = list(self._pool.map(lambda job: self._chunk(fn, t, y, *job), jobs))
        else:
            outs = [self._chunk(fn, t, y, *job) for job in jobs]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    @staticmethod
    def _chunk(fn, t, y, device, bounds):
        a, b = bounds
        with _on(device):
            out = fn(_to(t[a:b], device), _to(y[a:b], device))
            if not isinstance(out, torch.Tensor):
                return out  # the core's first-call check reports the wrong type
            return _to(out, y.device)

    def close(self) -> None:
        """Stop the worker threads (they are also stopped when the evaluator is collected)."""
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown()
            self._pool = None

    def __del__(self):
        self.close()

    def __repr__(self) -> str:
        return f"DeviceEvaluator({[str(d) for d in self.devices]}, threads={self.threads})"


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
