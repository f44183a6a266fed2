"""Solve one ODE and one SDE with every rank of a torch.distributed job evaluating its share.

    torchrun --standalone --nproc_per_node=2 examples/distributed_solve.py             # gloo on CPU, NCCL on GPUs
    torchrun --standalone --nproc_per_node=2 examples/distributed_solve.py --timeout 5  # fail fast on a lost rank
    python examples/distributed_solve.py     # no torchrun: a group of one process (says so)

Every rank runs the same script and gets the same solution; rank 0 checks it against a
single-process solve, prints the result and returns it from ``main`` (``None`` on other
ranks). See docs/distributed.md.
"""

from __future__ import annotations

import argparse
import os
import socket

import torch
import torch.distributed as dist

import parasolve
from parasolve.evaluators import DistributedEvaluator, init_distributed, local_evaluator


def drift(t, y):
    """A damped, forced pendulum for a batch of time points: t (n,), y (n, paths, 2)."""
    angle, speed = y[..., 0], y[..., 1]
    return torch.stack([speed, -torch.sin(angle) - 0.2 * speed + 0.5 * torch.cos(t)[:, None]], dim=-1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a gather waits for the other ranks")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    owns_group = not dist.is_initialized()  # leave a group made by the caller as it was
    if owns_group and "RANK" not in os.environ:
        _single_process_environment()
    rank, world, device = init_distributed(timeout=max(a.timeout, 30.0))
    ev = DistributedEvaluator(timeout=a.timeout)

    y0 = torch.zeros(8, 2, dtype=torch.float64, device=device)
    y0[:, 0] = torch.linspace(-1, 1, 8, dtype=torch.float64)
    t = torch.linspace(0, 10, a.steps + 1, dtype=torch.float64, device=device)
    noise = torch.randn(a.steps, 8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).to(device)

    ode = parasolve.solve(drift, y0, t, vectorized=True, window=a.window, evaluator=ev)
    sde = parasolve.solve_sde(drift, lambda t, y: 0.1 * torch.ones_like(y), y0, t, noise=noise,
                              vectorized=True, window=a.window, evaluator=ev)
    report = None
    if rank == 0:
        # The same scheme in one process: with an evaluator, method="auto" skips its cost model
        # (which could pick the sequential loop for a problem this small), as the group's solve does.
        ode_ref = parasolve.solve(drift, y0, t, vectorized=True, window=a.window, evaluator=local_evaluator)
        sde_ref = parasolve.solve_sde(drift, lambda t, y: 0.1 * torch.ones_like(y), y0, t, noise=noise,
                                      vectorized=True, window=a.window, evaluator=local_evaluator)
        print(f"{world} ranks ({dist.get_backend()}): ODE {ode.stats.iterations} sweeps, {ode.stats.nfe} evaluations; "
              f"SDE {sde.stats.iterations} sweeps")
        print(f"same bits as one process: ODE {torch.equal(ode.ys, ode_ref.ys)}, SDE {torch.equal(sde.ys, sde_ref.ys)}")
        print(f"final angles: {ode.y[:, 0].cpu().numpy().round(4)}")
        report = {"world": world, "ode_same_bits": torch.equal(ode.ys, ode_ref.ys),
                  "sde_same_bits": torch.equal(sde.ys, sde_ref.ys), "ode_sweeps": ode.stats.iterations}
    if owns_group:
        dist.destroy_process_group()
    return report


def _single_process_environment() -> None:
    """Not started by torchrun: describe a one-rank group on this machine, and say so."""
    print("not launched by torchrun: running a single-process group (1 rank); for K ranks run\n"
          "    torchrun --standalone --nproc_per_node=K examples/distributed_solve.py")
    with socket.socket() as s:  # a free local port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


if __name__ == "__main__":
    main()
