"""Griffe extension: turn the docstrings' Sphinx roles into mkdocstrings cross-references.

The docstrings say ``:func:`solve```, ``:class:`~parasolve.steps.StepMap```; mkdocstrings reads
Markdown, where a cross-reference is ``[`solve`][parasolve._api.solve]``. Each role's target is
resolved the way Python would from the object that holds the docstring (its members, then its
parents'), so a target that names nothing in parasolve stays an unresolved reference and fails
``mkdocs build --strict``. Targets outside parasolve (``torch.device``) become plain code.
"""

from __future__ import annotations

import re

import griffe

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


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


class SphinxRoles(griffe.Extension):
    """Rewrite roles in every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = convert(obj, obj.docstring.value)
