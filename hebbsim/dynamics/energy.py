r"""Hopfield energy of a symmetric network (docs/model.md; Scellier & Bengio 2017).

.. math::

    E(s) = \sum_j \frac{\lVert s_j \rVert^2}{2 r_j}
           - \sum_{p\ \text{not tied}} \rho(s_{\mathrm{dst}})^\top W_p\, \rho(s_{\mathrm{src}})
           - \sum_j b_j^\top \rho(s_j),
    \qquad F = E + \beta\, C(s_o, d)

with :math:`C` the network's output cost (:mod:`hebbsim.dynamics.loss`).

For ``gated`` neurons and tied feedback, :math:`ds/dt = -\partial F/\partial s` wherever
:math:`\rho` is differentiable, so :math:`E` never increases along the free phase.
Returned per sample.
"""

from __future__ import annotations

import numpy as np

from .loss import cost
from .network import OUTPUT, Network
from .params import Params
from .rhs import States, rates


def energy(net: Network, params: Params, states: States, x: np.ndarray, beta: float = 0.0, target=None) -> np.ndarray:
    if not net.is_symmetric or net.neuron != "gated":
        raise ValueError("the Hopfield energy is defined for gated neurons with symmetric (tied) feedback only")
    r = rates(net, states, x)
    e = 0.0
    for pop in net.dynamic_populations:
        s = states[pop.name]
        e = e + 0.5 * np.sum(s * s, axis=1) / pop.leak - np.sum(r[pop.name] * params.biases[pop.name], axis=1)
    for p in net.projections:
        if p.kind != "tied":
            e = e - np.einsum("bi,ij,bj->b", r[p.dst], params.weight(p), r[p.src])
    if beta:
        e = e + beta * cost(net, states[OUTPUT], target)
    return e
