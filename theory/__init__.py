"""Convergence bounds of parasolve's schemes, derived with sympy and checked against the real solvers.

One module per bound; each ends in plain numeric functions the tests call, and
``python -m theory.<module>`` prints the closed form and re-runs its symbolic verification:

- :mod:`theory.picard`    continuous Picard: ``(L T)^k / k!``
- :mod:`theory.discrete`  discrete Picard: first ``k`` steps exact after ``k`` sweeps, error bounds per grid point
- :mod:`theory.window`    sliding-window Picard: error of the windowed iterate, sweep counts
- :mod:`theory.noise`     SDEs with up-front noise: per-sample step constants
- :mod:`theory.parareal`  parareal: superlinear bound, exactness on the first ``k`` intervals
- :mod:`theory.tolerance` what ``tol`` guarantees: ``max|x - x_seq| <= S * defect_sum <= S * tol``
- :mod:`theory.stop_rule` the gain-weighted rule: ``max|x - x_seq| <= sum G_i |r_{i+1}| <= tol``

Derivations and figures: docs/theory.md. sympy is needed only for ``derive``/``verify``.
"""
