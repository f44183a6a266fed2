"""Hypothesis: on random linear drifts, every grid, window and direction, Picard meets its bound."""

from hypothesis import given, settings, strategies as st

import parasolve
from parasolve import testing as pt


@settings(max_examples=60, deadline=None)
@given(f=pt.linear_drifts(max_lipschitz=3.0, min_lipschitz=0.1), t=pt.grids(min_steps=2, max_steps=60),
       window=pt.windows(max_window=63), tol=pt.tolerances(1e-12, 1e-3), step=st.sampled_from(sorted(parasolve.STEPS)),
       data=st.data())
def test_picard_within_tolerance_bound_and_at_most_n_sweeps(f, t, window, tol, step, data):
    """Converged in at most N sweeps, defects summing to at most tol, and max|x - x_seq| <=
    S * defect_sum with S = e^{LT} (e^{2LT} for the two-step ab2), up to round-off."""
    y0 = data.draw(pt.states(f.dim))
    pt.assert_matches_sequential(f, y0, t, step=step, window=window, tol=tol, vectorized=True,
                                 lipschitz=f.lipschitz)
