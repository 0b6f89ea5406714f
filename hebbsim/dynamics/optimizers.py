r"""Optimizers applied to the gradient estimates of a learning rule (docs/model.md, Optimizers and learning rates).

All act in place on a flat dict of named arrays (``Params.trainable``) with one learning
rate per name, as in the papers (per-projection rates).

- ``sgd``:  :math:`v \leftarrow \mu v + g + \lambda\theta`, :math:`\theta \leftarrow \theta - \eta v`
  (:math:`\mu = 0` is plain SGD; :math:`\lambda` is L2 weight decay)
- ``adam``: Adam (Kingma & Ba 2015) with bias correction and *decoupled* weight decay
  (AdamW): :math:`\theta \leftarrow \theta - \eta(\hat m/(\sqrt{\hat v}+\epsilon) + \lambda\theta)`.

Weight decay applies to weights (``W_*``) only, not to biases.

A learning-rate schedule multiplies every rate by :func:`lr_scale` of the epoch; the factor
lives in the optimizer state (``state["lr_scale"]``) so that a compiled update reads it as data
and does not recompile when it changes.

:meth:`Optimizer.update` is the one definition of the arithmetic: a pure function of
``(params, state, grads)`` that traces under ``jax.jit`` (the jax engine) and, on numpy
arrays, updates the arrays in place (no copies of large weight matrices per batch).
:meth:`Optimizer.step` is its stateful numpy convenience.
"""

from __future__ import annotations

import numpy as np

from .nonlinearities import xp_of


def _assign(old, new):
    """``new`` in ``old``'s place: in place for numpy, a new value for immutable JAX arrays."""
    if isinstance(old, np.ndarray):
        old[...] = new
        return old
    return new.astype(old.dtype)


def _descend(theta, step):
    """``theta - step``, in place for numpy (one pass, no temporary the size of ``theta``)."""
    if isinstance(theta, np.ndarray):
        theta -= step
        return theta
    return (theta - step).astype(theta.dtype)


SCHEDULES = ("constant", "cosine", "exponential")
OPTIMIZERS = ("sgd", "adam")


def lr_scale(schedule: str, epoch: int, epochs: int, final_fraction: float = 0.0, decay: float = 1.0) -> float:
    r"""The factor on every learning rate during ``epoch`` (1-based) of ``epochs``.

    - ``constant``: 1
    - ``cosine``: :math:`f + (1-f)\,\tfrac12\bigl(1+\cos(\pi\,(e-1)/E)\bigr)`, from 1 in the first
      epoch down towards ``final_fraction`` :math:`f` (reached just after the last)
    - ``exponential``: :math:`\gamma^{e-1}` with :math:`\gamma` = ``decay``

    Stochastic rules (random-sign β, forward-gradient perturbations) leave a noise floor
    proportional to the rate; annealing the rate lowers it late in training.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + np.cos(np.pi * (epoch - 1) / epochs))
    if schedule == "exponential":
        return float(decay ** (epoch - 1))
    raise ValueError(f"lr_schedule = {schedule!r} is not allowed; use one of {SCHEDULES}")


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
        if kind not in OPTIMIZERS:
            raise ValueError(f"optimizer = {kind!r} is not allowed; use 'sgd' or 'adam'")
        self.lrs = dict(lrs)
        self.kind = kind
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.betas = betas
        self.eps = eps
        self.state: dict | None = None

    # -- the functional core ----------------------------------------------------------------
    def init(self, params: dict) -> dict:
        """Optimizer state for ``params``: step count ``t``, first moments ``m`` (momentum or
        Adam) and second moments ``v`` (Adam), zeros like the parameters."""
        xp = xp_of(*params.values())
        zeros = lambda: {k: xp.zeros_like(v) for k, v in params.items()}  # noqa: E731
        first = next(iter(params.values()))
        state = {"t": 0, "m": {}, "v": {}, "lr_scale": xp.asarray(1.0, dtype=first.dtype)}
        if self.kind == "adam" or self.momentum:
            state["m"] = zeros()
        if self.kind == "adam":
            state["v"] = zeros()
        return state

    def update(self, params: dict, state: dict, grads: dict) -> tuple[dict, dict]:
        """One step; returns ``(params, state)``."""
        t = state["t"] + 1
        m, v = dict(state["m"]), dict(state["v"])
        scale = state.get("lr_scale", 1.0)
        out = dict(params)
        for name, g in grads.items():
            theta = params[name]
            lr = self.lrs[name] * scale
            decay = self.weight_decay if name.startswith("W_") else 0.0
            if self.kind == "sgd":
                if decay:
                    g = g + decay * theta
                if self.momentum:
                    m[name] = _assign(m[name], self.momentum * m[name] + g)
                    g = m[name]
                out[name] = _descend(theta, lr * g)
            else:
                b1, b2 = self.betas
                m[name] = _assign(m[name], b1 * m[name] + (1 - b1) * g)
                v[name] = _assign(v[name], b2 * v[name] + (1 - b2) * g * g)
                m_hat = m[name] / (1 - b1**t)
                v_hat = v[name] / (1 - b2**t)
                upd = m_hat / (xp_of(v_hat).sqrt(v_hat) + self.eps) + decay * theta
                out[name] = _descend(theta, lr * upd)
        new = {"t": t, "m": m, "v": v}
        if "lr_scale" in state:
            new["lr_scale"] = state["lr_scale"]
        return out, new

    # -- stateful numpy convenience -----------------------------------------------------------
    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Update numpy ``params`` in place."""
        if self.state is None:
            self.state = self.init(params)
        _, self.state = self.update(params, self.state, grads)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that, with the hyper-parameters, restore this optimizer exactly."""
        state = self.state or {"t": 0, "m": {}, "v": {}}
        out = {"t": np.array(int(state["t"]))}
        if "lr_scale" in state:
            out["lr_scale"] = np.asarray(state["lr_scale"])
        out.update({f"m/{k}": np.asarray(v) for k, v in state["m"].items()})
        out.update({f"v/{k}": np.asarray(v) for k, v in state["v"].items()})
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if int(state["t"]) == 0:  # saved before the first step: buffers are created on it
            self.state = None
            return
        self.state = {
            "t": int(state["t"]),
            "m": {k[2:]: np.array(v) for k, v in state.items() if k.startswith("m/")},
            "v": {k[2:]: np.array(v) for k, v in state.items() if k.startswith("v/")},
        }
        if "lr_scale" in state:
            self.state["lr_scale"] = np.array(state["lr_scale"])
