"""What every engine provides: a network with its input clamped, relaxed phase by phase."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ...dynamics.network import Network
from ...dynamics.params import Params

States = dict[str, np.ndarray]


@dataclass
class Relaxation:
    """Result of one phase: final states, Euler steps taken and final max |ds/dt|.

    Inside a traced (jitted) computation ``steps`` and ``residual`` are array scalars and
    ``finite`` holds, per population, whether every state stayed finite (an engine cannot
    raise from inside a trace); eagerly a non-finite state raises instead and ``finite`` is
    ``None``."""

    states: States
    steps: int
    residual: float
    finite: dict | None = None


def divergence_advice(net: Network, dt: float, phase: str = "free") -> str:
    """What to change after a non-finite state, for the settings in force: never a setting that
    is already on (``clip_states`` is only suggested where it is off and keeps the states of a
    ``hard_sigmoid`` network in the range its rate can use)."""
    tips = [f"lower dynamics.dt (now {dt:g}) or the learning rates"]
    if phase == "perturbed":
        tips.append("or learning.forward_gradient.epsilon")
    if not net.clip_states and net.rho == "hard_sigmoid":
        tips.append("or set network.clip_states = true")
    return ", ".join(tips)


class ClampedSystem(Protocol):
    """A network whose input and parameters are fixed for the phases of one batch."""

    x: np.ndarray  # the clamped input, in the engine dtype

    def relax(
        self,
        states: States,
        n_steps: int,
        *,
        beta: float = 0.0,
        target: np.ndarray | None = None,
        tol: float = 0.0,
        phase: str = "free",
    ) -> Relaxation: ...


class Engine(Protocol):
    name: str
    net: Network
    dtype: np.dtype
    dt: float

    def clamp(self, params: Params, x: np.ndarray, extra_current: States | None = None) -> ClampedSystem: ...
