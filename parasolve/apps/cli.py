"""The ``parasolve`` command: ``demo``, ``solve``, ``reproduce`` and ``bench``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import functools
import inspect
import os
import re
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

from .common import (DEFAULT_THREADS, CommandError, check_output_dir, check_output_file, format_table, one_line,
                     use_threads)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump)."""

    def error(self, message):
        hint = ""
        flag = re.match(r"argument (--[\w-]+): expected one argument", message)
        if flag:  # e.g. --y0 -1,0: argparse takes the value for a flag; attached with '=' it is a value
            example = "-1,0" if flag.group(1) == "--y0" else "-1"
            hint = f"; a value starting with '-' must be attached with '=', e.g. {flag.group(1)}={example}"
        self.exit(2, f"{self.prog}: error: {one_line(message)}{hint} (see {self.prog} --help)\n")


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from ..errors import NonFiniteError
    try:
        return args.run(args) or 0
    except (CommandError, ValueError, TypeError, NonFiniteError, OSError) as exc:  # typed errors: one line
        print(f"parasolve {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"parasolve {args.command}: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    from .. import SCHEMES, STEPS
    from .reproduce import REPRODUCTIONS

    p = _Parser(prog="parasolve", description="Parallel-in-time ODE/SDE solving and diffusion sampling.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="solve a toy ODE and sample the digits model, sequential vs parallel")
    d.add_argument("--out", default="parasolve-demo", help="folder for the PNGs (default: %(default)s)")
    d.add_argument("--fast", action="store_true", help="smaller problems (for tests)")
    _threads_arg(d)
    d.set_defaults(run=_demo)

    s = sub.add_parser("solve", help="solve dy/dt = f(t, y) for a drift in a Python file or module",
                       epilog="example: parasolve solve mydrift.py:f --y0 1,0 --t1 10 --steps 1000 "
                              "--window 100 --compare --save traj.csv --plot traj.png")
    s.add_argument("drift", metavar="MODULE:FUNCTION",
                   help="e.g. mydrift.py:f or package.module:f; f(t, y) -> dy/dt")
    s.add_argument("--y0", required=True, help="initial state, comma-separated numbers, e.g. 1,0 "
                                               "(a negative first value attached: --y0=-1,0)")
    s.add_argument("--t0", type=float, default=0.0, help="start time (default: %(default)s)")
    s.add_argument("--t1", type=float, default=1.0, help="end time (default: %(default)s)")
    s.add_argument("--steps", type=int, default=100, help="number of uniform grid steps (default: %(default)s)")
    s.add_argument("--method", default="auto",
                   help=f"solver scheme: auto, {', '.join(SCHEMES)} (default: %(default)s: full-Jacobian "
                        f"newton for states of at most 16 components, else picard)")
    s.add_argument("--step", default="euler", help=f"one-step map: {', '.join(STEPS)} (default: %(default)s)")
    s.add_argument("--window", type=_window_arg, default=None,
                   help="steps updated in parallel per sweep, or 'auto' to measure (default: all steps)")
    s.add_argument("--tol", type=float, default=None,
                   help="accepted per-step defects sum to at most TOL, so the gap to the sequential "
                        "solution is at most S*TOL (default: 1e-7 in float64, 1e-3 with --float32)")
    s.add_argument("--max-iters", type=int, default=None, help="sweep limit (default: --steps, which always suffices)")
    s.add_argument("--progress", action="store_true", help="show a progress bar")
    s.add_argument("--vectorized", action="store_true", help="f takes t (n,) and y (n, d)")
    s.add_argument("--float32", action="store_true", help="solve in float32 (default float64)")
    s.add_argument("--device", default="cpu", help="torch device of the state and grid, e.g. cpu, cuda, cuda:1 "
                                                   "(default: %(default)s)")
    s.add_argument("--compare", action="store_true", help="also solve sequentially and print both")
    s.add_argument("--save", metavar="FILE", help="write the trajectory (.npy or .csv: t, y...)")
    s.add_argument("--plot", metavar="PNG", help="plot the trajectory to an image (.png, .pdf, .svg, ...)")
    _threads_arg(s)
    s.set_defaults(run=_solve)

    r = sub.add_parser("reproduce", help="regenerate a figure/table of the ParaDiGMS paper on local models")
    r.add_argument("name", help=f"one of: {', '.join(REPRODUCTIONS)}")
    r.add_argument("--out", default="parasolve-reproduce", help="output folder (default: %(default)s)")
    r.add_argument("--fast", action="store_true", help="fewer seeds/settings (for a quick look)")
    _threads_arg(r)
    r.set_defaults(run=_reproduce)

    b = sub.add_parser("bench", help="run the benchmark tables of benchmarks/")
    b.add_argument("name", nargs="?", default=None, help="which benchmark (default: list them)")
    b.add_argument("args", nargs=argparse.REMAINDER, help="passed on to the script (see NAME --help)")
    b.set_defaults(run=_bench)
    return p


def _threads_arg(parser) -> None:
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="torch threads (default: %(default)s; small models on a shared machine run "
                             "fastest on one)")


# ---------------------------------------------------------------- solve
def load_callable(spec: str):
    """``path/to/file.py:name`` or ``package.module:name`` -> the callable."""
    if ":" not in spec:
        raise CommandError(f"drift {spec!r} must be MODULE:FUNCTION, e.g. mydrift.py:f")
    module_spec, name = spec.rsplit(":", 1)
    if module_spec.endswith(".py") or os.sep in module_spec:
        path = Path(module_spec)
        if not path.is_file():
            raise CommandError(f"file {module_spec!r} not found")
        loader = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(loader)
        sys.path.insert(0, str(path.parent.resolve()))
        try:
            loader.loader.exec_module(module)
        except Exception as exc:
            raise CommandError(f"importing {module_spec!r} failed: {type(exc).__name__}: {exc}") from None
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:  # `mydrift:f` finds ./mydrift.py, as python -m does
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_spec)
        except ImportError as exc:
            raise CommandError(f"module {module_spec!r} cannot be imported: {exc}") from None
        except Exception as exc:
            raise CommandError(f"importing {module_spec!r} failed: {type(exc).__name__}: {exc}") from None
    if not hasattr(module, name):
        raise CommandError(f"{module_spec!r} has no attribute {name!r}")
    func = getattr(module, name)
    if not callable(func):
        raise CommandError(f"{spec!r} is a {type(func).__name__}, not a callable f(t, y)")
    return func


def _window_arg(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid window {text!r}: give a positive integer or 'auto'") from None


def _parse_state(text: str, dtype) -> torch.Tensor:
    try:
        return torch.tensor([float(v) for v in text.split(",")], dtype=dtype)
    except ValueError:
        raise CommandError(f"--y0 {text!r} must be comma-separated numbers, e.g. 1,0") from None


def _check_device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise CommandError(f"--device {text!r} is not a torch device; e.g. cpu, cuda, cuda:1") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {text!r}: this torch has no usable CUDA device "
                           f"(torch {torch.__version__}, torch.cuda.is_available() is False); use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CommandError(f"--device {text!r}: there are {torch.cuda.device_count()} CUDA devices")
    return device


def _plot_suffixes():
    from matplotlib.backend_bases import FigureCanvasBase
    kinds = set(FigureCanvasBase.get_supported_filetypes())
    return tuple(f".{ext}" for ext in ("png", "pdf", "svg", *sorted(kinds - {"png", "pdf", "svg"})))


def _check_signature(spec: str, f) -> None:
    try:
        inspect.signature(f).bind(0.0, 0.0)
    except ValueError:  # no signature available (a builtin): let the call decide
        pass
    except TypeError:
        raise CommandError(f"drift {spec!r} must take two arguments f(t, y); its signature is "
                           f"{inspect.signature(f)}") from None


def _guarded(f, raised: list):
    """``f`` recording every exception it raises in ``raised`` (to tell the drift's errors from ours)."""
    @functools.wraps(f)
    def drift(t, y):
        try:
            return f(t, y)
        except Exception as exc:
            raised.append(exc)
            raise
    return drift


def _from_drift(exc: BaseException, raised: list) -> bool:
    while exc is not None:
        if any(exc is r for r in raised):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _where(exc, f) -> str:
    """`` (at FILE:LINE)`` of the deepest traceback frame in the drift's file, or ``""``."""
    code = getattr(f, "__code__", None)
    frames = [fr for fr in traceback.extract_tb(exc.__traceback__) if code and fr.filename == code.co_filename]
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


#: solve()'s parameters as the flags of ``parasolve solve`` (for its error messages).
_FLAGS = {"max_iters": "--max-iters", "window": "--window", "tol": "--tol", "method": "--method",
          "step": "--step", "y0": "--y0", "t": "--t0/--t1/--steps", "vectorized": "--vectorized",
          "progress": "--progress"}


def _as_flags(message: str, spec: str | None = None) -> str:
    """``message`` of solve() in the command's terms: `max_iters` -> --max-iters, and with ``spec``
    `f` -> the drift."""
    message = re.sub(r"`(\w+)`", lambda m: _FLAGS.get(m.group(1), m.group(0)), message)
    message = message.replace("vectorized=True", "--vectorized").replace("len(t) - 1", "--steps")
    return message if spec is None else message.replace("`f`", f"the drift {spec!r}")


def _solve(args):
    import parasolve

    if args.steps < 1:
        raise CommandError(f"--steps must be >= 1; got {args.steps}")
    if args.t0 == args.t1:
        raise CommandError(f"--t0 and --t1 must differ; both are {args.t0}")
    if args.save:
        check_output_file("--save", args.save, (".npy", ".csv"))
    if args.plot:
        check_output_file("--plot", args.plot, _plot_suffixes(), "a format matplotlib writes")
    if args.method != "auto" and args.method not in parasolve.SCHEMES:
        raise CommandError(f"Unknown --method {args.method!r}; valid: auto, {', '.join(sorted(parasolve.SCHEMES))}")
    device = _check_device(args.device)
    print(use_threads(args.threads))
    f = load_callable(args.drift)
    _check_signature(args.drift, f)
    dtype = torch.float32 if args.float32 else torch.float64
    y0 = _parse_state(args.y0, dtype).to(device)
    t = torch.linspace(args.t0, args.t1, args.steps + 1, dtype=dtype, device=device)
    raised: list = []
    kw = dict(step=args.step, window=args.window, tol=args.tol, max_iters=args.max_iters,
              vectorized=args.vectorized, progress=args.progress, throw=False)
    runs = [("sequential", kw)] if args.compare and args.method != "sequential" else []
    runs.append((args.method, kw))
    results = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for method, options in runs:
            start = time.perf_counter()
            try:
                sol = parasolve.solve(_guarded(f, raised), y0, t, method=method, **options)
                if sol.failure is not None:  # NaN/Inf: an error, not a partial result to tabulate
                    raise sol.failure
            except Exception as exc:
                if _from_drift(exc, raised):
                    raise CommandError(f"the drift raised {type(exc).__name__}: {exc}{_where(exc, f)}") from None
                if isinstance(exc, (ValueError, TypeError)):
                    raise CommandError(_as_flags(str(exc), args.drift)) from None
                raise
            results.append((method, sol, time.perf_counter() - start))
    for message in dict.fromkeys(one_line(w.message) for w in caught):
        print(f"parasolve solve: warning: {_as_flags(message)}", file=sys.stderr)
    ref = results[0][1] if len(results) > 1 else None  # a gap only against a sequential run
    print(format_table([_row(m, s, w, ref) for m, s, w in results]))
    sol = results[-1][1]
    if args.window == "auto":
        print(f"--window auto chose {sol.stats.window} steps per sweep (of {args.steps})")
    end = ", ".join(f"{v:.10g}" for v in sol.ys[-1].reshape(-1).cpu().double().tolist())
    print(f"y(t1={args.t1:g}) = [{end}]")
    if not sol.converged:
        print(f"parasolve solve: warning: {_as_flags(one_line(sol.message))}", file=sys.stderr)
    if args.save:
        save_trajectory(args.save, sol.ts, sol.ys)
        print(f"trajectory written to {args.save}")
    if args.plot:
        plot_trajectory(args.plot, sol.ts, sol.ys, title=f"{args.drift} ({args.method}, {args.step})")
        print(f"plot written to {args.plot}")
    return 0 if sol.converged else 1


def save_trajectory(path: str, ts, ys) -> None:
    import numpy as np

    data = np.concatenate([ts.cpu().double().numpy()[:, None], ys.reshape(len(ts), -1).cpu().double().numpy()], 1)
    if path.endswith(".npy"):
        np.save(path, data)
    elif path.endswith(".csv"):
        header = "t," + ",".join(f"y{i}" for i in range(data.shape[1] - 1))
        np.savetxt(path, data, delimiter=",", header=header, comments="")
    else:
        raise CommandError(f"--save {path!r}: use a .npy or .csv file name")


def plot_trajectory(path: str, ts, ys, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ts.cpu().double().numpy(), ys.reshape(len(ts), -1).cpu().double().numpy())
    ax.set_xlabel("t")
    ax.set_ylabel("y")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _row(method, sol, wall, ref):
    label = method if method == sol.method else f"{method} ({sol.method})"  # auto -> what it chose
    row = {"method": label, "sweeps": sol.stats.iterations, "evals": sol.stats.nfe, "wall [s]": f"{wall:.3f}"}
    if ref is not None:
        row["max|x - x_seq|"] = f"{float((sol.ys - ref.ys).abs().max()):.2e}"
    return {**row, "converged": sol.converged}


# ---------------------------------------------------------------- demo / reproduce / bench
def _demo(args):
    from .demo import run_demo
    check_output_dir("--out", args.out)
    print(use_threads(args.threads))
    run_demo(Path(args.out), fast=args.fast)
    return 0


def _reproduce(args):
    from . import reproduce
    if args.name not in reproduce.REPRODUCTIONS:
        raise CommandError(f"unknown reproduction {args.name!r}; valid: {', '.join(sorted(reproduce.REPRODUCTIONS))}")
    check_output_dir("--out", args.out)
    reproduce.run(args.name, Path(args.out), fast=args.fast, threads=args.threads)
    return 0


def _bench(args):
    from . import bench
    if args.name is None:
        for name, doc in bench.list_benchmarks():
            print(f"{name:24s} {doc}")
        return 0
    bench.run(args.name, args.args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
