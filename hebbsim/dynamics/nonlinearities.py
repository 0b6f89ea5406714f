r"""Firing-rate nonlinearities :math:`\rho` and their derivatives.

Each nonlinearity has a name (used in parameter files), an integer code (used by
the compiled engines, which cannot dispatch on strings) and numpy reference
implementations of :math:`\rho(s)` and :math:`\rho'(s)`.

- ``hard_sigmoid``: :math:`\rho(s) = \mathrm{clip}(s, 0, 1)`, :math:`\rho'(s) = 1` on the
  *closed* interval :math:`[0, 1]`, 0 outside. The closed interval matters: a network
  started at :math:`s = 0` must be able to move (Scellier & Bengio 2017).
- ``sigmoid``: :math:`\sigma(s)`.
- ``sigmoid4``: :math:`\sigma(4(s - 1/2))` (Ernoult et al. 2019).
- ``tanh``: :math:`\tanh(s)`.

The functions are written against the array API (``s.__array_namespace__()``), so the same
definition serves numpy arrays (reference, numba engine set-up) and JAX arrays (the jax
engine, traced under ``jit``/``vmap``).
"""

from __future__ import annotations

import numpy as np

RHO_CODES: dict[str, int] = {"hard_sigmoid": 0, "sigmoid": 1, "sigmoid4": 2, "tanh": 3}
RHO_NAMES = tuple(RHO_CODES)


def xp_of(*arrays):
    """The array namespace (``numpy`` or ``jax.numpy``) of the first array argument."""
    for a in arrays:
        if hasattr(a, "__array_namespace__"):
            return a.__array_namespace__()
    return np


def _sigmoid(z):
    return 0.5 * (1.0 + xp_of(z).tanh(0.5 * z))


def rho(s, kind: str):
    """Firing rate :math:`\\rho(s)`."""
    xp = xp_of(s)
    if kind == "hard_sigmoid":
        return xp.clip(s, 0.0, 1.0)
    if kind == "sigmoid":
        return _sigmoid(s)
    if kind == "sigmoid4":
        return _sigmoid(4.0 * (s - 0.5))
    if kind == "tanh":
        return xp.tanh(s)
    raise ValueError(f"unknown rho {kind!r}; allowed: {', '.join(RHO_NAMES)}")


def rho_prime(s, kind: str):
    """Derivative :math:`\\rho'(s)` (for ``hard_sigmoid``: 1 on the closed interval [0, 1])."""
    if kind == "hard_sigmoid":
        return ((s >= 0.0) & (s <= 1.0)).astype(s.dtype)
    if kind == "sigmoid":
        r = _sigmoid(s)
        return r * (1.0 - r)
    if kind == "sigmoid4":
        r = _sigmoid(4.0 * (s - 0.5))
        return 4.0 * r * (1.0 - r)
    if kind == "tanh":
        return 1.0 - xp_of(s).tanh(s) ** 2
    raise ValueError(f"unknown rho {kind!r}; allowed: {', '.join(RHO_NAMES)}")
