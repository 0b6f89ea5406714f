r"""``drtp``: direct random target projection (Frenkel et al. 2021; seed 001's comparison) in
continuous time.

Like :mod:`.dfa`, but the routes from the output carry the one-hot target :math:`d` instead of
the error: :math:`\delta_i = \rho'(a_i) \odot B_i d` — the hidden layers need no error, only
the label, so they can learn before (or without) the output. The output layer learns from its
own error :math:`e`. The phases and the update are those of :mod:`.feedback`.
"""

from __future__ import annotations

from . import register
from .feedback import FeedbackRule


@register
class DRTP(FeedbackRule):
    name = "drtp"
    default_topology = "direct_feedback"
    output_signal = "target"
