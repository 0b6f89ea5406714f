"""Classification metrics at the free fixed point (docs/model.md, Costs)."""

from __future__ import annotations

import numpy as np


def predictions(rate_o: np.ndarray) -> np.ndarray:
    """The predicted class: argmax of the output rates ρ(s_o)."""
    return rate_o.argmax(axis=-1)


def n_errors(rate_o: np.ndarray, labels: np.ndarray) -> int:
    """How many samples the output rates misclassify."""
    return int(np.sum(predictions(rate_o) != labels))
