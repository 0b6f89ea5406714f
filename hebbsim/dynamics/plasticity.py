r"""Contrastive Hebbian learning rules of Equilibrium Propagation (docs/model.md, Learning rules).

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

``mask`` (optional, shape ``(batch,)``, 1 for a real sample and 0 for padding) lets an engine
with fixed array shapes pad a short last batch: padded samples contribute nothing and the
mean runs over the real ones. The rules use only array methods and operators, so they run on
numpy and, traced, on JAX arrays.
"""

from __future__ import annotations

from .network import Network
from .rhs import States


def _contrast(free: States, nudged: States, beta, minus: States | None, mask):
    """(free, positive, negative, effective β, number of samples) of the contrast, with padded
    samples zeroed."""
    pos, neg, b = (nudged, free, beta) if minus is None else (nudged, minus, 2.0 * beta)
    if mask is None:
        return free, pos, neg, b, next(iter(free.values())).shape[0]
    m = mask[:, None]
    zero = lambda states: {k: v * m for k, v in states.items()}  # noqa: E731
    return zero(free), zero(pos), zero(neg), b, mask.sum()


def _bias_grads(net: Network, pos: States, neg: States, b, n) -> dict:
    return {f"b_{pop.name}": -(pos[pop.name] - neg[pop.name]).sum(axis=0) / (b * n) for pop in net.dynamic_populations}


def delta_rule(net: Network, pre: States, deltas: States, mask=None) -> dict:
    r"""The descent direction of a post-synaptic error :math:`\delta` (one per population) times the
    pre-synaptic rate, batch mean: :math:`g_{W_p} = \langle \delta_\mathrm{dst}\, \mathrm{pre}_\mathrm{src}^\top\rangle`,
    :math:`g_{b_j} = \langle\delta_j\rangle`."""
    if mask is None:
        n = next(iter(deltas.values())).shape[0]
    else:
        deltas, n = {k: v * mask[:, None] for k, v in deltas.items()}, mask.sum()
    grads = {f"W_{p.name}": (deltas[p.dst] / n).T @ pre[p.src] for p in net.learned}  # scale the small factor
    grads.update({f"b_{pop.name}": deltas[pop.name].sum(axis=0) / n for pop in net.dynamic_populations})
    return grads


def ep_chl(net: Network, free: States, nudged: States, beta, minus: States | None = None, mask=None) -> dict:
    r"""Gradient estimate of ``ep_chl``: pre-synaptic free rate × change of the post-synaptic rate,
    i.e. :func:`delta_rule` with :math:`\delta = -(\rho(s^\beta) - \rho(s^0))/\beta`."""
    free, pos, neg, b, _ = _contrast(free, nudged, beta, minus, None)
    deltas = {k: (pos[k] - neg[k]) * (-1.0 / b) for k in pos if k in neg and pos[k] is not neg[k]}
    return delta_rule(net, free, deltas, mask)


def ep_chl_classic(net: Network, free: States, nudged: States, beta, minus: States | None = None,
                   mask=None) -> dict:
    """Gradient estimate of ``ep_chl_classic``: difference of the Hebbian products of two phases."""
    free, pos, neg, b, n = _contrast(free, nudged, beta, minus, mask)
    scale = -1.0 / (b * n)  # applied to the small (batch, n_post) factors, not the products
    grads = {}
    for p in net.learned:
        if pos[p.src] is neg[p.src]:  # the clamped input: one product instead of two
            grads[f"W_{p.name}"] = ((pos[p.dst] - neg[p.dst]) * scale).T @ pos[p.src]
        else:
            g = (pos[p.dst] * scale).T @ pos[p.src]
            g -= (neg[p.dst] * scale).T @ neg[p.src]
            grads[f"W_{p.name}"] = g
    grads.update(_bias_grads(net, pos, neg, b, n))
    return grads

