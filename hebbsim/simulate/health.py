"""Warnings for runs that go wrong without a non-finite state: weights that explode while staying
finite, and epochs that change no weight at all. Each warning is logged and kept in the run
file's ``warnings`` attribute, so that a number that is nonsense says so where it is read."""

from __future__ import annotations

import numpy as np

from ..dynamics.network import Network
from ..dynamics.params import Params

EXPLOSION = 1e3
"""A weight this many times larger than the largest initial weight (and larger than 1) is a
blow-up: normal training changes the weights' scale by a few times, not by orders of magnitude."""


class TrainingHealth:
    """Compares a run's trainable parameters at the end of each epoch with their initial scale
    and with the previous epoch; each kind of warning is given once per run."""

    def __init__(self, net: Network, params: Params):
        self.net = net
        self.initial = max(float(np.max(np.abs(w))) for w in params.trainable(net).values() if w.size) or 1.0
        self._previous = {k: np.array(v) for k, v in params.trainable(net).items()}
        self.warnings: list[str] = []
        self._given: set[str] = set()

    def check(self, epoch: int, params: Params, lrs: dict[str, float]) -> list[str]:
        """New warnings after ``epoch`` (also appended to :attr:`warnings`)."""
        new = []
        now = params.trainable(self.net)
        key, largest = max(((k, float(np.max(np.abs(v)))) for k, v in now.items() if v.size), key=lambda kv: kv[1])
        if "explosion" not in self._given and largest > max(EXPLOSION * self.initial, 1.0):
            new.append(f"epoch {epoch}: the weights exploded without becoming NaN: |{key}| reaches {largest:.3g}, "
                       f"{largest / self.initial:.3g} times the largest initial weight; its learning rate is "
                       f"{lrs.get(key, float('nan')):g}: lower learning.lr")
            self._given.add("explosion")
        if "frozen" not in self._given and all(np.array_equal(v, self._previous[k]) for k, v in now.items()):
            new.append(f"epoch {epoch}: no weight or bias changed during the epoch: nothing was learned (states that "
                       "never move, e.g. a dynamics.dt the Euler steps overshoot, or rates or β of zero effect)")
            self._given.add("frozen")
        self._previous = {k: np.array(v) for k, v in now.items()}
        self.warnings += new
        return new
