r"""``ep_chl`` (seed 000, eq. 14): pre-synaptic free rate × change of the post-synaptic rate,

.. math::  \Delta W_{ji} = \frac{\eta}{\beta}\,\rho(s_i^0)\big(\rho(s_j^\beta) - \rho(s_j^0)\big).

The default rule of every topology but ``symmetric`` (docs/model.md, Learning rules).
"""

from __future__ import annotations

from ..dynamics.plasticity import ep_chl
from . import register
from .contrastive import ContrastiveRule


@register
class EPCHL(ContrastiveRule):
    name = "ep_chl"
    estimator = staticmethod(ep_chl)
