"""The one training loop, for every learning rule (:mod:`hebbsim.rules`).

:func:`batch_update` is one mini-batch as a pure function of arrays: the rule's phases and
descent direction (:meth:`hebbsim.rules.base.Rule.batch`), one optimizer step over the network's
trainable parameters and the rule's learned state, and the batch's statistics from its free
phase. The numba engine runs it eagerly (its phases are compiled kernels; the optimizer updates
numpy arrays in place); an engine that compiles whole batches (``engine.jit_batches``: jax)
compiles all of it into one XLA program with ``jax.jit``, traced once per run — a short last
batch is then padded to the batch size and masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ..data.params import RunParams
from ..dynamics import rhs
from ..dynamics import noise as noise_math
from ..dynamics.loss import cost, one_hot, prediction
from ..dynamics.network import OUTPUT, Network
from ..dynamics.nonlinearities import xp_of
from ..dynamics.optimizers import Optimizer, lr_scale
from ..dynamics.params import Params
from ..rules import Rule, RuleState, make_rule
from .engines.base import Engine, States, diverged
from .phases import free_phase, noise_phases


@dataclass
class EpochStats:
    """What one pass over the training set measured (from the free phases it ran)."""

    error: float
    loss: float
    residual: dict[str, float] = field(default_factory=dict)  # mean final max|ds/dt| per phase
    steps: dict[str, float] = field(default_factory=dict)  # mean Euler (or solver) steps per phase
    batch_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))  # mean loss of each batch, in order


def batch_update(rule: Rule, optimizer: Optimizer, engine: Engine, params: Params, state: RuleState, opt_state: dict,
                 x, d, labels, init: States | None, draws: dict, mask=None, noise: dict | None = None):
    """One mini-batch of ``rule``: its phases from ``init`` (zeros when ``None``), its descent
    direction, one optimizer step over ``params`` and ``state.learned``. ``noise``: the batch's
    noise draws by phase name (:func:`hebbsim.simulate.phases.noise_phases`).

    Returns ``(params, state, opt_state, free_states, stats)`` with ``stats`` holding the free
    phase's summed cost, its number of misclassified samples, each phase's residual and steps
    taken and (when traced) each phase's finiteness flags. ``mask`` marks real samples in a padded batch.
    """
    net = rule.net
    system = engine.clamp(rule.inference_params(params), x, noise=noise)
    xp = xp_of(system.x)
    if init is None:
        init = {p.name: xp.zeros((x.shape[0], p.size), dtype=system.x.dtype) for p in net.dynamic_populations}
    result = rule.batch(system, params, state, x, d, init, draws, mask)
    flat = dict(params.trainable(net, rule.trained_fixed()))
    flat.update(state.learned)
    flat, opt_state = optimizer.update(flat, opt_state, result.grads)
    s_o = result.free.states[OUTPUT]
    weight = 1.0 if mask is None else mask
    own = rule.phases(rule.cfg)  # the rule's phases, not the helper relaxations it may add
    ran = {k: r for k, r in result.phases.items() if k in own}
    stats = {
        "loss": (cost(net, s_o, d) * weight).sum(),
        "n_errors": ((prediction(net, s_o) != labels) * weight).sum(),
        "residual": {k: r.residual for k, r in ran.items()},
        "steps": {k: r.steps for k, r in ran.items()},
        "finite": {k: r.finite for k, r in result.phases.items() if r.finite is not None},
        "buffers": result.buffers,
    }
    learned = RuleState({k: flat[k] for k in state.learned}, {**state.fixed, **result.fixed})
    return params.with_trainable(net, flat), learned, opt_state, result.free.states, stats


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    """Fill a short batch up to ``size`` rows with copies of its first sample (copies of a real
    sample leave the batch's max residual unchanged; a mask removes them from the update)."""
    n = len(a)
    return a if n >= size else np.concatenate([a, np.repeat(a[:1], size - n, axis=0)])


class Trainer:
    """Trains a network with the rule ``cfg.learning.rule``. Holds everything a checkpoint must
    restore: parameters, the rule's state, optimizer state, the RNG and the persistent free
    states.

    ``self.params`` and ``self.state`` (numpy) are up to date at epoch boundaries; during an
    epoch an engine that keeps its arrays on a device works on its own copy.
    """

    def __init__(self, cfg: RunParams, net: Network, engine: Engine, params: Params, n_train: int,
                 rng: np.random.Generator):
        self.cfg, self.net, self.engine, self.params = cfg, net, engine, params
        self.rng = rng
        self.rule = make_rule(cfg, net)
        self.state = self.rule.init_state(rng, engine.dtype)
        rates = cfg.learning_rates(net)
        rates.update(self.rule.state_learning_rates(rates))
        self.optimizer = Optimizer(rates, cfg.learning.optimizer, momentum=cfg.learning.momentum,
                                   weight_decay=cfg.learning.weight_decay)
        self.optimizer.state = self.optimizer.init(self._flat())
        self.persistent = (rhs.zero_states(net, n_train, engine.dtype) if cfg.dynamics.persistent_states else None)
        self.buffers = {k: np.zeros((n_train, *shape), dtype=engine.dtype)
                        for k, shape in self.rule.sample_buffers().items()}
        # [dynamics.noise]: its own stream, so that noise draws shift no other draw of the run
        # (the reference engine integrates no dynamics: a discrete rule draws its own perturbations)
        self.noise = (None if engine.name == "reference"
                      else noise_math.NoiseModel.from_config(cfg.dynamics.noise, net.hidden))
        self.noise_rng = noise_math.noise_generator(cfg.dynamics.noise.seed) if self.noise is not None else None
        self._noise_steps = noise_phases(self.rule, cfg) if self.noise is not None else {}
        if self.noise != getattr(engine, "noise", None):
            raise ValueError(f"the engine's noise model ({getattr(engine, 'noise', None)}) is not dynamics.noise's "
                             f"({self.noise}): build the engine with engine_from_params(cfg, net)")
        self.compiled = engine.jit_batches
        self.n_traces = 0  # how often the batch was traced (compiled): once per run
        self._live: tuple[Params, RuleState] | None = None  # the engine's copies during an epoch
        # a compiled batch's finiteness flags are read after the next batch is dispatched, so the
        # device never waits for the host between batches (measured on an H100: the per-batch
        # read-back was 45 % of an epoch, docs/benchmarks.md)
        self._pending: tuple | None = None
        if self.compiled:
            import jax

            self._step = jax.jit(self._traced_update)

    def _flat(self) -> dict:
        flat = dict(self.params.trainable(self.net, self.rule.trained_fixed()))
        flat.update(self.state.learned)
        return flat

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything that makes the next epoch bit-identical to an uninterrupted run:
        ``(arrays, meta)`` with arrays named ``weight/<proj>``, ``bias/<pop>``,
        ``rule/<key>`` (the rule's learned and fixed state), ``buffer/<name>`` (its per-sample
        buffers), ``optimizer/<key>``, ``persistent/<pop>`` and ``meta = {"rng": <bit generator
        state>}`` (JSON-serialisable; with noise also ``"noise_rng"``, the noise stream's state)."""
        self._sync()
        arrays = {f"weight/{k}": np.asarray(v) for k, v in self.params.weights.items()}
        arrays.update({f"bias/{k}": np.asarray(v) for k, v in self.params.biases.items()})
        arrays.update({f"rule/{k}": np.asarray(v) for k, v in {**self.state.learned, **self.state.fixed}.items()})
        arrays.update({f"buffer/{k}": v for k, v in self.buffers.items()})
        arrays.update({f"optimizer/{k}": np.asarray(v) for k, v in self.optimizer.state_dict().items()})
        if self.persistent is not None:
            arrays.update({f"persistent/{k}": np.asarray(v) for k, v in self.persistent.items()})
        meta = {"rng": self.rng.bit_generator.state}
        if self.noise_rng is not None:
            meta["noise_rng"] = self.noise_rng.bit_generator.state
        return arrays, meta

    def load_state_dict(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Restore what :meth:`state_dict` returned (in place: the same arrays)."""
        def group(prefix):
            return {k[len(prefix):]: np.array(v) for k, v in arrays.items() if k.startswith(prefix)}

        self._live = None
        for k, v in group("weight/").items():
            self.params.weights[k][...] = v
        for k, v in group("bias/").items():
            self.params.biases[k][...] = v
        for k, v in group("rule/").items():
            (self.state.learned if k in self.state.learned else self.state.fixed)[k][...] = v
        for k, v in group("buffer/").items():
            self.buffers[k][...] = v
        self.optimizer.load_state_dict(group("optimizer/"))
        if self.optimizer.state is None or int(arrays.get("optimizer/t", 1)) == 0:
            self.optimizer.state = self.optimizer.init(self._flat())
        if self.persistent is not None:
            for k, v in group("persistent/").items():
                self.persistent[k][...] = v
        self.rng.bit_generator.state = meta["rng"]
        if self.noise_rng is not None:
            self.noise_rng.bit_generator.state = meta["noise_rng"]

    # -- engine-side copies --------------------------------------------------------------------
    def _live_arrays(self) -> tuple[Params, RuleState]:
        if self._live is None:
            if self.compiled:
                self._live = (self.engine.to_device(self.params), self.engine.to_device(self.state))
                self.optimizer.state = self.engine.to_device(self.optimizer.state)
            else:
                self._live = (self.params, self.state)
        return self._live

    def _sync(self) -> None:
        """Copy the engine's parameters and rule state back into ``self.params``/``self.state``."""
        if self.compiled and self._live is not None:
            params, state = self._live
            for k, v in params.weights.items():
                self.params.weights[k][...] = np.asarray(v)
            for k, v in params.biases.items():
                self.params.biases[k][...] = np.asarray(v)
            for k, v in {**state.learned, **state.fixed}.items():
                (self.state.learned if k in self.state.learned else self.state.fixed)[k][...] = np.asarray(v)

    def _traced_update(self, params, state, opt_state, x, d, labels, init, draws, mask, noise):
        self.n_traces += 1
        return batch_update(self.rule, self.optimizer, self.engine, params, state, opt_state, x, d, labels, init,
                            draws, mask, noise)

    def _draw_noise(self, batch_size: int) -> dict | None:
        """The batch's noise draws by phase (for the full batch size, like the rule's draws)."""
        if self.noise is None:
            return None
        return {phase: noise_math.draw_phase(self.noise_rng, self.noise, self.net.sizes, steps, batch_size,
                                             self.engine.dtype) for phase, steps in self._noise_steps.items()}

    # ------------------------------------------------------------------------------------------
    def train_step(self, x: np.ndarray, labels: np.ndarray, index: np.ndarray) -> dict:
        """One mini-batch. Returns the free phase's summed loss, its number of errors and each
        phase's final residual and steps taken (array scalars on the engine's device: reading them waits for
        the batch)."""
        d = one_hot(labels, self.net.sizes[OUTPUT], self.engine.dtype, self.cfg.learning.label_smoothing)
        init = self._initial_states(index)
        n, size = len(x), self.cfg.learning.batch_size
        draws = self.rule.draw(self.rng, size, self.engine.dtype)  # always the full batch: same draws
        rows = {f"buffer/{k}": v[index] for k, v in self.buffers.items()}
        noise = self._draw_noise(size)
        params, state = self._live_arrays()
        if self.compiled:
            draws = {**draws, **{k: _pad(v, size) for k, v in rows.items()}}
            before = params
            xp, dp, lp, ip, mask = self._padded(x, d, labels, init)
            params, state, self.optimizer.state, free, stats = self._step(
                params, state, self.optimizer.state, xp, dp, lp, ip, self.engine.to_device(draws), mask,
                self.engine.to_device(noise))
            pending, self._pending = self._pending, (stats["finite"], x, d, init, draws, before)
            if pending is not None:
                self._check_finite(*pending)
            free = self._unpadded(free, n)
        else:
            if n < size:
                draws = self.rule.unpad_draws(draws, n)
                noise = None if noise is None else {k: noise_math.unpad(v, n) for k, v in noise.items()}
            draws = {**draws, **rows}
            params, state, self.optimizer.state, free, stats = batch_update(
                self.rule, self.optimizer, self.engine, params, state, self.optimizer.state, x, d, labels, init,
                draws, noise=noise)
        self._keep(params, state, free, index)
        for k, v in stats.pop("buffers").items():
            self.buffers[k][index] = np.asarray(v)[:n]
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

    def _keep(self, params: Params, state: RuleState, free: States, index: np.ndarray) -> None:
        """After a batch: the updated arrays, and the free states for persistent states."""
        self._live = (params, state)
        if not self.compiled:
            self.state = state
        if self.persistent is not None:
            for k, v in free.items():
                self.persistent[k][index] = v

    def _check_pending(self) -> None:
        """Read the last compiled batch's finiteness flags (at the end of an epoch)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._check_finite(*pending)

    def _check_finite(self, finite: dict, x, d, init, draws, params: Params) -> None:
        """Stop on a non-finite state; the rule replays the phase from ``params`` (those before
        the batch's update) to name the step and population."""
        bad = [phase for phase, flags in finite.items() if not all(bool(v) for v in flags.values())]
        if not bad:
            return
        phase = bad[0]
        s0 = init or rhs.zero_states(self.net, len(x), self.engine.dtype)
        n = len(x)
        draws = {k: v[:n] if k.startswith("buffer/") else v for k, v in self.rule.unpad_draws(draws, n).items()}
        step, pop = self.rule.locate_divergence(self.engine, params, phase, x, d, s0, draws, finite[phase])
        hint = "non-finite at the end of the window" if phase == "perturbed" else ""
        raise diverged(self.engine, phase, step, pop, hint)

    def set_epoch(self, epoch: int) -> float:
        """Set the learning-rate factor of ``learning.lr_schedule`` for ``epoch`` (1-based); returns it."""
        lc = self.cfg.learning
        scale = lr_scale(lc.lr_schedule, epoch, lc.epochs, lc.lr_final_fraction, lc.lr_decay)
        self._live_arrays()  # the optimizer state on the engine's device first, then the factor
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
        n_wrong, loss_sum, res_sum, steps_sum, n_batches = 0, 0.0, {}, {}, 0
        bar = tqdm(range(0, len(x), bs), desc=desc, disable=not progress, leave=False, unit="batch")
        batch_losses = []  # kept as returned (maybe device scalars): converted once, at the end
        for start in bar:
            idx = order[start:start + bs]
            out = self.train_step(x[idx], y[idx], idx)
            batch_losses.append((out["loss"], len(idx)))
            n_wrong = n_wrong + out["n_errors"]
            loss_sum = loss_sum + out["loss"]
            for sums, key in ((res_sum, "residual"), (steps_sum, "steps")):
                for k, v in out[key].items():
                    sums[k] = sums.get(k, 0) + v
            n_batches += 1
            if n_batches % 50 == 0:
                bar.set_postfix(train_error=f"{float(n_wrong) / min(start + bs, len(x)):.3f}")
        self._check_pending()
        self._sync()
        return EpochStats(float(n_wrong) / len(x), float(loss_sum) / len(x),
                          {k: float(v) / n_batches for k, v in res_sum.items()},
                          {k: float(v) / n_batches for k, v in steps_sum.items()},
                          np.array([float(np.sum(loss)) / n for loss, n in batch_losses], dtype=np.float64))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(error, mean cost) at the free fixed point, started from zero states."""
        dyn = self.cfg.dynamics
        steps = dyn.eval_steps or dyn.free_steps
        bs = self.cfg.learning.eval_batch_size
        params, _ = self._live_arrays()
        n_wrong, loss = 0, 0.0
        for start in range(0, len(x), bs):
            xb, yb = x[start:start + bs], y[start:start + bs]
            n = len(xb)
            if self.compiled and len(x) > bs:  # one compiled shape for every batch
                xb = _pad(xb, bs)
            if hasattr(self.rule, "exit_scores"):  # sigprop: the prediction is the last early exit's
                s_o = np.asarray(self.rule.jitted("exit_scores")(params, self._live_arrays()[1], xb)[OUTPUT])[:n]
            else:
                system = self.engine.clamp(self.rule.inference_params(params), xb)
                free = free_phase(system, rhs.zero_states(self.net, len(xb), self.engine.dtype), steps, dyn.tol)
                s_o = np.asarray(free.states[OUTPUT])[:n]
            n_wrong += int(np.sum(prediction(self.net, s_o) != yb))
            d = one_hot(yb, self.net.sizes[OUTPUT], s_o.dtype, self.cfg.learning.label_smoothing)
            loss += float(np.sum(cost(self.net, s_o, d)))
        return n_wrong / len(x), loss / len(x)

    # -- early exits (sigprop) -------------------------------------------------------------------
    def exit_errors(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Test error of every early exit of a rule that has them (``rule.exits``; sigprop's
        eq. 8), by exit; empty for other rules."""
        exits = getattr(self.rule, "exits", ())
        if not exits:
            return {}
        bs = self.cfg.learning.eval_batch_size
        params, state = self._live_arrays()
        wrong = dict.fromkeys(exits, 0)
        for start in range(0, len(x), bs):
            xb, yb = x[start:start + bs], y[start:start + bs]
            n = len(xb)
            scores = self.rule.jitted("exit_scores")(params, state, _pad(xb, bs) if len(x) > bs else xb)
            for k in exits:
                wrong[k] += int(np.sum(np.argmax(np.asarray(scores[k])[:n], axis=1) != yb))
        return {k: v / len(x) for k, v in wrong.items()}


def make_trainer(cfg: RunParams, net: Network, engine: Engine, params: Params, n_train: int,
                 rng: np.random.Generator) -> Trainer:
    """The trainer of a run (one class for every rule; kept as a function for callers)."""
    return Trainer(cfg, net, engine, params, n_train, rng)
