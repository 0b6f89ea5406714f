r"""``sigprop``: signal propagation in discrete time (seed 000 §III–IV) and in spiking networks
(§VI) — learning and inference in forward passes only, every layer trained by its own loss.

**Network.** The reference engine's feed-forward chain x → h1 → … → hL → o of learned
projections (``dynamics.engine = "reference"``, ``additive`` neurons, ``feedforward``
topology): layer :math:`i` maps its input rates to :math:`\rho(W_i\,\cdot + b_i)` (times the
population's leak :math:`r`).

**Target generator (eq. 1).** The learning signal :math:`c` (the one-hot class) is mapped to a
target with h1's shape by the rule's own matrix :math:`S_1` (``n_h1 × n_classes``):
:math:`t_1 = \rho(S_1 c)`, beside :math:`h_1 = \rho(W_1 x + b_1)`. :math:`S_1` is the rule's
state: ``RuleState.learned["S_h1"]`` with ``target_generator = "learned"`` (trained by layer
1's loss, at layer 1's rate), ``RuleState.fixed["S_h1"]`` with ``"fixed"``; saved in the
checkpoint either way. It is drawn Glorot-uniform times ``target_scale`` after the network's
parameters, from the run's generator.

**Interleaved batch (eq. 2–3).** Every later layer processes inputs and targets together, with
the same weights: :math:`[h_{i+1}, t_{i+1}] = \rho(W_{i+1}[h_i, t_i] + b_{i+1})`.

**Layer-local losses (eq. 4).** Layer :math:`i` learns from :math:`L_i(h_i, t_i)` only: its
inputs :math:`h_{i-1}, t_{i-1}` are constants (``stop_gradient``), so no gradient crosses a
layer boundary (``tests/rules/test_sigprop.py`` checks the Jacobian structure). The losses:

- ``loss = "pred"`` (eq. 9): :math:`L_\mathrm{pred} = \mathrm{CE}\big(y^*, -O(h_i, t_i)\big)`,
  the softmax cross-entropy of every sample's input representation :math:`h_{i,n}` against the
  targets :math:`t_{i,m}` of the batch, :math:`m = 1 … B`, with the labels *reconstructed* from
  the batch's learning signals: :math:`y^*_{nm} \propto [c_n\!\cdot c_m = \max_k c_n\!\cdot c_k]`
  (the samples of :math:`n`'s class; rows normalised to sum 1);
- ``loss = "l2"``: :math:`L = \frac12\lVert h_{i,n} - t_{i,n}\rVert^2`, each input pulled
  towards its own class's target (and the target towards it);

(the logits :math:`-O/\tau` with ``temperature`` :math:`\tau`, 1 by default: a dot product of
wide layers' rates is large, and a temperature of about :math:`\sqrt{n}` keeps the softmax from
saturating), each averaged over the batch's real samples (padding is masked out of the rows and out of the
candidate targets). The comparison (eq. 6–7): ``"dot"``,
:math:`O_\mathrm{dot}(h, t) = -h\cdot t`, or ``"l2"``, :math:`O_{\ell_2}(h, t) = \lVert h -
t\rVert^2`.

**Prediction (Fig. 2).** ``prediction = "output_target"`` (Fig. 2a): the output layer o is one
more layer of the chain with its own :math:`L_\mathrm{pred}`; a sample's class is the class
whose target at o is nearest, :math:`\hat y = \arg\min_c O(h_o, t_o^c)`, the targets
:math:`t_i^c` of all classes being the chain applied to :math:`S_1 e_c`.
``"classification_layer"`` (Fig. 2b): o is a linear classifier on :math:`h_L` (a constant),
trained by ``learning.cost`` (softmax cross-entropy by default); the target stream stops at
hL. **Early exits (eq. 8)**: every hidden layer predicts by its nearest class target,
:math:`\hat y_i = \arg\min_c O(h_i, t_i^c)`; the run file records each exit's test error per
epoch (``exit_error(epoch, exit)``; the last exit, o, is the run's ``test_error``).

**Dropout** (``dropout`` p, training only): what every hidden layer passes up — the inputs'
and the targets' representations alike (spikes when spiking) — is multiplied by a factor per
unit, sample and stream, 0 with probability p and 1/(1 − p) otherwise (:meth:`Sigprop.draw`);
the layer's own loss sees its representation whole (seed 000's Table VI dropout row).

**Spiking (§VI, ``spiking = true``).** Every layer (the classifier excepted) is a layer of
integrate-and-fire neurons run for ``time_steps`` steps
(:mod:`hebbsim.dynamics.spiking`): layer 1 receives the constant currents :math:`W_1 x + b_1`
and :math:`S_1 c`, every later layer the currents :math:`W_i z_{i-1,t} + b_i` of the spikes of
the layer below (inputs and targets interleaved as above). With ``spiking_gradient =
"surrogate"`` a layer is represented by its firing rate and learns through the surrogate spike
derivative; with ``"voltage"`` by its mean voltage, with no spike derivative at all. The
representation takes :math:`\rho(\cdot)`'s place in the losses and predictions above; the
classifier reads the rates of hL. The probe samples' spike trains are recorded in the run file
(``spikes_<pop>(epoch, time_step, probe, <pop>_unit)``).

The batch's ``free`` phase is the reference engine's forward pass; its output state is replaced
by the class scores :math:`-O(h_o, t_o^c)` (output target) or the classifier's logits, so the
trainer's training error and loss are those of the prediction. Seed 000's paper was not at hand
offline: the label reconstruction follows its authors' code (the targets' similarity matrix
:math:`c\,c^\top`, its row maxima), the IF reset (to zero by default) and the surrogate are
hebbsim's reading of §VI.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
from pydantic import Field

from ..data.section import Section
from ..dynamics.loss import cost
from ..dynamics.network import OUTPUT, Network, Projection
from ..dynamics.nonlinearities import rho
from ..dynamics.params import Params, draw_weight
from ..simulate.engines.base import ClampedSystem, Relaxation, States
from . import register
from .base import BatchResult, DiscreteRule, RuleState

GENERATOR = "S_h1"  # the target generator's key in the rule's state (and the checkpoint: rule/S_h1)


class SigpropConfig(Section):
    """``[learning.sigprop]``."""

    loss: Literal["pred", "l2"] = Field(
        "pred", description="each layer's loss: pred (L_pred, seed 000 eq. 9) or l2 (||h - t||^2 / 2 to its own target)")
    comparison: Literal["dot", "l2"] = Field(
        "dot", description="O(h, t) of the prediction loss and the predictions: dot (-h.t, eq. 6) or l2 (||h - t||^2, eq. 7)")
    prediction: Literal["output_target", "classification_layer"] = Field(
        "output_target", description="output_target: nearest class target at o (Fig. 2a); classification_layer: o is a "
                                     "linear classifier on hL trained by learning.cost (Fig. 2b)")
    temperature: float = Field(1.0, gt=0, description="the class scores and the logits of L_pred are -O(h, t) / temperature")
    target_generator: Literal["fixed", "learned"] = Field(
        "learned", description="whether S_1 (classes -> h1's shape) learns from layer 1's loss or stays as drawn")
    target_scale: float = Field(1.0, gt=0, description="S_1 is drawn Glorot-uniform times this")
    spiking: bool = Field(False, description="integrate-and-fire layers (seed 000 §VI)")
    time_steps: int = Field(4, ge=1, le=1000, description="spiking: time steps of every forward pass")
    threshold: float = Field(1.0, gt=0, description="spiking: the firing threshold theta")
    reset: Literal["zero", "subtract"] = Field("zero", description="spiking: after a spike v -> 0 or v -> v - theta")
    spiking_gradient: Literal["surrogate", "voltage"] = Field(
        "surrogate", description="spiking: learn through the surrogate spike derivative (rates) or from the voltage only")
    surrogate_slope: float = Field(5.0, gt=0, description="spiking: k of the surrogate 1/(1 + k|v - theta|)^2")
    dropout: float = Field(0.0, ge=0, lt=1, description="training only: the probability that a hidden unit's output "
                                                        "is dropped on its way to the next layer (inverted dropout; "
                                                        "its own loss sees it whole)")


@register
class Sigprop(DiscreteRule):
    name = "sigprop"
    config = SigpropConfig
    default_cost = "softmax_cross_entropy"
    summary = "trains the discrete feed-forward network of"

    @classmethod
    def check(cls, cfg, net: Network) -> None:
        super().check(cfg, net)
        names = [p.name for p in net.populations]
        for k, pop in enumerate(net.dynamic_populations, start=1):
            into = [p.src for p in net.learned if p.dst == pop.name]
            if into != [names[k - 1]]:
                raise ValueError(
                    f"network: learning.rule = 'sigprop' sends inputs and targets through a plain chain x -> h1 -> ... -> o; "
                    f"population {pop.name} receives learned projections from {', '.join(into) or 'nothing'}; use "
                    "network.topology = 'feedforward' without skip connections")
        if len(net.dynamic_populations) < 2:
            raise ValueError("network.layers: learning.rule = 'sigprop' needs at least one hidden layer (the target "
                             "generator maps the classes to h1's shape)")
        if cfg.learning.label_smoothing:
            raise ValueError(f"learning.label_smoothing = {cfg.learning.label_smoothing}: learning.rule = 'sigprop' "
                             "compares activities with its classes' own target embeddings, not with a target "
                             "vector; set it to 0")
        if cfg.dynamics.persistent_states:
            raise ValueError("dynamics.persistent_states = true: learning.rule = 'sigprop' computes forward passes; set "
                             "dynamics.persistent_states = false")

    def __init__(self, cfg, net: Network):
        super().__init__(cfg, net)
        self.layers = tuple(p.name for p in net.dynamic_populations)  # h1 … hL, o
        self.projection = {p.dst: p for p in net.learned}
        self.leak = {pop.name: pop.leak for pop in net.dynamic_populations}
        self.n_classes = net.sizes[OUTPUT]
        self.classifier = self.options.prediction == "classification_layer"
        # the populations that carry targets and have an early exit: every layer but a classifier
        self.target_layers = self.layers[:-1] if self.classifier else self.layers
        self._jitted = {}

    @property
    def exits(self) -> tuple[str, ...]:
        """The early exits (eq. 8), in order; the last one is the network's prediction."""
        return self.layers

    @property
    def spiking_populations(self) -> tuple[str, ...]:
        return self.target_layers if self.options.spiking else ()

    # -- state ----------------------------------------------------------------------------------
    def loop_view(self, params: Params, state: RuleState) -> tuple[Network, Params]:
        """The chain closed into seed 000's loop by the target generator: a projection o → h1
        with the weights :math:`S_1` (classes → h1, learned or fixed as the generator is), so that
        ``loop_alignment`` holds the angles of Fig. 4 for the discrete rule as for the continuous
        loop network (each learned projection on the cycle against the product of the others)."""
        loop = Projection(OUTPUT, self.net.hidden[0], kind=self.options.target_generator)
        net = dataclasses.replace(self.net, projections=(*self.net.projections, loop))
        generator = {**state.learned, **state.fixed}[GENERATOR]
        return net, Params({**params.weights, loop.name: generator}, params.biases)

    def init_state(self, rng: np.random.Generator, dtype) -> RuleState:
        h1 = self.layers[0]
        s = draw_weight(rng, "glorot_uniform", self.net.sizes[h1], self.n_classes, self.options.target_scale)
        arrays = {GENERATOR: s.astype(dtype)}
        return RuleState(learned=arrays) if self.options.target_generator == "learned" else RuleState(fixed=arrays)

    def state_learning_rates(self, rates: dict[str, float]) -> dict[str, float]:
        if self.options.target_generator != "learned":
            return {}
        return {GENERATOR: rates[f"W_{self.projection[self.layers[0]].name}"]}

    # -- the two streams ------------------------------------------------------------------------
    def _generator(self, flat: dict, state: RuleState):
        return flat[GENERATOR] if GENERATOR in flat else state.fixed[GENERATOR]

    def _current(self, flat: dict, pop: str, rates):
        p = self.projection[pop]
        return self.leak[pop] * (rates @ flat[f"W_{p.name}"].T + flat[f"b_{pop}"])

    def streams(self, flat: dict, state: RuleState, x, c, *, local: bool = True, keep: dict | None = None) -> dict:
        """Both streams through every layer: ``pop → (h, t, pre)`` with ``h`` the inputs'
        representation (B, n), ``t`` the targets' (rows of ``c``; ``None`` past the target
        layers) and ``pre`` the inputs' pre-activation (the classifier's logits at o). With
        ``local`` every layer's inputs are constants (``stop_gradient``): each layer's loss then
        reaches its own parameters only. ``keep`` (training with ``dropout``; :meth:`draw`):
        ``(pop, stream) → `` the factors, 0 or 1/(1 − p), on what ``pop`` passes up."""
        import jax

        stop = jax.lax.stop_gradient if local else (lambda a: a)
        if keep is None:
            sg = lambda a, pop=None, stream=None: stop(a)  # noqa: E731
        else:
            sg = lambda a, pop, stream: stop(a) * keep[f"{stream}/{pop}"]  # noqa: E731
        opt = self.options
        out = {}
        if opt.spiking:
            import jax.numpy as jnp

            from ..dynamics.spiking import integrate_and_fire

            T = opt.time_steps
            fire = lambda cur: integrate_and_fire(cur, opt.threshold, opt.reset, opt.spiking_gradient,  # noqa: E731
                                                  opt.surrogate_slope)
            read = (lambda z, v: v.mean(0)) if opt.spiking_gradient == "voltage" else (lambda z, v: z.mean(0))  # noqa: E731
            h_cur = jnp.broadcast_to(self._current(flat, self.layers[0], x), (T, x.shape[0], self.net.sizes[self.layers[0]]))
            t_cur = jnp.broadcast_to(c @ self._generator(flat, state).T, (T, c.shape[0], h_cur.shape[-1]))
            z_h = z_t = None  # the spikes of the layer below (set by the first layer)
            below = None
            for k, pop in enumerate(self.layers):
                if k:
                    if pop not in self.target_layers:  # the classifier reads the rates of hL
                        pre = self._current(flat, pop, sg(z_h, below, "h").mean(0))
                        out[pop] = (pre, None, pre)
                        break
                    h_cur = self._current(flat, pop, sg(z_h, below, "h"))
                    t_cur = self._current(flat, pop, sg(z_t, below, "t"))
                below = pop
                z_h, v_h = fire(h_cur)
                z_t, v_t = fire(t_cur)
                out[pop] = (read(z_h, v_h), read(z_t, v_t), v_h.mean(0), z_h)
            return out
        f = lambda s: rho(s, self.net.rho)  # noqa: E731
        h, t = x, None
        below = None
        for k, pop in enumerate(self.layers):
            pre = self._current(flat, pop, stop(h) if k == 0 else sg(h, below, "h"))
            if k == 0:
                u = c @ self._generator(flat, state).T
            elif pop in self.target_layers:
                u = self._current(flat, pop, sg(t, below, "t"))
            below = pop
            if pop not in self.target_layers:
                out[pop] = (pre, None, pre)
                break
            h, t = f(pre), f(u)
            out[pop] = (h, t, pre)
        return out

    def dissimilarity(self, h, t):
        """:math:`O(h_n, t_m)/\tau` for every pair, shape (len(h), len(t)) (eq. 6–7; :math:`\tau`
        the ``temperature``)."""
        if self.options.comparison == "dot":
            o = -(h @ t.T)
        else:
            o = (h * h).sum(-1)[:, None] - 2.0 * (h @ t.T) + (t * t).sum(-1)[None, :]
        return o if self.options.temperature == 1.0 else o / self.options.temperature

    def layer_losses(self, flat: dict, state: RuleState, x, c, mask=None, *, local: bool = True) -> dict:
        """Every layer's loss :math:`L_i` (batch mean over the real samples), by population."""
        return self._losses(self.streams(flat, state, x, c, local=local), c, mask)

    def _losses(self, streams: dict, c, mask) -> dict:
        import jax.numpy as jnp

        from ..dynamics.loss import log_softmax

        w = jnp.ones(c.shape[0], c.dtype) if mask is None else mask
        mean = lambda per_sample: (per_sample * w).sum() / w.sum()  # noqa: E731
        out = {}
        for pop, (h, t, pre, *_) in streams.items():
            if t is None:  # the classification layer
                out[pop] = mean(cost(self.net, pre, c))
            elif self.options.loss == "l2":
                out[pop] = mean(0.5 * ((h - t) ** 2).sum(-1))
            else:  # L_pred, the labels reconstructed from the learning signals: c c^T's row maxima
                same = c @ c.T
                ystar = (same == same.max(axis=1, keepdims=True)) * w[None, :]
                ystar = ystar / ystar.sum(axis=1, keepdims=True)
                logits = jnp.where(w[None, :] > 0, -self.dissimilarity(h, t), -jnp.inf)
                out[pop] = mean(-(ystar * jnp.where(ystar > 0, log_softmax(logits), 0.0)).sum(-1))
        return out

    def _class_targets(self, flat: dict, state: RuleState, x) -> dict:
        """The targets of every class at every target layer, ``pop → (n_classes, n_pop)``."""
        import jax.numpy as jnp

        eye = jnp.eye(self.n_classes, dtype=x.dtype)
        streams = self.streams(flat, state, jnp.zeros((self.n_classes, x.shape[1]), x.dtype), eye)
        return {pop: v[1] for pop, v in streams.items()}

    def _scores(self, streams: dict, targets: dict) -> dict:
        return {pop: pre if targets[pop] is None else -self.dissimilarity(h, targets[pop])
                for pop, (h, _, pre, *_) in streams.items()}

    def exit_scores(self, params: Params, state: RuleState, x) -> dict:
        """The class scores of every early exit, ``pop → (B, n_classes)``: :math:`-O(h_i, t_i^c)`
        against the targets of every class (eq. 8), the logits at a classifier."""
        import jax.numpy as jnp

        flat = {**params.trainable(self.net), **state.learned}
        streams = self.streams(flat, state, x, jnp.zeros((x.shape[0], self.n_classes), x.dtype))
        return self._scores(streams, self._class_targets(flat, state, x))

    def jitted(self, what: str):
        """``exit_scores`` or ``spike_trains`` compiled once (for evaluation and probes)."""
        if what not in self._jitted:
            import jax

            from ..simulate.engines import jax_engine  # noqa: F401  (registers Params as a pytree)

            self._jitted[what] = jax.jit(getattr(self, what))
        return self._jitted[what]

    def spike_trains(self, params: Params, state: RuleState, x) -> dict:
        """The inputs' spikes ``pop → (time_steps, B, n_pop)`` of every spiking layer."""
        import jax.numpy as jnp

        flat = {**params.trainable(self.net), **state.learned}
        streams = self.streams(flat, state, x, jnp.zeros((x.shape[0], self.n_classes), x.dtype))
        return {pop: streams[pop][3] for pop in self.spiking_populations}

    # -- per batch ------------------------------------------------------------------------------
    def draw(self, rng: np.random.Generator, batch_size: int, dtype) -> dict:
        """With ``dropout`` p: for every hidden layer and both streams, each unit's factor on what
        it passes up, 0 with probability p, else 1/(1 − p) (drawn on the host from the run's
        generator, so that a resumed run draws the same)."""
        p = self.options.dropout
        if not p:
            return {}
        keep = {}
        for pop in self.net.hidden:
            for stream in ("h", "t"):
                kept = rng.random((batch_size, self.net.sizes[pop])) >= p
                keep[f"{stream}/{pop}"] = (kept / (1.0 - p)).astype(dtype)
        return {"keep": keep}

    def unpad_draws(self, draws: dict, n: int) -> dict:
        if "keep" not in draws:
            return draws
        return {**draws, "keep": {k: v[:n] for k, v in draws["keep"].items()}}

    def batch(self, system: ClampedSystem, params: Params, state: RuleState, x, target, init: States, draws: dict,
              mask=None) -> BatchResult:
        import jax
        import jax.numpy as jnp

        flat = {**params.trainable(self.net), **state.learned}
        x = system.x
        keep = draws.get("keep")

        def total(f):
            streams = self.streams(f, state, x, target, keep=keep)
            return sum(self._losses(streams, target, mask).values()), streams

        (_, streams), grads = jax.value_and_grad(total, has_aux=True)(flat)
        # the free phase: the forward pass's states (a spiking layer: its mean voltage), the
        # prediction's class scores at the output
        scores = self._scores({OUTPUT: streams[OUTPUT]}, self._class_targets(flat, state, x))
        states = {pop: jax.lax.stop_gradient(v[2]) for pop, v in streams.items()}
        states[OUTPUT] = jax.lax.stop_gradient(scores[OUTPUT])
        finite = {k: jnp.all(jnp.isfinite(v)) for k, v in states.items()}
        free = Relaxation(states, jnp.asarray(1), jnp.zeros((), x.dtype), finite)
        return BatchResult(grads, {"free": free})


__all__ = ["GENERATOR", "Sigprop", "SigpropConfig"]
