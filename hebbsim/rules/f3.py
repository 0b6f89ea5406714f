r"""``f3``: feed-forward training with delayed error feedback (F³, seed 001 §3–4) in continuous time.

Every training sample :math:`k` has a row :math:`u_k` in a per-sample buffer (shape
``(n_train, n_o)``, zeros at the start, saved in the checkpoint): the information the sample
produced the *last* time it was seen. When sample :math:`k` is seen in epoch :math:`t`, its hidden
layers learn from :math:`u_k` (written in epoch :math:`t-1`) sent through fixed random matrices
:math:`B_i` (the ``direct_feedback`` topology, ``network.feedback.init`` = ``kaiming_uniform``,
``trinomial``, ``binomial`` or ``sign_identity`` for seed 001's Fig. 3), the output layer learns
from its *current* error, and then :math:`u_k` is overwritten with what the sample produces now.
In the first epoch the buffer holds zeros, so only the output layer learns: no sample has been
seen before. Nothing waits for an error to travel back — no update locking.

``[learning.f3] information`` picks what is stored (with :math:`y` the output as the cost sees
it — :math:`s_o` for ``state_mse``, :math:`\rho(s_o)` for ``rate_mse``):

- ``error``: :math:`e = \partial C/\partial s_o`, the output error;
- ``loss``: the per-unit loss, the terms of :math:`C` (``hebbsim.dynamics.loss.cost_terms``; no
  sign: how wrong, not which way);
- ``onehot``: the target :math:`d` (DRTP's signal, delayed — so also absent in the first epoch);
- ``softmax``: :math:`\mathrm{softmax}(s_o) - d`, the error of a softmax read of the output.

**Continuous time.** The phases are those of :mod:`.feedback` with the routes from the output
carrying the held current :math:`-\beta w_i B_i u_k`. Nothing in the hidden layers' drive depends
on the present output, so for additive neurons the nudged phase is exactly linear:
:math:`s_i^\beta = s_i^0 - \beta r_i w_i B_i u_k` once relaxed, and the post-synaptic factor of the
``ep_chl`` contrast is :math:`-[\rho(s_i^0 - \beta r_i w_i B_i u_k) - \rho(s_i^0)]/\beta
\to r_i\,\rho'(a_i) \odot w_i B_i u_k` — seed 001's hidden update
:math:`(B_i u_k \odot f'(a_i))\,h_{i-1}^\top` with :math:`f = \rho` (leak 1). No second free
phase is needed for the hidden layers: the contrast is with the held free state itself.
Probe samples (test data, never trained) have no row: their recorded nudged phase uses the
information they would store now.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..data.section import Section
from ..dynamics.loss import cost_gradient, cost_terms, log_softmax
from ..dynamics.nonlinearities import xp_of
from ..dynamics.network import OUTPUT
from ..dynamics.params import Params
from ..dynamics.rhs import States
from . import register
from .feedback import FeedbackRule

INFORMATION = ("error", "loss", "onehot", "softmax")
BUFFER = "delayed"


class F3Config(Section):
    """``[learning.f3]``."""

    information: Literal[INFORMATION] = Field(  # type: ignore[valid-type]
        "error", description="what a sample stores for its next visit: error, loss, onehot or softmax (seed 001 §4)")


@register
class F3(FeedbackRule):
    name = "f3"
    config = F3Config
    default_topology = "direct_feedback"

    @classmethod
    def check(cls, cfg, net) -> None:
        super().check(cfg, net)
        hidden_routes = [p.name for p in net.projections if p.kind == "fixed" and p.src != OUTPUT]
        if hidden_routes:
            raise ValueError(f"learning.rule = 'f3' sends each sample's delayed information from the output only; the "
                             f"routes {', '.join(hidden_routes)} are not (use network.topology = 'direct_feedback')")

    def sample_buffers(self) -> dict[str, tuple[int, ...]]:
        return {BUFFER: (self.net.sizes[OUTPUT],)}

    def information(self, s_o, target):
        """What a sample with free output state ``s_o`` stores for its next visit."""
        kind = self.options.information
        if kind == "error":
            return cost_gradient(self.net, s_o, target)
        if kind == "loss":
            return cost_terms(self.net, s_o, target)
        if kind == "onehot":
            return target * 1.0
        return xp_of(s_o).exp(log_softmax(s_o)) - target

    def output_signals(self, params: Params, free: States, free_rates: States, e, target,
                       draws: dict | None = None) -> States:
        key = f"buffer/{BUFFER}"
        u = draws[key] if draws is not None and key in draws else self.information(free[OUTPUT], target)
        return {h: u for h in self.net.hidden}

    def batch(self, system, params, state, x, target, init, draws, mask=None):
        result = super().batch(system, params, state, x, target, init, draws, mask)
        result.buffers = {BUFFER: self.information(result.free.states[OUTPUT], target)}
        return result
