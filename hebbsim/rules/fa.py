r"""``fa``: feedback alignment (Lillicrap et al. 2016; seed 002) in continuous time.

Each hidden layer receives, through a fixed random matrix :math:`B_i` (the ``random_feedback``
topology: :math:`h_{i+1} \to h_i`, and :math:`o \to h_L` for the top one), the error of the layer
above: :math:`\delta_i = \rho'(a_i) \odot B_i \delta_{i+1}`, :math:`\delta_o = e`. The phases
and the update are those of :mod:`.feedback`.
"""

from __future__ import annotations

from . import register
from .feedback import FeedbackRule


@register
class FA(FeedbackRule):
    name = "fa"
    default_topology = "random_feedback"
