"""Write docs/architecture.md: parasolve's import graph as a mermaid diagram.

    python docs/make_architecture.py           # rewrite the page
    python docs/make_architecture.py --check   # exit 1 if the page is stale or the graph has a cycle

Only the standard library's ``ast``: every ``import`` in a module counts, at module level
(solid arrow) and deferred inside a function (dashed arrow). Importing ``pkg.mod`` from outside
``pkg`` also runs ``pkg/__init__.py``, so that package is an edge too; the root ``parasolve``
package is left out of those (every module is inside it).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "parasolve"
PAGE = ROOT / "docs" / "architecture.md"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import, known) -> list[str]:
    """The package modules one import statement loads (the named module or, for ``from m import
    x``, ``m.x`` when that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != PACKAGE:
        return []
    # ``from m import x``: the module ``m.x`` where ``x`` is one, else ``m`` itself
    return [f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target for alias in node.names]


def import_graph(root: Path = ROOT) -> dict[str, dict[str, bool]]:
    """``graph[a][b]``: module ``a`` imports module ``b``; the value says whether every such
    import is deferred (inside a function)."""
    known = modules(root)
    graph: dict[str, dict[str, bool]] = {name: {} for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            deferred = not _in_module_body(tree, node)
            for target in _resolve(name, path.name == "__init__.py", node, known):
                for dep in _with_packages(name, target, known):
                    if dep != name:
                        graph[name][dep] = graph[name].get(dep, True) and deferred
    return graph


def _in_module_body(tree: ast.Module, node: ast.AST) -> bool:
    """Whether ``node`` runs at import time: in the module body or a module-level ``if``/``try``."""
    stack = list(tree.body)
    while stack:
        item = stack.pop()
        if item is node:
            return True
        if isinstance(item, (ast.If, ast.Try, ast.With)):
            stack.extend(ast.iter_child_nodes(item))
        elif isinstance(item, ast.ExceptHandler):
            stack.extend(item.body)
    return False


def _with_packages(importer: str, target: str, known) -> list[str]:
    """``target`` (or its nearest enclosing module) and the packages above it that importing it
    runs from ``importer``'s place: those ``importer`` is not inside, the root excluded."""
    parts = target.split(".")
    while parts and ".".join(parts) not in known:
        parts = parts[:-1]
    deps = [".".join(parts)] if parts else []
    for k in range(2, len(parts)):
        pkg = ".".join(parts[:k])
        if not (importer == pkg or importer.startswith(pkg + ".")):
            deps.append(pkg)
    return deps


def find_cycle(graph: dict[str, dict[str, bool]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or ``None``."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, {})):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _short(name: str) -> str:
    return name[len(PACKAGE) + 1:] if name != PACKAGE else PACKAGE


def _node_id(name: str) -> str:
    return name.replace(".", "_")


def mermaid(graph: dict[str, dict[str, bool]]) -> str:
    """The graph as a mermaid flowchart, subpackages as subgraphs."""
    groups: dict[str, list[str]] = {}
    for name in sorted(graph):
        parts = name.split(".")
        inside = len(parts) >= 3 or (len(parts) == 2 and any(o.startswith(name + ".") for o in graph))
        groups.setdefault(parts[1] if inside else "", []).append(name)
    lines = ["flowchart LR"]
    for group, names in sorted(groups.items()):
        indent = "    "
        if group:
            lines.append(f"    subgraph {group}")
            indent = "        "
        for name in names:
            lines.append(f'{indent}{_node_id(name)}["{_short(name)}"]')
        if group:
            lines.append("    end")
    for name in sorted(graph):
        for dep, deferred in sorted(graph[name].items()):
            arrow = "-.->" if deferred else "-->"
            lines.append(f"    {_node_id(name)} {arrow} {_node_id(dep)}")
    return "\n".join(lines)


def collapsed(graph: dict[str, dict[str, bool]]) -> dict[str, dict[str, bool]]:
    """The graph with each subpackage folded into one node (edges inside a subpackage dropped)."""
    def fold(name):
        parts = name.split(".")
        return ".".join(parts[:2])

    out: dict[str, dict[str, bool]] = {}
    for name, deps in graph.items():
        node = out.setdefault(fold(name), {})
        for dep, deferred in deps.items():
            if fold(dep) != fold(name):
                node[fold(dep)] = node.get(fold(dep), True) and deferred
    return out


def page(graph: dict[str, dict[str, bool]]) -> str:
    edges = sum(len(deps) for deps in graph.values())
    deferred = sum(d for deps in graph.values() for d in deps.values())
    return f"""# Architecture

## Data flow: which object goes where

One solve is one straight line; every entry point joins it (`parasolve/_solve.py`):

```text
solve(f, y0, t, ...)                        parasolve/_api.py: window="auto" -> tuning.choose_window
  |  y0, t validated once                   _checks.check_y0 / check_grid
  v
solve_checked(f, y0, grid, ...)             f, g -> BatchedDrift (drift.py: batching, first-call contract
  |                                         checks, nfe); step -> StepMap (steps.py; sde.EulerMaruyama
  |                                         with the noise drawn up front); progress/callback -> observer
  v
solve_discrete(drift, step_map, ...)        sdeint enters here with its own drift and step map
  |  method="auto": schemes.choice.auto_scheme, then costs.pays_on_grid (the cost model)
  |  resolve_scheme -> Scheme;   Problem(drift, step, t, y0, tol, window, max_iters, save, init,
  |                                      observer)   -- frozen: nothing changes it afterwards
  v
execute(scheme, problem, gradients)         gradients (adjoint.GradientRequest) wrap the run:
  |                                         adjoint.node's autograd Function around its Solution
  v
scheme.run(problem)                         Scheme.run checks the step map (rule 1), then _run:
  |                                         sequential, the windowed engine (picard, newton, anderson),
  |                                         parareal; drift calls go through the evaluator
  |                                         (evaluators: one device, several, a process group)
  v
Ledger(problem)                             schemes/ledger.py: acceptance by stop_rule (the weighted
  |                                         defect budget), Stats, warnings, the observer's SweepInfo
  v
Solution (frozen)  --report-->  returned, or ConvergenceError / NonFiniteError with throw=True
```

The features sit on that line: `odeint` (adaptive grids: the sequential stepper
`odeint.stepper`, or passes of `solve` on a refined grid, `odeint.adaptive`; stiff
methods through `implicit`), `sdeint` (`solve_discrete` on its SDE step maps), `diffusion`
(samplers are step maps: `diffusion.sample` calls `solve`), `implicit` (step maps whose stages
one Newton solves over the whole trajectory). The test kit (`testing`, `conformance`) checks any
step map or scheme against the numbered contracts; `zoo` ships models, `apps` the command line.

## Layers

The layers, bottom to top: the discrete problem (`steps`, `sde`, `problem`, `drift`, `solution`,
`errors`), the evaluators that run a batch of drift calls (`evaluators`, contract in
`evaluators.protocol`), the schemes (`schemes`: the windowed `engine` and the `ledger` every
scheme keeps its books in), the fixed-window solve (`_solve`), the window tuner (`tuning`), the
public entry points (`_api`); then the clients of the core: `diffusion` (samplers as step maps),
`testing` (strategies and the conformance kit), `zoo` (shipped models) and `apps` (command line,
demo, reproductions).

The graphs below are every import between parasolve's modules ({len(graph)} modules, {edges} edges, of
them {deferred} deferred imports inside functions, dashed), first with each subpackage folded into
one node, then module by module. They have no cycle; `tests/test_architecture.py` checks that,
and that this page is current. Regenerate it with `python docs/make_architecture.py`.

### Packages

```mermaid
{mermaid(collapsed(graph))}
```

## Modules

```mermaid
{mermaid(graph)}
```
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the page is stale or a cycle exists")
    args = parser.parse_args(argv)
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        print("import cycle: " + " -> ".join(cycle), file=sys.stderr)
        return 1
    text = page(graph)
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(f"{PAGE} is stale; run python docs/make_architecture.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
