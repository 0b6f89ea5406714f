"""The training loop of the contrastive (EP) rules: free phase, nudged phase(s), local update.

:func:`ep_batch_update` is one mini-batch as a pure function of arrays. The numba engine runs
it eagerly (its phases are compiled kernels; the update updates numpy arrays in place); the
jax engine compiles the whole of it, phases, rule and optimizer, into one XLA program with
``jax.jit`` — traced once per run: a short last batch is padded to the batch size and masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ..dynamics import rhs
from ..dynamics.loss import cost, one_hot
from ..dynamics.network import OUTPUT, Network
from ..dynamics.optimizers import Optimizer, lr_scale
from ..dynamics.params import Params
from ..dynamics.nonlinearities import rho, xp_of
from ..dynamics.plasticity import EP_RULES
from ..data.params import RunParams
from .engines.base import Engine, States, divergence_advice
from .phases import free_phase, nudged_phase
from ..errors import DivergenceError


@dataclass
class EpochStats:
    """What one pass over the training set measured (from the free phases it ran)."""

    error: float
    loss: float
    residual: dict[str, float] = field(default_factory=dict)  # mean final max|ds/dt| per phase
    batch_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))  # mean loss of each batch, in order


def ep_batch_update(cfg: RunParams, net: Network, engine: Engine, rule, optimizer: Optimizer, params: Params,
                    opt_state: dict, x, d, labels, init: States | None, beta, mask=None):
    """One mini-batch of an EP rule: free phase from ``init`` (zeros when ``None``), nudged
    phase(s) with ``beta`` (and ``-beta``), the rule's gradient estimate, one optimizer step.

    Returns ``(params, opt_state, free_states, stats)`` with ``stats`` holding the summed free
    phase loss, the number of misclassified samples, each phase's residual and (when traced)
    each phase's finiteness flags. ``mask`` marks real samples in a padded batch.
    """
    dyn = cfg.dynamics
    system = engine.clamp(params, x)
    xp = xp_of(system.x)
    if init is None:
        init = {p.name: xp.zeros((x.shape[0], p.size), dtype=system.x.dtype) for p in net.dynamic_populations}
    phases = {"free": free_phase(system, init, dyn.free_steps, dyn.tol)}
    phases["nudged"] = nudged_phase(system, phases["free"].states, d, beta, dyn.nudge_steps)
    if dyn.symmetric_nudging:
        phases["nudged_minus"] = nudged_phase(system, phases["free"].states, d, -beta, dyn.nudge_steps,
                                              "nudged_minus")
    rates = {k: rhs.rates(net, r.states, system.x) for k, r in phases.items()}
    grads = rule(net, rates["free"], rates["nudged"], beta, rates.get("nudged_minus"), mask=mask)
    flat, opt_state = optimizer.update(params.trainable(net), opt_state, grads)
    out_rate = rates["free"][OUTPUT]
    weight = 1.0 if mask is None else mask
    stats = {
        "loss": (cost(net, phases["free"].states[OUTPUT], d) * weight).sum(),
        "n_errors": ((out_rate.argmax(axis=-1) != labels) * weight).sum(),
        "residual": {k: r.residual for k, r in phases.items()},
        "finite": {k: r.finite for k, r in phases.items() if r.finite is not None},
    }
    return params.with_trainable(net, flat), opt_state, phases["free"].states, stats


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    """Fill a short batch up to ``size`` rows with copies of its first sample (copies of a real
    sample leave the batch's max residual unchanged; a mask removes them from the update)."""
    n = len(a)
    return a if n >= size else np.concatenate([a, np.repeat(a[:1], size - n, axis=0)])


class EPTrainer:
    """Trains a network with an EP rule. Holds everything a checkpoint must restore:
    parameters, optimizer state, the RNG and the persistent free states.

    ``self.params`` (numpy) is up to date at epoch boundaries; during an epoch an engine that
    keeps its arrays on a device works on its own copy.
    """

    def __init__(self, cfg: RunParams, net: Network, engine: Engine, params: Params, n_train: int,
                 rng: np.random.Generator):
        self.cfg, self.net, self.engine, self.params = cfg, net, engine, params
        self.rng = rng
        self.rule = EP_RULES[cfg.learning.rule]
        self.optimizer = Optimizer(
            cfg.learning_rates(net), cfg.learning.optimizer, momentum=cfg.learning.momentum,
            weight_decay=cfg.learning.weight_decay,
        )
        self.optimizer.state = self.optimizer.init(params.trainable(net))
        self.persistent = (rhs.zero_states(net, n_train, engine.dtype) if cfg.dynamics.persistent_states else None)
        self.compiled = engine.name == "jax"
        self.n_traces = 0  # how often the jax step was traced (compiled): once per run
        self._live: Params | None = None  # the engine's copy of the parameters during an epoch
        if self.compiled:
            import jax

            self._step = jax.jit(self._traced_update)

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything that makes the next epoch bit-identical to an uninterrupted run:
        ``(arrays, meta)`` with arrays named ``weight/<proj>``, ``bias/<pop>``,
        ``optimizer/<key>``, ``persistent/<pop>`` and ``meta = {"rng": <bit generator state>}``
        (JSON-serialisable)."""
        self._sync()
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

        self._live = None
        for k, v in group("weight/").items():
            self.params.weights[k][...] = v
        for k, v in group("bias/").items():
            self.params.biases[k][...] = v
        self.optimizer.load_state_dict(group("optimizer/"))
        if self.optimizer.state is None:
            self.optimizer.state = self.optimizer.init(self.params.trainable(self.net))
        if self.persistent is not None:
            for k, v in group("persistent/").items():
                self.persistent[k][...] = v
        self.rng.bit_generator.state = meta["rng"]

    # -- engine-side copies --------------------------------------------------------------------
    def _live_params(self) -> Params:
        if self._live is None:
            if self.compiled:
                self._live = self.engine.to_device(self.params)
                self.optimizer.state = self.engine.to_device(self.optimizer.state)
            else:
                self._live = self.params
        return self._live

    def _sync(self) -> None:
        """Copy the engine's parameters back into ``self.params`` (numpy)."""
        if self.compiled and self._live is not None:
            for k, v in self._live.weights.items():
                self.params.weights[k][...] = np.asarray(v)
            for k, v in self._live.biases.items():
                self.params.biases[k][...] = np.asarray(v)

    def _traced_update(self, params, opt_state, x, d, labels, init, beta, mask):
        self.n_traces += 1
        return ep_batch_update(self.cfg, self.net, self.engine, self.rule, self.optimizer, params, opt_state,
                               x, d, labels, init, beta, mask)

    # ------------------------------------------------------------------------------------------
    def train_step(self, x: np.ndarray, labels: np.ndarray, index: np.ndarray) -> dict:
        """One mini-batch: free phase, nudged phase(s), contrastive update. Returns the free
        phase's summed loss, its number of errors and each phase's final residual (array
        scalars on the engine's device: reading them waits for the batch)."""
        dyn = self.cfg.dynamics
        d = one_hot(labels, self.net.sizes[OUTPUT], self.engine.dtype)
        init = self._initial_states(index)
        beta = dyn.beta * (self.rng.choice((-1.0, 1.0)) if dyn.random_sign_beta else 1.0)
        params = self._live_params()
        if self.compiled:
            xp, dp, lp, ip, mask = self._padded(x, d, labels, init)
            params, self.optimizer.state, free, stats = self._step(
                params, self.optimizer.state, xp, dp, lp, ip, np.asarray(beta, self.engine.dtype), mask)
            self._check_finite(stats["finite"], x, d, init, beta)
            free = self._unpadded(free, len(x))
        else:
            params, self.optimizer.state, free, stats = ep_batch_update(
                self.cfg, self.net, self.engine, self.rule, self.optimizer, params, self.optimizer.state,
                x, d, labels, init, beta)
        self._keep(params, free, index)
        return stats

    def _initial_states(self, index: np.ndarray) -> States | None:
        """The batch's persistent free states (``None``: start from zeros)."""
        return {k: v[index] for k, v in self.persistent.items()} if self.persistent is not None else None

    def _padded(self, x, d, labels, init):
        """``(x, d, labels, init, mask)`` filled up to the compiled batch size; ``mask`` is 1 for a
        real sample."""
        size = self.cfg.learning.batch_size
        mask = (np.arange(size) < len(x)).astype(self.engine.dtype)
        pad = lambda a: _pad(a, size)  # noqa: E731
        return (pad(np.asarray(x, self.engine.dtype)), pad(d), pad(labels),
                None if init is None else {k: pad(v) for k, v in init.items()}, mask)

    def _unpadded(self, free: States, n: int) -> States:
        """The real samples' free states, on the host, where persistent states need them."""
        return {k: np.asarray(v)[:n] for k, v in free.items()} if self.persistent is not None else free

    def _keep(self, params: Params, free: States, index: np.ndarray) -> None:
        """After a batch: the updated parameters, and the free states for persistent states."""
        self._live = params
        if self.persistent is not None:
            for k, v in free.items():
                self.persistent[k][index] = v

    @staticmethod
    def _failed_phases(finite: dict) -> list[str]:
        """The phases whose finiteness flags (phase → population → flag) report a non-finite state."""
        return [phase for phase, flags in finite.items() if not all(bool(v) for v in flags.values())]

    def _check_finite(self, finite: dict, x, d, init, beta) -> None:
        """Stop on a non-finite state; replay the phase to name the step and population."""
        bad = self._failed_phases(finite)
        if not bad:
            return
        phase = bad[0]
        dyn = self.cfg.dynamics
        params = self._live_params()  # the parameters before this batch's update
        s0 = init or rhs.zero_states(self.net, len(x), self.engine.dtype)
        if phase == "free":
            step, pop = self.engine.locate_divergence(params, s0, x, dyn.free_steps)
        else:
            free = self.engine.clamp(params, x).relax(s0, dyn.free_steps, tol=dyn.tol).states
            sign = -1.0 if phase == "nudged_minus" else 1.0
            step, pop = self.engine.locate_divergence(params, free, x, dyn.nudge_steps, sign * beta, d)
        raise DivergenceError(phase, step, pop, advice=divergence_advice(self.net, self.engine.dt, phase))

    def set_epoch(self, epoch: int) -> float:
        """Set the learning-rate factor of ``learning.lr_schedule`` for ``epoch`` (1-based); returns it."""
        lc = self.cfg.learning
        scale = lr_scale(lc.lr_schedule, epoch, lc.epochs, lc.lr_final_fraction, lc.lr_decay)
        self._live_params()  # the optimizer state on the engine's device first, then the factor
        self.optimizer.state["lr_scale"] = np.asarray(scale, self.engine.dtype)
        return scale

    def train_epoch(self, x: np.ndarray, y: np.ndarray, progress: bool = True, desc: str = "",
                    epoch: int | None = None) -> EpochStats:
        """One pass over ``(x, y)`` in a random order; ``epoch`` (1-based) sets the
        learning-rate schedule's factor (:meth:`set_epoch`)."""
        if epoch is not None:
            self.set_epoch(epoch)
        bs = self.cfg.learning.batch_size
        order = self.rng.permutation(len(x))
        n_wrong, loss_sum, res_sum, n_batches = 0, 0.0, {}, 0
        bar = tqdm(range(0, len(x), bs), desc=desc, disable=not progress, leave=False, unit="batch")
        batch_losses = []  # kept as returned (maybe device scalars): converted once, at the end
        for start in bar:
            idx = order[start:start + bs]
            out = self.train_step(x[idx], y[idx], idx)
            batch_losses.append((out["loss"], len(idx)))
            n_wrong = n_wrong + out["n_errors"]
            loss_sum = loss_sum + out["loss"]
            for k, v in out["residual"].items():
                res_sum[k] = res_sum.get(k, 0.0) + v
            n_batches += 1
            if n_batches % 50 == 0:
                bar.set_postfix(train_error=f"{float(n_wrong) / min(start + bs, len(x)):.3f}")
        self._sync()
        return EpochStats(float(n_wrong) / len(x), float(loss_sum) / len(x),
                          {k: float(v) / n_batches for k, v in res_sum.items()},
                          np.array([float(np.sum(loss)) / n for loss, n in batch_losses], dtype=np.float64))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(error, mean loss) at the free fixed point, started from zero states."""
        dyn = self.cfg.dynamics
        steps = dyn.eval_steps or dyn.free_steps
        bs = self.cfg.learning.eval_batch_size
        params = self._live_params()
        n_wrong, loss = 0, 0.0
        for start in range(0, len(x), bs):
            xb, yb = x[start:start + bs], y[start:start + bs]
            n = len(xb)
            if self.compiled and len(x) > bs:  # one compiled shape for every batch
                xb = _pad(xb, bs)
            system = self.engine.clamp(params, xb)
            free = free_phase(system, rhs.zero_states(self.net, len(xb), self.engine.dtype), steps, dyn.tol)
            s_o = np.asarray(free.states[OUTPUT])[:n]
            n_wrong += int(np.sum(rho(s_o, self.net.rho).argmax(axis=-1) != yb))
            loss += float(np.sum(cost(self.net, s_o, one_hot(yb, self.net.sizes[OUTPUT], s_o.dtype))))
        return n_wrong / len(x), loss / len(x)


def make_trainer(cfg: RunParams, net: Network, engine: Engine, params: Params, n_train: int,
                 rng: np.random.Generator):
    """The trainer of ``cfg.learning.rule``: :class:`EPTrainer` for the EP rules,
    :class:`hebbsim.simulate.fg_training.FGTrainer` for ``forward_gradient``."""
    if cfg.learning.rule == "forward_gradient":
        from .fg_training import FGTrainer

        return FGTrainer(cfg, net, engine, params, n_train, rng)
    return EPTrainer(cfg, net, engine, params, n_train, rng)
