r"""Additive noise on the drive of the network's populations (docs/model.md, Noise) — the math.

For every population :math:`j` listed in ``dynamics.noise.populations`` the dynamics of
:mod:`hebbsim.dynamics.rhs` (drift :math:`f_j(s)`) gain a noise term. It enters the state (the
drive) directly, *outside* the gain :math:`g_j`, so it does not depend on the state whatever the
neuron model: the noise is *additive*.

- ``white``: :math:`ds_j = f_j(s)\,dt + \sigma\,dW_j`.
- ``ou``: an Ornstein–Uhlenbeck current :math:`\xi_j`,

  .. math::

      ds_j = \big(f_j(s) + \xi_j\big)\,dt, \qquad
      d\xi_j = -\frac{\xi_j}{\tau}\,dt + \sigma\sqrt{2/\tau}\;dW_j .

  In this parameterisation :math:`\sigma` is the *stationary standard deviation* of the current
  (:math:`\operatorname{Var}\xi = \sigma^2`) and :math:`\tau` its correlation time
  (:math:`\langle\xi(t)\xi(t+u)\rangle = \sigma^2 e^{-|u|/\tau}`); as :math:`\tau \to 0` with
  :math:`2\sigma^2\tau` fixed, :math:`\xi\,dt` tends to white noise of intensity :math:`\sigma\sqrt{2\tau}`.

:math:`W_j` are independent standard Wiener processes, one per unit and sample.

**Discretisation** at the step :math:`h` = ``dynamics.dt`` (both engines; :math:`P` is the
model's projection, the ``clip_states`` clip; :math:`z_k \sim N(0, 1)` independent):

- ``white`` (Euler–Maruyama): :math:`s_{k+1} = P\big(s_k + h f(s_k) + \sigma\sqrt{h}\,z_k\big)`;
- ``ou`` (the current by its exact transition, the state by Euler):
  :math:`s_{k+1} = P\big(s_k + h\,(f(s_k) + \xi_k)\big)`,
  :math:`\xi_{k+1} = a\,\xi_k + \sigma\sqrt{1-a^2}\,z_k`, :math:`a = e^{-h/\tau}`, from a
  stationary start :math:`\xi_0 \sim N(0, \sigma^2)`. The current's variance is then exactly
  :math:`\sigma^2` at every step whatever :math:`h/\tau` (Euler–Maruyama on :math:`\xi` would give
  :math:`\sigma^2/(1 - h/2\tau)`: +33 % at the default ``dt = 0.5`` with :math:`\tau = 1`).

With additive noise Euler–Maruyama is Milstein's scheme, so both schemes converge with *strong
order 1* in :math:`h`, and Itô and Stratonovich readings coincide.

**Stationary variance** of a leaky linear unit :math:`f(s) = -s/r` (an ``additive`` neuron with
zero weights and bias), continuous time and the discrete schemes above (:math:`b = 1 - h/r`):

=========  =================================  ==========================================================
kind       continuous                         scheme at step :math:`h`
=========  =================================  ==========================================================
white      :math:`\sigma^2 r/2`               :math:`\sigma^2 h/(1-b^2)`
ou         :math:`\sigma^2 r^2\tau/(r+\tau)`  :math:`\sigma^2 h^2 (1+ab)/\big((1-b^2)(1-ab)\big)`
=========  =================================  ==========================================================

(the continuous OU value solves the Lyapunov equation of the pair :math:`(s, \xi)`; the discrete
ones sum the geometric series of the recursions).

The random numbers of a phase (:class:`PhaseNoise`) are drawn on the host from a generator of
their own (:func:`noise_generator`, ``dynamics.noise.seed``) so that both engines integrate the
same increments and turning noise on does not shift any other random draw of a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .nonlinearities import xp_of
from .streams import seed_stream

KINDS = ("none", "white", "ou")
NOISE_CODES = {"none": 0, "white": 1, "ou": 2}  # the numba kernel's specialisation
NOISE_STREAM = 0x6E6F697365  # "noise": the spawn key that separates the noise stream from the run's


@dataclass(frozen=True)
class NoiseModel:
    """What ``[dynamics.noise]`` fixes for a run: the kind (``white`` or ``ou``), the amplitude
    :math:`\\sigma`, the OU correlation time :math:`\\tau` and the noisy populations."""

    kind: str
    sigma: float
    tau: float
    populations: tuple[str, ...]

    def __post_init__(self):
        if self.kind not in ("white", "ou"):
            raise ValueError(f"dynamics.noise.kind = {self.kind!r}: a noise model is 'white' or 'ou'")
        if not self.sigma >= 0 or not self.tau > 0:
            raise ValueError(f"dynamics.noise: sigma = {self.sigma} must be >= 0 and tau = {self.tau} > 0")

    @classmethod
    def from_config(cls, noise, hidden: tuple[str, ...]) -> "NoiseModel | None":
        """The model of a validated ``[dynamics.noise]`` table (``None`` for ``kind = "none"``);
        ``hidden`` is the default list of populations."""
        if noise is None or noise.kind == "none":
            return None
        pops = tuple(noise.populations) if noise.populations is not None else tuple(hidden)
        return cls(noise.kind, float(noise.sigma), float(noise.tau), pops)

    def kick(self, h: float) -> float:
        """The factor on :math:`z_k` of one step: :math:`\\sigma\\sqrt h` (white) or
        :math:`\\sigma\\sqrt{1-a^2}` (ou, into :math:`\\xi`)."""
        if self.kind == "white":
            return self.sigma * math.sqrt(h)
        return self.sigma * math.sqrt(-math.expm1(-2.0 * h / self.tau))

    def decay(self, h: float) -> float:
        """:math:`a = e^{-h/\\tau}`, the OU current's factor per step (1 for white noise)."""
        return math.exp(-h / self.tau) if self.kind == "ou" else 1.0


class PhaseNoise(NamedTuple):
    """The random numbers of one phase (a named tuple: a JAX pytree).

    ``z``: per noisy population, standard normal increments of shape ``(n_steps, batch, n)``
    (step ``k`` uses ``z[k]``; the Brownian increment of the step is :math:`\\sqrt h\\,z_k`).
    The jax engine also takes a Brownian path here instead of arrays
    (:class:`hebbsim.simulate.engines.jax_engine.BrownianTrees`).
    ``xi0``: ``ou`` only, per noisy population the current at the phase's start ``(batch, n)``."""

    z: Any
    xi0: dict | None = None


def noise_generator(seed: int) -> np.random.Generator:
    """The noise stream of ``dynamics.noise.seed``: its own PCG64 stream (spawn key
    :data:`NOISE_STREAM`), independent of ``np.random.default_rng(seed)`` even for the same seed."""
    return seed_stream(seed, NOISE_STREAM)


def draw_phase(rng: np.random.Generator, model: NoiseModel, sizes: dict[str, int], n_steps: int, batch: int,
               dtype=np.float32) -> PhaseNoise:
    """The increments of one phase of ``n_steps`` steps for ``batch`` samples, in the order: for
    each noisy population (``model.populations``), :math:`\\xi_0 = \\sigma z` (``ou``) then ``z``.

    Drawn in ``dtype`` itself: float32 normals cost half as much as float64 ones, and the draws
    are most of what noise costs a batch (docs/benchmarks.md). So a float32 and a float64 run of
    one seed see different increments; both engines at one dtype see the same."""
    dtype = np.dtype(dtype)
    z, xi0 = {}, {}
    for pop in model.populations:
        if model.kind == "ou":
            xi0[pop] = (model.sigma * rng.standard_normal((batch, sizes[pop]), dtype=dtype)).astype(dtype)
        z[pop] = rng.standard_normal((n_steps, batch, sizes[pop]), dtype=dtype)
    return PhaseNoise(z, xi0 if model.kind == "ou" else None)


def unpad(noise: PhaseNoise, n: int) -> PhaseNoise:
    """The increments of the first ``n`` samples (an unpadded short last batch)."""
    return PhaseNoise({k: v[:, :n] for k, v in noise.z.items()},
                      None if noise.xi0 is None else {k: v[:n] for k, v in noise.xi0.items()})


def step_kicks(model: NoiseModel, h: float, z_k: dict, xi_k: dict | None) -> tuple[dict, dict | None]:
    """The noise of step ``k``: ``(kicks, xi_next)`` with ``kicks[j]`` the displacement added to
    the Euler update of population ``j`` (:math:`\\sigma\\sqrt h z_k`, or :math:`h\\,\\xi_k`) and
    the OU current of the next step (``None`` for white noise)."""
    c = model.kick(h)
    if model.kind == "white":
        return {k: c * v for k, v in z_k.items()}, None
    a = model.decay(h)
    return {k: h * v for k, v in xi_k.items()}, {k: a * xi_k[k] + c * z_k[k] for k in xi_k}


def ou_currents(model: NoiseModel, h: float, noise: PhaseNoise) -> dict[str, np.ndarray]:
    """The OU current at every step of a phase, :math:`\\xi_0 … \\xi_n` (shape ``(n + 1, batch, n)``
    per population; numpy): the noise each unit received, e.g. for a rule that correlates it."""
    a, c = model.decay(h), model.kick(h)
    out = {}
    for pop, z in noise.z.items():
        xi = np.empty((z.shape[0] + 1,) + z.shape[1:], dtype=np.result_type(z, noise.xi0[pop]))
        xi[0] = noise.xi0[pop]
        for k in range(z.shape[0]):
            xi[k + 1] = a * xi[k] + c * z[k]
        out[pop] = xi
    return out


def final_current(model: NoiseModel, h: float, noise: PhaseNoise, n_steps: int | None = None) -> dict:
    r"""The OU current after ``n_steps`` steps of a phase (default: all of its increments),
    :math:`\xi_n = a^n\xi_0 + c\sum_{k<n} a^{n-1-k} z_k` — the noise each unit was receiving at
    the end, in closed form (array API: traces under JAX)."""
    a, c = model.decay(h), model.kick(h)
    out = {}
    for pop, z in noise.z.items():
        n = z.shape[0] if n_steps is None else n_steps
        xp = xp_of(z)
        weights = xp.asarray(a ** np.arange(n - 1, -1, -1, dtype=np.float64), dtype=z.dtype)
        out[pop] = a**n * noise.xi0[pop] + c * xp.tensordot(weights, z[:n], axes=1)
    return out


def stationary_variance(kind: str, sigma: float, leak: float, tau: float = 1.0) -> float:
    """Stationary variance of :math:`ds = -s/r\\,dt + \\text{noise}` in continuous time:
    :math:`\\sigma^2 r/2` (white), :math:`\\sigma^2 r^2\\tau/(r+\\tau)` (ou)."""
    if kind == "white":
        return sigma**2 * leak / 2.0
    if kind == "ou":
        return sigma**2 * leak**2 * tau / (leak + tau)
    raise ValueError(f"kind = {kind!r}: use 'white' or 'ou'")


def scheme_stationary_variance(kind: str, sigma: float, leak: float, h: float, tau: float = 1.0) -> float:
    """Stationary variance of the same unit under the discrete scheme at step ``h`` (module
    docstring); tends to :func:`stationary_variance` as :math:`h \\to 0`."""
    b = 1.0 - h / leak
    if not abs(b) < 1.0:
        raise ValueError(f"h = {h} >= 2 r = {2 * leak}: the Euler map of the leak is not stable")
    if kind == "white":
        return sigma**2 * h / (1.0 - b * b)
    if kind == "ou":
        a = math.exp(-h / tau)
        return sigma**2 * h * h * (1.0 + a * b) / ((1.0 - b * b) * (1.0 - a * b))
    raise ValueError(f"kind = {kind!r}: use 'white' or 'ou'")
