"""Hypothesis: on random drifts, grids, windows and tolerances, every scheme stays within its
sweep bound and within the tolerance bound of the sequential solution."""

from hypothesis import given, settings, strategies as st

import parasolve
from parasolve import testing as pt

# Option variants beyond each registered scheme's defaults (ridge-free Anderson: singular Gram systems).
VARIANTS = [("anderson", {"memory": 5, "regularization": 0.0}), ("newton", {"jacobian": "diagonal"}),
            ("parareal", {"coarse": "heun"})]
SCHEMES = [(name, None) for name in sorted(parasolve.SCHEMES) if parasolve.SCHEMES[name].iterative] + VARIANTS
ONE_STEP = [name for name in sorted(parasolve.STEPS) if not parasolve.STEPS[name].multistep]


@settings(max_examples=80, deadline=None)
@given(f=pt.drifts(max_lipschitz=2.0, min_lipschitz=0.1), t=pt.grids(min_steps=2, max_steps=40),
       window=pt.windows(max_window=43), tol=pt.tolerances(1e-12, 1e-3), step=st.sampled_from(ONE_STEP),
       scheme=st.sampled_from(SCHEMES), data=st.data())
def test_sweeps_at_most_n_and_result_within_tolerance_bound(f, t, window, tol, step, scheme, data):
    method, options = scheme
    y0 = data.draw(pt.states(f.dim))
    sol, _ = pt.assert_matches_sequential(f, y0, t, method=method, options=options, step=step, window=window,
                                          tol=tol, vectorized=True, lipschitz=f.lipschitz)
    if method == "parareal":  # iterations are parareal iterations: at most one per segment
        n = len(t) - 1
        assert sol.stats.iterations <= sol.stats.window <= min(n, window or n)
