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
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .common import DEFAULT_THREADS, format_table, use_threads

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


def _tty() -> bool:
    """Whether progress bars should show (stderr is a terminal)."""
    return sys.stderr.isatty()


def _bar(items, desc: str):
    """A tqdm bar over ``items`` on stderr, hidden when stderr is not a terminal."""
    from tqdm.auto import tqdm
    return tqdm(items, desc=desc, disable=None, file=sys.stderr, leave=False)


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
    for sampler, steps in _bar(cfg["rows"], "iterations-vs-tolerance"):
        seq, _ = run_digits(den, sampler, steps, "sequential", samples=cfg["samples"], progress=_tty())
        for tol in tols:
            par, _ = run_digits(den, sampler, steps, "picard", samples=cfg["samples"], window=cfg["window"], tol=tol,
                                progress=_tty())
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
    cfg, den = _settings(fast), _digits()
    sampler, steps = cfg["rows"][0]
    windows = [8, 16] if fast else [16, 64, 256]
    repeats = 2 if fast else 3
    rows = []
    for window in _bar(windows, "speedup-vs-window"):
        walls, outs = {"sequential": [], "picard": []}, {}
        for rep in range(repeats):
            for method in (("sequential", "picard") if rep % 2 == 0 else ("picard", "sequential")):
                outs[method], wall = run_digits(den, sampler, steps, method, samples=cfg["samples"], window=window,
                                                tol=1e-3, progress=_tty())
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
    _write_csv(out / "speedup-vs-window.csv", rows)
    plt = _fig()
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


def _digit_quality(x, real, clf):
    """Metrics of one sample set: sliced W2 to held-out real digits and the share the classifier
    labels with confidence >= 0.9 (unconditional samples have no labels: a stand-in for accuracy);
    returns ``(metrics, labels)``."""
    from ..zoo import digits

    with torch.no_grad():
        probs = torch.softmax(clf(x.clamp(-1, 1)), dim=1)
    conf, labels = probs.max(1)
    sw = float(digits.sliced_wasserstein(x.clamp(-1, 1), real, generator=torch.Generator().manual_seed(0)))
    return {"sliced W2": sw, "confident share": float((conf >= 0.9).double().mean())}, labels


def _pm(values, diff: bool = False) -> str:
    """``mean ± std`` over seeds (sample std; just the mean for one seed); differences in e-notation."""
    v = np.asarray(values, dtype=float)
    fmt = "{:+.1e}" if diff else "{:.4f}"
    return fmt.format(v.mean()) if len(v) == 1 else f"{fmt.format(v.mean())} ± {v.std(ddof=1):.1e}"


def _count(values) -> str:
    v = np.asarray(values, dtype=float)
    return str(int(v[0])) if (v == v[0]).all() else f"{v.mean():.1f}"


def _quality_rows(base: dict, seq: list, par: list) -> list:
    """One row per metric: ``base`` + seq, par and par - seq, each mean ± std over the seeds."""
    rows = []
    for name in seq[0]:
        s, p = [m[name] for m in seq], [m[name] for m in par]
        rows.append({**base, "metric": name, "seq": _pm(s), "par": _pm(p), "par - seq": _pm(np.subtract(p, s), True)})
    return rows


def _digits_run(den, real, clf, sampler, steps, method, window, tol, samples, seed):
    """One scored digits run: ``(output, wall, metrics, labels)``."""
    o, wall = run_digits(den, sampler, steps, method, samples=samples, seed=seed, window=window, tol=tol,
                         progress=_tty())
    return (o, wall, *_digit_quality(o.x, real, clf))


def _pair(seq, par):
    """``{method: (output, wall, metrics)}`` of one seed, with the label agreement of par with seq."""
    agreement = float((par[3] == seq[3]).double().mean())
    return {"sequential": (seq[0], seq[1], {**seq[2], "label agreement": 1.0}),
            "picard": (par[0], par[1], {**par[2], "label agreement": agreement})}


def quality_vs_tolerance(out: Path, fast: bool = False):
    """Sample quality, sequential vs parallel, as the tolerance varies: mean ± std over seeds.

    Digits DDIM-100, window 16, 32 samples per seed, 3 seeds (fast: DDIM-20, 4 samples, 1 seed); about
    2.5 minutes on one CPU core. Metrics: sliced W2 to the held-out test digits, confident share (the
    classifier's confidence >= 0.9), label agreement seq vs par (seq scores 1 by definition).
    """
    from ..zoo import digits

    den, clf = _digits(), digits.classifier()
    real, _ = digits.load_digits_16("test")
    sampler, steps, window = ("ddim", 20, 20) if fast else ("ddim", 100, 16)
    samples, seeds = (4, [0]) if fast else (32, [0, 1, 2])
    tols = [1e-1] if fast else [1e-1, 1e-2, 1e-3]
    per, seq = {tol: [] for tol in tols}, {}  # tol -> per-seed {method: (output, wall, metrics)}
    for seed, tol in _bar([(seed, tol) for seed in seeds for tol in tols], "quality-vs-tolerance"):
        if seed not in seq:
            seq[seed] = _digits_run(den, real, clf, sampler, steps, "sequential", window, tol, samples, seed)
        par = _digits_run(den, real, clf, sampler, steps, "picard", window, tol, samples, seed)
        per[tol].append(_pair(seq[seed], par))
    rows = []
    for tol, runs in per.items():
        base = {"sampler": f"{sampler}-{steps}", "window": window, "tol": tol, "seeds": len(runs),
                "sweeps": _count([r["picard"][0].stats.iterations for r in runs]),
                "max_abs_diff": f"{_max_gap(runs):.2e}"}
        rows += _quality_rows(base, [r["sequential"][2] for r in runs], [r["picard"][2] for r in runs])
    _write_csv(out / "quality-vs-tolerance.csv", rows)
    plt = _fig()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, name in zip(axes, ("sliced W2", "confident share", "label agreement")):
        seq = np.array([[r["sequential"][2][name] for r in per[tol]] for tol in tols])
        diff = np.array([[r["picard"][2][name] - r["sequential"][2][name] for r in per[tol]] for tol in tols])
        spread = seq.std(axis=1, ddof=1) if len(seeds) > 1 else np.zeros(len(tols))
        ax.fill_between(tols, -spread, spread, color="0.85", label="seed spread of seq (± std)")
        ax.errorbar(tols, diff.mean(1), yerr=diff.std(1, ddof=1) if len(seeds) > 1 else None, fmt="o-",
                    capsize=3, label="par - seq (mean ± std)")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xscale("log")
        ax.set(xlabel="tol", title=name)
    axes[0].set_ylabel("parallel - sequential")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{sampler}-{steps}, window {window}, {samples} samples x {len(seeds)} seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "quality-vs-tolerance.png", dpi=120)
    plt.close(fig)
    return rows


def _trajectory_runs(fast: bool):
    """Robotics substitute, per row: the trajectory DDPM on ``make_dataset`` start/goal pairs, per seed."""
    from .. import diffusion
    from ..zoo import trajectory

    den = trajectory.trajectory_denoiser()
    pairs, seeds = (4, [0]) if fast else (64, [0, 1, 2])
    specs = (("ddim", 15, 15),) if fast else (("ddpm", 100, 100), ("ddim", 15, 15))
    out = {spec: [] for spec in specs}
    for (sampler, steps, window), seed in _bar([(spec, seed) for spec in specs for seed in seeds], "trajectory"):
        _, cond = trajectory.make_dataset(pairs, torch.Generator().manual_seed(100 + seed))
        start, goal = cond[:, :2], cond[:, 2:]
        runs = {}
        for method in ("sequential", "picard"):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(200 + seed)
            o = diffusion.sample(den, (pairs, trajectory.HORIZON, 2), sampler=sampler, steps=steps, method=method,
                                 window=window, tol=1e-3, cond=cond, generator=gen, throw=False)
            runs[method] = (o, time.perf_counter() - t0,
                            {"task success": trajectory.task_score(o.x, start, goal).summary()["success"]})
        out[(sampler, steps, window)].append(runs)
    return {f"trajectory {s}-{n}": (n, runs) for (s, n, _), runs in out.items()}


def _max_gap(runs) -> float:
    """Largest |x_par - x_seq| over the seeds."""
    return max(float((r["picard"][0].x - r["sequential"][0].x).abs().max()) for r in runs)


def _table_rows(task, steps, runs):
    """Rows of one task: performance (means over seeds) and one row per quality metric."""
    seq_wall = np.mean([r["sequential"][1] for r in runs])
    par_wall = np.mean([r["picard"][1] for r in runs])
    sweeps = [r["picard"][0].stats.iterations for r in runs]
    base = {"task": task, "seeds": len(runs), "seq evals": _count([r["sequential"][0].stats.nfe for r in runs]),
            "par evals": _count([r["picard"][0].stats.nfe for r in runs]), "sweeps": _count(sweeps),
            "seq time [s]": f"{seq_wall:.2f}", "par time [s]": f"{par_wall:.2f}",
            "speed-up here": f"{seq_wall / par_wall:.2f}", "ideal": f"{steps / np.mean(sweeps):.1f}",
            "max|x-x_seq|": f"{_max_gap(runs):.1e}"}
    return _quality_rows(base, [r["sequential"][2] for r in runs], [r["picard"][2] for r in runs])


def table(out: Path, fast: bool = False):
    """The paper's main table with local substitutes for its models, quality as mean ± std over seeds.

    Digits DDPM-1000 / DDIM-200 / DPM-Solver++-200 (window 64, tol 1e-3) with 8 samples per seed (reduced
    from 16 to keep the run near 4 minutes on one CPU core), 3 seeds; the trajectory DDPM-100 / DDIM-15 on
    64 start/goal pairs from ``make_dataset``, 3 seeds. Fast: shorter samplers, 1 sample/4 pairs, 1 seed.
    Also writes table.png (sweeps vs steps and the speed-ups per row).
    """
    from ..zoo import digits

    den, clf = _digits(), digits.classifier()
    real, _ = digits.load_digits_16("test")
    samples, seeds = (1, [0]) if fast else (8, [0, 1, 2])
    specs = [("ddpm", 50, 16), ("dpmsolver++", 10, 10)] if fast else \
        [("ddpm", 1000, 64), ("ddim", 200, 64), ("dpmsolver++", 200, 64)]
    per = {spec: [] for spec in specs}
    for (sampler, steps, window), seed in _bar([(spec, seed) for spec in specs for seed in seeds], "digits"):
        seq, par = (_digits_run(den, real, clf, sampler, steps, m, window, 1e-3, samples, seed)
                    for m in ("sequential", "picard"))
        per[(sampler, steps, window)].append(_pair(seq, par))
    tasks = {f"digits {s}-{n}": (n, runs) for (s, n, _), runs in per.items()}
    tasks.update(_trajectory_runs(fast))
    rows = [row for task, (steps, runs) in tasks.items() for row in _table_rows(task, steps, runs)]
    _write_csv(out / "table.csv", rows)
    _plot_table(out / "table.png", tasks)
    return rows


def _plot_table(path: Path, tasks) -> None:
    """Bar charts per row: steps vs sweeps, and ideal vs measured speed-up."""
    plt = _fig()
    names = list(tasks)
    steps = np.array([tasks[n][0] for n in names], dtype=float)
    sweeps = np.array([np.mean([r["picard"][0].stats.iterations for r in tasks[n][1]]) for n in names])
    measured = np.array([np.mean([r["sequential"][1] for r in tasks[n][1]]) /
                         np.mean([r["picard"][1] for r in tasks[n][1]]) for n in names])
    y, h = np.arange(len(names)), 0.38
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 0.6 * len(names) + 1.6), sharey=True)
    a.bar_label(a.barh(y - h / 2, steps, h, label="steps (sequential evaluations)"), fmt="%g", fontsize=7)
    a.bar_label(a.barh(y + h / 2, sweeps, h, label="sweeps (parallel, tol 1e-3)"), fmt="%.3g", fontsize=7)
    a.set_xscale("log")
    a.set(yticks=y, yticklabels=names, xlabel="count (log scale)", xlim=(1, 3 * steps.max()))
    b.bar_label(b.barh(y - h / 2, steps / sweeps, h, label="ideal (steps / sweeps)"), fmt="%.1f", fontsize=7)
    b.bar_label(b.barh(y + h / 2, measured, h, label="measured here (CPU)"), fmt="%.2f", fontsize=7)
    b.axvline(1, color="k", lw=0.6)
    b.set(xlabel="speed-up over sequential", xlim=(0, 1.25 * max((steps / sweeps).max(), measured.max())))
    a.invert_yaxis()
    a.legend(fontsize=7), b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


