r"""``forward_gradient``: the rate-based forward-gradient rule in continuous time (seed 004 §3.5;
docs/forward_gradient.md; the math in :mod:`hebbsim.dynamics.forward_gradient`).

Per mini-batch: the ordinary free phase (``free_steps``, ``tol``), then the perturbed window
from the free states on a tiled batch (one copy per block and perturbation draw), the descent
direction :math:`g = -e/(\varepsilon^2 N)`. In ``local_greedy`` mode every hidden block also has
a linear readout to the classes — the rule's learned state — trained by its delta rule at the
free state in the same optimizer step (keys ``readout_W_<pop>``, ``readout_b_<pop>``).

The perturbations :math:`u` are drawn on the host from the run's generator (for the full batch
size, padded rows included), so both engines see the same draws. The window is the engines'
generic :meth:`scan` of :func:`hebbsim.dynamics.forward_gradient.window_step`, or, where the
engine offers one, a fused kernel (``"forward_gradient.window"``: the numba engine's, pinned to
the reference by ``tests/simulate/test_kernel_contract.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..data.section import Section
from ..dynamics import forward_gradient as fg
from ..dynamics import rhs
from ..dynamics.network import INPUT, OUTPUT, Network
from ..dynamics.nonlinearities import xp_of
from ..dynamics.params import Params, draw_weight
from ..simulate.engines.base import ClampedSystem, Relaxation, States
from ..simulate.phases import free_phase
from . import register
from .base import BatchResult, Rule, RuleState


class ForwardGradientConfig(Section):
    """``[learning.forward_gradient]``: the perturbed window of the ``forward_gradient`` rule."""

    epsilon: float = Field(0.01, gt=0, description="perturbation current amplitude ε (current = ε·u, u ~ N(0, 1))")
    perturb_time: float = Field(2.0, gt=0, description="window duration (time units; steps = perturb_time / dt)")
    perturb: list[str] | None = Field(None, description="perturbed populations; default: every hidden one and o")
    perturbations: int = Field(1, ge=1, le=10**5,
                               description="perturbation draws per sample (their updates are averaged)")
    mode: Literal[fg.MODES] = "global"  # type: ignore[valid-type]
    readout_lr: float | None = Field(
        None, gt=0, description="local_greedy: learning rate of the hidden blocks' readouts (default: the block's lr)")
    groups: int = Field(
        1, ge=1, le=2**20, description="local_greedy: split every hidden block into this many groups of consecutive units, "
                             "each with its own readout and local loss, perturbed together (seed 004 §4)")

    @model_validator(mode="after")
    def _groups_need_local_losses(self):
        if self.groups > 1 and self.mode != "local_greedy":
            raise ValueError(f"groups = {self.groups} needs mode = 'local_greedy' (a group is read by its own "
                             "readout); set mode = 'local_greedy' or groups = 1")
        return self


@dataclass(frozen=True)
class Plan:
    """What ``[learning.forward_gradient]`` fixes for a run."""

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
    def from_params(cls, cfg, net: Network) -> "Plan":
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


def window(system: ClampedSystem, free: States, copies: int, extra: States, target, readouts: dict,
           reward_mask: dict, learn_mask: dict, n_steps: int) -> tuple[Relaxation, dict]:
    """The perturbed window from the free states (``B`` rows, tiled ``copies`` times) with the
    held current ``extra`` and the masks (``copies·B`` rows): ``n_steps`` Euler steps that
    integrate the eligibility. Returns ``(Relaxation of the tiled states, eligibility keyed like
    Params.trainable)``; a traced call reports finiteness in the relaxation instead of raising."""
    fused = system.engine.acceleration("forward_gradient.window")
    if fused is not None:
        return fused(system, free, copies, extra, target, readouts, reward_mask, learn_mask, n_steps)
    net = system.engine.net
    x = system.x
    xp = xp_of(x)
    tile = lambda a: xp.tile(a, (copies, 1))  # noqa: E731
    # the input rate is constant over the window: its current enters once, held with ``extra``
    held = {}
    for p in net.projections:
        if p.src == INPUT:
            held[p.dst] = held.get(p.dst, 0.0) + x @ system.params.weight(p).T
    held = {k: tile(v) for k, v in held.items()}
    for k, v in extra.items():
        held[k] = held[k] + v if k in held else v
    internal = net.without_input_projections()
    tgt = tile(target)
    elig = fg.init_eligibility(net, tuple(learn_mask), tgt.shape[0], tgt)

    def step(carry):
        states, el = carry
        return fg.window_step(internal, system.params, states, None, held, tgt, readouts, reward_mask, learn_mask,
                              system.engine.dt, el)

    s, elig = system.engine.scan(step, ({k: tile(v) for k, v in free.items()}, elig), n_steps)
    return system.finish(s, n_steps, "perturbed", "non-finite at the end of the window"), fg.finalize(
        net, elig, x, copies)


@register
class ForwardGradient(Rule):
    name = "forward_gradient"
    config = ForwardGradientConfig
    default_neuron = "additive"
    default_cost = "rate_mse"

    def __init__(self, cfg, net: Network):
        super().__init__(cfg, net)
        self.plan = Plan.from_params(cfg, net)

    @classmethod
    def batch_copies(cls, cfg, net: Network) -> int:
        return Plan.from_params(cfg, net).copies

    @classmethod
    def check(cls, cfg, net: Network) -> None:
        fgc, dyn = cfg.learning.forward_gradient, cfg.dynamics
        steps = fgc.perturb_time / dyn.dt
        if not 1 <= round(steps) <= 10**7 or abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
            raise ValueError(
                f"learning.forward_gradient.perturb_time = {fgc.perturb_time} is not a whole number (1 to 10^7) of "
                f"dynamics.dt = {dyn.dt} steps; use a multiple of dt"
            )
        dynamic = [p.name for p in net.dynamic_populations]
        if fgc.perturb is not None:
            bad = [p for p in fgc.perturb if p not in dynamic]
            if bad or not fgc.perturb or len(set(fgc.perturb)) != len(fgc.perturb):
                raise ValueError(
                    f"learning.forward_gradient.perturb = {fgc.perturb}: give distinct names among the "
                    f"non-input populations {', '.join(dynamic)}"
                )
        if fgc.groups > 1:
            hidden = [p for p in (fgc.perturb or net.hidden) if p in net.hidden]
            odd = [f"{p} ({net.sizes[p]} units)" for p in hidden if net.sizes[p] % fgc.groups]
            if odd:
                raise ValueError(
                    f"learning.forward_gradient.groups = {fgc.groups} does not divide {', '.join(odd)}; "
                    "use a divisor of every hidden block's size"
                )
        tied = [p.name for p in net.projections if p.kind == "tied"]
        if tied:
            raise ValueError(
                f"learning.rule = 'forward_gradient' does not train tied projections ({', '.join(tied)}); "
                "use network.topology = 'feedforward', 'loop', 'random_feedback' or 'direct_feedback'"
            )

    # -- state: the hidden blocks' readouts (local_greedy) ---------------------------------------
    def _readout_blocks(self) -> tuple[str, ...]:
        return tuple(p for p in self.plan.perturb if p != OUTPUT) if self.plan.mode == "local_greedy" else ()

    def init_state(self, rng: np.random.Generator, dtype) -> RuleState:
        n_cls, g = self.net.sizes[OUTPUT], self.options.groups
        learned = {}
        for pop in self._readout_blocks():
            # one readout per group, Glorot for its own fan-in; a group's columns in a row
            learned[f"readout_W_{pop}"] = np.concatenate(
                [draw_weight(rng, "glorot_uniform", n_cls, self.net.sizes[pop] // g) for _ in range(g)],
                axis=1).astype(dtype)
            learned[f"readout_b_{pop}"] = np.zeros(n_cls if g == 1 else (g, n_cls), dtype)
        return RuleState(learned=learned)

    def state_learning_rates(self, rates: dict[str, float]) -> dict[str, float]:
        out = {}
        for pop in self._readout_blocks():
            lr = float(self.options.readout_lr or rates[f"b_{pop}"])
            out[f"readout_W_{pop}"] = out[f"readout_b_{pop}"] = lr
        return out

    # -- per batch --------------------------------------------------------------------------------
    def draw(self, rng: np.random.Generator, batch_size: int, dtype) -> dict:
        return {"u": self.plan.draw(rng, self.net, batch_size, dtype)}

    def unpad_draws(self, draws: dict, n: int) -> dict:
        copies = self.plan.copies
        return {"u": {k: v.reshape(copies, -1, v.shape[1])[:, :n].reshape(copies * n, -1)
                      for k, v in draws["u"].items()}}

    def batch(self, system: ClampedSystem, params: Params, state: RuleState, x, target, init: States, draws: dict,
              mask=None) -> BatchResult:
        dyn, plan = self.cfg.dynamics, self.plan
        xp = xp_of(system.x)
        batch = x.shape[0]
        free = free_phase(system, init, dyn.free_steps, dyn.tol)
        reward, learn, perturbed = fg.masks(plan.perturb, plan.mode, plan.perturbations, batch,
                                            dtype=system.engine.dtype)
        if mask is not None:
            rows = xp.tile(mask, plan.copies)
            learn = {k: v * rows for k, v in learn.items()}
        extra = fg.perturbation_current(draws["u"], plan.epsilon, perturbed)
        readouts = {pop: (state.learned[f"readout_W_{pop}"], state.learned[f"readout_b_{pop}"])
                    for pop in self._readout_blocks()}
        relaxed, elig = window(system, free.states, plan.copies, extra, target, readouts, reward, learn,
                               plan.n_steps)
        n = batch if mask is None else mask.sum()
        grads = fg.fg_gradients(elig, plan.epsilon, plan.perturbations * n)
        rates = rhs.rates(self.net, free.states, system.x)
        for pop, ro in readouts.items():
            grads.update(fg.readout_gradients(pop, rates[pop], ro, target, mask))
        return BatchResult(grads, {"free": free, "perturbed": relaxed})

    def locate_divergence(self, engine, params: Params, phase: str, x, target, init: States, draws: dict,
                          finite: dict):
        if phase == "free":
            return super().locate_divergence(engine, params, phase, x, target, init, draws, finite)
        # the window is checked at its end (a fused scan cannot stop at the first bad step)
        return self.plan.n_steps, next(k for k, ok in finite.items() if not bool(ok))
