r"""``dfa``: direct feedback alignment (Nøkland 2016; seed 002) in continuous time.

Every hidden layer receives the output error directly through a fixed random matrix
:math:`B_i` (the ``direct_feedback`` topology, :math:`o \to h_i`):
:math:`\delta_i = \rho'(a_i) \odot B_i e`. The phases and the update are those of :mod:`.feedback`.
"""

from __future__ import annotations

from . import register
from .feedback import FeedbackRule


@register
class DFA(FeedbackRule):
    name = "dfa"
    default_topology = "direct_feedback"
