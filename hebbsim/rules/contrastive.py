r"""The contrastive rules' common part: a free phase, a nudged phase with :math:`\beta` (and one
with :math:`-\beta` under ``dynamics.symmetric_nudging``), then a local estimator of the rates of
the phases (:mod:`hebbsim.dynamics.plasticity`).

A concrete rule is a subclass that names itself and its estimator; see :mod:`.ep_chl` and
:mod:`.ep_chl_classic`. The Equilibrium Propagation rules nudge the output of the network as it
is; the feedback-alignment family (:mod:`.feedback`) overrides :meth:`ContrastiveRule.nudged_phases`
to run its nudged phase on a network whose forward drive is held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from ..dynamics import rhs
from ..dynamics.params import Params
from ..simulate.engines.base import ClampedSystem, States
from ..simulate.phases import free_phase
from .base import BatchResult, Rule, RuleState


@dataclass
class NudgedPhase:
    """How to run one nudged phase from the free states: ``system.relax(free, nudge_steps,
    beta=beta, target=target)``."""

    system: ClampedSystem
    beta: float
    target: object = None


class ContrastiveRule(Rule):
    """Free phase, nudged phase(s), ``estimator(net, free, nudged, beta, minus, mask)``."""

    estimator: ClassVar[Callable]

    @classmethod
    def phases(cls, cfg) -> tuple[str, ...]:
        return ("free", "nudged", "nudged_minus") if cfg.dynamics.symmetric_nudging else ("free", "nudged")

    def draw(self, rng: np.random.Generator, batch_size: int, dtype) -> dict:
        """β of this batch: ``dynamics.beta``, with a random sign under ``random_sign_beta``."""
        dyn = self.cfg.dynamics
        beta = dyn.beta * (rng.choice((-1.0, 1.0)) if dyn.random_sign_beta else 1.0)
        return {"beta": float(beta)}

    # -- the phases -----------------------------------------------------------------------------
    def nudged_phases(self, system: ClampedSystem, params: Params, x, target, free: States,
                      beta, draws: dict | None = None) -> dict[str, NudgedPhase]:
        """The nudged phase(s) of a batch whose free phase ran on ``system`` and ended in ``free``:
        EP pulls the output of the same network towards ``target`` with strength ±β."""
        out = {"nudged": NudgedPhase(system, beta, target)}
        if self.cfg.dynamics.symmetric_nudging:
            out["nudged_minus"] = NudgedPhase(system, -beta, target)
        return out

    def probe_estimate(self, system: ClampedSystem, params: Params, x, target, free: States, beta,
                       n_nudge: int) -> dict:
        """The rule's descent direction on probe samples whose free phase ended in ``free`` (the
        nudged phases relaxed ``n_nudge`` steps from there), in float64: what
        :func:`hebbsim.analysis.gradients.gradient_alignment` grades against −∇L."""
        to_np = lambda s: {k: np.asarray(v, np.float64) for k, v in s.items()}  # noqa: E731
        phases = {"free": to_np(free)}
        for name, nudged in self.nudged_phases(system, params, x, target, free, beta).items():
            phases[name] = to_np(nudged.system.relax(free, n_nudge, beta=nudged.beta, target=nudged.target,
                                                     phase=name).states)
        return self.estimate(np.asarray(x, np.float64), phases, beta)

    def post_rates(self, states: States, x) -> States:
        """The activities the estimator contrasts: every population's rate (the input's is ``x``)."""
        return rhs.rates(self.net, states, x)

    def estimate(self, x, phases: dict[str, States], beta, mask=None) -> dict:
        """The descent direction from the final states of every phase."""
        rates = {k: self.post_rates(s, x) for k, s in phases.items()}
        return type(self).estimator(self.net, rates["free"], rates["nudged"], beta, rates.get("nudged_minus"),
                                    mask=mask)

    def batch(self, system: ClampedSystem, params: Params, state: RuleState, x, target, init: States, draws: dict,
              mask=None) -> BatchResult:
        dyn = self.cfg.dynamics
        beta = draws["beta"]
        phases = {"free": free_phase(system, init, dyn.free_steps, dyn.tol)}
        for name, nudged in self.nudged_phases(system, params, x, target, phases["free"].states, beta,
                                               draws).items():
            phases[name] = nudged.system.relax(phases["free"].states, dyn.nudge_steps, beta=nudged.beta,
                                               target=nudged.target, phase=name)
        grads = self.estimate(system.x, {k: r.states for k, r in phases.items()}, beta, mask)
        return BatchResult(grads, phases)

    def locate_divergence(self, engine, params: Params, phase: str, x, target, init: States, draws: dict,
                          finite: dict):
        dyn = self.cfg.dynamics
        if phase == "free":
            return super().locate_divergence(engine, params, phase, x, target, init, draws, finite)
        system = engine.clamp(self.inference_params(params), x)
        free = system.relax(init, dyn.free_steps, tol=dyn.tol).states
        nudged = self.nudged_phases(system, params, x, target, free, float(draws["beta"]), draws)[phase]
        return engine.locate_divergence(nudged.system.params, free, x, dyn.nudge_steps, nudged.beta, nudged.target,
                                        getattr(nudged.system, "extra", None))
