r"""The right-hand side of the network dynamics (docs/model.md) — the numpy reference.

For every non-input population :math:`j`

.. math::

    \frac{ds_j}{dt} = g_j(s_j) \odot \Big(\sum_{p:\,\mathrm{dst}=j} W_p\,\rho(s_{\mathrm{src}(p)}) + b_j\Big)
                      - \frac{s_j}{r_j} - \beta\,[j = o]\,\frac{\partial C}{\partial s_o}

with :math:`g_j = \rho'(s_j)` for ``gated`` neurons (eq. 13 of seed 000, the continuous
Hopfield model) and :math:`g_j = 1` for ``additive`` neurons, and :math:`C` the network's
output cost (:mod:`hebbsim.dynamics.loss`; :math:`\partial C/\partial s_o = s_o - d` for
``state_mse``). The input is clamped, :math:`\rho(x) = x`.

This module is the one definition of the model. The jax engine integrates these very
functions (they are written against the array API, so they trace under ``jax.jit`` and
``jax.vmap``; a single sample is a batch without the leading axis); the numba kernel is a
hand-fused copy pinned to them to 1e-12 by ``tests/simulate/test_numba_engine.py``.
States are dicts ``{population: array (batch, n)}``.
"""

from __future__ import annotations

import numpy as np

from .loss import cost_gradient
from .network import INPUT, OUTPUT, Network
from .nonlinearities import rho, rho_prime, xp_of
from .params import Params

States = dict[str, np.ndarray]


def rates(net: Network, states: States, x: np.ndarray) -> States:
    """Firing rates of every population, the clamped input included (:math:`\\rho(x) = x`)."""
    out = {INPUT: x}
    out.update({name: rho(s, net.rho) for name, s in states.items()})
    return out


def synaptic_currents(net: Network, params: Params, states: States, x: np.ndarray,
                      extra: States | None = None) -> States:
    r""":math:`\sum_{p:\,\mathrm{dst}=j} W_p \rho(s_\mathrm{src}) + b_j` for every dynamic population,
    plus the ``extra`` current (e.g. a perturbation) where given."""
    r = rates(net, states, x)
    out = {}
    for pop in net.dynamic_populations:
        i = params.biases[pop.name]
        if extra is not None and pop.name in extra:
            i = i + extra[pop.name]
        for p in net.projections_into(pop.name):
            i = i + r[p.src] @ params.weight(p).T
        s = states[pop.name]
        out[pop.name] = xp_of(s).broadcast_to(i, s.shape)  # a population fed by its bias alone
    return out


def drift(
    net: Network,
    params: Params,
    states: States,
    x: np.ndarray,
    beta: float = 0.0,
    target: np.ndarray | None = None,
    extra: States | None = None,
) -> States:
    """ds/dt for every dynamic population (see the module docstring). The nudging term is
    applied when a ``target`` is given (``beta`` may then be a traced value)."""
    cur = synaptic_currents(net, params, states, x, extra)
    out = {}
    for pop in net.dynamic_populations:
        s = states[pop.name]
        gain = rho_prime(s, net.rho) if net.neuron == "gated" else 1.0
        ds = gain * cur[pop.name] - s / pop.leak
        if pop.name == OUTPUT and target is not None:
            ds = ds - beta * cost_gradient(net, s, target)
        out[pop.name] = ds
    return out


def euler_step(net: Network, params: Params, states: States, x, dt, beta=0.0, target=None,
               extra: States | None = None) -> States:
    """One explicit Euler step ``s ← s + dt·ds/dt`` (then clip to [0, 1] if ``clip_states``)."""
    ds = drift(net, params, states, x, beta, target, extra)
    return project(net, {k: states[k] + dt * ds[k] for k in states})


def noisy_euler_step(net: Network, params: Params, states: States, x, dt, kicks: States, beta=0.0, target=None,
                     extra: States | None = None) -> States:
    """One Euler step with the noise displacement ``kicks[j]`` of population ``j`` added to its
    update, ``s ← P(s + dt·ds/dt + kick)`` (:mod:`hebbsim.dynamics.noise`: ``σ√dt·z`` for white
    noise, Euler–Maruyama; ``dt·ξ`` for the OU current). The reference of both engines' noisy steps."""
    ds = drift(net, params, states, x, beta, target, extra)
    return project(net, {k: states[k] + dt * ds[k] + kicks[k] if k in kicks else states[k] + dt * ds[k]
                         for k in states})


def project(net: Network, states: States) -> States:
    """The projection applied after each Euler step: clip to [0, 1] with ``clip_states``."""
    if not net.clip_states:
        return states
    return {k: xp_of(v).clip(v, 0.0, 1.0) for k, v in states.items()}


def zero_states(net: Network, batch: int, dtype=np.float32) -> States:
    return {pop.name: np.zeros((batch, pop.size), dtype=dtype) for pop in net.dynamic_populations}


def residual(before: States, after: States, dt: float) -> float:
    """Convergence residual of one Euler step: max |s_after − s_before| / dt over all units and
    samples. Without clipping this is max |ds/dt|; with ``clip_states`` a unit held at a bound
    by clipping counts as at rest."""
    return float(max(np.max(np.abs(after[k] - before[k])) for k in before)) / dt


def max_abs(states: States):
    """max |s| over every population, unit and sample (traceable: returns an array scalar)."""
    xp = xp_of(*states.values())
    return xp.max(xp.stack([xp.max(xp.abs(v)) for v in states.values()]))
