r"""The phases of Equilibrium Propagation (docs/model.md, Phases) on any engine.

- :func:`free_phase`: relax with :math:`\beta = 0` from the initial states (zeros, or the
  sample's previous free fixed point with persistent states) for ``free_steps`` steps or
  until max |ds/dt| < ``tol``.
- :func:`nudged_phase`: from the free fixed point, relax with the output pulled towards the
  target with strength :math:`\beta` for ``nudge_steps`` steps.

Each phase integrates the noise the system holds for it (``system.noise[name]``, drawn per batch
by the trainer under ``[dynamics.noise]``); without, the noise-free dynamics.
"""

from __future__ import annotations

import numpy as np

from .engines.base import ClampedSystem, Relaxation, States


def free_phase(system: ClampedSystem, init: States, n_steps: int, tol: float = 0.0) -> Relaxation:
    return system.relax(init, n_steps, beta=0.0, tol=tol, phase="free", noise=system.noise.get("free"))


def nudged_phase(system: ClampedSystem, free: States, target: np.ndarray, beta: float, n_steps: int,
                 name: str = "nudged") -> Relaxation:
    return system.relax(free, n_steps, beta=beta, target=target, phase=name, noise=system.noise.get(name))


def noise_phases(rule, cfg) -> dict[str, int]:
    """The phases of a training batch that draw noise under ``[dynamics.noise]``, with their step
    counts: the rule's own ``noise_phases(cfg)`` where it declares one, else those of its
    :meth:`phases` that this module runs (``free``, ``nudged``, ``nudged_minus``)."""
    own = getattr(rule, "noise_phases", None)
    if own is not None:
        return dict(own(cfg))
    dyn = cfg.dynamics
    steps = {"free": dyn.free_steps, "nudged": dyn.nudge_steps, "nudged_minus": dyn.nudge_steps}
    return {name: steps[name] for name in rule.phases(cfg) if name in steps}
