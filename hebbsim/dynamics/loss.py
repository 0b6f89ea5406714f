r"""The task loss :math:`L = \tfrac12 \lVert \rho(s_o) - d \rVert^2` (SPEC §3), per sample."""

from __future__ import annotations

import numpy as np


def squared_error(rate_o, target):
    """Per-sample loss (numpy or JAX arrays)."""
    return 0.5 * ((rate_o - target) ** 2).sum(axis=-1)


def one_hot(labels: np.ndarray, n_classes: int, dtype=np.float32) -> np.ndarray:
    out = np.zeros((len(labels), n_classes), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out
