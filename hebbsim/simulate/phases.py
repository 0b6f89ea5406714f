r"""The phases of Equilibrium Propagation (docs/model.md, Phases) on any engine.

- :func:`free_phase`: relax with :math:`\beta = 0` from the initial states (zeros, or the
  sample's previous free fixed point with persistent states) for ``free_steps`` steps or
  until max |ds/dt| < ``tol``.
- :func:`nudged_phase`: from the free fixed point, relax with the output pulled towards the
  target with strength :math:`\beta` for ``nudge_steps`` steps.
"""

from __future__ import annotations

import numpy as np

from .engines.base import ClampedSystem, Relaxation, States


def free_phase(system: ClampedSystem, init: States, n_steps: int, tol: float = 0.0) -> Relaxation:
    return system.relax(init, n_steps, beta=0.0, tol=tol, phase="free")


def nudged_phase(system: ClampedSystem, free: States, target: np.ndarray, beta: float, n_steps: int,
                 name: str = "nudged") -> Relaxation:
    return system.relax(free, n_steps, beta=beta, target=target, phase=name)
