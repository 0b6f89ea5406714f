r"""``ep_chl_classic`` (Scellier & Bengio 2017): the difference of the Hebbian products of the two
phases,

.. math::  \Delta W_{ji} = \frac{\eta}{\beta}\big(\rho(s_i^\beta)\rho(s_j^\beta) - \rho(s_i^0)\rho(s_j^0)\big),

the exact gradient of the cost as :math:`\beta \to 0` on a symmetric network, and so its
default rule (docs/model.md, Learning rules).
"""

from __future__ import annotations

from ..dynamics.plasticity import ep_chl_classic
from . import register
from .contrastive import ContrastiveRule


@register
class EPCHLClassic(ContrastiveRule):
    name = "ep_chl_classic"
    estimator = staticmethod(ep_chl_classic)
