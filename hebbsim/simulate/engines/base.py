"""What every engine provides: a network with its input clamped, relaxed phase by phase; a scan of
a rule's step function over a window; and, optionally, fused accelerations of such windows.

Engines know nothing of learning rules: a rule (:mod:`hebbsim.rules`) asks
``engine.acceleration(name)`` for a fused kernel and otherwise scans its own reference step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ...dynamics.network import Network
from ...dynamics.noise import NoiseModel, PhaseNoise
from ...dynamics.params import Params
from ...errors import DivergenceError

States = dict[str, np.ndarray]
SOLVERS = ("euler", "tsit5", "dopri5")  # euler: both engines; the adaptive ones: jax


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


def check_noise(engine: "Engine", noise: PhaseNoise | None, n_steps: int, batch: int, tol: float) -> bool:
    """Whether a phase is noisy; refuse noise the engine cannot integrate as asked (a
    programming error, not a parameter one: parameter files are checked before a run)."""
    if noise is None:
        return False
    model = engine.noise
    if model is None:
        raise ValueError("noise given to an engine without a noise model (make_engine(..., noise=NoiseModel(...)))")
    if tol > 0:
        raise ValueError(f"tol = {tol} with noise: noisy dynamics never come to rest; use tol = 0")
    if not isinstance(noise.z, dict):
        return True  # a Brownian path (the jax engine checks its own)
    for pop in model.populations:
        z = noise.z.get(pop)
        if z is None or z.ndim != 3 or z.shape[0] < n_steps or z.shape[1] != batch or z.shape[2] != engine.net.sizes[pop]:
            raise ValueError(f"noise for population {pop!r}: expected increments of shape (>= {n_steps}, {batch}, "
                             f"{engine.net.sizes[pop]}), got {None if z is None else z.shape}")
        if model.kind == "ou" and (noise.xi0 is None or noise.xi0[pop].shape != (batch, engine.net.sizes[pop])):
            raise ValueError(f"noise for population {pop!r}: kind 'ou' needs xi0 of shape ({batch}, "
                             f"{engine.net.sizes[pop]})")
    return True


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


def diverged(engine: "Engine", phase: str, step: int, population: str, hint: str = "") -> DivergenceError:
    """The error for a non-finite state of ``engine``'s network, with the advice for its settings."""
    return DivergenceError(phase, step, population, hint, advice=divergence_advice(engine.net, engine.dt, phase))


class ClampedSystem(Protocol):
    """A network whose input and parameters are fixed for the phases of one batch.

    ``noise`` holds the batch's noise draws by phase name (empty without noise): the phase
    functions of :mod:`hebbsim.simulate.phases` pass ``noise[phase]`` to :meth:`relax`."""

    engine: "Engine"
    params: Params
    x: np.ndarray  # the clamped input, in the engine dtype
    noise: dict[str, PhaseNoise]

    def finish(self, states: States, n_steps: int, phase: str, hint: str = "") -> Relaxation:
        """The :class:`Relaxation` of a window the caller integrated itself (with :meth:`Engine.scan`):
        eagerly, a non-finite state raises; traced, it is reported in ``finite``."""

    def relax(
        self,
        states: States,
        n_steps: int,
        *,
        beta: float = 0.0,
        target: np.ndarray | None = None,
        tol: float = 0.0,
        phase: str = "free",
        noise: PhaseNoise | None = None,
    ) -> Relaxation:
        """Integrate ``n_steps`` steps (fewer if ``tol > 0`` and every sample comes to rest).

        ``noise``: the phase's increments (:mod:`hebbsim.dynamics.noise`; the engine's
        ``noise`` model says what they drive), at least ``n_steps`` of them; ``None`` integrates
        the noise-free dynamics, the very code path of an engine without a noise model. Noise
        and ``tol > 0`` exclude each other (noisy dynamics never come to rest)."""


class Engine(Protocol):
    name: str
    net: Network
    dtype: np.dtype
    dt: float
    noise: NoiseModel | None  # what a phase's noise draws drive (None: noise-free dynamics only)

    def clamp(self, params: Params, x: np.ndarray, extra_current: States | None = None,
              noise: dict[str, PhaseNoise] | None = None) -> ClampedSystem:
        """Fix the input and the parameters for the phases of one batch; ``noise`` binds the
        batch's noise draws by phase name (:attr:`ClampedSystem.noise`)."""

    def scan(self, step: Callable, carry, n_steps: int):
        """``carry ← step(carry)`` ``n_steps`` times (a loop on numpy, ``lax.scan`` under JAX)."""

    def acceleration(self, name: str) -> Callable | None:
        """A fused kernel this engine offers for ``name`` (e.g. ``"forward_gradient.window"``),
        pinned to the reference it replaces by a contract test; ``None`` if none."""
