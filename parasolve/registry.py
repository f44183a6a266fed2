"""Name registries (``STEPS``, ``SCHEMES``): a name is taken once, or replaced on purpose.

A :class:`Registry` is a ``dict`` from names to objects whose every write goes through
:meth:`Registry.add`: a name already bound to another object raises :class:`DuplicateNameError`
unless ``replace=True``, so an extension cannot shadow a built-in (or another extension) by
accident. :meth:`Registry.remove` undoes a registration (tests that register their own).
"""

from __future__ import annotations

from .errors import ParasolveError, ParasolveTypeError, ParasolveValueError


class DuplicateNameError(ParasolveError, ValueError):
    """A name is registered already (pass ``replace=True`` to replace it on purpose)."""


class Registry(dict):
    """``name -> object`` for one ``kind`` of extension (e.g. ``"step map"``); see the module docstring."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def add(self, name, obj, *, replace: bool = False):
        """Bind ``name`` to ``obj`` and return ``obj``; a name bound to another object raises
        :class:`DuplicateNameError` unless ``replace``."""
        if not isinstance(name, str):
            raise ParasolveTypeError(f"A {self.kind}'s `name` must be a string; got {name!r} "
                                     f"({type(name).__name__}).")
        if not name:
            raise ParasolveValueError(f"A {self.kind}'s `name` must not be empty; give it a name to select it by.")
        known = self.get(name)
        if known is not None and known is not obj and not replace:
            raise DuplicateNameError(f"A {self.kind} named {name!r} is registered already ({known!r}); "
                                     f"pick another name, or pass replace=True to replace it.")
        super().__setitem__(name, obj)
        return obj

    def remove(self, name: str):
        """Unbind ``name`` and return its object; an unknown name raises ``ValueError``."""
        if name not in self:
            raise ParasolveValueError(f"No {self.kind} named {name!r} is registered; registered: {sorted(self)}.")
        return super().pop(name)

    def __setitem__(self, name, obj):
        self.add(name, obj)

    def setdefault(self, name, obj=None):
        return self[name] if name in self else self.add(name, obj)

    def update(self, *args, **kwargs):
        for name, obj in dict(*args, **kwargs).items():
            self.add(name, obj)
