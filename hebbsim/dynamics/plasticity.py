r"""Contrastive Hebbian learning rules of Equilibrium Propagation (SPEC §3).

Each rule maps the firing rates of the free phase (:math:`\beta = 0`) and of the nudged
phase(s) to a *gradient estimate* :math:`g` (a descent direction: the optimizer does
:math:`\theta \leftarrow \theta - \eta\, g`), averaged over the batch. Keys follow
:meth:`hebbsim.dynamics.params.Params.trainable`: ``W_<projection>``, ``b_<population>``.

``ep_chl`` (seed 000, eq. 14), with :math:`i` pre-synaptic and :math:`j` post-synaptic:

.. math::  \Delta W_{ji} = \frac{1}{\beta}\,\rho(s_i^0)\big(\rho(s_j^\beta) - \rho(s_j^0)\big),
           \qquad \Delta b_j = \frac1\beta\big(\rho(s_j^\beta) - \rho(s_j^0)\big)

``ep_chl_classic`` (Scellier & Bengio 2017):

.. math::  \Delta W_{ji} = \frac{1}{\beta}\big(\rho(s_i^\beta)\rho(s_j^\beta) - \rho(s_i^0)\rho(s_j^0)\big)

With symmetric nudging (Laborieux et al. 2021) the :math:`+\beta` and :math:`-\beta`
states replace the nudged and free ones in the contrast and :math:`\beta` becomes
:math:`2\beta`. :math:`\Delta = -g`. Tied projections share their partner's parameter and
receive no update of their own.
"""

from __future__ import annotations

import numpy as np

from .network import Network
from .rhs import States


def _contrast_pair(free: States, nudged: States, beta: float, minus: States | None):
    """(positive states, negative states, effective β) of the contrast."""
    if minus is None:
        return nudged, free, beta
    return nudged, minus, 2.0 * beta


def ep_chl(net: Network, free: States, nudged: States, beta: float, minus: States | None = None) -> dict[str, np.ndarray]:
    """Gradient estimate of ``ep_chl``: pre-synaptic free rate × change of the post-synaptic rate."""
    pos, neg, b = _contrast_pair(free, nudged, beta, minus)
    batch = next(iter(free.values())).shape[0]
    grads = {}
    for p in net.learned:
        delta_post = pos[p.dst] - neg[p.dst]
        grads[f"W_{p.name}"] = -(delta_post.T @ free[p.src]) / (b * batch)
    for pop in net.dynamic_populations:
        grads[f"b_{pop.name}"] = -np.mean(pos[pop.name] - neg[pop.name], axis=0) / b
    return grads


def ep_chl_classic(
    net: Network, free: States, nudged: States, beta: float, minus: States | None = None
) -> dict[str, np.ndarray]:
    """Gradient estimate of ``ep_chl_classic``: difference of the Hebbian products of two phases."""
    pos, neg, b = _contrast_pair(free, nudged, beta, minus)
    batch = next(iter(free.values())).shape[0]
    grads = {}
    for p in net.learned:
        grads[f"W_{p.name}"] = -(pos[p.dst].T @ pos[p.src] - neg[p.dst].T @ neg[p.src]) / (b * batch)
    for pop in net.dynamic_populations:
        grads[f"b_{pop.name}"] = -np.mean(pos[pop.name] - neg[pop.name], axis=0) / b
    return grads


EP_RULES = {"ep_chl": ep_chl, "ep_chl_classic": ep_chl_classic}
