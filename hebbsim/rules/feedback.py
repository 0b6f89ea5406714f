r"""The feedback-alignment family in continuous time, and its discrete form (seed 002; docs/rules.md,
*Feedback alignment*).

The network is a feed-forward chain of learned projections :math:`x \to h_1 \to \dots \to h_L \to o`
plus fixed random *feedback routes* into the hidden layers (the network's ``fixed`` projections:
from the layer above, directly from the output, or from the layer below — see the
``random_feedback``, ``direct_feedback`` and ``mixed_feedback`` topologies). A hidden layer with
:math:`m_i` routes weighs each by :math:`w_i = 1/m_i`: its error signal :math:`F_i` is the
*average* of what its routes carry.

**Free phase.** The network infers with its feedback silent (:meth:`FeedbackRule.inference_params`),
i.e. it is the feed-forward network; with ``additive`` neurons its fixed point is the forward pass,
:math:`s_j^0 = r_j a_j`, :math:`a_j = \sum_p W_p\,\rho(s^0_{\mathrm{src}}) + b_j`.

**Nudged phase.** From the free states, every population keeps its forward drive :math:`a_j`
(held: the forward weights do not carry the error) and the error enters through the routes:

.. math::

    \frac{ds_j}{dt} = g_j(s_j)\Big(a_j + w_j \sum_{\text{routes } p \text{ from above}} B_p\big(\rho(s_\mathrm{src}) - \rho(s^0_\mathrm{src})\big)
                      - \beta\, w_j \Big(\sum_{p \text{ from } o} B_p\, u_j + \sum_{p \text{ from below}} B_p\, \hat\delta_\mathrm{src}\Big)\Big)
                      - \frac{s_j}{r_j},
    \qquad \frac{ds_o}{dt} = g_o(s_o)\big(a_o - \beta e\big) - \frac{s_o}{r_o}

with :math:`e = \partial C/\partial s_o` at the free state (the output error). Routes from the
layer above are *live*: they carry the deviation of their source's rate from the free one, so the
error travels down layer by layer as the phase relaxes. Routes from the output carry a held
current: :math:`u_j = e` (FA, DFA, strategies), the layer's own auxiliary error :math:`e_j`
(auxiliary errors), or the one-hot target :math:`d` (DRTP). Routes from the layer below carry a
held current too, the source's *direct error* :math:`\hat\delta_i = \rho'(a_i) \odot \sum_{p
\text{ from } o} B_p u_i` — what its routes from the output alone tell it. Were they live, a
strategy with routes both ways (``s3``) would close the loop :math:`h_{i-1} \rightleftarrows h_i`,
whose gain with seed 002's :math:`B \sim U(-\tfrac12, \tfrac12)` on 800 units is far above 1:
the error would grow without bound instead of settling. Held, the phase is a feed-down cascade that
settles for any :math:`B`.

**Update.** The ``ep_chl`` contrast (seed 000, eq. 14), :math:`g_{W_p} = -\frac{1}{\beta}
(\nu_\mathrm{dst}^\beta - \nu_\mathrm{dst}^0)\,\rho(s^0_\mathrm{src})^\top`, with :math:`\nu` the
rate of a hidden layer and the *state* of the output (the cost is a function of the output state,
so its state change is the error itself).

**Discrete form.** For additive neurons with leak 1 and :math:`\beta \to 0` the deviations solve
:math:`\Delta s_o = -\beta e` and :math:`\Delta\rho(s_j) = -\beta \delta_j` with

.. math::  \delta_o = e, \qquad
           \delta_j = \rho'(a_j) \odot w_j \Big(\sum_{p \text{ from above}} B_p \delta_\mathrm{src}
                      + \sum_{p \text{ from } o} B_p u_j + \sum_{p \text{ from below}} B_p \hat\delta_\mathrm{src}\Big),

one top-down sweep (the layer above first), so :math:`g_{W_p} = \delta_\mathrm{dst}\,\rho(a_\mathrm{src})^\top`:
FA, DFA, DRTP and the averaged strategies exactly as the discrete literature writes them. :meth:`FeedbackRule.discrete_deltas`
computes it from the forward pass; on ``dynamics.engine = "reference"`` (which computes forward
passes exactly) the rule uses it instead of the nudged phase, so the discrete references train
with the same trainer into the same run file.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..dynamics import rhs
from ..dynamics.loss import cost_gradient
from ..dynamics.network import OUTPUT, Network
from ..dynamics.nonlinearities import rho_prime, xp_of
from ..dynamics.params import Params
from ..dynamics.plasticity import delta_rule, ep_chl
from ..simulate.engines.base import ClampedSystem, States
from ..simulate.phases import free_phase
from .base import BatchResult, RuleState
from .contrastive import ContrastiveRule, NudgedPhase

REFERENCE_ENGINE = "reference"


def forward_chain(net: Network) -> bool:
    """True when the learned projections are exactly the chain x → h1 → … → hL → o."""
    names = [p.name for p in net.populations]
    chain = {(a, b) for a, b in zip(names[:-1], names[1:])}
    learned = {(p.src, p.dst) for p in net.learned if p.tag is None}
    return learned == chain and len(net.learned) == len(chain)


class FeedbackRule(ContrastiveRule):
    """A member of the feedback-alignment family: the routes come from the network's fixed
    projections; subclasses say what the routes from the output carry (:meth:`output_signal`)."""

    default_neuron = "additive"
    discrete = True  # discrete_deltas: the rule's form on the reference engine
    nudges = False  # the output's pull is a held current, not the engine's nudge: any cost on any engine
    estimator = staticmethod(ep_chl)
    # what a route from the output carries: "error" (e), "target" (d, DRTP)
    output_signal: ClassVar[str] = "error"

    @classmethod
    def check(cls, cfg, net: Network) -> None:
        topology = cfg.network.topology
        if not forward_chain(net):
            raise ValueError(f"learning.rule = {cls.name!r} trains a feed-forward chain x → h1 → … → o of learned "
                             f"projections; network.topology = {topology!r} has others (use "
                             f"network.topology = {cls.default_topology!r})")
        bad = [p.name for p in net.projections if p.kind == "tied" or (p.kind == "fixed" and p.dst == OUTPUT)]
        if bad:
            raise ValueError(f"learning.rule = {cls.name!r}: the projections {', '.join(bad)} are not feedback routes "
                             f"into hidden layers (use network.topology = {cls.default_topology!r})")
        blind = sorted({p.src for p in net.projections if p.tag == "below"
                        and not any(q.kind == "fixed" and q.src == OUTPUT for q in net.projections_into(p.src))})
        if blind:
            raise ValueError(f"learning.rule = {cls.name!r}: a route from the layer below carries its source's direct "
                             f"error, and {', '.join(blind)} has no route from the output (network.feedback.routes "
                             f"must include 'direct' with 'below')")
        silent = [h for h in net.hidden if not any(p.kind == "fixed" for p in net.projections_into(h))]
        if silent:
            raise ValueError(f"learning.rule = {cls.name!r}: the hidden layers {', '.join(silent)} receive no feedback "
                             f"route and would never learn (use network.topology = {cls.default_topology!r})")

    @classmethod
    def phases(cls, cfg) -> tuple[str, ...]:
        """The contrastive phases; only the free one (the forward pass) on the reference engine."""
        return ("free",) if cfg.dynamics.engine == REFERENCE_ENGINE else super().phases(cfg)

    # -- the network in each phase ----------------------------------------------------------------
    def inference_params(self, params: Params) -> Params:
        """The feed-forward network: every feedback route silenced."""
        weights = dict(params.weights)
        for p in self.net.projections:
            if p.kind == "fixed":
                weights[p.name] = weights[p.name] * 0.0
        return Params(weights, params.biases)

    def _routes(self, dst: str):
        return [p for p in self.net.projections_into(dst) if p.kind == "fixed"]

    @staticmethod
    def _live(p) -> bool:
        """A route that carries its source's deviation as the nudged phase relaxes: one from the
        layer above. Routes from the output and from the layer below carry held currents."""
        return p.kind == "fixed" and p.src != OUTPUT and p.tag != "below"

    def direct_errors(self, params: Params, free: States, signals: States) -> States:
        r""":math:`\hat\delta_j = \rho'(a_j) \odot \sum_{p \text{ from } o} B_p u_j`: what a hidden
        layer's direct routes alone tell it, the signal its route to the layer above carries (only
        for the layers that have such a route)."""
        sources = {p.src for p in self.net.projections if p.kind == "fixed" and p.tag == "below"}
        return {h: rho_prime(free[h], self.net.rho) * sum(signals[h] @ params.weight(p).T
                                                          for p in self._routes(h) if p.src == OUTPUT)
                for h in sources}

    @staticmethod
    def _held_signal(p, signals: States, direct: States):
        r"""What a held route ``p`` carries: :math:`u_j` from the output, :math:`\hat\delta` from below."""
        return signals[p.dst] if p.src == OUTPUT else direct[p.src]

    def route_weight(self, dst: str) -> float:
        """:math:`w_j = 1/m_j`: the error signal of a layer is the average of its routes."""
        routes = self._routes(dst)
        return 1.0 / len(routes) if routes else 0.0

    def output_signals(self, params: Params, free: States, free_rates: States, e, target,
                       draws: dict | None = None) -> States:
        r""":math:`u_j` for every hidden layer with a route from the output (``draws``: the batch's,
        with the rows of the rule's per-sample buffers; ``None`` for probe samples)."""
        signal = e if self.output_signal == "error" else target
        return {h: signal for h in self.net.hidden}

    def nudged_phases(self, system: ClampedSystem, params: Params, x, target, free: States,
                      beta, draws: dict | None = None) -> dict[str, NudgedPhase]:
        r"""The nudged phase(s): forward drive held at the free states, feedback routes live, the
        error held on the output and on the routes from it."""
        net = self.net
        engine = system.engine
        rates = rhs.rates(net, free, system.x)
        e = cost_gradient(net, free[OUTPUT], target)
        signals = self.output_signals(params, free, rates, e, target, draws)
        xp = xp_of(e)
        # the network of the nudged phase: only the live routes are projections, scaled by w_j
        weights = {}
        for p in net.projections:
            w = params.weight(p)
            weights[p.name] = w * self.route_weight(p.dst) if self._live(p) else w * 0.0
        biases = {k: b * 0.0 for k, b in params.biases.items()}
        nudge_params = Params(weights, biases)
        drive = {}  # the held forward drive, minus what the live routes carry at the free states
        for pop in net.dynamic_populations:
            j = pop.name
            a = xp.broadcast_to(params.biases[j], free[j].shape)
            for p in net.projections_into(j):
                if p.kind == "learned":
                    a = a + rates[p.src] @ params.weight(p).T
                elif self._live(p):
                    a = a - self.route_weight(j) * (rates[p.src] @ params.weight(p).T)
            drive[j] = a
        held_error = {OUTPUT: e}
        direct = self.direct_errors(params, free, signals)
        for j in net.hidden:
            held = [p for p in self._routes(j) if not self._live(p)]
            if held:
                held_error[j] = self.route_weight(j) * sum(
                    self._held_signal(p, signals, direct) @ params.weight(p).T for p in held)

        def phase(b) -> NudgedPhase:
            extra = {j: drive[j] - b * held_error[j] if j in held_error else drive[j] for j in drive}
            return NudgedPhase(engine.clamp(nudge_params, x, extra), 0.0, None)

        out = {"nudged": phase(beta)}
        if self.cfg.dynamics.symmetric_nudging:
            out["nudged_minus"] = phase(-beta)
        return out

    def post_rates(self, states: States, x) -> States:
        """Rates of the hidden layers, the *state* of the output."""
        out = rhs.rates(self.net, states, x)
        out[OUTPUT] = states[OUTPUT]
        return out

    # -- the discrete form --------------------------------------------------------------------------
    def discrete_deltas(self, params: Params, free: States, x, target, draws: dict | None = None) -> States:
        r""":math:`\delta_j` of every population from the forward pass ``free`` (module docstring):
        one top-down sweep — a route from above carries the source's :math:`\delta`, already swept;
        a route from below its direct error :math:`\hat\delta` (:meth:`direct_errors`)."""
        net = self.net
        rates = rhs.rates(net, free, x)
        e = cost_gradient(net, free[OUTPUT], target)
        signals = self.output_signals(params, free, rates, e, target, draws)
        direct = self.direct_errors(params, free, signals)
        deltas = {OUTPUT: e}
        for h in reversed(net.hidden):
            f = 0.0
            for p in self._routes(h):
                u = deltas[p.src] if self._live(p) else self._held_signal(p, signals, direct)
                f = f + u @ params.weight(p).T
            deltas[h] = rho_prime(free[h], net.rho) * (self.route_weight(h) * f)
        return deltas

    def probe_estimate(self, system: ClampedSystem, params: Params, x, target, free: States, beta,
                       n_nudge: int) -> dict:
        """On the reference engine the discrete form's update (a nudged phase there would be a
        forward pass that drops the routes between hidden layers); elsewhere the phases'."""
        if system.engine.name != REFERENCE_ENGINE:
            return super().probe_estimate(system, params, x, target, free, beta, n_nudge)
        to_np = lambda a: np.asarray(a, np.float64)  # noqa: E731
        x64, free64 = to_np(x), {k: to_np(v) for k, v in free.items()}
        params64 = Params({k: to_np(v) for k, v in params.weights.items()}, {k: to_np(v) for k, v in params.biases.items()})
        deltas = self.discrete_deltas(params64, free64, x64, to_np(target))
        return delta_rule(self.net, rhs.rates(self.net, free64, x64), deltas)

    def batch(self, system: ClampedSystem, params: Params, state: RuleState, x, target, init: States, draws: dict,
              mask=None) -> BatchResult:
        if system.engine.name != REFERENCE_ENGINE:
            return super().batch(system, params, state, x, target, init, draws, mask)
        free = free_phase(system, init, self.cfg.dynamics.free_steps)
        deltas = self.discrete_deltas(params, free.states, system.x, target, draws)
        grads = delta_rule(self.net, rhs.rates(self.net, free.states, system.x), deltas, mask)
        return BatchResult(grads, {"free": free})

