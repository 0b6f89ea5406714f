r"""The output cost :math:`C(s_o, d)`, defined once (docs/model.md, *Costs*).

One cost serves everything that speaks of "the loss": the nudge of the nudged phase is its
force, :math:`-\beta\,\partial C/\partial s_o`; the recorded train and test losses are its value
at the free fixed point; the exact-gradient references differentiate it; the forward-gradient
reward is :math:`R = -C`. With any other pairing an EP update would not estimate the gradient
that hebbsim reports.

- ``state_mse``: :math:`C = \tfrac12\lVert s_o - d\rVert^2`, nudge :math:`-\beta(s_o - d)`
  (seed 000 eq. 13; Scellier & Bengio 2017);
- ``rate_mse``: :math:`C = \tfrac12\lVert \rho(s_o) - d\rVert^2`, nudge
  :math:`-\beta\,\rho'(s_o)\odot(\rho(s_o) - d)`;
- ``softmax_cross_entropy``: :math:`C = -\sum_k d_k \log \mathrm{softmax}(s_o)_k` on the
  output *states* (the logits: a linear output layer), nudge
  :math:`-\beta\,(\mathrm{softmax}(s_o) - d)` for a target distribution (:math:`\sum_k d_k = 1`;
  in general :math:`\mathrm{softmax}(s_o)\sum_k d_k - d`). The seed-002 protocol's cost.
- ``sigmoid_cross_entropy``: one binary cross-entropy per output unit on :math:`\sigma(s_o)`
  (logistic sigmoid of the logits), :math:`C = -\sum_k [d_k\log\sigma(s_k) + (1-d_k)\log(1-\sigma(s_k))]`,
  nudge :math:`-\beta(\sigma(s_o) - d)`. The F³ protocol's cost (seed 001: sigmoid output, one-hot BCE).

The two squared errors coincide only for ``hard_sigmoid`` with :math:`s_o` inside :math:`[0, 1]`.
The class a network predicts is the argmax of what its cost compares with the target
(:func:`prediction`). The functions
use array methods only, so they run on numpy and on traced JAX arrays. Costs are per sample
(summed over the output units, not averaged over the batch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .nonlinearities import rho, rho_prime, xp_of

if TYPE_CHECKING:
    from .network import Network

# the costs whose nudge the numba kernels implement (their codes); the engines' other costs are
# computed by these array functions only (the numba engine runs them in phases with β = 0)
COST_CODES: dict[str, int] = {"state_mse": 0, "rate_mse": 1}
COSTS = tuple(COST_CODES) + ("softmax_cross_entropy", "sigmoid_cross_entropy")


def _check(kind: str) -> None:
    if kind not in COSTS:
        raise ValueError(f"cost = {kind!r} is not allowed; use one of {', '.join(COSTS)}")


def log_softmax(z):
    r""":math:`\log\mathrm{softmax}(z)` over the last axis, stable for any :math:`z`: the row's
    maximum is subtracted before the exponential (array API: numpy and traced JAX)."""
    xp = xp_of(z)
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def softplus(z):
    r""":math:`\log(1 + e^z)`, stable for any :math:`z`."""
    xp = xp_of(z)
    return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


def cost_terms(net: "Network", s_o, target):
    r"""The cost per sample *and output unit*, :math:`C = \sum_k` of these (``s_o`` of shape ``(..., n_o)``)."""
    _check(net.cost)
    if net.cost == "softmax_cross_entropy":
        return -target * log_softmax(s_o)
    if net.cost == "sigmoid_cross_entropy":  # -d log σ(s) - (1-d) log(1-σ(s)) = softplus(s) - d s
        return softplus(s_o) - target * s_o
    out = s_o if net.cost == "state_mse" else rho(s_o, net.rho)
    return 0.5 * (out - target) ** 2


def cost(net: "Network", s_o, target):
    """Per-sample :math:`C(s_o, d)` of ``net.cost`` (``s_o`` of shape ``(..., n_o)``)."""
    return cost_terms(net, s_o, target).sum(axis=-1)


def cost_gradient(net: "Network", s_o, target):
    r""":math:`\partial C/\partial s_o` of ``net.cost``, per sample and unit; the nudge is
    :math:`-\beta` times this."""
    _check(net.cost)
    if net.cost == "state_mse":
        return s_o - target
    if net.cost == "softmax_cross_entropy":
        xp = xp_of(s_o)
        return xp.exp(log_softmax(s_o)) * target.sum(axis=-1, keepdims=True) - target
    if net.cost == "sigmoid_cross_entropy":  # σ(s) = (1 + tanh(s/2))/2: no overflow for any s
        xp = xp_of(s_o)
        return 0.5 * (1.0 + xp.tanh(0.5 * s_o)) - target
    return rho_prime(s_o, net.rho) * (rho(s_o, net.rho) - target)


def prediction(net: "Network", s_o):
    """The predicted class of each sample: the argmax of the output the cost compares with the
    target (the rates :math:`\rho(s_o)` for the squared errors, the logits :math:`s_o` for the
    cross-entropies; for a monotonic :math:`\rho` the same class up to ties)."""
    out = s_o if net.cost.endswith("cross_entropy") else rho(s_o, net.rho)
    return out.argmax(axis=-1)


def one_hot(labels: np.ndarray, n_classes: int, dtype=np.float32, smoothing: float = 0.0) -> np.ndarray:
    r"""The targets :math:`d`: one row per label with a 1 at the label's class; with label
    ``smoothing`` :math:`\varepsilon`, :math:`d = (1 - \varepsilon)\,e_y + \varepsilon / n`
    (every row still sums to 1). With clipped rates and a squared-error cost a smoothed target
    lies inside (0, 1), so an output that has learned its sample does not come to rest at zero
    cost on the clip bounds (docs/guide.md, learning.label_smoothing)."""
    out = np.full((len(labels), n_classes), smoothing / n_classes, dtype=dtype)
    out[np.arange(len(labels)), labels] += 1 - smoothing
    return out
