"""Griffe extension: read parasolve's docstrings as mkdocstrings expects them.

Two conventions of the code base are translated before the docstrings are parsed:

* an ``Args:`` entry naming several parameters (``device, dtype: where ...``) becomes one entry
  per parameter, so griffe still checks every documented name against the signature;
* Sphinx roles become cross-references (below).

The docstrings say ``:func:`solve```, ``:class:`~parasolve.steps.StepMap```; mkdocstrings reads
Markdown, where a cross-reference is ``[`solve`][parasolve._api.solve]``. Each role's target is
resolved the way Python would from the object that holds the docstring (its members, then its
parents'), so a target that names nothing in parasolve stays an unresolved reference and fails
``mkdocs build --strict``. Targets outside parasolve (``torch.device``) become plain code.
"""

from __future__ import annotations

import re

import griffe

_SHARED = re.compile(r"^(\s+)([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)+)\s*:\s(.*)$")
_ROLE = re.compile(r":(?:py:)?(func|class|meth|attr|mod|data|exc|obj):`(~?)([^`<>]+)`")
_PACKAGE = "parasolve"


def _target(obj: griffe.Object, name: str, role: str) -> str | None:
    """The full path ``name`` refers to in ``obj``'s scope; ``None`` for a name outside parasolve."""
    if name.startswith("."):  # relative module name, as in an import
        module = obj.module
        base = module if module.is_init_module else module.parent
        return f"{base.path}.{name.lstrip('.')}"
    head, _, rest = name.partition(".")
    if head == _PACKAGE:
        return name
    try:
        path = obj.resolve(head)
    except griffe.NameResolutionError:
        if rest:  # a dotted name whose head is not in scope: another package's (torch.func.vmap)
            return None
        return name  # left unresolved on purpose: autorefs then fails the strict build
    if not path.startswith(_PACKAGE):
        return None
    path = f"{path}.{rest}" if rest else path
    return _unshadow(obj, path) if role != "mod" else path


def _unshadow(obj: griffe.Object, path: str) -> str:
    """``pkg.f`` names both a submodule and the function it defines (``from .f import f``):
    a non-``mod`` role means the function, ``pkg.f.f``."""
    try:
        target = obj.modules_collection.get_member(path)
    except (KeyError, ValueError, griffe.AliasResolutionError):
        return path
    name = path.rsplit(".", 1)[-1]
    if target.is_module and name in target.members and not target.members[name].is_module:
        return f"{path}.{name}"
    return path


def convert(obj: griffe.Object, text: str) -> str:
    """``text`` with every Sphinx role replaced by a Markdown cross-reference (or code)."""

    def replace(match: re.Match) -> str:
        role, short, name = match.group(1), match.group(2), match.group(3).strip()
        shown = name.rsplit(".", 1)[-1] if short else name
        path = _target(obj, name, role)
        return f"`{shown}`" if path is None else f"[`{shown}`][{path}]"

    return _ROLE.sub(replace, text)


def _parameters(obj: griffe.Object) -> set[str]:
    if obj.is_function:
        return {p.name for p in obj.parameters}
    if obj.is_class and "__init__" in obj.members:
        return {p.name for p in obj.members["__init__"].parameters}
    return set()


def split_shared_entries(obj: griffe.Object, text: str) -> str:
    """``a, b: text`` (all of them parameters of ``obj``) -> ``a: text`` and ``b: as ``a``.``"""
    names = _parameters(obj)
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        match = _SHARED.match(lines[i])
        shared = [n.strip() for n in match.group(2).split(",")] if match else []
        if not shared or not set(shared) <= names:
            out.append(lines[i])
            i += 1
            continue
        indent, first = match.group(1), shared[0]
        out.append(f"{indent}{first}: {match.group(3)}")
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            if not lines[i].strip() and (i + 1 >= len(lines) or not lines[i + 1].startswith(indent + " ")):
                break
            out.append(lines[i])
            i += 1
        out += [f"{indent}{name}: as ``{first}``." for name in shared[1:]]
    return "\n".join(out)


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


class Docstrings(griffe.Extension):
    """Translate every docstring of a loaded package (shared entries, then roles)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = convert(obj, split_shared_entries(obj, obj.docstring.value))
