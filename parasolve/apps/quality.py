"""The quality reproductions of ``parasolve reproduce``: ``quality-vs-tolerance`` and ``table``.

Sample quality of sequential against parallel runs, mean ± std over seeds: sliced W2 to held-out
digits, the classifier's confident share and label agreement on the digits DDPM, task success on
the trajectory-planning DDPM; ``table`` adds sweeps, evaluations and speed-ups per row.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .figures import digits_model, progress_bar, pyplot, run_digits, tty_progress, write_csv

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
                         progress=tty_progress())
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

    den, clf = digits_model(), digits.classifier()
    real, _ = digits.load_digits_16("test")
    sampler, steps, window = ("ddim", 20, 20) if fast else ("ddim", 100, 16)
    samples, seeds = (4, [0]) if fast else (32, [0, 1, 2])
    tols = [1e-1] if fast else [1e-1, 1e-2, 1e-3]
    per, seq = {tol: [] for tol in tols}, {}  # tol -> per-seed {method: (output, wall, metrics)}
    for seed, tol in progress_bar([(seed, tol) for seed in seeds for tol in tols], "quality-vs-tolerance"):
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
    write_csv(out / "quality-vs-tolerance.csv", rows)
    plt = pyplot()
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
    for (sampler, steps, window), seed in progress_bar([(spec, seed) for spec in specs for seed in seeds], "trajectory"):
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

    den, clf = digits_model(), digits.classifier()
    real, _ = digits.load_digits_16("test")
    samples, seeds = (1, [0]) if fast else (8, [0, 1, 2])
    specs = [("ddpm", 50, 16), ("dpmsolver++", 10, 10)] if fast else \
        [("ddpm", 1000, 64), ("ddim", 200, 64), ("dpmsolver++", 200, 64)]
    per = {spec: [] for spec in specs}
    for (sampler, steps, window), seed in progress_bar([(spec, seed) for spec in specs for seed in seeds], "digits"):
        seq, par = (_digits_run(den, real, clf, sampler, steps, m, window, 1e-3, samples, seed)
                    for m in ("sequential", "picard"))
        per[(sampler, steps, window)].append(_pair(seq, par))
    tasks = {f"digits {s}-{n}": (n, runs) for (s, n, _), runs in per.items()}
    tasks.update(_trajectory_runs(fast))
    rows = [row for task, (steps, runs) in tasks.items() for row in _table_rows(task, steps, runs)]
    write_csv(out / "table.csv", rows)
    _plot_table(out / "table.png", tasks)
    return rows


def _plot_table(path: Path, tasks) -> None:
    """Bar charts per row: steps vs sweeps, and ideal vs measured speed-up."""
    plt = pyplot()
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

