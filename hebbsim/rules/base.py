r"""What a learning rule is to hebbsim: the phases it runs, the state it keeps and the descent
direction it computes from them, on any engine.

A rule is one subclass of :class:`Rule` in one module of :mod:`hebbsim.rules`, registered by name
(:func:`hebbsim.rules.register`). The one trainer (:class:`hebbsim.simulate.trainer.Trainer`)
calls it per mini-batch through :meth:`Rule.batch`, a pure function of arrays that runs eagerly
on the numba engine and traced (``jax.jit``) on the jax engine. What the rule keeps between
batches besides the network's parameters — learned readouts, fixed feedback matrices, buffers
— is its *state*: drawn by :meth:`Rule.init_state`, saved in the checkpoint, and (for the
learned part) stepped by the same optimizer as the weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import numpy as np

from ..dynamics.network import Network
from ..dynamics.params import Params
from ..simulate.engines.base import ClampedSystem, Relaxation, States

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..data.params import RunParams

Arrays = dict[str, np.ndarray]


class RuleState(NamedTuple):
    """A rule's own arrays: ``learned`` ones (stepped by the optimizer with the weights, keys
    distinct from ``Params.trainable``'s) and ``fixed`` ones (drawn once, never changed). A
    named tuple, so JAX treats it as a pytree."""

    learned: Arrays = {}
    fixed: Arrays = {}


@dataclass
class BatchResult:
    """What :meth:`Rule.batch` returns: the descent direction ``grads`` (keys of
    ``Params.trainable`` and of the learned state), and every phase it ran (``"free"`` first;
    the free states are the batch's prediction and, with persistent states, its next start)."""

    grads: dict
    phases: dict[str, Relaxation]
    buffers: dict = field(default_factory=dict)  # new rows of the rule's per-sample buffers, by name
    fixed: dict = field(default_factory=dict)  # new values of arrays of the rule's fixed state (e.g. counters)

    @property
    def free(self) -> Relaxation:
        return self.phases["free"]


class Rule(ABC):
    """A learning rule (abstract: subclasses set :attr:`name` and implement :meth:`batch`).

    Class attributes a rule may set: ``config`` (the pydantic model of its own
    ``[learning.<name>]`` table, or ``None``), ``default_neuron``, ``default_cost`` and
    ``default_topology`` (what ``network.neuron``, ``learning.cost`` and ``network.topology``
    default to under this rule), ``discrete`` (the rule has a feed-forward form that runs on
    ``dynamics.engine = "reference"``, whose only phase is the forward pass) and ``nudges`` (its
    phases drive the output with the cost's force −β ∂C/∂s_o — a
    nudged phase, a reward — so it needs an engine that implements that force for the cost).
    """

    name: ClassVar[str]
    config: ClassVar[type["BaseModel"] | None] = None
    default_neuron: ClassVar[str] = "gated"
    default_cost: ClassVar[str] = "state_mse"
    default_topology: ClassVar[str] = "loop"
    discrete: ClassVar[bool] = False
    nudges: ClassVar[bool] = True

    def __init__(self, cfg: "RunParams", net: Network):
        self.cfg, self.net = cfg, net
        self.options = getattr(cfg.learning, self.name, None) if self.config is not None else None

    # -- declarations (from the parameters alone) ----------------------------------------------
    @classmethod
    def phases(cls, cfg: "RunParams") -> tuple[str, ...]:
        """The phases a training batch runs whose states the run can record, ``"free"`` first."""
        return ("free",)

    @classmethod
    def batch_copies(cls, cfg: "RunParams", net: Network) -> int:
        """How many copies of a batch the rule integrates at once (its largest tiled phase)."""
        return 1

    @classmethod
    def feedback_routes(cls, cfg: "RunParams") -> tuple[str, ...]:
        """The routes of a ``mixed_feedback`` network when ``network.feedback.routes`` is not given."""
        return ("direct", "above")

    @classmethod
    def check(cls, cfg: "RunParams", net: Network) -> None:
        """Refuse settings this rule cannot run (raise ``ValueError`` naming the key and the fix)."""

    # -- state ----------------------------------------------------------------------------------
    def init_state(self, rng: np.random.Generator, dtype) -> RuleState:
        """The rule's own arrays at the start of a run (drawn from the run's generator, after
        the network's parameters)."""
        return RuleState()

    def sample_buffers(self) -> dict[str, tuple[int, ...]]:
        """The rule's per-training-sample buffers: name → shape of one sample's row. The trainer
        keeps them (zeros at the start, saved in the checkpoint as ``buffer/<name>``), hands a
        batch's rows to :meth:`batch` as ``draws["buffer/<name>"]`` and stores the rows the
        batch returns in :attr:`BatchResult.buffers` for the next time the samples are seen."""
        return {}

    def trained_fixed(self) -> tuple[str, ...]:
        """The network's ``fixed`` projections this rule trains itself (its descent direction has a
        ``W_<name>`` for each; the optimizer steps them at :meth:`state_learning_rates`)."""
        return ()

    def state_learning_rates(self, rates: dict[str, float]) -> dict[str, float]:
        """Learning rates of the learned state's arrays, given the parameters' ``rates``."""
        return {}

    def inference_params(self, params: Params) -> Params:
        """The parameters of the network that infers: the free phase of training, evaluation and
        the probes relax it. The network as it is, unless a rule silences part of it."""
        return params

    def loop_view(self, params: Params, state: "RuleState") -> tuple[Network, Params]:
        """The network whose directed cycles the run file's ``loop_alignment`` measures (seed 000
        Fig. 4): the network itself, unless the rule closes a loop of its own outside it
        (sigprop's target generator)."""
        return self.net, params

    # -- per batch --------------------------------------------------------------------------------
    def draw(self, rng: np.random.Generator, batch_size: int, dtype) -> dict:
        """Host-side randomness of one batch, drawn for the full ``batch_size`` (so that both
        engines, padded or not, see the same draws)."""
        return {}

    def unpad_draws(self, draws: dict, n: int) -> dict:
        """The draws of the first ``n`` samples (an unpadded short last batch)."""
        return draws

    def nudged_phases(self, system: ClampedSystem, params: Params, x, target, free: States, beta,
                      draws: dict | None = None) -> dict:
        """The phases after the free one whose probe states the run records, by name
        (:class:`hebbsim.rules.contrastive.NudgedPhase`); none unless a rule has them. ``draws``
        are the batch's (``None`` for probe samples)."""
        return {}

    @abstractmethod
    def batch(self, system: ClampedSystem, params: Params, state: RuleState, x, target, init: States, draws: dict,
              mask=None) -> BatchResult:
        """Run the rule's phases on one batch and return its descent direction (averaged over
        the real samples: ``mask`` is 1 for them and 0 for padding)."""

    def locate_divergence(self, engine, params: Params, phase: str, x, target, init: States, draws: dict,
                          finite: dict) -> tuple[int, str]:
        """After a traced batch reported a non-finite ``phase`` (``finite``: that phase's flag per
        population): replay it eagerly and return (step, population). The default replays the
        free phase."""
        return engine.locate_divergence(self.inference_params(params), init, x, self.cfg.dynamics.free_steps)


class DiscreteRule(Rule):
    """A rule with no continuous-time form: it trains the feed-forward network of
    ``dynamics.engine = "reference"`` only (subclasses say what they do in ``summary``)."""

    default_neuron = "additive"
    default_topology = "feedforward"
    discrete = True
    nudges = False
    summary: ClassVar[str] = "runs on"

    @classmethod
    def check(cls, cfg: "RunParams", net: Network) -> None:
        if cfg.dynamics.engine != "reference":
            raise ValueError(f"dynamics.engine = {cfg.dynamics.engine!r}: learning.rule = {cls.name!r} {cls.summary} "
                             "dynamics.engine = 'reference' only; set dynamics.engine = 'reference'")
