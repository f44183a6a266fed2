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

import csv
import time
from pathlib import Path

import numpy as np
import torch

from .cli import format_table

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


def _digits():
    from . import diffusion
    return diffusion.pretrained("digits")


def run_digits(den, sampler, steps, method, *, samples=4, seed=0, window=64, tol=None):
    """One sampling run with fixed x_T/noise for ``seed``; returns (output, wall seconds)."""
    from . import diffusion

    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    out = diffusion.sample(den, (samples, 1, 16, 16), sampler=sampler, steps=steps, method=method,
                           window=window, tol=tol, generator=gen, throw=False)
    return out, time.perf_counter() - start


def _write_csv(path: Path, rows) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _fig():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _settings(fast):
    return dict(samples=1, rows=[("ddpm", 50), ("ddim", 20)], window=16) if fast else \
        dict(samples=4, rows=[("ddpm", 1000), ("ddim", 200)], window=64)


def iterations_vs_tolerance(out: Path, fast: bool = False):
    """Sweeps and the gap to the sequential sample as the tolerance varies (digits DDPM and DDIM)."""
    cfg, den = _settings(fast), _digits()
    tols = [1e-1, 1e-3] if fast else [1e-1, 1e-2, 1e-3, 1e-4]
    rows = []
    for sampler, steps in cfg["rows"]:
        seq, _ = run_digits(den, sampler, steps, "sequential", samples=cfg["samples"])
        for tol in tols:
            par, _ = run_digits(den, sampler, steps, "picard", samples=cfg["samples"], window=cfg["window"], tol=tol)
            rows.append({"sampler": f"{sampler}-{steps}", "window": cfg["window"], "tol": tol,
                         "sweeps": par.stats.iterations, "evals": par.stats.nfe,
                         "max_abs_diff": f"{float((par.x - seq.x).abs().max()):.3e}",
                         "defect_sum": f"{par.stats.defect_sum:.3e}", "converged": par.converged})
    _write_csv(out / "iterations-vs-tolerance.csv", rows)
    plt = _fig()
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


def speedup_vs_window(out: Path, fast: bool = False):
    """Sweeps, evaluations, wall time and speed-ups as the window grows (digits DDPM)."""
    cfg, den = _settings(fast), _digits()
    sampler, steps = cfg["rows"][0]
    windows = [8, 16] if fast else [16, 64, 256]
    seq, seq_wall = run_digits(den, sampler, steps, "sequential", samples=cfg["samples"])
    rows = []
    for window in windows:
        par, wall = run_digits(den, sampler, steps, "picard", samples=cfg["samples"], window=window, tol=1e-3)
        rows.append({"sampler": f"{sampler}-{steps}", "window": window, "sweeps": par.stats.iterations,
                     "evals": par.stats.nfe, "wall_s": f"{wall:.2f}", "seq_wall_s": f"{seq_wall:.2f}",
                     "measured_speedup": f"{seq_wall / wall:.2f}", "ideal_speedup": f"{steps / par.stats.iterations:.1f}",
                     "h100_est_speedup": f"{h100_speedup(par.stats.history, cfg['samples'], steps):.2f}",
                     "max_abs_diff": f"{float((par.x - seq.x).abs().max()):.2e}"})
    _write_csv(out / "speedup-vs-window.csv", rows)
    plt = _fig()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for key, label in (("ideal_speedup", "ideal (N / sweeps)"), ("h100_est_speedup", "H100 estimate (cost curve)"),
                       ("measured_speedup", "measured here (CPU)")):
        ax.semilogx([r["window"] for r in rows], [float(r[key]) for r in rows], "o-", label=label, base=2)
    ax.axhline(1, color="k", lw=0.6)
    ax.set(xlabel="window", ylabel="speed-up over sequential", title=f"{sampler}-{steps}, tol 1e-3")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "speedup-vs-window.png", dpi=120)
    plt.close(fig)
    return rows


def _digit_quality(x, real, clf):
    """Classifier confidence, label histogram entropy and sliced W2 to held-out real digits."""
    from .diffusion import digits

    with torch.no_grad():
        probs = torch.softmax(clf(x.clamp(-1, 1)), dim=1)
    labels = probs.argmax(1)
    sw = float(digits.sliced_wasserstein(x.clamp(-1, 1), real, generator=torch.Generator().manual_seed(0)))
    return probs.max(1).values.mean().item(), labels, sw


def quality_vs_tolerance(out: Path, fast: bool = False):
    """Sample quality, sequential vs parallel, as the tolerance varies, with its spread over seeds."""
    from .diffusion import digits

    den, clf = _digits(), digits.classifier()
    real, _ = digits.load_digits_16("test")
    sampler, steps, window = ("ddim", 20, 20) if fast else ("ddim", 100, 16)
    samples, seeds = (4, [0]) if fast else (32, [0, 1])
    tols = [1e-1] if fast else [1e-1, 1e-3]
    rows = []
    for seed in seeds:
        seq, _ = run_digits(den, sampler, steps, "sequential", samples=samples, seed=seed)
        conf_s, lab_s, sw_s = _digit_quality(seq.x, real, clf)
        for tol in tols:
            par, _ = run_digits(den, sampler, steps, "picard", samples=samples, seed=seed, window=window, tol=tol)
            conf_p, lab_p, sw_p = _digit_quality(par.x, real, clf)
            rows.append({"sampler": f"{sampler}-{steps}", "seed": seed, "tol": tol, "sweeps": par.stats.iterations,
                         "max_abs_diff": f"{float((par.x - seq.x).abs().max()):.2e}",
                         "label_agreement": f"{float((lab_p == lab_s).double().mean()):.3f}",
                         "confidence_seq": f"{conf_s:.3f}", "confidence_par": f"{conf_p:.3f}",
                         "sw_seq": f"{sw_s:.4f}", "sw_par": f"{sw_p:.4f}"})
    _write_csv(out / "quality-vs-tolerance.csv", rows)
    plt = _fig()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for tol in tols:
        sub = [r for r in rows if r["tol"] == tol]
        ax.scatter([float(r["sw_seq"]) for r in sub], [float(r["sw_par"]) for r in sub], label=f"tol {tol:g}")
    lims = [min(float(r[k]) for r in rows for k in ("sw_seq", "sw_par")), max(float(r[k]) for r in rows for k in ("sw_seq", "sw_par"))]
    ax.plot(lims, lims, "k--", lw=0.8)
    ax.set(xlabel="sliced W2, sequential", ylabel="sliced W2, parallel", title=f"{sampler}-{steps}, {samples} samples/seed")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "quality-vs-tolerance.png", dpi=120)
    plt.close(fig)
    return rows


def _trajectory_rows(fast: bool):
    """Robotics substitute: the trajectory DDPM, task score sequential vs parallel."""
    from . import diffusion
    from .diffusion import trajectory

    den = trajectory.trajectory_denoiser()
    pairs = 4 if fast else 64
    gen = torch.Generator().manual_seed(0)
    start, goal = (torch.rand(pairs, 2, generator=gen) * 2 - 1) * 0.9, (torch.rand(pairs, 2, generator=gen) * 2 - 1) * 0.9
    cond = torch.cat([start, goal], 1)
    rows = []
    for sampler, steps, window in ((("ddim", 15, 15),) if fast else (("ddpm", 100, 100), ("ddim", 15, 15))):
        runs = {}
        for method in ("sequential", "picard"):
            t0 = time.perf_counter()
            o = diffusion.sample(den, (pairs, trajectory.HORIZON, 2), sampler=sampler, steps=steps, method=method,
                                 window=window, tol=1e-3, cond=cond, generator=torch.Generator().manual_seed(1),
                                 throw=False)
            runs[method] = (o, time.perf_counter() - t0, trajectory.task_score(o.x, start, goal).summary()["success"])
        rows.append(_table_row(f"trajectory {sampler.upper()}-{steps}", runs, steps, "task success"))
    return rows


def _table_row(task, runs, steps, metric_name):
    (seq, seq_wall, m_s), (par, wall, m_p) = runs["sequential"], runs["picard"]
    return {"task": task, "seq evals": seq.stats.nfe, "seq time [s]": f"{seq_wall:.2f}",
            "par evals": par.stats.nfe, "sweeps": par.stats.iterations, "par time [s]": f"{wall:.2f}",
            "speed-up here": f"{seq_wall / wall:.2f}", "ideal": f"{steps / par.stats.iterations:.1f}",
            "max|x-x_seq|": f"{float((par.x - seq.x).abs().max()):.1e}",
            "quality seq -> par": f"{metric_name} {m_s:.3f} -> {m_p:.3f}"}


def table(out: Path, fast: bool = False):
    """The paper's main table with local substitutes for its models."""
    from .diffusion import digits

    den, clf = _digits(), digits.classifier()
    real, _ = digits.load_digits_16("test")
    samples = 1 if fast else 16
    specs = [("ddpm", 50, 16), ("dpmsolver++", 10, 10)] if fast else [("ddpm", 1000, 64), ("ddim", 200, 64), ("dpmsolver++", 200, 64)]
    rows = []
    for sampler, steps, window in specs:
        runs = {}
        for method in ("sequential", "picard"):
            o, wall = run_digits(den, sampler, steps, method, samples=samples, window=window, tol=1e-3)
            runs[method] = (o, wall, _digit_quality(o.x, real, clf)[2])
        rows.append(_table_row(f"digits {sampler}-{steps}", runs, steps, "sliced W2"))
    try:
        rows += _trajectory_rows(fast)
    except (ImportError, ValueError) as exc:  # the trajectory model is optional until shipped
        print(f"(trajectory rows skipped: {exc})")
    _write_csv(out / "table.csv", rows)
    return rows


REPRODUCTIONS = {
    "iterations-vs-tolerance": iterations_vs_tolerance,
    "speedup-vs-window": speedup_vs_window,
    "quality-vs-tolerance": quality_vs_tolerance,
    "table": table,
}


def run(name: str, out: Path, fast: bool = False):
    """Run reproduction ``name`` into ``out`` and print its table."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    rows = REPRODUCTIONS[name](out, fast=fast)
    print(format_table(rows))
    print(f"\nwritten to {out}/ ({name}.csv{'' if name == 'table' else ', ' + name + '.png'})")
    return rows


