r"""The contrastive (Equilibrium Propagation) rules' common part: a free phase, a nudged phase
with :math:`\beta` (and one with :math:`-\beta` under ``dynamics.symmetric_nudging``), then a
local estimator of the rates of the phases (:mod:`hebbsim.dynamics.plasticity`).

A concrete rule is a subclass that names itself and its estimator; see :mod:`.ep_chl` and
:mod:`.ep_chl_classic`.
"""

from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np

from ..dynamics import rhs
from ..dynamics.params import Params
from ..simulate.engines.base import ClampedSystem, States
from ..simulate.phases import free_phase, nudged_phase
from .base import BatchResult, Rule, RuleState


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

    def batch(self, system: ClampedSystem, params: Params, state: RuleState, x, target, init: States, draws: dict,
              mask=None) -> BatchResult:
        dyn = self.cfg.dynamics
        beta = draws["beta"]
        phases = {"free": free_phase(system, init, dyn.free_steps, dyn.tol)}
        phases["nudged"] = nudged_phase(system, phases["free"].states, target, beta, dyn.nudge_steps)
        if dyn.symmetric_nudging:
            phases["nudged_minus"] = nudged_phase(system, phases["free"].states, target, -beta, dyn.nudge_steps,
                                                  "nudged_minus")
        rates = {k: rhs.rates(self.net, r.states, system.x) for k, r in phases.items()}
        grads = type(self).estimator(self.net, rates["free"], rates["nudged"], beta, rates.get("nudged_minus"),
                                     mask=mask)
        return BatchResult(grads, phases)

    def locate_divergence(self, engine, params: Params, phase: str, x, target, init: States, draws: dict,
                          finite: dict):
        dyn = self.cfg.dynamics
        if phase == "free":
            return super().locate_divergence(engine, params, phase, x, target, init, draws, finite)
        free = engine.clamp(params, x).relax(init, dyn.free_steps, tol=dyn.tol).states
        sign = -1.0 if phase == "nudged_minus" else 1.0
        return engine.locate_divergence(params, free, x, dyn.nudge_steps, sign * float(draws["beta"]), target)
