"""The kit's machinery: one check per numbered rule, each with its own id, run one by one (the
pytest helper of the package) or all at once (``check_step_map``/``check_scheme``), and the problems they run on."""

from __future__ import annotations

import re
from typing import Callable, Iterator, NamedTuple

import torch


class Rule(NamedTuple):
    """A numbered rule of a contract and the function that checks it: ``check(case, fail)``,
    where ``fail(detail)`` raises the rule's ``AssertionError``."""

    number: int
    title: str
    check: Callable

    @property
    def id(self) -> str:
        """``rule5-carry``: the rule's id in pytest ids and in :func:`failures`."""
        return f"rule{self.number}-{re.sub(r'[^a-z0-9]+', '-', self.title.lower()).strip('-')}"


def message(contract: str, rule: Rule, who: str, detail: str) -> str:
    return f"rule {rule.number} ({rule.title}) of the {contract} contract: {who}: {detail}"


def bind(contract: str, rule: Rule, who: str, case) -> Callable[[], None]:
    """The no-argument check of ``rule`` on ``case``: raises ``AssertionError("rule N (title) ...")``
    when the rule is broken; an exception the extension raises during the check is that rule's
    failure too (chained), so every broken rule reads the same way."""

    def fail(detail):
        raise AssertionError(message(contract, rule, who, detail))

    def check():
        try:
            rule.check(case, fail)
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 -- the extension's exception is the rule's failure
            raise AssertionError(message(contract, rule, who, f"raised {type(exc).__name__}: {exc}")) from exc

    check.__name__ = check.__qualname__ = rule.id.replace("-", "_")
    return check


def run_all(checks: Iterator[tuple[str, Callable[[], None]]]) -> None:
    """Run every check; raise one ``AssertionError`` that starts with the first broken rule's message
    and lists the ids of the others (``None`` when all hold)."""
    broken = failures(checks)
    if broken:
        first = broken[0][1]
        rest = f"\n(also broken: {', '.join(rule for rule, _ in broken[1:])})" if len(broken) > 1 else ""
        raise AssertionError(f"{first}{rest}") from first


def failures(checks) -> list[tuple[str, AssertionError]]:
    """``(rule id, error)`` of every check in ``checks`` that fails, in rule order."""
    out = []
    for rule, check in checks:
        try:
            check()
        except AssertionError as exc:
            out.append((rule, exc))
    return out


# ------------------------------------------------------------------ the problems the rules run on

EPS64 = 2.0 ** -52


def default_grid(n: int = 12) -> torch.Tensor:
    """A non-uniform increasing grid on [0, 1] (step lengths within a factor of 3)."""
    h = 1.0 + 0.5 * torch.sin(torch.arange(n, dtype=torch.float64) * 1.7)
    return torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(h, 0) / h.sum()])


def tanh_drift(dim: int, dtype):
    """``f(t, y) = tanh(W y + c t) - 0.3 y``, batched; ``W`` fixed, Lipschitz at most 1.3."""
    gen = torch.Generator().manual_seed(7)
    W = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    W = (W / torch.linalg.matrix_norm(W, ord=float("inf"))).to(dtype)
    c = torch.linspace(-1, 1, dim, dtype=dtype)

    def f(t, y):
        flat = y.reshape(y.shape[0], -1)
        lin = flat[:, :dim] @ W.T + t.to(y.dtype)[:, None] * c
        out = flat.clone()
        out[:, :dim] = torch.tanh(lin)
        return (out - 0.3 * flat).reshape(y.shape)

    return f


def one_at_a_time(step, drift, t, idx, y):
    """Increments of ``idx`` computed one step per call, each with the carry of the call before."""
    incs, carries, prev = [], [], None
    for k in range(len(idx)):
        out = step.increments(drift, t, idx[k:k + 1], y[k:k + 1], prev)
        incs.append(out[0])
        carries.append(out[1])
        prev = out[1][0] if step.multistep else None
    return torch.cat(incs), carries


def sequential(step, drift, t, y0):
    """The discrete trajectory ``x_{i+1} = x_i + Phi_i(x_i)`` by one step per call."""
    ys, prev = [y0], None
    for i in range(t.shape[0] - 1):
        inc, carry = step.increments(drift, t, torch.tensor([i]), ys[-1][None], prev)
        ys.append(ys[-1] + inc[0])
        prev = carry[0] if step.multistep else None
    return torch.stack(ys)
