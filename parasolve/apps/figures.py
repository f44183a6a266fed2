"""The speed figures of ``parasolve reproduce`` and the pieces every reproduction shares.

``iterations-vs-tolerance`` and ``speedup-vs-window`` on the shipped digits DDPM; the H100 cost
curve that turns a run's per-sweep batch sizes into an estimated speed-up; one timed sampling run,
the progress bar, CSV and matplotlib helpers that :mod:`.quality` uses too.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

#: ms per digits-UNet call vs batch size, one H100, CUDA graph (shared/ANCHORS.md).
H100_GRAPHED_MS = {4: 1.44, 64: 2.08, 256: 3.56, 512: 5.90, 1024: 10.9}


def h100_ms(batch: int) -> float:
    """Interpolated (log-log) H100 time of one digits-UNet call on ``batch`` images."""
    b, ms = np.array(sorted(H100_GRAPHED_MS)), np.array([H100_GRAPHED_MS[k] for k in sorted(H100_GRAPHED_MS)])
    return float(np.exp(np.interp(np.log(max(batch, 1)), np.log(b), np.log(ms))))


def h100_speedup(history, samples: int, n_steps: int) -> float:
    """Sequential over parallel time estimated from the H100 cost curve for a run's sweeps."""
    parallel = sum(h100_ms((r.end - r.start) * samples) for r in history)
    return n_steps * h100_ms(samples) / parallel


def digits_model():
    """The shipped digits DDPM denoiser (loaded from the package data)."""
    from .. import zoo
    return zoo.pretrained("digits")


def run_digits(den, sampler, steps, method, *, samples=4, seed=0, window=64, tol=None, progress=False):
    """One sampling run with fixed x_T/noise for ``seed``; returns (output, wall seconds)."""
    from .. import diffusion

    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    out = diffusion.sample(den, (samples, 1, 16, 16), sampler=sampler, steps=steps, method=method,
                           window=window, tol=tol, generator=gen, throw=False, progress=progress)
    return out, time.perf_counter() - start


def tty_progress() -> bool:
    """Whether progress bars should show (stderr is a terminal)."""
    return sys.stderr.isatty()


def progress_bar(items, desc: str):
    """A tqdm bar over ``items`` on stderr, hidden when stderr is not a terminal."""
    from tqdm.auto import tqdm
    return tqdm(items, desc=desc, disable=None, file=sys.stderr, leave=False)


def write_csv(path: Path, rows) -> None:
    """``rows`` (dicts with the same keys) as a CSV file with a header."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _settings(fast):
    return dict(samples=1, rows=[("ddpm", 50), ("ddim", 20)], window=16) if fast else \
        dict(samples=4, rows=[("ddpm", 1000), ("ddim", 200)], window=64)


def iterations_vs_tolerance(out: Path, fast: bool = False):
    """Sweeps and the gap to the sequential sample as the tolerance varies (digits DDPM and DDIM)."""
    cfg, den = _settings(fast), digits_model()
    tols = [1e-1, 1e-3] if fast else [1e-1, 1e-2, 1e-3, 1e-4]
    rows = []
    for sampler, steps in progress_bar(cfg["rows"], "iterations-vs-tolerance"):
        seq, _ = run_digits(den, sampler, steps, "sequential", samples=cfg["samples"], progress=tty_progress())
        for tol in tols:
            par, _ = run_digits(den, sampler, steps, "picard", samples=cfg["samples"], window=cfg["window"], tol=tol,
                                progress=tty_progress())
            rows.append({"sampler": f"{sampler}-{steps}", "window": cfg["window"], "tol": tol,
                         "sweeps": par.stats.iterations, "evals": par.stats.nfe,
                         "max_abs_diff": f"{float((par.x - seq.x).abs().max()):.3e}",
                         "defect_sum": f"{par.stats.defect_sum:.3e}", "converged": par.converged})
    write_csv(out / "iterations-vs-tolerance.csv", rows)
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for label in dict.fromkeys(r["sampler"] for r in rows):
        sub = [r for r in rows if r["sampler"] == label]
        a.semilogx([r["tol"] for r in sub], [r["sweeps"] for r in sub], "o-", label=label)
        b.loglog([r["tol"] for r in sub], [float(r["max_abs_diff"]) for r in sub], "o-", label=label)
    b.loglog(tols, tols, "k--", lw=0.8, label="tol")
    a.set(xlabel="tol", ylabel="sweeps", title=f"Picard, window {cfg['window']}")
    b.set(xlabel="tol", ylabel="max|x - x_seq|", title="gap to the sequential sample")
    a.legend(), b.legend()
    fig.tight_layout()
    fig.savefig(out / "iterations-vs-tolerance.png", dpi=120)
    plt.close(fig)
    return rows


#: Timings whose repeats spread more than this (max / min - 1) are flagged as untrustworthy.
MAX_SPREAD = 0.25


def timing_verdict(seq_walls, par_walls, ideal: float) -> str:
    """``"ok"``, or why the measured speed-up of these repeated timings should not be trusted."""
    spread = max(max(w) / min(w) - 1 for w in (seq_walls, par_walls))
    measured = float(np.median(seq_walls) / np.median(par_walls))
    problems = []
    if spread > MAX_SPREAD:
        problems.append(f"repeats spread {spread:.0%} > {MAX_SPREAD:.0%}")
    if measured > ideal:
        problems.append(f"measured {measured:.2f} > ideal {ideal:.1f}")
    return "; ".join(problems) or "ok"


def speedup_vs_window(out: Path, fast: bool = False):
    """Sweeps, evaluations, wall time and speed-ups as the window grows (digits DDPM).

    Sequential and parallel runs are timed interleaved, ``repeats`` times each per window (their
    order alternating), in one process with a fixed thread count; the wall times are medians and
    the ``timing`` column flags a row whose repeats spread by more than ``MAX_SPREAD`` or whose
    measured speed-up exceeds the ideal one (the machine was busy: do not trust that row).
    """
    cfg, den = _settings(fast), digits_model()
    sampler, steps = cfg["rows"][0]
    windows = [8, 16] if fast else [16, 64, 256]
    repeats = 2 if fast else 3
    rows = []
    for window in progress_bar(windows, "speedup-vs-window"):
        walls, outs = {"sequential": [], "picard": []}, {}
        for rep in range(repeats):
            for method in (("sequential", "picard") if rep % 2 == 0 else ("picard", "sequential")):
                outs[method], wall = run_digits(den, sampler, steps, method, samples=cfg["samples"], window=window,
                                                tol=1e-3, progress=tty_progress())
                walls[method].append(wall)
        seq, par = outs["sequential"], outs["picard"]
        seq_wall, wall = float(np.median(walls["sequential"])), float(np.median(walls["picard"]))
        ideal = steps / par.stats.iterations
        rows.append({"sampler": f"{sampler}-{steps}", "window": window, "sweeps": par.stats.iterations,
                     "evals": par.stats.nfe, "wall_s": f"{wall:.2f}", "seq_wall_s": f"{seq_wall:.2f}",
                     "measured_speedup": f"{seq_wall / wall:.2f}", "ideal_speedup": f"{ideal:.1f}",
                     "h100_est_speedup": f"{h100_speedup(par.stats.history, cfg['samples'], steps):.2f}",
                     "max_abs_diff": f"{float((par.x - seq.x).abs().max()):.2e}",
                     "repeats": repeats, "threads": torch.get_num_threads(),
                     "timing": timing_verdict(walls["sequential"], walls["picard"], ideal)})
    write_csv(out / "speedup-vs-window.csv", rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for key, label in (("ideal_speedup", "ideal (N / sweeps)"), ("h100_est_speedup", "H100 estimate (cost curve)"),
                       ("measured_speedup", f"measured here (CPU, {torch.get_num_threads()} thr.)")):
        ax.semilogx([r["window"] for r in rows], [float(r[key]) for r in rows], "o-", label=label, base=2)
    flagged = [r for r in rows if r["timing"] != "ok"]
    if flagged:
        ax.plot([r["window"] for r in flagged], [float(r["measured_speedup"]) for r in flagged], "rx", ms=9,
                label="untrustworthy timing")
    ax.axhline(1, color="k", lw=0.6)
    ax.set(xlabel="window", ylabel="speed-up over sequential", title=f"{sampler}-{steps}, tol 1e-3")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "speedup-vs-window.png", dpi=120)
    plt.close(fig)
    for r in flagged:
        print(f"warning: window {r['window']}: timing not trustworthy ({r['timing']}); rerun on an idle machine",
              file=sys.stderr)
    return rows

