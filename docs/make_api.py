"""Write docs/api.md from the public docstrings: ``python docs/make_api.py``."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

SECTIONS = [
    ("parasolve", ["solve", "solve_sde", "Solution", "Stats", "Status", "SweepRecord", "ConvergenceError",
                   "NonFiniteError", "Scheme", "register_scheme", "StepMap", "register_step"]),
    ("parasolve.schemes", ["WindowedScheme", "Picard", "Sequential"]),
    ("parasolve.steps", ["ExplicitRK", "AdamsBashforth2"]),
    ("parasolve.problems", ["ODEProblem", "SDEProblem", "linear", "harmonic", "logistic", "gaussian_decay",
                            "van_der_pol", "ornstein_uhlenbeck", "all_ode_problems"]),
]
OPTIONAL = [  # modules added by later work; documented when present
    ("parasolve.schemes", ["Parareal", "Anderson", "Newton"]),
    ("parasolve.diffusion", ["sample", "from_diffusers", "pretrained"]),
    ("parasolve.testing", None),
    ("parasolve.evaluators", None),
]


def _entry(qualname: str, obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        sig = ""
    kind = "class" if inspect.isclass(obj) else "function"
    doc = inspect.getdoc(obj) or "(no docstring)"
    return f"### `{qualname}{sig}`\n\n*{kind}*\n\n{doc}\n"


def render() -> str:
    parts = ["# API reference\n", "Generated from the docstrings by `python docs/make_api.py`.\n"]
    sections = list(SECTIONS)
    for module_name, names in OPTIONAL:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if names is None:
            names = list(getattr(module, "__all__", []))
        names = [n for n in names if hasattr(module, n)]
        if names:
            sections.append((module_name, names))
    seen = set()
    for module_name, names in sections:
        module = importlib.import_module(module_name)
        parts.append(f"## `{module_name}`\n")
        for name in names:
            if (module_name, name) in seen:
                continue
            seen.add((module_name, name))
            parts.append(_entry(f"{module_name}.{name}", getattr(module, name)))
    return "\n".join(parts)


if __name__ == "__main__":
    out = Path(__file__).with_name("api.md")
    out.write_text(render())
    print(f"wrote {out}")
