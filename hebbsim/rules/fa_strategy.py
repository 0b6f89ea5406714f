r"""``fa_strategy``: seed 002's general strategy for feedback alignment, in continuous time.

The error signal of hidden layer :math:`i` is the average :math:`F_i` of the signals its fixed
routes deliver (the ``mixed_feedback`` topology):
:math:`\delta W_i = [F_i(u_{i-1}, u_i, u_{i+1}) \odot \rho'(a_i)]\, h_{i-1}^\top` with

- :math:`u_{i+1} = \tilde B_i \delta_{i+1}` — from the layer above (feedback alignment's route);
- :math:`u_i = B_i e` — directly from the output (direct feedback alignment's route); with
  ``auxiliary = true`` the layer's *own* error instead, :math:`u_i = B_i e_i`, where
  :math:`e_i = \partial C(\hat y_i, d)/\partial \hat y_i` is the error of the auxiliary output
  :math:`\hat y_i = B_i^\top \rho(s_i)` that the layer reads through the same matrix;
- :math:`u_{i-1} = \hat B_i \hat\delta_{i-1}` — from the layer below, carrying that layer's
  *direct error* :math:`\hat\delta_{i-1} = \rho'(a_{i-1}) \odot B_{i-1} e` (or :math:`e_{i-1}`):
  what the output alone tells it, before the sweep reaches it.

``strategy`` picks the arguments: ``s1`` = (direct, above), ``s2`` = (below, direct),
``s3`` = (below, direct, above). For the top hidden layer "above" is the output, the same route
as "direct" (one matrix); the first hidden layer has no layer below. The deltas are one top-down
sweep, so no strategy closes a loop: had the route from below carried :math:`\delta_{i-1}`, ``s3``
would make :math:`h_{i-1} \rightleftarrows h_i` a cycle whose gain under seed 002's
:math:`B \sim U(-\tfrac12, \tfrac12)` is far above 1, and the error would diverge. In continuous
time each route is a fixed projection with weight :math:`1/m_i` (½ for two routes): the route
from above live, the others held currents (docs/rules.md).

Seed 002's Table 1 was not at hand when this was written: the assignment of s1–s3 to route
sets above, and what the route from below carries, are hebbsim's reading of
:math:`F_i(u_{i-1}, u_i, u_{i+1})`; docs/rules.md says so.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..data.section import Section
from ..dynamics.loss import cost_gradient
from ..dynamics.network import OUTPUT
from ..dynamics.params import Params
from ..dynamics.rhs import States
from . import register
from .feedback import FeedbackRule

STRATEGY_ROUTES = {"s1": ("direct", "above"), "s2": ("below", "direct"), "s3": ("below", "direct", "above")}


class FAStrategyConfig(Section):
    """``[learning.fa_strategy]``."""

    strategy: Literal[tuple(STRATEGY_ROUTES)] = Field(  # type: ignore[valid-type]
        "s1", description="the routes averaged into every hidden layer: s1 direct+above, s2 below+direct, "
                          "s3 below+direct+above")
    auxiliary: bool = Field(False, description="the direct route carries the layer's own auxiliary error e_i "
                                               "(its readout B_i^T rho(s_i) against the target) instead of e")


@register
class FAStrategy(FeedbackRule):
    name = "fa_strategy"
    config = FAStrategyConfig
    default_topology = "mixed_feedback"

    @classmethod
    def feedback_routes(cls, cfg) -> tuple[str, ...]:
        return STRATEGY_ROUTES[cfg.learning.fa_strategy.strategy]

    @classmethod
    def check(cls, cfg, net) -> None:
        super().check(cfg, net)
        want = cls.feedback_routes(cfg)
        routes = cfg.network.feedback.routes
        if cfg.network.topology != "mixed_feedback" or routes is None or set(routes) != set(want):
            raise ValueError(
                f"learning.fa_strategy.strategy = {cfg.learning.fa_strategy.strategy!r} averages the routes "
                f"{', '.join(want)}: use network.topology = 'mixed_feedback' with network.feedback.routes = "
                f"{list(want)} (or leave both out)")
        if cfg.learning.fa_strategy.auxiliary and "direct" not in want:
            raise ValueError("learning.fa_strategy.auxiliary = true sends each layer's own error down its direct "
                             "route; the strategy has none")

    def output_signals(self, params: Params, free: States, free_rates: States, e, target,
                       draws: dict | None = None) -> States:
        if not self.options.auxiliary:
            return super().output_signals(params, free, free_rates, e, target, draws)
        out = {}
        for h in self.net.hidden:
            direct = [p for p in self.net.projections_into(h) if p.kind == "fixed" and p.src == OUTPUT]
            readout = free_rates[h] @ params.weight(direct[0])  # ŷ_i = B_iᵀ ρ(s_i), batch as rows
            out[h] = cost_gradient(self.net, readout, target)
        return out
