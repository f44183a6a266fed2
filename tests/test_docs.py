"""The docs cannot rot: the site builds strictly, the documented code runs, pages render in Chromium.

Needs the docs extra (``pip install -e ".[docs]"``) and Debian's ``chromium`` (.ci/setup installs
both); without them these tests fail and say what to install: they never skip.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = "<!-- runnable -->"
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"parasolve_docs_{name}", ROOT / "docs" / "_mkdocs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"parasolve_docs_{name}"] = module
    spec.loader.exec_module(module)
    return module


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail('mkdocs is not installed: pip install -e ".[docs]"')
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
                           "--site-dir", str(site)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    result = build(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


# --------------------------------------------------------------------------- the strict build

def test_site_builds_strictly_with_the_api_pages(site):
    page = (site / "api" / "solve" / "index.html").read_text()
    assert 'id="parasolve.solve"' in page and 'id="parasolve.solve_sde"' in page
    assert "max_iters" in page and "sweep limit" in page  # the docstring's Args, rendered
    search = json.loads((site / "search" / "search_index.json").read_text())
    assert "api/solve/#parasolve.solve_sde" in {entry["location"] for entry in search["docs"]}
    # Sphinx roles in docstrings became links, none is left as text
    for html in (site / "api").rglob("*.html"):
        assert not re.search(r":(func|class|meth|mod|data|attr|exc):`", html.read_text()), html


def test_strict_build_fails_on_broken_links_anchors_and_api_names(tmp_path):
    """The same configuration on a page with one of each mistake: the build fails naming each."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "javascripts").mkdir()
    (docs / "javascripts" / "mermaid.min.js").symlink_to(ROOT / "docs" / "javascripts" / "mermaid.min.js")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "there.py").write_text("print('a script outside docs/')\n")
    (docs / "index.md").write_text("# Broken\n\n[a page](missing.md) · [an anchor](#nowhere) · "
                                   "[an API name][parasolve.no_such_function] · "
                                   "[a script](../examples/there.py) · [no script](../examples/gone.py)"
                                   "\n\n::: parasolve.Stats\n")
    config = (ROOT / "mkdocs.yml").read_text()
    config = config.split("\nnav:", 1)[0].replace("docs_dir: docs", f"docs_dir: {docs}")
    config = config.replace("docs/_mkdocs/", f"{ROOT}/docs/_mkdocs/").replace("paths: [.]", f"paths: [{ROOT}]")
    (tmp_path / "mkdocs.yml").write_text(config)
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    log = result.stdout + result.stderr
    assert result.returncode != 0, log
    assert "missing.md" in log and "nowhere" in log and "parasolve.no_such_function" in log, log
    assert "gone.py" in log and "there.py" not in log, log  # a repository file is copied, a missing one fails
    assert (tmp_path / "site" / "src" / "examples" / "there.py").is_file()


def test_sphinx_roles_resolve_in_the_docstrings_scope():
    import griffe

    roles = _load("docstrings")
    package = griffe.load("parasolve", search_paths=[str(ROOT)])
    sample = package["diffusion.api.sample"]
    assert roles.convert(sample, ":func:`parasolve.solve`") == "[`parasolve.solve`][parasolve.solve]"
    assert roles.convert(sample, ":class:`Denoiser`") == "[`Denoiser`][parasolve.diffusion.denoiser.Denoiser]"
    assert roles.convert(sample, ":class:`~parasolve.steps.StepMap`") == "[`StepMap`][parasolve.steps.StepMap]"
    assert roles.convert(sample, ":func:`torch.func.vmap`") == "`torch.func.vmap`"  # another package: code
    assert roles.convert(sample, ":func:`nothing_here`") == "[`nothing_here`][nothing_here]"  # fails the build
    package_doc = package["diffusion"]  # a function shadowing its own submodule
    assert (roles.convert(package_doc, ":func:`from_diffusers`")
            == "[`from_diffusers`][parasolve.diffusion.from_diffusers.from_diffusers]")


def test_shared_argument_entries_become_one_per_parameter():
    import griffe

    roles = _load("docstrings")
    sample = griffe.load("parasolve", search_paths=[str(ROOT)])["diffusion.api.sample"]
    text = "Args:\n    max_iters, throw: as in solve,\n        continued.\n    save: kept.\n    a, b: not parameters."
    assert roles.split_shared_entries(sample, text).splitlines() == [
        "Args:", "    max_iters: as in solve,", "        continued.", "    throw: as ``max_iters``.",
        "    save: kept.", "    a, b: not parameters."]


def test_readme_links_exist():
    """README.md is not part of the site (the build checks docs/); its relative links are checked here."""
    text = re.sub(r"```.*?```", "", (ROOT / "README.md").read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    missing = [target for target in re.findall(r"\]\(([^)\s]+)\)", text)
               if not re.match(r"[a-z]+://|#|mailto:", target)
               and not (ROOT / target.split("#", 1)[0]).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


# --------------------------------------------------------------------------- documented code runs

def runnable_blocks(path: Path) -> list[tuple[int, str]]:
    """The ```python blocks right after a ``<!-- runnable -->`` line, with their first line number."""
    lines = path.read_text().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != RUNNABLE:
            continue
        if i + 1 >= len(lines) or lines[i + 1].strip() != "```python":
            raise ValueError(f"{path}:{i + 1}: {RUNNABLE} must be followed by a ```python block")
        end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == "```")
        blocks.append((i + 3, "\n".join(lines[i + 2:end])))
    return blocks


PAGES_WITH_CODE = [page for page in MARKDOWN if RUNNABLE in page.read_text()]


def test_the_marked_subset_is_not_empty():
    names = {page.relative_to(ROOT).as_posix() for page in PAGES_WITH_CODE}
    assert {"README.md", "docs/index.md", "docs/testing.md"} <= names, names


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_documented_code_runs(page, tmp_path, monkeypatch, capsys):
    """A page's marked blocks run in order in one namespace, as a reader would paste them, and
    print what their comments say they print (``print(x)  # 33 75888: ...``)."""
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for line, code in runnable_blocks(page):
        capsys.readouterr()
        exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)
        check_printed_comments(code, capsys.readouterr().out, f"{page.name}:{line}")


_TOKEN = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?|[A-Za-z_]\w*")


def check_printed_comments(code: str, out: str, where: str) -> None:
    """Each ``print(...)  # EXPECTED[: or , remark]`` line of a block printed EXPECTED: its words
    appear in the printed line and its numbers equal the printed ones to the digits written.
    Checked where every print call prints one line (no loops)."""
    prints = [ln for ln in code.splitlines() if ln.lstrip().startswith("print(")]
    outputs = out.splitlines()
    if len(prints) != len(outputs):
        return
    for source, printed in zip(prints, outputs):
        if "#" not in source:
            continue
        expected = re.split(r"[:,]\s", source.split("#", 1)[1].strip(), maxsplit=1)[0]
        got = _TOKEN.findall(printed)
        numbers = [g for g in got if g[0].isdigit() or g[0] in "+-"]
        for token in _TOKEN.findall(expected):
            if not (token[0].isdigit() or token[0] in "+-"):
                assert token in got, f"{where}: the comment says {expected!r}, the code printed {printed!r}"
                continue
            assert numbers, f"{where}: the comment says {expected!r}, the code printed {printed!r}"
            value = numbers.pop(0)
            digits = len(token.split("e")[0].split(".")[1]) if "." in token else None
            shown = f"{float(value):.{digits}e}" if digits is not None and "e" in token else value
            assert shown == token, f"{where}: the comment says {expected!r}, the code printed {printed!r}"


# --------------------------------------------------------------------------- in a browser

PAGES = {"index.html": "article h1",  # page -> what must be on it (scrolled into view for the shot)
         "api/solve/index.html": "[id='parasolve.solve']",
         "reproduce/index.html": "article img",
         "architecture/index.html": "div.mermaid",  # pre.mermaid until drawn by the site's own mermaid
         "odeint/index.html": "article pre",  # long code lines: wrapped, not cut
         "install/index.html": "article pre"}


def test_pages_render_in_chromium(site, tmp_path):
    browser = _load("browser")
    out = Path(os.environ.get("PARASOLVE_DOCS_SCREENSHOTS", tmp_path))
    reports = browser.check_pages(site, list(PAGES), out, scroll_to=PAGES)
    for report in reports:
        assert not report.problems, f"{report.path}: {report.problems}"
        assert report.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert report.screenshot.stat().st_size > 20_000, "a blank screenshot"
    assert reports[0].images >= 2 and reports[2].images >= 4  # the demo figures; the four reproduction figures


def test_chromium_check_reports_broken_pages(tmp_path):
    """The check can fail: a broken image, a console error, an exception and a missing page."""
    browser = _load("browser")
    (tmp_path / "index.html").write_text(
        "<html><head><title>t</title><link rel='icon' href='data:,'></head><body><h1>x</h1>"
        "<img src='no-such.png'><script>console.error('boom'); undefined_name();</script>"
        "<pre><code style='display:block;overflow:auto;width:200px'>" + "wide_line " * 60 + "</code></pre></body></html>")
    ok, missing = browser.check_pages(tmp_path, ["index.html", "gone.html"], settle=0.2)
    text = "\n".join(ok.problems)
    assert "broken image" in text and "no-such.png" in text, text
    assert "console.error: boom" in text and "undefined_name" in text, text
    assert "code block cut at 1280 px" in text and "wide_line" in text, text
    assert any("HTTP 404" in p and "gone.html" in p for p in missing.problems), missing.problems
