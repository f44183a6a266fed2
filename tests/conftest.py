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


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of small tensors: threads only add contention on a shared machine.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
