r"""``node_perturbation``: feedback weights learned by node perturbation (seed 003, Lansdell et al.),
in continuous time and as a discrete reference.

The network and its phases are those of feedback alignment (:mod:`.feedback`): a feed-forward
chain, fixed-shape feedback routes :math:`B` (``random_feedback``: layer to layer,
:math:`\tilde e_i = \rho'(a_i) \odot B_{i+1} \tilde e_{i+1}`; or ``direct_feedback``: from the
output, seed 003's Corollary 1), a nudged phase that carries the synthetic errors
:math:`\tilde e` and the ``ep_chl`` contrast that trains :math:`W` with them. Here the routes
*learn*:

1. **Node perturbation.** Each sample is also relaxed from the same start with noise on its
   hidden drives (the ``noisy`` phase). The loss change :math:`\tilde L - L` is broadcast as one
   scalar; each hidden unit correlates it with the noise it received,
   :math:`\hat\lambda_j = (\tilde L - L)\,\xi_j / c_h^2` — an estimate of
   :math:`\partial L/\partial I_j`, the derivative of the loss by the unit's input current
   (seed 003 eq. 1–2, with the noise on the drive).
2. **Least squares.** :math:`B` descends :math:`\tfrac12 \lVert \hat\lambda_j - \tilde e_j\rVert^2`
   (seed 003 eq. 3 by gradient descent per mini-batch), with :math:`\tilde e_j = \rho'(a_j)\odot
   w_j\sum_p B_p u_p` the synthetic error the routes deliver:
   :math:`g_{B_p} = -w_j\,\langle[\rho'(a_j)\odot(\hat\lambda_j - \tilde e_j)]\,u_p^\top\rangle`,
   at the rate ``feedback_lr`` (0: feedback alignment).
   Or (``fit = "ridge"``, seed 003 appendix C.3) the ridge solution of all misfits so far:
   per row :math:`j` of :math:`B_p` the running sums :math:`G_j = \sum \rho'^2_j u u^\top` and
   :math:`R_j = \sum \rho'_j \hat\lambda_j u` (each decayed by ``ridge_decay`` per batch) give
   :math:`B_{p,j} = R_j (G_j + \epsilon I)^{-1}`, and the descent direction
   :math:`g = B - B^\mathrm{ridge}` moves :math:`B` there at the rate ``feedback_lr`` (1: at once
   with ``sgd``). Least squares by gradient descent converges only as fast as the smallest
   eigenvalue of :math:`G_j` allows (condition numbers of 10³ are usual); the ridge solution does not
   wait. Its state, :math:`n_\mathrm{dst}` Gram matrices per route, is saved in the checkpoint.
3. ``warmup_batches`` mini-batches first learn :math:`B` alone, :math:`W` frozen.

**Baseline.** ``baseline = "clean"`` compares each noisy loss with the same sample's clean one.
``baseline = "low_pass"`` compares it with a running mean :math:`b` of the noisy losses of the
*previous* mini-batches, :math:`\hat\lambda_j = (\tilde L - b)\,\xi_j / c_h^2`, then
:math:`b \leftarrow \gamma b + (1-\gamma)\,\langle\tilde L\rangle_\text{batch}`
(``baseline_decay`` γ; the first batch uses its mean clean loss). :math:`b` does not depend on
this batch's noise, so the estimate stays unbiased (:math:`E[\xi] = 0`); its variance grows by
:math:`(L - b)^2 E[\xi_j^2]/c_h^4`. :math:`b` is the rule's fixed state (``rule/baseline`` in the
checkpoint).

**Noise.** Continuous time: ``[dynamics.noise]`` with ``kind = "ou"`` on the hidden
populations, :math:`\sigma = c_h`; :math:`\xi_j` is the Ornstein–Uhlenbeck current at the end of
the noisy phase. The estimate is quasi-static: it is unbiased when the current changes slowly
against the relaxation (``tau`` several leak times; docs/rules.md). Discrete
(``dynamics.engine = "reference"``): one forward pass with the current :math:`c_h\xi`,
:math:`\xi \sim N(0, 1)` drawn per sample and unit from the run's generator, added to every
hidden pre-activation; :math:`\hat\lambda_j = (\tilde L - L)\xi_j/c_h`.
"""

from __future__ import annotations

import numpy as np
from typing import Literal

from pydantic import Field

from ..data.section import Section
from ..dynamics import rhs
from ..dynamics.loss import cost, cost_gradient
from ..dynamics.noise import final_current
from ..dynamics.network import OUTPUT
from ..dynamics.nonlinearities import rho_prime, xp_of
from ..dynamics.params import Params
from ..simulate.engines.base import ClampedSystem, States
from . import register
from .base import BatchResult, RuleState
from .feedback import REFERENCE_ENGINE, FeedbackRule

NOISY = "noisy"


class NodePerturbationConfig(Section):
    """``[learning.node_perturbation]``."""

    feedback_lr: float = Field(0.01, ge=0, description="learning rate of the feedback B (0: feedback alignment)")
    warmup_batches: int = Field(0, ge=0, le=10**9, description="mini-batches at the start that train B only")
    fit: Literal["sgd", "ridge"] = Field(
        "sgd", description="sgd: B descends the squared misfit per mini-batch; ridge: B moves (at feedback_lr; 1 = "
                           "jumps) to the ridge solution of every misfit so far (seed 003 appendix C.3)")
    ridge_decay: float = Field(1.0, gt=0, le=1, description="ridge: the factor on the past statistics per batch "
                                                             "(1: all alike; < 1 forgets as W moves)")
    ridge_epsilon: float = Field(1e-6, gt=0, description="ridge: the regulariser added to each row's Gram matrix")
    baseline: Literal["clean", "low_pass"] = Field(
        "clean", description="what the noisy loss is compared with: clean: the same sample's clean relaxation; "
                             "low_pass: a running mean of the noisy loss over the previous mini-batches")
    baseline_decay: float = Field(0.9, gt=0, lt=1, description="low_pass: the running mean's factor γ per mini-batch, "
                                                               "b ← γ b + (1 − γ) mean(L̃)")


@register
class NodePerturbation(FeedbackRule):
    name = "node_perturbation"
    config = NodePerturbationConfig
    default_topology = "random_feedback"

    @classmethod
    def phases(cls, cfg) -> tuple[str, ...]:
        free, *rest = super().phases(cfg)
        return (free, NOISY, *rest)

    @classmethod
    def noise_phases(cls, cfg) -> dict[str, int]:
        """Only the noisy phase draws noise; the free and nudged phases stay clean."""
        return {NOISY: cfg.dynamics.free_steps} if cfg.dynamics.engine != REFERENCE_ENGINE else {}

    @classmethod
    def check(cls, cfg, net) -> None:
        super().check(cfg, net)
        if cfg.network.topology not in ("random_feedback", "direct_feedback"):
            raise ValueError(f"learning.rule = 'node_perturbation' learns one route per hidden layer: use "
                             f"network.topology = 'random_feedback' (layer to layer) or 'direct_feedback' (from the "
                             f"output), not {cfg.network.topology!r}")
        noise = cfg.dynamics.noise
        if noise.kind == "none" or not noise.sigma > 0:
            raise ValueError("learning.rule = 'node_perturbation' perturbs the hidden drives: set [dynamics.noise] "
                             "kind = 'ou' and sigma > 0 (the perturbation c_h)")
        if cfg.dynamics.engine != REFERENCE_ENGINE and noise.kind != "ou":
            raise ValueError(f"dynamics.noise.kind = {noise.kind!r}: node perturbation in continuous time correlates "
                             "the loss change with each unit's noise current, which only 'ou' noise has; set "
                             "dynamics.noise.kind = 'ou'")
        hidden = set(net.hidden)
        pops = set(noise.populations) if noise.populations is not None else hidden
        if pops != hidden:
            raise ValueError(f"dynamics.noise.populations = {sorted(pops)}: node perturbation perturbs every hidden "
                             f"population ({', '.join(sorted(hidden))}) and nothing else")

    # -- the learned feedback ------------------------------------------------------------------
    def trained_fixed(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.net.projections if p.kind == "fixed")

    def state_learning_rates(self, rates: dict[str, float]) -> dict[str, float]:
        return {f"W_{name}": float(self.options.feedback_lr) for name in self.trained_fixed()}

    def _route_sizes(self):
        return [(p.name, self.net.sizes[p.dst], self.net.sizes[p.src]) for p in self.net.projections
                if p.kind == "fixed"]

    def init_state(self, rng, dtype) -> RuleState:
        fixed = {"batches": np.zeros((), dtype=np.int64)}
        if self.options.baseline == "low_pass":
            fixed["baseline"] = np.zeros((), dtype=dtype)
        if self.options.fit == "ridge":
            for name, n_dst, n_src in self._route_sizes():
                fixed[f"gram_{name}"] = np.zeros((n_dst, n_src, n_src), dtype=dtype)
                fixed[f"cross_{name}"] = np.zeros((n_dst, n_src), dtype=dtype)
        return RuleState({}, fixed)

    def draw(self, rng: np.random.Generator, batch_size: int, dtype) -> dict:
        out = super().draw(rng, batch_size, dtype)
        if self.cfg.dynamics.engine == REFERENCE_ENGINE:  # the discrete perturbation, per sample and unit
            out["xi"] = {h: rng.standard_normal((batch_size, self.net.sizes[h])).astype(dtype) for h in self.net.hidden}
        return out

    def unpad_draws(self, draws: dict, n: int) -> dict:
        if "xi" not in draws:
            return draws
        return {**draws, "xi": {k: v[:n] for k, v in draws["xi"].items()}}

    # -- per batch -------------------------------------------------------------------------------
    def perturbation_estimate(self, system: ClampedSystem, init: States, baseline, target, draws: dict):
        r"""``(λ̂, noisy, L̃)``: :math:`\hat\lambda_j` of every hidden unit (the noisy phase's loss
        less ``baseline`` — per sample, or one scalar — times the unit's noise, over the noise's
        variance), the noisy phase's relaxation and its per-sample loss :math:`\tilde L`."""
        sigma = float(self.cfg.dynamics.noise.sigma)
        if system.engine.name == REFERENCE_ENGINE:
            xi = draws["xi"]
            extra = {h: sigma * xi[h] for h in self.net.hidden}
            noisy = system.engine.clamp(system.params, system.x, extra).relax(init, 1, phase=NOISY)
            scale = 1.0 / sigma
        else:
            noise = system.noise[NOISY]
            n_steps = self.cfg.dynamics.free_steps
            noisy = system.relax(init, n_steps, phase=NOISY, noise=noise)
            xi = final_current(system.engine.noise, system.engine.dt, noise, n_steps)
            scale = 1.0 / sigma**2
        noisy_loss = cost(self.net, noisy.states[OUTPUT], target)
        change = noisy_loss - baseline
        return {h: change[:, None] * xi[h] * scale for h in self.net.hidden}, noisy, noisy_loss

    def baseline(self, state: RuleState, clean_loss, mask=None):
        r""":math:`b` of this batch: the clean loss per sample (``baseline = "clean"``), or the
        running mean of the previous batches' noisy losses (``"low_pass"``; on the first batch
        the batch's mean clean loss). Either is independent of this batch's noise, so
        :math:`\hat\lambda` stays unbiased."""
        if self.options.baseline == "clean":
            return clean_loss
        xp = xp_of(clean_loss)
        return xp.where(state.fixed["batches"] == 0, _mean(clean_loss, mask), state.fixed["baseline"])

    def batch(self, system: ClampedSystem, params: Params, state: RuleState, x, target, init: States, draws: dict,
              mask=None) -> BatchResult:
        net = self.net
        result = super().batch(system, params, state, x, target, init, draws, mask)
        free = result.free.states
        rates = rhs.rates(net, free, system.x)
        e = cost_gradient(net, free[OUTPUT], target)
        if system.engine.name == REFERENCE_ENGINE:
            deltas = self.discrete_deltas(params, free, system.x, target, draws)
        else:  # the synthetic errors the nudged phase delivered
            nudged = self.post_rates(result.phases["nudged"].states, system.x)
            before = self.post_rates(free, system.x)
            deltas = {k: (nudged[k] - before[k]) * (-1.0 / draws["beta"]) for k in net.hidden}
            deltas[OUTPUT] = e
        opts = self.options
        base = self.baseline(state, cost(net, free[OUTPUT], target), mask)
        lam, noisy, noisy_loss = self.perturbation_estimate(system, init, base, target, draws)
        grads = dict(result.grads)
        weight = 1.0 if mask is None else mask[:, None]
        n = next(iter(free.values())).shape[0] if mask is None else mask.sum()
        fixed = {}
        if opts.baseline == "low_pass":  # updated after use: the next batch's baseline
            decay = opts.baseline_decay
            fixed["baseline"] = (decay * base + (1.0 - decay) * _mean(noisy_loss, mask)).astype(noisy_loss.dtype)
        for p in net.projections:
            if p.kind != "fixed":
                continue
            h = p.dst
            u = e if p.src == OUTPUT else deltas[p.src]
            gain = rho_prime(free[h], net.rho)
            if opts.fit == "sgd":
                misfit = gain * (lam[h] - deltas[h]) * weight
                grads[f"W_{p.name}"] = (misfit * (-self.route_weight(h) / n)).T @ u
                continue
            # ridge: the misfit of route p alone, the other routes' share held
            xp = xp_of(u)
            w = self.route_weight(h)
            wg, wu = gain * (w * weight), u * weight
            gram = state.fixed[f"gram_{p.name}"] * opts.ridge_decay + xp.einsum("bj,bj,ba,bc->jac", wg, wg, wu, u)
            target = lam[h] - deltas[h] + gain * (w * (u @ params.weight(p).T))
            cross = state.fixed[f"cross_{p.name}"] * opts.ridge_decay + xp.einsum("bj,bj,ba->ja", wg, target, wu)
            eye = xp.eye(u.shape[1], dtype=gram.dtype)
            ridge = xp.linalg.solve(gram + opts.ridge_epsilon * eye, cross[..., None])[..., 0]
            grads[f"W_{p.name}"] = params.weight(p) - ridge
            fixed.update({f"gram_{p.name}": gram, f"cross_{p.name}": cross})
        seen = state.fixed["batches"]
        if self.options.warmup_batches:
            train_w = xp_of(rates[OUTPUT]).asarray(seen >= self.options.warmup_batches, dtype=rates[OUTPUT].dtype)
            for k in result.grads:
                grads[k] = result.grads[k] * train_w
        phases = {**result.phases, NOISY: noisy}
        return BatchResult(grads, phases, result.buffers, {"batches": seen + 1, **fixed})


def _mean(values, mask=None):
    """The batch mean of per-sample ``values``, over the real samples only (``mask``: 1 real, 0 padding)."""
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum()
