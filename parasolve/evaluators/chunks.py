"""Contiguous splits of a batch of time points, and padding to a fixed chunk size.

Every split in parasolve uses the same rule (:func:`split_bounds`): part ``k`` of ``parts`` gets
the contiguous range ``bounds[k]``, sizes differing by at most one, the longer parts first -- a
batch's rows over devices or ranks, parareal's steps over segments and a segment's steps over its
coarse groups.
"""

from __future__ import annotations

import torch

from .._checks import check_positive_int


def split_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ``(start, stop)`` ranges covering ``range(n)``, sizes within one.

    Workers beyond ``n`` get empty ranges ``(n, n)``.
    """
    check_positive_int("parts", parts)
    base, extra = divmod(n, parts)
    bounds, start = [], 0
    for k in range(parts):
        stop = start + base + (1 if k < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def padded_rows(x: torch.Tensor, start: int, stop: int, size: int) -> torch.Tensor:
    """Rows ``x[start:stop]`` padded to ``size`` rows by repeating the last real row.

    An empty range (``start >= x.shape[0]``) repeats the batch's last row, so a worker with no
    work still evaluates a valid point and every worker calls the drift with the same shape.
    """
    rows = x[start:stop]
    missing = size - rows.shape[0]
    if missing <= 0:
        return rows
    last = (rows[-1:] if rows.shape[0] else x[-1:])
    return torch.cat([rows, last.expand(missing, *x.shape[1:])])
