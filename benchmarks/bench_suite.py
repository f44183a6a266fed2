"""Issue 22's evidence: parasolve's defaults against torchdiffeq and torchode, row by row.

One command writes ``<out-dir>/<name>.csv`` and ``<name>.md`` (the machine named, the targets
checked per row):

    python benchmarks/bench_suite.py                      # the whole suite (docs/benchmarks/suite.*)
    python benchmarks/bench_suite.py --quick              # four small rows (the CI smoke test)
    python benchmarks/bench_suite.py --rows mlp-B16,rk4   # rows whose name contains a pattern
    python benchmarks/bench_suite.py --force newton       # parasolve's parallel scheme forced
    python benchmarks/bench_suite.py --force newton --force-option jacobian=full

Each row runs in a fresh subprocess (one torch thread): the three solvers are primed on a toy
problem, run once each (the warm-up: peak extra memory measured on it), then ``--repeats``
times interleaved (the order rotated every repeat); CPU time (``time.process_time``) and wall
time are the medians, the CPU ratio the median of the paired per-repeat ratios. A solver whose
warm-up takes longer than ``--slow`` seconds is timed by that one run (``n = 1``); one that
passes ``--run-timeout`` is stopped and marked. Evaluations and rounds are counted by a wrapper
around the drift in the last timed run (``suite_solvers.Counter``), the error of its answer is
the max abs deviation from a tight reference (``suite_rows.reference``; for training rows, of
the gradient). torchode is optional (``pip install torchode``, benchmark-only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

import torch  # noqa: E402

import suite_report  # noqa: E402
import suite_rows  # noqa: E402
import suite_solvers as solvers  # noqa: E402


class RunTimeout(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raise ``RunTimeout`` in the body after ``seconds`` of wall time (SIGALRM, main thread)."""
    def alarm(signum, frame):
        raise RunTimeout
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _prime(device: str) -> None:
    """One small solve per solver, so the first row's first solver does not pay torch's lazy setup;
    for parasolve also one of each parallel scheme its defaults may switch to (Newton with full
    Jacobians, Picard), whose torch kernels the toy solve (stepped sequentially) never reaches.
    Unprimed, a row's first call faults those kernels' code pages in (1-3 MiB of shared library
    text in the resident set, docs/benchmarks/suite-memory.md), which the other solvers' primed
    paths do not pay."""
    row = suite_rows.Row("prime", "prime", "adaptive", None, 1e-5, 1e-8)
    p = suite_rows.Problem(lambda t, y: -y, torch.ones(1, 2, dtype=suite_rows.DTYPE, device=device),
                           torch.linspace(0, 1, 3, dtype=suite_rows.DTYPE, device=device))
    for name in solvers.NAMES:
        if solvers.available(name):
            solvers.make_run(name, row, p, p.f, None, {})()
    import parasolve

    def toy(t, y):
        return torch.stack([y[..., 1], -y[..., 0] * (1 + y[..., 2] ** 2), -y[..., 2]], -1)
    y0 = torch.tensor([1.0, 0.5, 0.2], dtype=suite_rows.DTYPE, device=device)
    t = torch.linspace(0, 4, 3, dtype=suite_rows.DTYPE, device=device)
    with torch.no_grad():
        for scheme, scheme_options in (("newton", {"jacobian": "full"}), ("picard", None)):
            parasolve.odeint(toy, y0, t, rtol=1e-6, atol=1e-9,
                             options={"scheme": scheme, "scheme_options": scheme_options})


def _to(problem, device):
    problem.y0, problem.t = problem.y0.to(device), problem.t.to(device)
    if isinstance(problem.f, torch.nn.Module):
        problem.f.to(device)
    return problem


def _failure(exc: Exception, args) -> str:
    if isinstance(exc, RunTimeout):
        return f"timeout > {args.run_timeout:g} s"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}"


def _first_call(name, row, problem, args) -> dict:
    """Solver ``name``'s state for the row after its first call (memory measured on it)."""
    if not solvers.available(name):
        return {"status": "not installed"}
    counter = solvers.Counter(problem.y0.numel())
    info = {}
    run = solvers.make_run(name, row, problem, solvers.counted(problem.f, counter), _force(args), info)
    s = {"run": run, "counter": counter, "info": info, "cpu": [], "wall": [], "status": "ok"}
    try:
        with _deadline(args.run_timeout):
            c0, w0 = time.process_time(), time.perf_counter()
            s["answer"], s["mem_mb"] = solvers.peak_extra_memory(run, args.device)
            s["first_cpu"], s["first_wall"] = time.process_time() - c0, time.perf_counter() - w0
    except Exception as exc:  # a solver that fails is a result: the row says how
        s["status"] = _failure(exc, args)
        return s
    s["calls"], s["points"] = counter.calls, counter.points
    if s["first_wall"] > args.slow:  # too slow to repeat: timed by its first call
        s["cpu"], s["wall"] = [s["first_cpu"]], [s["first_wall"]]
    return s


def _timed_run(s, args) -> None:
    """One timed run of a solver: CPU and wall time, its counts and answer."""
    s["counter"].reset()
    try:
        with _deadline(args.run_timeout):
            c0, w0 = time.process_time(), time.perf_counter()
            s["answer"] = s["run"]()
            if args.device == "cuda":
                torch.cuda.synchronize()
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    except Exception as exc:
        s["status"] = _failure(exc, args)
        return
    s["cpu"].append(cpu)
    s["wall"].append(wall)
    s["calls"], s["points"] = s["counter"].calls, s["counter"].points


def measure_row(row, args) -> dict:
    """Everything the report needs about one row (runs in the worker process)."""
    torch.set_num_threads(1)
    out = {"row": row.name, "group": row.group, "method": row.method, "rtol": row.rtol, "atol": row.atol,
           "steps": row.steps, "batch": row.batch, "dim": row.dim, "long_horizon": row.long_horizon,
           "load_before": os.getloadavg()[0]}
    problem = row.make()
    t0 = time.perf_counter()
    truth = suite_rows.reference_gradient(problem) if row.kind == "train" else suite_rows.reference(problem)
    out["ref_s"] = time.perf_counter() - t0
    problem = _to(problem, args.device)
    _prime(args.device)
    state = {name: _first_call(name, row, problem, args) for name in solvers.NAMES}
    timed = [n for n in solvers.NAMES if state[n]["status"] == "ok" and not state[n]["cpu"]]
    for rep in range(args.repeats):  # interleaved, the order rotated every repeat
        k = rep % max(len(timed), 1)
        for name in timed[k:] + timed[:k]:
            if state[name]["status"] == "ok":
                _timed_run(state[name], args)
    for name, s in state.items():
        out[f"{name}_status"] = s["status"]
        if s["status"] != "ok":
            continue
        answer = s["answer"].detach().to("cpu")
        out.update({f"{name}_{k}": v for k, v in {
            "cpu_s": statistics.median(s["cpu"]), "wall_s": statistics.median(s["wall"]), "n": len(s["cpu"]),
            "first_wall_s": s["first_wall"], "calls": s["calls"], "points": s["points"],
            "err": float((answer - truth).abs().max()), "mem_mb": s["mem_mb"],
            "stats": s["info"].get("stats", "")}.items()})
    base = state["torchdiffeq"]
    for name in ("parasolve", "torchode"):
        s = state[name]
        if s["status"] == "ok" and base["status"] == "ok":
            pairs = [a / b for a, b in zip(s["cpu"], base["cpu"])] if len(s["cpu"]) == len(base["cpu"]) else []
            out[f"{name}_cpu_ratio"] = (statistics.median(pairs) if pairs
                                        else statistics.median(s["cpu"]) / statistics.median(base["cpu"]))
    out["load_after"] = os.getloadavg()[0]
    return out


def _rows(args):
    rows = suite_rows.all_rows()
    if args.quick:
        rows = [r for r in rows if r.name in suite_rows.QUICK]
    if args.rows:  # a whole row name picks that row; any other pattern, the rows containing it
        patterns = args.rows.split(",")
        names = {r.name for r in rows}
        rows = [r for r in rows if r.name in patterns or any(p in r.name for p in patterns if p not in names)]
    if not rows:
        raise SystemExit(f"--rows {args.rows!r} matches no row; the rows are: "
                         + ", ".join(r.name for r in suite_rows.all_rows()))
    return rows


def _worker_command(row, args):
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", row.name, "--repeats",
           str(args.repeats), "--device", args.device, "--slow", str(args.slow), "--run-timeout",
           str(args.run_timeout)]
    if args.force:
        cmd += ["--force", args.force] + [x for o in args.force_option for x in ("--force-option", o)]
    return cmd


def _force(args):
    """``None`` or ``(scheme, scheme_options)`` from ``--force`` and ``--force-option``."""
    if not args.force:
        return None
    return args.force, {k: _value(v) for k, v in (o.split("=", 1) for o in args.force_option)}


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(suite_rows.QUICK)}")
    parser.add_argument("--rows", default=None, help="comma-separated row names or substrings of them")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per solver (median; default 3)")
    parser.add_argument("--force", choices=("newton", "picard"), default=None,
                        help="parasolve's parallel scheme forced (options['scheme'] / solve's method)")
    parser.add_argument("--force-option", action="append", default=[], metavar="KEY=VALUE",
                        help="with --force: an option of that scheme, e.g. jacobian=full (default: the scheme's own)")
    parser.add_argument("--slow", type=float, default=30.0,
                        help="a solver whose warm-up takes longer (s) is timed by that run alone")
    parser.add_argument("--run-timeout", type=float, default=300.0, help="stop one solve after this many s")
    parser.add_argument("--out-dir", default=str(ROOT / "docs" / "benchmarks"))
    parser.add_argument("--name", default=None, help="file stem (default: suite, suite-force-<scheme>)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.force_option and not args.force:
        parser.error("--force-option needs --force newton|picard")
    if any("=" not in o for o in args.force_option):
        parser.error(f"--force-option takes KEY=VALUE, got {args.force_option}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here; run with --device cpu")
    if args.worker:
        row = next(r for r in suite_rows.all_rows() if r.name == args.worker)
        print("RESULT " + json.dumps(measure_row(row, args)), flush=True)
        return
    name = args.name or ("suite" if not args.force else f"suite-force-{args.force}")
    header = suite_report.machine(args)
    results = []
    for row in _rows(args):
        proc = subprocess.run(_worker_command(row, args), capture_output=True, text=True, cwd=ROOT)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
            result = {"row": row.name, "group": row.group, "worker_error": tail}
        else:
            result = json.loads(lines[-1][len("RESULT "):])
        results.append(result)
        print(suite_report.one_line(result), flush=True)
    header["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suite_report.write_csv(results, out_dir / f"{name}.csv", args.force)
    suite_report.write_markdown(results, header, args, out_dir / f"{name}.md")
    print(f"wrote {out_dir / name}.csv and .md")
    return results


if __name__ == "__main__":
    main()
