r"""The right-hand side of the network dynamics (SPEC §2) — the numpy reference.

For every non-input population :math:`j`

.. math::

    \frac{ds_j}{dt} = g_j(s_j) \odot \Big(\sum_{p:\,\mathrm{dst}=j} W_p\,\rho(s_{\mathrm{src}(p)}) + b_j\Big)
                      - \frac{s_j}{r_j} - \beta\,[j = o]\,(s_o - d)

with :math:`g_j = \rho'(s_j)` for ``gated`` neurons (eq. 13 of seed 000, the continuous
Hopfield model) and :math:`g_j = 1` for ``additive`` neurons. The input is clamped,
:math:`\rho(x) = x`.

This module is the definition the compiled engines are tested against
(``tests/simulate/test_numba_engine.py``); it is written for clarity, not speed.
States are dicts ``{population: array (batch, n)}``.
"""

from __future__ import annotations

import numpy as np

from .network import INPUT, OUTPUT, Network
from .nonlinearities import rho, rho_prime
from .params import Params

States = dict[str, np.ndarray]


def rates(net: Network, states: States, x: np.ndarray) -> States:
    """Firing rates of every population, the clamped input included (:math:`\\rho(x) = x`)."""
    out = {INPUT: x}
    out.update({name: rho(s, net.rho) for name, s in states.items()})
    return out


def synaptic_currents(net: Network, params: Params, states: States, x: np.ndarray) -> States:
    r""":math:`\sum_{p:\,\mathrm{dst}=j} W_p \rho(s_\mathrm{src}) + b_j` for every dynamic population."""
    r = rates(net, states, x)
    out = {}
    for pop in net.dynamic_populations:
        i = np.broadcast_to(params.biases[pop.name], states[pop.name].shape).copy()
        for p in net.projections_into(pop.name):
            i += r[p.src] @ params.weight(p).T
        out[pop.name] = i
    return out


def drift(
    net: Network,
    params: Params,
    states: States,
    x: np.ndarray,
    beta: float = 0.0,
    target: np.ndarray | None = None,
) -> States:
    """ds/dt for every dynamic population (see the module docstring)."""
    cur = synaptic_currents(net, params, states, x)
    out = {}
    for pop in net.dynamic_populations:
        s = states[pop.name]
        gain = rho_prime(s, net.rho) if net.neuron == "gated" else 1.0
        ds = gain * cur[pop.name] - s / pop.leak
        if pop.name == OUTPUT and beta != 0.0:
            ds = ds - beta * (s - target)
        out[pop.name] = ds
    return out


def euler_step(net: Network, params: Params, states: States, x, dt, beta=0.0, target=None) -> States:
    """One explicit Euler step ``s ← s + dt·ds/dt`` (then clip to [0, 1] if ``clip_states``)."""
    ds = drift(net, params, states, x, beta, target)
    new = {k: states[k] + dt * ds[k] for k in states}
    if net.clip_states:
        new = {k: np.clip(v, 0.0, 1.0) for k, v in new.items()}
    return new


def zero_states(net: Network, batch: int, dtype=np.float32) -> States:
    return {pop.name: np.zeros((batch, pop.size), dtype=dtype) for pop in net.dynamic_populations}


def residual(before: States, after: States, dt: float) -> float:
    """Convergence residual of one Euler step: max |s_after − s_before| / dt over all units and
    samples. Without clipping this is max |ds/dt|; with ``clip_states`` a unit held at a bound
    by clipping counts as at rest."""
    return float(max(np.max(np.abs(after[k] - before[k])) for k in before)) / dt
