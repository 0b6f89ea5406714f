r"""The training loop of the ``forward_gradient`` rule (docs/forward_gradient.md; :mod:`hebbsim.dynamics.forward_gradient`).

Per mini-batch: the ordinary free phase (``free_steps``, ``tol``), then the perturbed window
from the free states on a tiled batch (one copy per block and perturbation draw), the
descent direction :math:`g = -e/(\varepsilon^2 N)`, one optimizer step. In ``local_greedy``
mode every hidden block also has a linear readout to the classes, trained by its delta rule
at the free state in the same optimizer step (keys ``readout_W_<pop>``, ``readout_b_<pop>``).

The perturbations :math:`u` are drawn on the host with numpy from the trainer's RNG (always
for the full batch size, padded rows included), so both engines see the same draws:
:func:`fg_batch_update` runs eagerly on numba and jitted on jax, as
:func:`hebbsim.simulate.training.ep_batch_update` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.params import RunParams
from ..dynamics import forward_gradient as fg
from ..dynamics import rhs
from ..dynamics.loss import cost, one_hot
from ..dynamics.network import OUTPUT, Network
from ..dynamics.nonlinearities import xp_of
from ..dynamics.optimizers import Optimizer
from ..dynamics.params import Params, draw_weight
from ..errors import DivergenceError
from .engines.base import Engine, States, divergence_advice
from .phases import free_phase
from .training import EPTrainer


@dataclass(frozen=True)
class Plan:
    """What a parameter file's ``[learning.forward_gradient]`` fixes for a run."""

    perturb: tuple[str, ...]
    mode: str
    perturbations: int
    epsilon: float
    n_steps: int

    @property
    def blocks(self) -> tuple[tuple[str, ...], ...]:
        return fg.blocks(self.perturb, self.mode)

    @property
    def copies(self) -> int:
        """Copies of the batch in the window: one per (block, perturbation draw)."""
        return len(self.blocks) * self.perturbations

    @classmethod
    def from_params(cls, cfg: RunParams, net: Network) -> "Plan":
        c = cfg.learning.forward_gradient
        perturb = tuple(c.perturb) if c.perturb is not None else net.hidden + (OUTPUT,)
        return cls(perturb, c.mode, c.perturbations, float(c.epsilon), int(round(c.perturb_time / cfg.dynamics.dt)))

    def draw(self, rng: np.random.Generator, net: Network, batch: int, dtype) -> dict[str, np.ndarray]:
        """u ~ N(0, 1) for every (copy, sample, unit) of each block's own rows (zeros elsewhere),
        shape ``(copies·batch, n)`` per perturbed population."""
        u = {}
        k = self.perturbations
        for b, block in enumerate(self.blocks):
            for pop in block:
                a = u.setdefault(pop, np.zeros((self.copies, batch, net.sizes[pop]), dtype))
                a[b * k:(b + 1) * k] = rng.standard_normal((k, batch, net.sizes[pop])).astype(dtype)
        return {pop: a.reshape(self.copies * batch, -1) for pop, a in u.items()}


def readout_params(flat: dict, pop: str) -> tuple:
    return flat[f"readout_W_{pop}"], flat[f"readout_b_{pop}"]


def fg_batch_update(cfg: RunParams, net: Network, engine: Engine, plan: Plan, optimizer: Optimizer, params: Params,
                    readouts: dict, opt_state: dict, x, d, labels, init: States | None, u: dict, mask=None):
    """One mini-batch of ``forward_gradient``: free phase from ``init`` (zeros when ``None``),
    the perturbed window with the draws ``u`` (tiled rows), the rule's descent direction (and,
    in ``local_greedy`` mode, the readouts' delta rule), one optimizer step.

    Returns ``(params, readouts, opt_state, free_states, stats)`` like
    :func:`hebbsim.simulate.training.ep_batch_update`. ``readouts`` is the flat dict
    ``{"readout_W_<pop>", "readout_b_<pop>"}`` (empty in ``global`` mode).
    """
    dyn = cfg.dynamics
    system = engine.clamp(params, x)
    xp = xp_of(system.x)
    batch = x.shape[0]
    if init is None:
        init = {p.name: xp.zeros((batch, p.size), dtype=system.x.dtype) for p in net.dynamic_populations}
    free = free_phase(system, init, dyn.free_steps, dyn.tol)
    reward, learn, perturbed = fg.masks(plan.perturb, plan.mode, plan.perturbations, batch, dtype=engine.dtype)
    if mask is not None:
        rows = xp.tile(mask, plan.copies)
        learn = {k: v * rows for k, v in learn.items()}
    extra = fg.perturbation_current(u, plan.epsilon, perturbed)
    hidden_readouts = {k[len("readout_W_"):]: readout_params(readouts, k[len("readout_W_"):])
                       for k in readouts if k.startswith("readout_W_")}
    window, elig = system.perturbed_window(free.states, plan.copies, extra, d, hidden_readouts, reward, learn,
                                           plan.n_steps)
    n = batch if mask is None else mask.sum()
    grads = fg.fg_gradients(elig, plan.epsilon, plan.perturbations * n)
    rates = rhs.rates(net, free.states, system.x)
    for pop, ro in hidden_readouts.items():
        grads.update(fg.readout_gradients(pop, rates[pop], ro, d, mask))
    flat = dict(params.trainable(net))
    flat.update(readouts)
    flat, opt_state = optimizer.update(flat, opt_state, grads)
    out_rate = rates[OUTPUT]
    weight = 1.0 if mask is None else mask
    stats = {
        "loss": (cost(net, free.states[OUTPUT], d) * weight).sum(),
        "n_errors": ((out_rate.argmax(axis=-1) != labels) * weight).sum(),
        "residual": {"free": free.residual},
        "finite": {k: r.finite for k, r in (("free", free), ("perturbed", window)) if r.finite is not None},
    }
    new_readouts = {k: flat[k] for k in readouts}
    return params.with_trainable(net, flat), new_readouts, opt_state, free.states, stats


class FGTrainer(EPTrainer):
    """Trains a network with ``forward_gradient``; the public interface of
    :class:`hebbsim.simulate.training.EPTrainer` (``train_epoch``, ``evaluate``,
    ``state_dict``/``load_state_dict``, ``params``, ``n_traces``), plus ``readouts`` (numpy, the
    hidden blocks' readouts in ``local_greedy`` mode, part of the checkpoint)."""

    def __init__(self, cfg: RunParams, net: Network, engine: Engine, params: Params, n_train: int,
                 rng: np.random.Generator):
        self.cfg, self.net, self.engine, self.params = cfg, net, engine, params
        self.rng = rng
        self.plan = Plan.from_params(cfg, net)
        fgc = cfg.learning.forward_gradient
        lrs = cfg.learning_rates(net)
        self.readouts: dict[str, np.ndarray] = {}
        n_cls = net.sizes[OUTPUT]
        if self.plan.mode == "local_greedy":
            for pop in self.plan.perturb:
                if pop == OUTPUT:
                    continue
                g = fgc.groups
                # one readout per group, Glorot for its own fan-in; a group's columns in a row
                self.readouts[f"readout_W_{pop}"] = np.concatenate(
                    [draw_weight(rng, "glorot_uniform", n_cls, net.sizes[pop] // g) for _ in range(g)],
                    axis=1).astype(engine.dtype)
                self.readouts[f"readout_b_{pop}"] = np.zeros(n_cls if g == 1 else (g, n_cls), engine.dtype)
                lr = fgc.readout_lr or lrs[f"b_{pop}"]
                lrs[f"readout_W_{pop}"] = lrs[f"readout_b_{pop}"] = float(lr)
        self.optimizer = Optimizer(lrs, cfg.learning.optimizer, momentum=cfg.learning.momentum,
                                   weight_decay=cfg.learning.weight_decay)
        self.optimizer.state = self.optimizer.init(self._flat())
        self.persistent = (rhs.zero_states(net, n_train, engine.dtype) if cfg.dynamics.persistent_states else None)
        self.compiled = engine.name == "jax"
        self.n_traces = 0
        self._live: Params | None = None
        self._live_readouts: dict | None = None
        if self.compiled:
            import jax

            self._step = jax.jit(self._traced_update)

    def _flat(self) -> dict:
        flat = dict(self.params.trainable(self.net))
        flat.update(self.readouts)
        return flat

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """:meth:`EPTrainer.state_dict` plus ``readout/<key>``."""
        arrays, meta = super().state_dict()
        arrays.update({f"readout/{k}": np.asarray(v) for k, v in self.readouts.items()})
        return arrays, meta

    def load_state_dict(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        super().load_state_dict(arrays, meta)
        self._live_readouts = None
        for k in self.readouts:
            self.readouts[k][...] = arrays[f"readout/{k}"]
        if int(arrays["optimizer/t"]) == 0:
            self.optimizer.state = self.optimizer.init(self._flat())

    # -- engine-side copies --------------------------------------------------------------------
    def _live_params(self) -> Params:
        if self._live is None:
            super()._live_params()
            self._live_readouts = self.engine.to_device(self.readouts) if self.compiled else self.readouts
        return self._live

    def _sync(self) -> None:
        super()._sync()
        if self.compiled and self._live_readouts is not None:
            for k, v in self._live_readouts.items():
                self.readouts[k][...] = np.asarray(v)

    def _traced_update(self, params, readouts, opt_state, x, d, labels, init, u, mask):
        self.n_traces += 1
        return fg_batch_update(self.cfg, self.net, self.engine, self.plan, self.optimizer, params, readouts,
                               opt_state, x, d, labels, init, u, mask)

    # ------------------------------------------------------------------------------------------
    def train_step(self, x: np.ndarray, labels: np.ndarray, index: np.ndarray) -> dict:
        """One mini-batch: free phase, perturbed window, update. Returns the free phase's summed
        loss, its number of errors and its residual."""
        d = one_hot(labels, self.net.sizes[OUTPUT], self.engine.dtype)
        init = self._initial_states(index)
        n, size = len(x), self.cfg.learning.batch_size
        u = self.plan.draw(self.rng, self.net, size, self.engine.dtype)  # always the full batch: same draws
        params = self._live_params()
        if self.compiled:
            xp, dp, lp, ip, mask = self._padded(x, d, labels, init)
            params, self._live_readouts, self.optimizer.state, free, stats = self._step(
                params, self._live_readouts, self.optimizer.state, xp, dp, lp, ip, u, mask)
            self._check_finite(stats["finite"], x, d, init, 0.0)
            free = self._unpadded(free, n)
        else:
            if n < size:
                u = {k: v.reshape(self.plan.copies, size, -1)[:, :n].reshape(self.plan.copies * n, -1)
                     for k, v in u.items()}
            params, self.readouts, self.optimizer.state, free, stats = fg_batch_update(
                self.cfg, self.net, self.engine, self.plan, self.optimizer, params, self.readouts,
                self.optimizer.state, x, d, labels, init, u)
            self._live_readouts = self.readouts
        self._keep(params, free, index)
        return stats

    def _check_finite(self, finite: dict, x, d, init, beta) -> None:
        bad = self._failed_phases(finite)
        if not bad:
            return
        if bad[0] == "free":
            super()._check_finite({"free": finite["free"]}, x, d, init, beta)
        pop = next(k for k, v in finite["perturbed"].items() if not bool(v))
        raise DivergenceError("perturbed", self.plan.n_steps, pop, "non-finite at the end of the window",
                              advice=divergence_advice(self.net, self.engine.dt, "perturbed"))
