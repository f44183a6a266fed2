"""The layers hold: parasolve's import graph (module-level and deferred imports) has no cycle,
the core does not reach up into its clients, and docs/architecture.md shows the graph as it is."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def arch():
    spec = importlib.util.spec_from_file_location("make_architecture", ROOT / "docs" / "make_architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def graph(arch):
    return arch.import_graph()


def test_the_import_graph_has_no_cycle(arch, graph):
    assert arch.find_cycle(graph) is None


def test_the_architecture_page_is_current(arch, graph):
    assert (ROOT / "docs" / "architecture.md").read_text() == arch.page(graph), \
        "docs/architecture.md is out of date: run `python docs/make_architecture.py`"


CORE = ("parasolve._api", "parasolve._solve", "parasolve.adjoint", "parasolve.tuning", "parasolve.discrete_problem",
        "parasolve.observers", "parasolve.steps", "parasolve.sde", "parasolve.drift", "parasolve.solution", "parasolve.errors",
        "parasolve.schemes", "parasolve.evaluators")
CLIENTS = ("parasolve.diffusion", "parasolve.zoo", "parasolve.apps", "parasolve.testing")


def _within(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_core_does_not_import_its_clients(graph):
    bad = [(a, b) for a, deps in graph.items() if _within(a, CORE) for b in deps if _within(b, CLIENTS)]
    assert not bad


def test_evaluators_and_schemes_stay_below_the_solve_and_the_tuner(graph):
    above = ("parasolve._api", "parasolve._solve", "parasolve.tuning", "parasolve")
    low = ("parasolve.evaluators", "parasolve.schemes", "parasolve.steps", "parasolve.discrete_problem", "parasolve.observers")
    bad = [(a, b) for a, deps in graph.items() if _within(a, low) for b in deps if b in above]
    assert not bad
    newton = graph["parasolve.schemes.newton"]
    assert "parasolve.schemes.anderson" not in newton and "parasolve.schemes.engine" in newton


def test_a_deferred_import_cycle_is_found(arch, tmp_path):
    """The graph sees imports inside functions and the package __init__ an import runs."""
    pkg = tmp_path / "parasolve"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("from .sub.b import y\nx = 1\n")
    (pkg / "sub" / "__init__.py").write_text("from .c import z\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    (pkg / "sub" / "c.py").write_text("def z():\n    from ..a import x\n    return x\n")
    graph = arch.import_graph(tmp_path)
    assert graph["parasolve.a"] == {"parasolve.sub.b": False, "parasolve.sub": False}
    assert graph["parasolve.sub.c"] == {"parasolve.a": True}
    cycle = arch.find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"parasolve.a", "parasolve.sub", "parasolve.sub.c"}
    (pkg / "sub" / "c.py").write_text("def z():\n    return 3\n")
    assert arch.find_cycle(arch.import_graph(tmp_path)) is None


MAX_LINES = 400
MODULES = sorted((ROOT / "parasolve").rglob("*.py"))


def test_no_module_is_over_400_lines():
    """Small modules, one job each: a module that grows past 400 lines is split along its jobs."""
    long = {str(p.relative_to(ROOT)): n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules along their jobs (at most {MAX_LINES} lines): {long}"


def _mapped_names():
    """The backquoted paths in tests/README.md (`parasolve/x.py`, `parasolve/sub/`, `tests/test_x.py`)."""
    import re
    return set(re.findall(r"`((?:parasolve|tests)(?:/\w+)*(?:\.py|/))`", (ROOT / "tests" / "README.md").read_text()))


def test_tests_readme_maps_every_module_and_every_test_file():
    """tests/README.md names every parasolve module and subpackage (with the tests that cover it)
    and every test file (with what it checks), and names nothing that is gone."""
    named = _mapped_names()
    modules = {str(p.relative_to(ROOT)) for p in MODULES if p.name != "__init__.py"}
    packages = {str(p.parent.relative_to(ROOT)) + "/" for p in MODULES if p.name == "__init__.py"}
    test_files = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")}
    missing = sorted((modules | packages | test_files) - named)
    assert not missing, f"add these to tests/README.md: {missing}"
    gone = sorted(n for n in named if not (ROOT / n).exists())
    assert not gone, f"tests/README.md names what no longer exists: {gone}"
