"""Shared test setup: thread count, hypothesis profiles, the one_thread fixture and the drifts
several test modules use. Counters and strategies come from parasolve.testing.
"""

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

try:  # CI draws the same examples every run (a red run must mean a regression, not a new draw);
    # run without PARASOLVE_CI to explore new examples, and add any failure found as a test.
    from hypothesis import settings as _hyp

    _hyp.register_profile("ci", derandomize=True, database=None)
    if os.environ.get("PARASOLVE_CI"):
        _hyp.load_profile("ci")
except ImportError:  # hypothesis is in the dev extra
    pass


def oscillator(t, y):
    """A damped forced oscillator, batched and element-wise: a row's value does not depend on
    the batch it is evaluated in (so evaluators that split batches must give the same bits)."""
    return torch.stack([y[:, 1], -y[:, 0] - 0.1 * y[:, 1]], dim=1) + torch.sin(t)[:, None]


def oscillator_point(t, y):
    """:func:`oscillator` for one time point (batched by vmap)."""
    return torch.stack([y[1], -y[0] - 0.1 * y[1]]) + torch.sin(t)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of small tensors: threads only add contention on a shared machine.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def clean_registries():
    """Step maps and schemes a test registers are unregistered after it (parasolve.unregister_step,
    parasolve.unregister_scheme), so no test sees another's names."""
    import parasolve

    steps, schemes = set(parasolve.STEPS), set(parasolve.SCHEMES)
    yield
    for name in set(parasolve.STEPS) - steps:
        parasolve.unregister_step(name)
    for name in set(parasolve.SCHEMES) - schemes:
        parasolve.unregister_scheme(name)
