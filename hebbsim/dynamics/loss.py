r"""The output cost :math:`C(s_o, d)`, defined once (docs/model.md, *Costs*).

One cost serves everything that speaks of "the loss": the nudge of the nudged phase is its
force, :math:`-\beta\,\partial C/\partial s_o`; the recorded train and test losses are its value
at the free fixed point; the exact-gradient references differentiate it; the forward-gradient
reward is :math:`R = -C`. With any other pairing an EP update would not estimate the gradient
that hebbsim reports.

- ``state_mse``: :math:`C = \tfrac12\lVert s_o - d\rVert^2`, nudge :math:`-\beta(s_o - d)`
  (seed 000 eq. 13; Scellier & Bengio 2017);
- ``rate_mse``: :math:`C = \tfrac12\lVert \rho(s_o) - d\rVert^2`, nudge
  :math:`-\beta\,\rho'(s_o)\odot(\rho(s_o) - d)`.

They coincide only for ``hard_sigmoid`` with :math:`s_o` inside :math:`[0, 1]`. The functions
use array methods only, so they run on numpy and on traced JAX arrays. Costs are per sample
(summed over the output units, not averaged over the batch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .nonlinearities import rho, rho_prime

if TYPE_CHECKING:
    from .network import Network

COST_CODES: dict[str, int] = {"state_mse": 0, "rate_mse": 1}
COSTS = tuple(COST_CODES)


def _check(kind: str) -> None:
    if kind not in COST_CODES:
        raise ValueError(f"cost = {kind!r} is not allowed; use one of {', '.join(COSTS)}")


def cost(net: "Network", s_o, target):
    """Per-sample :math:`C(s_o, d)` of ``net.cost`` (``s_o`` of shape ``(..., n_o)``)."""
    _check(net.cost)
    out = s_o if net.cost == "state_mse" else rho(s_o, net.rho)
    return 0.5 * ((out - target) ** 2).sum(axis=-1)


def cost_gradient(net: "Network", s_o, target):
    r""":math:`\partial C/\partial s_o` of ``net.cost``, per sample and unit; the nudge is
    :math:`-\beta` times this."""
    _check(net.cost)
    if net.cost == "state_mse":
        return s_o - target
    return rho_prime(s_o, net.rho) * (rho(s_o, net.rho) - target)


def one_hot(labels: np.ndarray, n_classes: int, dtype=np.float32) -> np.ndarray:
    """The targets :math:`d`: one row per label with a 1 at the label's class."""
    out = np.zeros((len(labels), n_classes), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out
