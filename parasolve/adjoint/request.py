"""What ``solve(..., adjoint_params=, adjoint_options=)`` asked for, and the node it gets."""

from __future__ import annotations

import torch

from .node import AdjointNode, leaves, probe_hidden
from .options import check_options, check_params, check_supported


class GradientRequest:
    """What a solve asked of its gradients, checked before the solve runs.

    ``callables``: the user's functions whose ``nn.Module`` parameters are the default
    ``adjoint_params`` (``f``; ``f`` and ``g`` for SDEs).
    """

    def __init__(self, adjoint_params, adjoint_options, callables):
        self.explicit = adjoint_params is not None
        self.params = check_params(adjoint_params, callables)
        self.options = check_options(adjoint_options)
        self.callables = callables

    def wanted(self, problem) -> bool:
        """Whether this solve must be differentiable (grad mode on and some input requires grad)."""
        return torch.is_grad_enabled() and (problem.y0.requires_grad or problem.t.requires_grad
                                            or any(p.requires_grad for p in self.params))

    def records(self) -> bool:
        """Whether a solve of which nothing visible asks for gradients runs recording: grad mode
        on and no explicit ``adjoint_params``, so that a drift closing over tensors that require
        grad makes the result differentiable w.r.t. them (as torchdiffeq's ``odeint`` does)."""
        return not self.explicit and torch.is_grad_enabled()

    def node(self, problem, recorded=None) -> AdjointNode:
        """The autograd node of a differentiable solve of ``problem`` (refused here, before any
        run, where the options ask what the map cannot give).

        Without explicit ``adjoint_params``, the tensors requiring grad that the drift closes over
        are differentiated too: the leaves of ``recorded`` (the output of a recorded run), else
        those that one evaluation of the first step (at ``y0``, not counted in the stats)
        depends on."""
        check_supported(problem, self.options)
        params = [p for p in self.params if p.requires_grad]
        if not self.explicit:
            known = {id(p) for p in params}
            found = probe_hidden(problem, params) if recorded is None else leaves(recorded)
            params += [v for v in found if id(v) not in known and not known.add(id(v))]
        return AdjointNode(problem, params, self.options, check_hidden=not self.explicit)
