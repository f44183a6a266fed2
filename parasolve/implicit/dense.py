"""Dense output of an implicit trajectory: each step's stage polynomial.

On step ``i`` the polynomial ``u`` of degree ``s`` through ``(0, x_i)`` and ``(c_j, x_i + Z_ij)``
(nodes in units of the step) is Radau IIA's collocation polynomial -- order-3 dense output, as
scipy's ``Radau`` gives -- and for the SDIRK method a smooth curve through its stage values
(used as a warm start only).
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=16)
def _nodes(tab) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct interpolation nodes ``[0, c...]``, which stage each ``c`` node comes from, and the
    inverse of their Vandermonde matrix (once per tableau; read-only)."""
    c = tab.nodes()
    keep = c != 0  # an explicit first stage (c = 0, Z = 0) repeats the node 0
    nodes = torch.cat([torch.zeros(1, dtype=c.dtype), c[keep]])
    inverse = torch.linalg.inv(nodes[:, None] ** torch.arange(len(nodes), dtype=nodes.dtype))
    return nodes, torch.nonzero(keep).reshape(-1), inverse


def stage_polynomial(tab, grid: torch.Tensor, X: torch.Tensor, Z: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """The trajectory (flattened states ``X`` ``(N + 1, D)`` on ``grid``, stages ``Z`` ``(N, s, D)``)
    at ``times`` (within the grid's span), by each step's stage polynomial; grid points exactly."""
    direction = 1.0 if float(grid[-1] - grid[0]) > 0 else -1.0
    s = direction * (grid - grid[0]).double().cpu()
    q = direction * (times - grid[0]).double().cpu()
    i = (torch.searchsorted(s, q, right=True) - 1).clamp(0, grid.shape[0] - 2)
    theta = (q - s[i]) / (s[i + 1] - s[i])
    nodes, which, inverse = _nodes(tab)
    # Lagrange basis at theta, (len(times), nodes): powers of theta times the inverse Vandermonde matrix
    powers = theta[:, None] ** torch.arange(len(nodes), dtype=theta.dtype)
    L = (powers @ inverse).to(X.dtype).to(X.device)
    dev = i.to(X.device)
    values = torch.cat([torch.zeros_like(X[dev])[:, None], Z[dev][:, which]], 1)  # increments at the nodes
    out = X[dev] + (L[:, :, None] * values).sum(1)
    exact = torch.searchsorted(s, q)
    hit = (exact < s.shape[0]) & (s[exact.clamp(max=s.shape[0] - 1)] == q)
    out[hit.to(X.device)] = X[exact[hit].to(X.device)]
    return out


def restage(tab, grid, X, Z, new_grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Warm start on ``new_grid``: its states and stage increments read off the old trajectory's
    stage polynomials."""
    c = tab.nodes(new_grid.dtype, new_grid.device)
    h = new_grid[1:] - new_grid[:-1]
    at = (new_grid[:-1, None] + c * h[:, None]).reshape(-1)
    both = stage_polynomial(tab, grid, X, Z, torch.cat([new_grid, at]))  # one call: the points, then the stages
    X_new, Y = both[:new_grid.shape[0]], both[new_grid.shape[0]:].reshape(h.shape[0], c.shape[0], -1)
    return X_new, Y - X_new[:-1, None]
