"""The training loop of the contrastive (EP) rules: free phase, nudged phase(s), local update."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ..analysis.metrics import n_errors
from ..dynamics import rhs
from ..dynamics.loss import one_hot, squared_error
from ..dynamics.network import OUTPUT, Network
from ..dynamics.optimizers import Optimizer
from ..dynamics.params import Params
from ..dynamics.plasticity import EP_RULES
from ..data.params import RunParams
from .engines.base import Engine
from .phases import free_phase, nudged_phase


@dataclass
class EpochStats:
    """What one pass over the training set measured (from the free phases it ran)."""

    error: float
    loss: float
    residual: dict[str, float] = field(default_factory=dict)  # mean final max|ds/dt| per phase


class EPTrainer:
    """Trains a network with an EP rule. Holds everything a checkpoint must restore:
    parameters, optimizer state, the RNG and the persistent free states."""

    def __init__(self, cfg: RunParams, net: Network, engine: Engine, params: Params, n_train: int,
                 rng: np.random.Generator):
        self.cfg, self.net, self.engine, self.params = cfg, net, engine, params
        self.rng = rng
        self.rule = EP_RULES[cfg.learning.rule]
        self.optimizer = Optimizer(
            cfg.learning_rates(net), cfg.learning.optimizer, momentum=cfg.learning.momentum,
            weight_decay=cfg.learning.weight_decay,
        )
        self.persistent = (rhs.zero_states(net, n_train, engine.dtype) if cfg.dynamics.persistent_states else None)

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything that makes the next epoch bit-identical to an uninterrupted run:
        ``(arrays, meta)`` with arrays named ``weight/<proj>``, ``bias/<pop>``,
        ``optimizer/<key>``, ``persistent/<pop>`` and ``meta = {"rng": <bit generator state>}``
        (JSON-serialisable)."""
        arrays = {f"weight/{k}": np.asarray(v) for k, v in self.params.weights.items()}
        arrays.update({f"bias/{k}": np.asarray(v) for k, v in self.params.biases.items()})
        arrays.update({f"optimizer/{k}": np.asarray(v) for k, v in self.optimizer.state_dict().items()})
        if self.persistent is not None:
            arrays.update({f"persistent/{k}": np.asarray(v) for k, v in self.persistent.items()})
        return arrays, {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Restore what :meth:`state_dict` returned (in place: the same ``Params`` object)."""
        def group(prefix):
            return {k[len(prefix):]: np.array(v) for k, v in arrays.items() if k.startswith(prefix)}

        for k, v in group("weight/").items():
            self.params.weights[k][...] = v
        for k, v in group("bias/").items():
            self.params.biases[k][...] = v
        self.optimizer.load_state_dict(group("optimizer/"))
        if self.persistent is not None:
            for k, v in group("persistent/").items():
                self.persistent[k][...] = v
        self.rng.bit_generator.state = meta["rng"]

    # ------------------------------------------------------------------------------------------
    def train_step(self, x: np.ndarray, labels: np.ndarray, index: np.ndarray) -> dict:
        """One mini-batch: free phase, nudged phase(s), contrastive update. Returns the free
        phase's per-sample loss and predictions and each phase's final residual."""
        dyn = self.cfg.dynamics
        d = one_hot(labels, self.net.sizes[OUTPUT], self.engine.dtype)
        system = self.engine.clamp(self.params, x)
        init = ({k: v[index] for k, v in self.persistent.items()} if self.persistent is not None
                else rhs.zero_states(self.net, len(x), self.engine.dtype))
        free = free_phase(system, init, dyn.free_steps, dyn.tol)
        if self.persistent is not None:
            for k, v in free.states.items():
                self.persistent[k][index] = v
        beta = dyn.beta * (self.rng.choice((-1.0, 1.0)) if dyn.random_sign_beta else 1.0)
        nudged = nudged_phase(system, free.states, d, beta, dyn.nudge_steps)
        minus = (nudged_phase(system, free.states, d, -beta, dyn.nudge_steps, "nudged_minus")
                 if dyn.symmetric_nudging else None)
        rate = lambda r: rhs.rates(self.net, r.states, system.x)  # noqa: E731
        free_rates = rate(free)
        grads = self.rule(self.net, free_rates, rate(nudged), beta, rate(minus) if minus else None)
        self.optimizer.step(self.params.trainable(self.net), grads)
        out_rate = free_rates[OUTPUT]
        residual = {"free": free.residual, "nudged": nudged.residual}
        if minus:
            residual["nudged_minus"] = minus.residual
        return {"loss": squared_error(out_rate, d), "n_errors": n_errors(out_rate, labels), "residual": residual}

    def train_epoch(self, x: np.ndarray, y: np.ndarray, progress: bool = True, desc: str = "") -> EpochStats:
        bs = self.cfg.learning.batch_size
        order = self.rng.permutation(len(x))
        n_wrong, loss_sum, res_sum, n_batches = 0, 0.0, {}, 0
        bar = tqdm(range(0, len(x), bs), desc=desc, disable=not progress, leave=False, unit="batch")
        for start in bar:
            idx = order[start:start + bs]
            out = self.train_step(x[idx], y[idx], idx)
            n_wrong += out["n_errors"]
            loss_sum += float(np.sum(out["loss"]))
            for k, v in out["residual"].items():
                res_sum[k] = res_sum.get(k, 0.0) + v
            n_batches += 1
            if n_batches % 50 == 0:
                bar.set_postfix(train_error=f"{n_wrong / min(start + bs, len(x)):.3f}")
        return EpochStats(n_wrong / len(x), loss_sum / len(x), {k: v / n_batches for k, v in res_sum.items()})

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(error, mean loss) at the free fixed point, started from zero states."""
        dyn = self.cfg.dynamics
        steps = dyn.eval_steps or dyn.free_steps
        bs = self.cfg.learning.eval_batch_size
        n_wrong, loss = 0, 0.0
        for start in range(0, len(x), bs):
            xb, yb = x[start:start + bs], y[start:start + bs]
            system = self.engine.clamp(self.params, xb)
            free = free_phase(system, rhs.zero_states(self.net, len(xb), self.engine.dtype), steps, dyn.tol)
            out_rate = rhs.rates(self.net, free.states, system.x)[OUTPUT]
            n_wrong += n_errors(out_rate, yb)
            loss += float(np.sum(squared_error(out_rate, one_hot(yb, self.net.sizes[OUTPUT]))))
        return n_wrong / len(x), loss / len(x)
