"""What the ``parasolve`` commands share: the user-facing error, one-line messages, output checks, tables."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ParasolveError


class CommandError(ParasolveError):
    """A user-facing problem with the command line: printed as one line, exit status 2."""


def one_line(text) -> str:
    return " ".join(str(text).split())


def check_output_file(option: str, path: str, suffixes, kind: str = "") -> None:
    """Fail early (CommandError) if ``path`` cannot be written: wrong suffix, a folder, no parent folder."""
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        names = " or ".join(suffixes) if len(suffixes) <= 3 else f"{', '.join(suffixes[:3])}, ... ({kind})"
        raise CommandError(f"{option} {path!r}: use a file name ending in {names}")
    if p.is_dir():
        example = str(p / ("out" + suffixes[0]))
        raise CommandError(f"{option} {path!r} is a folder; give a file name such as {example!r}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise CommandError(f"{option} {path!r}: folder {str(parent)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise CommandError(f"{option} {path!r}: folder {str(parent)!r} is not writable; pick another path")


def check_output_dir(option: str, path) -> None:
    """Create the folder ``path`` now, or fail early (CommandError naming ``option``) if it cannot be."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CommandError(f"{option} {str(path)!r} is a file, not a folder; pick another path")
    existing = next(a for a in (p, *p.parents, Path(".")) if a.exists())
    if not existing.is_dir():
        raise CommandError(f"{option} {str(path)!r}: {str(existing)!r} is a file, so the folder cannot be created")
    if not os.access(existing, os.W_OK):
        raise CommandError(f"{option} {str(path)!r}: {str(existing)!r} is not writable; pick another path")
    try:  # permissions are not the whole story (/proc, read-only mounts, a full disk)
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{option} {str(path)!r}: the folder cannot be created "
                           f"({exc.strerror or exc}); pick another path") from None


#: The commands' default torch thread count: their models are small, so extra threads mostly
#: add contention (measured in docs/reproduce.md); ``--threads`` changes it.
DEFAULT_THREADS = 1


def use_threads(threads: int) -> str:
    """Set torch's intra-op thread count for a command; returns the line that says so."""
    import torch

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise CommandError(f"--threads must be an integer >= 1; got {threads!r}")
    torch.set_num_threads(threads)
    cores = os.cpu_count() or 1
    line = f"torch threads: {threads} of {cores} cores (--threads N to change)"
    if threads > 1 and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        line += ("; on a busy machine start with OMP_WAIT_POLICY=PASSIVE, or waiting threads spin and "
                 "steal the cores (docs/reproduce.md#threads)")
    return line


def format_table(rows) -> str:
    """A plain-text table of dict rows (same keys)."""
    keys = list(rows[0])
    cells = [[str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(keys), line(["-" * w for w in widths])] + [line(c) for c in cells])
