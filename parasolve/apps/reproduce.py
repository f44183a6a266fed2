"""``parasolve reproduce NAME``: the ParaDiGMS paper's figures and table on local models.

The paper's image rows run on the shipped digits DDPM (16x16, 1000 training steps); its robotics
rows on the shipped trajectory-planning DDPM (16 waypoints x 2, 100 steps). Each reproduction
writes a CSV and a PNG under the output folder and prints a table. Wall times are measured on the
machine that runs it; ``ideal speed-up`` is ``N / sweeps`` (a batched call as cheap as a single
one), and ``H100 est.`` replays each run's per-sweep batch sizes through the cost curve of the
digits UNet measured on one H100 with the model call in a CUDA graph (ANCHORS.md), against the
same curve's sequential cost.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .common import DEFAULT_THREADS, format_table, use_threads
from .figures import iterations_vs_tolerance, speedup_vs_window
from .quality import quality_vs_tolerance, table

REPRODUCTIONS = {
    "iterations-vs-tolerance": iterations_vs_tolerance,
    "speedup-vs-window": speedup_vs_window,
    "quality-vs-tolerance": quality_vs_tolerance,
    "table": table,
}


def run(name: str, out: Path, fast: bool = False, threads: int = DEFAULT_THREADS):
    """Run reproduction ``name`` into ``out`` with ``threads`` torch threads and print its table."""
    out.mkdir(parents=True, exist_ok=True)
    print(use_threads(threads))
    rows = REPRODUCTIONS[name](out, fast=fast)
    print(format_table(_blank_repeats(rows)))
    print(f"\nwritten to {out}/ ({name}.csv, {name}.png) by `parasolve reproduce {name}{' --fast' * fast}` "
          f"on {machine()}")
    return rows


def machine() -> str:
    """A one-line description of this machine: CPU model, cores, torch version and threads."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)})"


def _blank_repeats(rows):
    """For printing: blank the cells a row repeats from the row before (all but the quality columns)."""
    quality = {"metric", "seq", "par", "par - seq"}
    out = []
    for prev, row in zip([None, *rows], rows):
        same = prev is not None and all(prev.get(k) == v for k, v in row.items() if k not in quality)
        out.append({k: ("" if same and k not in quality else v) for k, v in row.items()})
    return out


