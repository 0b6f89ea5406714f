"""Independent random streams of one seed.

A run draws from several generators that must not disturb one another: the run's own
(``np.random.default_rng(seed)``: initial weights, batch order, β signs), the noise of the
dynamics, the translations of the training images. Each extra stream is a PCG64 generator of
``SeedSequence(seed, spawn_key=key)``: reproducible from the seed alone, and independent of the
run's generator and of every stream with another key, so switching one on changes nothing else.
"""

from __future__ import annotations

import numpy as np

__all__ = ["seed_stream"]


def seed_stream(seed: int, *key: int) -> np.random.Generator:
    """The generator of stream ``key`` (non-negative integers) of ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key))))
