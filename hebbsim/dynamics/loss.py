r"""The task loss :math:`L = \tfrac12 \lVert \rho(s_o) - d \rVert^2` (SPEC §3), per sample."""

from __future__ import annotations

import numpy as np


def squared_error(rate_o: np.ndarray, target: np.ndarray) -> np.ndarray:
    return 0.5 * np.sum((rate_o - target) ** 2, axis=-1)


def one_hot(labels: np.ndarray, n_classes: int, dtype=np.float32) -> np.ndarray:
    out = np.zeros((len(labels), n_classes), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out
