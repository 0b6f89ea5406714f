r"""``bp``: backpropagation — the exact gradient of the batch-mean cost through the feed-forward
pass, the baseline every other rule is compared with (seed 002's BP column).

.. math::  g = \nabla_\theta\,\frac1B\sum_{n=1}^{B} C\big(s_o^n(\theta), d^n\big),
           \qquad s(\theta) = \text{the reference engine's forward pass}

(:mod:`hebbsim.simulate.engines.reference_engine`: the chain x → h1 → … → o of learned
projections; fixed and tied projections carry nothing). :math:`g` is computed by ``jax.grad``
of that very pass — no hand-written deltas — so it is also the reference the discrete
feedback-alignment rules' deltas are checked against. It runs on ``dynamics.engine =
"reference"`` only; its one phase is the forward pass (``free``). Defaults: ``additive``
neurons, ``feedforward`` topology.
"""

from __future__ import annotations

from ..dynamics.loss import cost
from ..dynamics.network import OUTPUT
from ..dynamics.params import Params
from ..simulate.engines.base import ClampedSystem, States
from ..simulate.phases import free_phase
from . import register
from .base import BatchResult, DiscreteRule, RuleState


@register
class BP(DiscreteRule):
    name = "bp"
    summary = "backpropagates through the feed-forward pass of"

    def batch(self, system: ClampedSystem, params: Params, state: RuleState, x, target, init: States, draws: dict,
              mask=None) -> BatchResult:
        import jax  # only where a batch runs: importing the rules must not import JAX

        net, engine = self.net, system.engine
        free = free_phase(system, init, self.cfg.dynamics.free_steps)

        def batch_mean_cost(flat):
            s_o = engine.forward(system.params.with_trainable(net, flat), system.x, getattr(system, "extra", None))[OUTPUT]
            c = cost(net, s_o, target)
            return c.mean() if mask is None else (c * mask).sum() / mask.sum()

        grads = jax.grad(batch_mean_cost)(dict(system.params.trainable(net)))
        return BatchResult(grads, {"free": free})
