r"""Optimizers applied to the gradient estimates of a learning rule (SPEC §3).

All act in place on a flat dict of named arrays (``Params.trainable``) with one learning
rate per name, as in the papers (per-projection rates).

- ``sgd``:  :math:`v \leftarrow \mu v + g + \lambda\theta`, :math:`\theta \leftarrow \theta - \eta v`
  (:math:`\mu = 0` is plain SGD; :math:`\lambda` is L2 weight decay)
- ``adam``: Adam (Kingma & Ba 2015) with bias correction and *decoupled* weight decay
  (AdamW): :math:`\theta \leftarrow \theta - \eta(\hat m/(\sqrt{\hat v}+\epsilon) + \lambda\theta)`.

Weight decay applies to weights (``W_*``) only, not to biases.
"""

from __future__ import annotations

import numpy as np


class Optimizer:
    def __init__(
        self,
        lrs: dict[str, float],
        kind: str = "sgd",
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        if kind not in ("sgd", "adam"):
            raise ValueError(f"optimizer = {kind!r} is not allowed; use 'sgd' or 'adam'")
        self.lrs = dict(lrs)
        self.kind = kind
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.betas = betas
        self.eps = eps
        self.t = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        for name, g in grads.items():
            theta = params[name]
            lr = self.lrs[name]
            decay = self.weight_decay if name.startswith("W_") else 0.0
            if self.kind == "sgd":
                if decay:
                    g = g + decay * theta
                if self.momentum:
                    m = self.m.setdefault(name, np.zeros_like(theta))
                    m *= self.momentum
                    m += g
                    g = m
                theta -= (lr * g).astype(theta.dtype, copy=False)
            else:
                b1, b2 = self.betas
                m = self.m.setdefault(name, np.zeros_like(theta))
                v = self.v.setdefault(name, np.zeros_like(theta))
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * g * g
                m_hat = m / (1 - b1**self.t)
                v_hat = v / (1 - b2**self.t)
                upd = m_hat / (np.sqrt(v_hat) + self.eps) + decay * theta
                theta -= (lr * upd).astype(theta.dtype, copy=False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that, with the hyper-parameters, restore this optimizer exactly."""
        out = {"t": np.array(self.t)}
        out.update({f"m/{k}": v for k, v in self.m.items()})
        out.update({f"v/{k}": v for k, v in self.v.items()})
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        self.m = {k[2:]: np.array(v) for k, v in state.items() if k.startswith("m/")}
        self.v = {k[2:]: np.array(v) for k, v in state.items() if k.startswith("v/")}
