"""Property-test a drift or a scheme with parasolve.testing, the way parasolve tests its own.

Run it with pytest (``pytest examples/property_test.py``) or directly (``python
examples/property_test.py [--fast]``): hypothesis draws drifts with known Lipschitz constants,
grids, windows and tolerances, and every parallel solve must land within the stated bound of
the sequential one; the conformance kit (``pt.check_scheme``) runs the Scheme contract's rules.
"""

import argparse

import torch
from hypothesis import given, settings

from parasolve import testing as pt
from parasolve.schemes import Update, WindowedScheme


class HalfStepPicard(WindowedScheme):
    """A user's scheme: Picard with a relaxed update (still converges to the same answer)."""

    name = "half_step_picard"

    def update(self, state, window):
        return Update(0.5 * window.picard + 0.5 * window.ys[window.shift + 1:], state)


def check_random_problems(examples: int = 25):
    @settings(max_examples=examples, deadline=None, database=None)
    @given(pt.drifts(max_lipschitz=2.0), pt.grids(max_steps=30), pt.windows(max_window=16), pt.tolerances())
    def prop(f, t, window, tol):
        y0 = torch.ones(f.dim, dtype=torch.float64)
        pt.assert_matches_sequential(f, y0, t, method=HalfStepPicard(), window=window, tol=tol,
                                     lipschitz=f.lipschitz)

    prop()


def test_half_step_picard_matches_sequential():
    check_random_problems()


def test_half_step_picard_keeps_the_scheme_contract():
    pt.check_scheme(HalfStepPicard())


def main(fast: bool = False):
    pt.check_scheme(HalfStepPicard())
    check_random_problems(10 if fast else 100)
    print("HalfStepPicard keeps the Scheme contract and matched the sequential solution within "
          "S * defect_sum on every drawn case.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true")
    main(parser.parse_args().fast)
