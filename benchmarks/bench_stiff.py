"""Stiff problems: parasolve.odeint(method="radau"/"sdirk4") against scipy's Radau and BDF, and
diffrax's Kvaerno5 where jax and diffrax are installed (rows left out otherwise).

For Robertson, Van der Pol (mu = 1000), HIRES and the Oregonator (benchmarks/stiff_problems.py) at
one rtol: the error at five output times against scipy's Radau at rtol 1e-10, CPU time
(``time.process_time``) and wall time, medians of interleaved repeats with one torch thread, and
the sequential depth: parasolve's batched drift rounds (each a Newton iteration over every open
step's stages, plus the error estimates) against the Newton iterations of a sequential implicit
solver -- parasolve's own Radau map stepped one step after another on the same final grid, and
scipy's Radau (its ``solve_collocation_system`` iterations, summed).

diffrax runs in float64 on one thread (XLA flags set before jax is imported), with a
``PIDController`` at the same rtol/atol; its time is measured after JIT compilation (the
compilation's own time is its own column).

    python benchmarks/bench_stiff.py --out docs/benchmarks/stiff.md
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import runpy
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp
from scipy.integrate._ivp import radau as scipy_radau

import parasolve

SP = runpy.run_path(str(Path(__file__).resolve().parent / "stiff_problems.py"))
#: Whether diffrax's rows are run: jax and diffrax importable.
HAVE_DIFFRAX = all(importlib.util.find_spec(m) is not None for m in ("jax", "diffrax"))


def diffrax_solver(name, rtol, t_end, atol, times):
    """A JIT-compiled diffrax Kvaerno5 solve of problem ``name`` (float64, one thread) and its compile
    time: ``(run, compile_seconds)`` with ``run() -> (ys at times, accepted steps)``."""
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    import jax
    jax.config.update("jax_enable_x64", True)
    import diffrax
    import jax.numpy as jnp
    term = diffrax.ODETerm(SP["jax_rhs"](name, jnp))
    y0 = jnp.asarray(SP["PROBLEMS"][name][1], dtype=jnp.float64)

    @jax.jit
    def solve(y):
        sol = diffrax.diffeqsolve(term, diffrax.Kvaerno5(), t0=0.0, t1=t_end, dt0=None, y0=y,
                                  saveat=diffrax.SaveAt(ts=jnp.asarray(times)), max_steps=200_000,
                                  stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol))
        return sol.ys, sol.stats["num_accepted_steps"]

    _, cpu, _ = timed(lambda: jax.block_until_ready(solve(y0)))

    def run():
        ys, steps = jax.block_until_ready(solve(y0))
        return np.asarray(ys), int(steps)
    return run, cpu


class NewtonCount:
    """Counts the Newton iterations of scipy's Radau by observing its collocation solver's return."""

    def __init__(self):
        self.iterations = 0
        self._inner = scipy_radau.solve_collocation_system

    def __enter__(self):
        def counted(*args, **kwargs):
            out = self._inner(*args, **kwargs)
            self.iterations += out[1]
            return out
        scipy_radau.solve_collocation_system = counted
        return self

    def __exit__(self, *exc):
        scipy_radau.solve_collocation_system = self._inner


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the platform's."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def run_problem(name, rtol, repeats, methods, with_diffrax=HAVE_DIFFRAX):
    f, y0, t_end, atol = SP["PROBLEMS"][name]
    fun = SP["NUMPY"][name]
    times = np.linspace(0.0, t_end, 5)
    ref = solve_ivp(fun, (0, t_end), y0, method="Radau", rtol=1e-10, atol=atol * 1e-4, t_eval=times).y.T
    y0t, tt = torch.tensor(y0, dtype=torch.float64), torch.from_numpy(times)
    runs = {}

    def scipy_run(method):
        return solve_ivp(fun, (0, t_end), y0, method=method, rtol=rtol, atol=atol, t_eval=times)

    def ours(method):
        return parasolve.odeint(f, y0t, tt, rtol=rtol, atol=atol, method=method, options={"vectorized": True},
                                full_output=True)

    jobs = {"scipy Radau": lambda: scipy_run("Radau"), "scipy BDF": lambda: scipy_run("BDF")}
    compile_cpu = None
    if with_diffrax:
        jobs["diffrax Kvaerno5"], compile_cpu = diffrax_solver(name, rtol, t_end, atol, times)
    jobs.update({f"parasolve {m}": (lambda m=m: ours(m)) for m in methods})
    for _ in range(repeats):  # interleaved
        for label, job in jobs.items():
            out, cpu, wall = timed(job)
            runs.setdefault(label, []).append((out, cpu, wall))
    rows = []
    with NewtonCount() as count:  # untimed: the step counts (without t_eval) and scipy Radau's Newton iterations
        steps = {f"scipy {m}": solve_ivp(fun, (0, t_end), y0, method=m, rtol=rtol, atol=atol).t.size - 1
                 for m in ("Radau", "BDF")}
        count.iterations = 0
        scipy_run("Radau")
    for label, results in runs.items():
        out = results[0][0]
        cpu = statistics.median(r[1] for r in results)
        wall = statistics.median(r[2] for r in results)
        if label.startswith("scipy"):
            err = float(np.abs(out.y.T - ref).max())
            rounds = count.iterations if label == "scipy Radau" else None
            rows.append(dict(solver=label, err=err, cpu=cpu, wall=wall, steps=steps[label], rounds=rounds, newton=rounds,
                             seq=rounds, nfev=out.nfev))
        elif label.startswith("diffrax"):
            err = float(np.abs(out[0] - ref).max())
            rows.append(dict(solver=label, err=err, cpu=cpu, wall=wall, steps=out[1], rounds=None, newton=None,
                             seq=None, nfev=None, compile=compile_cpu))
        else:
            err = float(np.abs(out.ys.numpy() - ref).max())
            step = "radau5" if label.endswith("radau") else "sdirk4"
            seq = parasolve.solve(f, y0t, out.grid, step=step, method="sequential", vectorized=True)
            rows.append(dict(solver=label, err=err, cpu=cpu, wall=wall, steps=out.stats.accepted_steps,
                             rounds=out.stats.drift_rounds, newton=out.stats.sweeps, seq=seq.stats.drift_calls,
                             nfev=out.stats.nfe, passes=out.stats.passes))
    return rows


def _diffrax_versions(ran: bool) -> str:
    if not ran:
        return "no diffrax (not installed, or --no-diffrax: its rows left out), "
    from importlib.metadata import version
    return f"jax {version('jax')}, diffrax {version('diffrax')}, equinox {version('equinox')}, "


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=list(SP["PROBLEMS"]))
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["radau", "sdirk4"])
    parser.add_argument("--out", default=None)
    parser.add_argument("--no-diffrax", action="store_true", help="leave diffrax's rows out (jax not imported)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    lines = [f"rtol = {args.rtol:g}; median of {args.repeats} interleaved runs; one torch thread; "
             f"load average before {load_before[0]:.2f}, after {{after}} (shared machine: other jobs ran beside).", "",
             "| problem | solver | max error | vs scipy Radau | CPU s | CPU / scipy Radau's | wall s | compile CPU s "
             "| steps | passes | drift rounds | Newton iters | sequential rounds (same grid) | rounds / sequential "
             "| rounds / scipy Radau's Newton iters | nfev |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in args.problems:
        rows = run_problem(name, args.rtol, args.repeats, args.methods, HAVE_DIFFRAX and not args.no_diffrax)
        base = rows[0]
        for r in rows:
            ratio = None if r["rounds"] is None or not r["seq"] else r["rounds"] / r["seq"]
            vs_scipy = None if r["rounds"] is None else r["rounds"] / base["newton"]
            lines.append(f"| {name} | {r['solver']} | {r['err']:.2e} | {r['err'] / base['err']:.2f}x | {r['cpu']:.3f} | "
                         f"{r['cpu'] / base['cpu']:.2f}x | {r['wall']:.3f} | {fmt(r.get('compile'), '.2f')} | "
                         f"{fmt(r['steps'], 'd')} | {fmt(r.get('passes'), 'd')} | "
                         f"{fmt(r['rounds'], 'd')} | {fmt(r['newton'], 'd')} | {fmt(r['seq'], 'd')} | "
                         f"{fmt(ratio, '.3f')} | {fmt(vs_scipy, '.3f')} | {fmt(r['nfev'], 'd')} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines).replace("{after}", f"{os.getloadavg()[0]:.2f}") + "\n"
    if args.out:
        header = (f"# Stiff problems: parasolve.odeint(method='radau'/'sdirk4') vs scipy and diffrax\n\n"
                  f"Machine: {platform.processor() or platform.machine()}, 2-core sandbox ({_cpu_model()}), torch "
                  f"{torch.__version__}, scipy {__import__('scipy').__version__}, "
                  f"{_diffrax_versions(HAVE_DIFFRAX and not args.no_diffrax)}one torch "
                  f"thread. Generated by "
                  f"`python benchmarks/bench_stiff.py --out docs/benchmarks/stiff.md`.\n\n")
        Path(args.out).write_text(header + text + FOOTNOTE)
    return text


FOOTNOTE = """
Columns: *max error*: max abs error at the five output times `linspace(0, T, 5)` against scipy's
Radau at rtol 1e-10 (atol scaled down alike); *vs scipy Radau*: that error over scipy Radau's at
the same rtol; *drift rounds*: batched drift calls made one after another (parasolve: every Newton
iteration over all open steps' stages and probes is one round, plus the first-step estimate and the
error estimates of each pass); *Newton iters*: parasolve's whole-trajectory Newton iterations summed
over the passes, scipy's Newton iterations of the stage equations summed over its steps (for scipy
these are its sequential rounds, each of three stage evaluations); *sequential rounds (same grid)*:
parasolve's Radau/SDIRK map stepped one step after another on parasolve's final grid, each step's own
Newton iteration run to round-off (one round per iteration); *nfev*: drift evaluations per point
(parasolve's include the Jacobian probes: `(D + 1)` per stage point and iteration).
scipy runs without a user Jacobian (finite differences, as parasolve), with NumPy right-hand sides.
*diffrax Kvaerno5*: float64, one XLA thread, `PIDController` at the same rtol/atol, `dt0=None`,
timed after JIT compilation (*compile CPU s*: the first call's CPU time, compilation included); its
*steps* are its accepted steps (diffrax's stats count no Newton iterations or evaluations).
"""


if __name__ == "__main__":
    main()
