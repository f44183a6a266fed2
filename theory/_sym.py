"""Shared helpers of the derivation modules: the sympy import and the report printed by ``python -m``."""

from __future__ import annotations

from dataclasses import dataclass


def sympy():
    """Import sympy (a dev dependency) or say how to get it."""
    try:
        import sympy as sp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("theory's symbolic derivations need sympy: pip install 'parasolve[dev]'") from exc
    return sp


@dataclass
class Check:
    """One symbolic verification: what was proved and whether sympy confirmed it."""

    claim: str
    ok: bool

    def __str__(self) -> str:
        return f"[{'ok' if self.ok else 'FAILED'}] {self.claim}"


def is_zero(expr) -> bool:
    """True when sympy simplifies ``expr`` to exactly 0."""
    sp = sympy()
    return sp.simplify(sp.expand(expr)) == 0


def nonnegative_coefficients(poly_expr, symbols) -> bool:
    """True when the expanded polynomial has only non-negative coefficients (so it is >= 0 for symbols >= 0)."""
    sp = sympy()
    poly = sp.Poly(sp.expand(poly_expr), *symbols)
    return all(c >= 0 for c in poly.coeffs())


def report(title: str, forms: dict, checks: list[Check]) -> str:
    """The text ``python -m theory.<module>`` prints: closed forms, then the verified claims."""
    sp = sympy()
    lines = [title, "=" * len(title)]
    for name, expr in forms.items():
        lines.append(f"{name}:")
        lines.append("    " + (sp.pretty(expr, use_unicode=False).replace("\n", "\n    ")
                              if not isinstance(expr, str) else expr))
    lines.append("")
    lines.extend(str(c) for c in checks)
    return "\n".join(lines)


def run_main(title: str, derive, verify) -> int:
    """Entry point of ``python -m theory.<module>``; exit status 1 if a symbolic check failed."""
    checks = verify()
    print(report(title, derive(), checks))
    return 0 if all(c.ok for c in checks) else 1
