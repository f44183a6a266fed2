"""MkDocs hooks: the site's own copy of mermaid must be there, and pages may link to the repository's
own files (``../examples/user_ode.py``).

Such links work on GitHub but point outside ``docs/``. Each linked file that exists is copied
into the site under ``src/`` and the link is rewritten to the copy; a link to a file that does
not exist is left alone, so ``mkdocs build --strict`` reports it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

_LINK = re.compile(r"(\]\()([^)\s#]+)((?:#[^)\s]*)?\))")
_SOURCES = "src"


def _outside(page_path: Path, target: str, docs: Path, root: Path) -> Path | None:
    """The repository file a relative link leaves ``docs/`` for, or ``None``."""
    if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
        return None
    path = (page_path.parent / target).resolve()
    if path.is_relative_to(docs) or not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def on_config(config):
    docs = Path(config["docs_dir"]).resolve()
    for script in config["extra_javascript"]:
        if not (docs / str(script)).is_file():
            raise PluginError(f"docs/{script} is missing: run `bash docs/fetch_assets.sh` (it is not committed; "
                              f"without it the diagrams would load from a CDN).")
    return config


def on_files(files, config):
    docs = Path(config["docs_dir"]).resolve()
    root = docs.parent
    linked = set()
    for file in files.documentation_pages():
        page = Path(file.abs_src_path)
        for _, target, _ in _LINK.findall(page.read_text(encoding="utf-8")):
            path = _outside(page, target, docs, root)
            if path is not None:
                linked.add(path)
    for path in sorted(linked):
        files.append(File.generated(config, f"{_SOURCES}/{path.relative_to(root).as_posix()}",
                                    abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    docs = Path(config["docs_dir"]).resolve()
    root = docs.parent
    page_path = Path(page.file.abs_src_path)

    def rewrite(match: re.Match) -> str:
        path = _outside(page_path, match.group(2), docs, root)
        if path is None:
            return match.group(0)
        copy = f"{_SOURCES}/{path.relative_to(root).as_posix()}"
        here = posixpath.dirname(page.file.src_uri)
        return match.group(1) + posixpath.relpath(copy, here or ".") + match.group(3)

    return _LINK.sub(rewrite, markdown)
