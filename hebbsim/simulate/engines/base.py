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
