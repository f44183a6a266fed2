"""``parasolve bench``: run the benchmark scripts of a source checkout's ``benchmarks/`` folder."""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

from .common import CommandError

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _scripts() -> dict[str, Path]:
    if not BENCHMARKS.is_dir():
        raise CommandError(f"no benchmarks/ folder next to the package ({BENCHMARKS}); "
                           f"run from a source checkout (pip install -e .)")
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCHMARKS.glob("bench_*.py"))
            if not p.stem.endswith("_common")}  # shared helpers, not benchmarks


def list_benchmarks():
    """``(name, first docstring line)`` for each ``benchmarks/bench_*.py``."""
    out = []
    for name, path in _scripts().items():
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        out.append((name, doc.strip().splitlines()[0] if doc.strip() else ""))
    return out


def run(name: str, args=()) -> None:
    """Run ``benchmarks/bench_NAME.py`` with command-line ``args``."""
    scripts = _scripts()
    if name not in scripts:
        raise CommandError(f"unknown benchmark {name!r}; valid: {', '.join(scripts)}")
    argv = sys.argv
    sys.argv = [str(scripts[name]), *args]
    try:
        runpy.run_path(str(scripts[name]), run_name="__main__")
    finally:
        sys.argv = argv
