"""Parameter files (docs/guide.md): TOML in, a validated :class:`RunParams` out.

Parameter files are data: they are parsed with :mod:`tomllib` and validated with pydantic,
never evaluated. Every error names the key, the value given and what is allowed.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import tomli_w
from pydantic import (BaseModel, Field, ValidationError, create_model, field_validator, model_serializer,
                      model_validator)

from ..dynamics.loss import COST_CODES, COSTS
from .datasets import IMAGE_SHAPES, N_CLASSES
from ..rules import RULES, rule_class
from .section import Section as _Section
from ..dynamics.network import (FEEDBACK_ROUTES, INIT_DISTRIBUTIONS, NEURON_MODELS, PROJECTION_KINDS, TOPOLOGIES, Network,
                                Projection, build_network)
from ..dynamics.noise import KINDS as NOISE_KINDS
from ..dynamics.nonlinearities import RHO_NAMES
from ..dynamics.optimizers import OPTIMIZERS, SCHEDULES
from ..simulate.engines import ENGINES
from ..simulate.engines.base import SOLVERS
from ..simulate.engines.feedforward import feedforward_chain
from ..errors import HebbsimError

InitName = Literal[INIT_DISTRIBUTIONS]  # type: ignore[valid-type]


class ParameterError(HebbsimError, ValueError):
    """A parameter file or override is invalid; the message lists every problem."""


# Upper bounds of whole numbers: far beyond any run a machine can hold, low enough that no array
# size, step count or HDF5 attribute overflows before the memory estimate has its say.
MAX_UNITS = 2**20
MAX_LAYERS = 64
MAX_STEPS = 10**7
MAX_EPOCHS = 10**6
MAX_BATCH = 10**6
MAX_SAMPLES = 10**9
MAX_SEED = 2**63 - 1


class LoopConfig(_Section):
    """The o → h1 projection of the ``loop`` topology."""

    kind: Literal["learned", "fixed"] = "learned"
    init: InitName = "glorot_uniform"
    scale: float = Field(1.0, gt=0)


class FeedbackConfig(_Section):
    """Fixed random feedback of ``random_feedback`` / ``direct_feedback`` / ``mixed_feedback`` (and a fixed loop)."""

    init: InitName = "uniform"
    scale: float = Field(1.0, gt=0)
    routes: list[Literal[FEEDBACK_ROUTES]] | None = Field(  # type: ignore[valid-type]
        None, min_length=1, max_length=len(FEEDBACK_ROUTES),
        description="mixed_feedback: the fixed routes into every hidden layer (below, direct, above); default: "
                    "the rule's (learning.fa_strategy.strategy), else direct and above")


class ProjectionConfig(_Section):
    src: str
    dst: str
    kind: Literal[PROJECTION_KINDS] = "learned"  # type: ignore[valid-type]
    tied_to: str | None = None
    init: InitName = "glorot_uniform"
    scale: float = Field(1.0, gt=0)


class NetworkConfig(_Section):
    layers: list[int] = Field(min_length=2, max_length=MAX_LAYERS)
    topology: Literal[TOPOLOGIES] | None = Field(  # type: ignore[valid-type]
        None, description="default: the rule's (loop for the EP rules and forward_gradient, random_feedback for fa, "
                          "direct_feedback for dfa and drtp, mixed_feedback for fa_strategy)")
    rho: Literal[RHO_NAMES] = "hard_sigmoid"  # type: ignore[valid-type]
    neuron: Literal[NEURON_MODELS] | None = Field(  # type: ignore[valid-type]
        None, description="gated | additive; default: the rule's (additive for forward_gradient, else gated)")
    clip_states: bool = False
    leak: float | list[float] = 1.0
    loop: LoopConfig = LoopConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    projections: list[ProjectionConfig] | None = None

    @model_validator(mode="after")
    def _sizes_positive(self):
        for k, n in enumerate(self.layers):
            if not 1 <= n <= MAX_UNITS:
                raise ValueError(f"layers[{k}] = {n}: every layer size must be a whole number from 1 to {MAX_UNITS}")
        leaks = [self.leak] if isinstance(self.leak, float) else self.leak
        if any(r <= 0 for r in leaks):
            raise ValueError(f"leak = {self.leak}: leak time constants must be > 0")
        return self


class NoiseConfig(_Section):
    """``[dynamics.noise]``: additive noise on the drive of some populations (docs/model.md, Noise;
    :mod:`hebbsim.dynamics.noise`). Cross-key checks are in :meth:`RunParams._check_noise`."""

    kind: Literal[NOISE_KINDS] = Field(  # type: ignore[valid-type]
        "none", description="none | white (ds = f dt + sigma dW) | ou (an Ornstein-Uhlenbeck current xi)")
    sigma: float | None = Field(None, ge=0, description="white: the diffusion sigma; ou: the current's stationary "
                                                        "standard deviation (required with kind = white or ou)")
    tau: float = Field(1.0, gt=0, description="ou: the current's correlation time tau_xi")
    populations: list[str] | None = Field(None, description="noisy populations (default: every hidden one)")
    seed: int | None = Field(None, ge=0, le=MAX_SEED,
                             description="the noise draws' own stream (default: learning.seed; independent of the "
                                         "run's generator either way)")


class DynamicsConfig(_Section):
    engine: Literal[ENGINES] = "numba"  # type: ignore[valid-type]
    solver: Literal[SOLVERS] = Field(  # type: ignore[valid-type]
        "euler", description="euler: fixed dt (both engines); tsit5/dopri5: adaptive, jax engine only")
    rtol: float = Field(1e-6, gt=0, description="relative tolerance of the adaptive solvers")
    atol: float = Field(1e-8, gt=0, description="absolute tolerance of the adaptive solvers")
    dtype: Literal["float32", "float64"] = "float32"
    dt: float = Field(0.5, gt=0, le=10)
    free_steps: int = Field(60, ge=1, le=MAX_STEPS)
    nudge_steps: int = Field(12, ge=1, le=MAX_STEPS)
    eval_steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="free steps at evaluation (default: free_steps)")
    tol: float = Field(0.0, ge=0, description="stop a free phase once max|ds/dt| < tol (0: never)")
    threads: int | None = Field(None, ge=1, le=1024,
                                description="BLAS threads of the engine's products (numba: its Euler kernels); every "
                                            "other BLAS pool of the process gets 1 (docs/engines.md, Threads). "
                                            "Default: the pool's own size (the cores, or OPENBLAS_NUM_THREADS)")
    beta: float = Field(0.5, gt=0)
    symmetric_nudging: bool = False
    random_sign_beta: bool = False
    persistent_states: bool = False
    noise: NoiseConfig = NoiseConfig()

    @model_serializer(mode="wrap")
    def _without_noise_no_noise_table(self, handler):
        """Without noise no ``noise`` table: a noise-free run stores (and resumes against, and a
        sweep point hashes) the parameters it did before noise existed."""
        data = handler(self)
        if self.noise.kind == "none":
            data.pop("noise", None)
        return data

    @model_validator(mode="after")
    def _solver_fits_engine(self):
        if self.solver != "euler" and self.engine != "jax":
            raise ValueError(
                f"dynamics.solver = {self.solver!r} needs dynamics.engine = 'jax' (the numba engine integrates "
                "with Euler only); set dynamics.solver = 'euler' or dynamics.engine = 'jax'"
            )
        return self


class LearningBase(_Section):
    """``[learning]``: what every rule shares. Each registered rule extends it with its name as
    the ``rule`` tag and, where it has one, its own table ``[learning.<rule>]`` (:data:`LearningConfig`)."""

    rule: str = Field(description="the learning rule (hebbsim.rules.RULES); default: ep_chl_classic for "
                                  "network.topology = 'symmetric', ep_chl otherwise")

    cost: Literal[COSTS] | None = Field(  # type: ignore[valid-type]
        None, description="output cost C: the nudge is -beta dC/ds_o, the recorded loss is C, the exact gradient "
                          "and the forward-gradient reward use C; default: rate_mse for forward_gradient, "
                          "state_mse otherwise")
    lr: float | list[float] | dict[str, float] = 0.05
    bias_lr: float | dict[str, float] | None = Field(
        None, description="bias learning rates: one value for every bias, or a table by population; a bias not "
                          "named learns at the rate of the first learned projection into its population")
    optimizer: Literal[OPTIMIZERS] = "sgd"  # type: ignore[valid-type]
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="targets d = (1 - eps) one_hot + eps / n_classes, "
                                   "for the nudge, the recorded losses and the exact gradient alike")
    lr_schedule: Literal[SCHEDULES] = Field(  # type: ignore[valid-type]
        "constant", description="factor on every rate per epoch (hebbsim.dynamics.optimizers.lr_scale)")
    lr_final_fraction: float = Field(0.0, ge=0, le=1, description="cosine: the factor the rates anneal towards")
    lr_decay: float = Field(1.0, gt=0, le=1, description="exponential: the factor per epoch")
    batch_size: int = Field(20, ge=1, le=MAX_BATCH)
    eval_batch_size: int = Field(1000, ge=1, le=MAX_BATCH)
    epochs: int = Field(30, ge=1, le=MAX_EPOCHS)
    seed: int = Field(1, ge=0, le=MAX_SEED, description="one integer makes a run bit-reproducible (stored as int64)")


def _learning_config():
    """The discriminated union over the registered rules: ``learning.rule`` picks the model, so a
    rule's own table is validated by the rule's config model and refused under another rule."""
    members = []
    for name, cls in RULES.items():
        fields: dict[str, Any] = {"rule": (Literal[name], ...)}
        if cls.config is not None:
            fields[name] = (cls.config, cls.config())
        members.append(create_model(f"Learning_{name}", __base__=LearningBase, **fields))
    return Annotated[Union[tuple(members)], Field(discriminator="rule")]


LearningConfig = _learning_config()


def default_rule(topology: str) -> str:
    """``learning.rule`` when not given: the exact EP gradient on tied weights, seed 000's rule otherwise."""
    return "ep_chl_classic" if topology == "symmetric" else "ep_chl"


DATASET_SHAPES = {name: (h * w, N_CLASSES[name]) for name, (h, w) in IMAGE_SHAPES.items()}
"""(inputs, classes) of each data set: the sizes of the network's first and last layers."""


class DataConfig(_Section):
    dataset: Literal[tuple(DATASET_SHAPES)] = "digits"  # type: ignore[valid-type]
    root: str | None = None
    download: bool = True
    train_subset: int | None = Field(None, ge=1, le=MAX_SAMPLES, description="use only the first N training samples")
    test_subset: int | None = Field(None, ge=1, le=MAX_SAMPLES, description="use only the first N test samples")
    validation: int | None = Field(
        None, ge=1, le=MAX_SAMPLES,
        description="hold out the last N training samples and evaluate on them instead of the test set (test_error "
                    "and test_loss are then validation figures, the probes of probe_split = 'test' validation "
                    "samples): for choosing settings without looking at the test set")
    standardize: bool = Field(False, description="shift and scale every input feature to mean 0, standard deviation 1 "
                                                 "over the training samples (seed 001's protocol)")
    augment_shift: int = Field(
        0, ge=0, le=4,
        description="move every training image by a random whole number of pixels, at most this many, along each "
                    "axis, drawn afresh every epoch (hebbsim.data.augment); test and validation images stay; 0: off")

    @model_validator(mode="after")
    def _augment_needs_images(self):
        if self.augment_shift and self.standardize:
            raise ValueError(f"data.augment_shift = {self.augment_shift} with data.standardize = true: pixels shifted "
                             "in are blank (0), which is not blank after standardizing; set one of them off")
        return self


PHASE_NAMES = ("free", "nudged", "nudged_minus")


class RecordConfig(_Section):
    """What the run file records (docs/guide.md, Run files). Probe samples are fixed data-set indices: ``probes``
    samples of the ``probe_split`` split, evenly spaced over it (``probe_spacing = "even"``) or
    the first ones (``"first"``); their states are recorded every ``every_steps`` Euler steps of
    each phase in ``phases`` at the end of every epoch."""

    path: str = "runs/run.h5"
    probes: int = Field(16, ge=0, le=MAX_BATCH, description="number of probe samples (0: no state trajectories)")
    probe_split: Literal["test", "train"] = "test"
    probe_spacing: Literal["even", "first"] = "even"
    every_steps: int = Field(2, ge=1, le=MAX_STEPS, description="record probe states every this many Euler steps")
    populations: list[str] | None = Field(None, description="populations whose states are recorded (default: all but x)")
    phases: list[Literal[PHASE_NAMES]] | None = Field(  # type: ignore[valid-type]
        None, min_length=1,
        description="phases whose probe states are recorded (default: every phase the run has; record.probes = 0 "
                    "records none)")
    weights_every: int = Field(5, ge=1, le=MAX_EPOCHS,
                               description="store a weight snapshot every this many epochs (and the last)")
    grad_alignment: bool = Field(
        False, description="record the angle between each EP update and the exact gradient on the probe samples "
                            "(needs the JAX reference: a compilation per run and a converged free phase)")
    compression: Literal["gzip", "lzf", "none"] = "gzip"
    compression_level: int = Field(4, ge=1, le=9, description="gzip level (1 fastest … 9 smallest)")

    @field_validator("path")
    @classmethod
    def _run_file_name(cls, path: str) -> str:
        """``~`` expanded; a trailing ``/`` names a folder for ``run.h5``; no empty name, NUL byte
        or bare ``.``/``..`` (what the file system itself allows is checked before a run starts)."""
        if "\x00" in path:
            raise ValueError("a path cannot contain a NUL byte")
        path = os.path.expanduser(path.strip())
        if path.endswith(("/", os.sep)):
            path = os.path.join(path, "run.h5")
        if not path or os.path.basename(path) in ("", ".", ".."):
            raise ValueError("give a run file name, e.g. 'runs/run.h5' (a trailing '/' puts run.h5 in that folder)")
        return path

    @model_validator(mode="after")
    def _unique(self):
        for key in ("populations", "phases"):
            names = getattr(self, key)
            if names is not None and len(set(names)) != len(names):
                raise ValueError(f"record.{key} = {names}: names must not repeat")
        return self




class RunParams(_Section):
    network: NetworkConfig
    dynamics: DynamicsConfig = DynamicsConfig()
    learning: LearningConfig
    data: DataConfig = DataConfig()
    record: RecordConfig = RecordConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_rule(cls, raw):
        """``learning.rule`` picks the learning table's model, so its default (which depends on
        the topology) is filled in before validation."""
        if not isinstance(raw, dict):
            return raw
        learning = raw.get("learning", {})
        if isinstance(learning, dict) and "rule" not in learning:
            network = raw.get("network")
            topology = network.get("topology", "loop") if isinstance(network, dict) else "loop"
            raw = {**raw, "learning": {**learning, "rule": default_rule(topology if isinstance(topology, str) else "")}}
        # and the topology's default is the rule's (written into the parameters, which say what ran)
        learning, network = raw.get("learning"), raw.get("network")
        if (isinstance(network, dict) and "topology" not in network and network.get("projections") is None
                and isinstance(learning, dict) and isinstance(learning.get("rule"), str) and learning["rule"] in RULES):
            raw = {**raw, "network": {**network, "topology": RULES[learning["rule"]].default_topology}}
        return raw

    @model_validator(mode="after")
    def _consistent(self):
        n_in, n_out = DATASET_SHAPES[self.data.dataset]
        layers = self.network.layers
        if layers[0] != n_in or layers[-1] != n_out:
            raise ValueError(
                f"network.layers = {layers} does not fit data.dataset = {self.data.dataset!r}: "
                f"the first size must be {n_in} (inputs) and the last {n_out} (classes)"
            )
        if self.dynamics.solver != "euler" and self.network.clip_states:
            raise ValueError(
                f"dynamics.solver = {self.dynamics.solver!r} integrates the ODE and cannot clip states after "
                "each step; set network.clip_states = false or dynamics.solver = 'euler'"
            )
        # defaults that depend on other keys are resolved here, so the stored parameter file says what ran
        rule = rule_class(self.learning.rule)
        if self.learning.cost is None:
            self.learning.cost = rule.default_cost
        if self.network.neuron is None:
            self.network.neuron = rule.default_neuron
        if self.network.topology is None:
            self.network.topology = rule.default_topology
        if self.network.topology == "mixed_feedback" and self.network.feedback.routes is None:
            self.network.feedback.routes = list(rule.feedback_routes(self))
        try:
            net = self.build_network()
        except ValueError as err:  # the model's own check; say which key it is about
            msg = str(err)
            first = msg.split(" ")[0]
            raise ValueError(msg if msg.startswith("network.") else f"network.{msg}"
                             if first in NetworkConfig.model_fields else f"network.projections: {msg}") from None
        self._check_engine(rule, net)
        rule.check(self, net)
        learned = [p.name for p in net.learned]
        lr = self.learning.lr
        if isinstance(lr, list) and len(lr) != len(learned):
            raise ValueError(
                f"learning.lr = {lr} has {len(lr)} values; this network has {len(learned)} learned "
                f"projections ({', '.join(learned)}): give one value per projection, one float, or a table by name"
            )
        if isinstance(lr, dict) and set(lr) != set(learned):
            raise ValueError(
                f"learning.lr = {lr}: the table must name exactly the learned projections {', '.join(learned)}"
            )
        lrs = lr if isinstance(lr, list) else list(lr.values()) if isinstance(lr, dict) else [lr]
        if any(v < 0 for v in lrs) or not any(v > 0 for v in lrs):
            raise ValueError(f"learning.lr = {lr}: learning rates must be >= 0 (0 freezes a projection) and one > 0")
        self._check_bias_lr(net)
        self._check_noise(net)
        dynamic = [p.name for p in net.dynamic_populations]
        for pop in self.record.populations or ():
            if pop not in dynamic:
                raise ValueError(f"record.populations = {self.record.populations}: {pop!r} is not a recordable "
                                 f"population of this network; use some of {', '.join(dynamic)}")
        for phase in self.record.phases or ():
            if phase not in self.phases:
                raise ValueError(f"record.phases = {self.record.phases}: this run has no {phase!r} phase "
                                 f"(learning.rule = {self.learning.rule!r} records {', '.join(self.phases)}; "
                                 "nudged_minus needs dynamics.symmetric_nudging = true)")
        return self

    @property
    def phases(self) -> tuple[str, ...]:
        """The phases of a training batch that the run records, in order (the rule's)."""
        return rule_class(self.learning.rule).phases(self)

    def _check_engine(self, rule, net: Network) -> None:
        """What the engine cannot run: a rule without a discrete form, a network without a
        feed-forward chain or more than one step per phase on the reference engine; a nudge of a
        cost the numba kernels do not implement."""
        dyn, name = self.dynamics, self.learning.rule
        if dyn.engine == "reference":
            if not rule.discrete:
                discrete = ", ".join(k for k, r in RULES.items() if r.discrete)
                raise ValueError(
                    f"learning.rule = {name!r} has no discrete (feed-forward) form, which is all dynamics.engine = "
                    f"'reference' runs; use dynamics.engine = 'numba' or 'jax', or a rule with one ({discrete})")
            feedforward_chain(net)
            # one sweep is the fixed point: a phase is one step, and the run file records it so
            if "free_steps" not in dyn.model_fields_set:
                dyn.free_steps = 1
            for key in ("free_steps", "eval_steps"):
                steps = getattr(dyn, key)
                if steps not in (None, 1):
                    raise ValueError(f"dynamics.{key} = {steps}: dynamics.engine = 'reference' reaches the fixed point "
                                     f"in one feed-forward sweep (1 step); leave dynamics.{key} out or set it to 1")
        if dyn.engine == "numba" and rule.nudges and self.learning.cost not in COST_CODES:
            raise ValueError(
                f"learning.cost = {self.learning.cost!r}: learning.rule = {name!r} drives the output with the cost's "
                f"force, which the numba engine implements for {' and '.join(COST_CODES)} only; use dynamics.engine "
                "= 'jax' or one of those costs")

    def _check_bias_lr(self, net: Network) -> None:
        blr = self.learning.bias_lr
        dynamic = [p.name for p in net.dynamic_populations]
        values = blr.values() if isinstance(blr, dict) else [] if blr is None else [blr]
        if any(v <= 0 for v in values):
            raise ValueError(f"learning.bias_lr = {blr}: learning rates must be > 0")
        unknown = [k for k in blr if k not in dynamic] if isinstance(blr, dict) else []
        if unknown:
            raise ValueError(f"learning.bias_lr = {blr}: {', '.join(map(repr, unknown))} is not a population with a "
                             f"bias; name some of {', '.join(dynamic)}")

    def _check_noise(self, net: Network) -> None:
        """``[dynamics.noise]`` against the rest: its defaults resolved (populations: the hidden
        ones; seed: learning.seed), and settings noisy dynamics cannot honour refused."""
        noise, dyn = self.dynamics.noise, self.dynamics
        if noise.kind == "none":
            given = [k for k in ("sigma", "populations", "seed") if getattr(noise, k) is not None]
            if given or noise.tau != NoiseConfig.model_fields["tau"].default:
                key = given[0] if given else "tau"
                raise ValueError(f"dynamics.noise.{key} = {getattr(noise, key)!r} has no effect with dynamics.noise.kind"
                                 " = 'none'; set kind = 'white' or 'ou', or remove the key")
            return
        if noise.sigma is None:
            raise ValueError(f"dynamics.noise.sigma: required with dynamics.noise.kind = {noise.kind!r} (the noise "
                             "amplitude, >= 0)")
        dynamic = [p.name for p in net.dynamic_populations]
        if noise.populations is not None:
            bad = [p for p in noise.populations if p not in dynamic]
            if bad or not noise.populations or len(set(noise.populations)) != len(noise.populations):
                raise ValueError(f"dynamics.noise.populations = {noise.populations}: give distinct names among the "
                                 f"non-input populations {', '.join(dynamic)}")
        if dyn.solver != "euler":
            raise ValueError(f"dynamics.solver = {dyn.solver!r} with dynamics.noise.kind = {noise.kind!r}: noisy "
                             "dynamics are integrated at the fixed dt (Euler-Maruyama); set dynamics.solver = 'euler'")
        if dyn.tol > 0:
            raise ValueError(f"dynamics.tol = {dyn.tol} with dynamics.noise.kind = {noise.kind!r}: noisy dynamics "
                             "never come to rest; set dynamics.tol = 0")
        if self.learning.rule == "forward_gradient":
            raise ValueError(f"dynamics.noise.kind = {noise.kind!r} with learning.rule = 'forward_gradient': its "
                             "perturbed window has no noise term; set dynamics.noise.kind = 'none'")
        if noise.populations is None:
            if not net.hidden:
                raise ValueError(f"dynamics.noise.kind = {noise.kind!r}: this network has no hidden population to "
                                 f"make noisy; name dynamics.noise.populations among {', '.join(dynamic)}")
            noise.populations = list(net.hidden)
        if noise.seed is None:
            noise.seed = self.learning.seed

    def build_network(self) -> Network:
        n = self.network
        projections = None
        if n.projections is not None:
            projections = [Projection(**p.model_dump()) for p in n.projections]
        return build_network(
            n.layers, n.topology, rho=n.rho, neuron=n.neuron, clip_states=n.clip_states, cost=self.learning.cost,
            leak=n.leak,
            loop_kind=n.loop.kind, loop_init=n.loop.init, loop_scale=n.loop.scale,
            feedback_init=n.feedback.init, feedback_scale=n.feedback.scale,
            feedback_routes=tuple(n.feedback.routes or ("direct", "above")), projections=projections,
        )

    def learning_rates(self, net: Network) -> dict[str, float]:
        """One rate per trainable array (``W_<proj>``, ``b_<pop>``). A bias learns at the rate
        ``learning.bias_lr`` gives it; else at the rate of the first learned projection into its
        population (as in Scellier & Bengio's code), or of the first learned projection when
        none enters it."""
        names = [p.name for p in net.learned]
        lr = self.learning.lr
        per_proj = (dict(zip(names, lr)) if isinstance(lr, list)
                    else dict(lr) if isinstance(lr, dict) else {k: lr for k in names})
        out = {f"W_{k}": float(v) for k, v in per_proj.items()}
        for pop in net.dynamic_populations:
            into = [p.name for p in net.learned if p.dst == pop.name]
            out[f"b_{pop.name}"] = float(per_proj[into[0]] if into else per_proj[names[0]])
        blr = self.learning.bias_lr
        overrides = blr if isinstance(blr, dict) else {} if blr is None else {p.name: blr for p in net.dynamic_populations}
        out.update({f"b_{pop}": float(v) for pop, v in overrides.items()})
        return out

    def to_toml(self) -> str:
        return tomli_w.dumps(self.model_dump(exclude_none=True))


# ----------------------------------------------------------------------------------------------
_UNION_MEMBER = re.compile(r"^(int|float|str|bool|none|list\[.*\]|dict\[.*\]|tuple\[.*\])$")


def _clean_loc(loc: tuple) -> tuple[tuple, str | None]:
    """A validation error's location as the parameter file's key path (without pydantic's
    union-member labels or the learning table's rule tag), and that rule tag if any."""
    rule = None
    if len(loc) > 1 and loc[0] == "learning" and loc[1] in RULES:
        rule, loc = loc[1], (loc[0],) + tuple(loc[2:])
    return tuple(p for p in loc if not (isinstance(p, str) and _UNION_MEMBER.match(p))), rule


def _short(value) -> str:
    """``repr(value)``, cut to one readable line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + " … " + text[-12:]


def _format_errors(err: ValidationError, source: str) -> str:
    """One line per problem: ``key = value: what is allowed``."""
    problems: dict[str, list[str]] = {}
    for e in err.errors():
        loc, rule = _clean_loc(e["loc"])
        key = ".".join(str(p) for p in loc)
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            if loc[:1] == ("learning",) and len(loc) == 2 and loc[1] in RULES:
                line = (f"learning.{loc[1]} is given but learning.rule = {rule!r}; remove the table or set "
                        f"learning.rule = {loc[1]!r}")
            else:
                section = _section_model(loc[:-1], rule)
                allowed = ", ".join(section.model_fields) if section else "?"
                line = f"{key} = {_short(value)}: unknown key; allowed keys here: {allowed}"
        elif e["type"] == "missing":
            line = f"{key}: required key is missing"
        elif e["type"] == "union_tag_invalid":
            line = f"learning.rule = {e['ctx']['tag']!r}: not a learning rule; use one of {', '.join(RULES)}"
        else:
            msg = e["msg"].removeprefix("Value error, ")
            line = f"{key} = {_short(value)}: {msg}" if key else msg
        if key in problems and e["type"] not in ("extra_forbidden", "missing"):
            problems[key].append(line.split(": ", 1)[-1])  # the other members of a union
        else:
            problems.setdefault(key if e["type"] not in ("extra_forbidden",) else f"{key}#{len(problems)}",
                                []).append(line)
    lines = ["; or ".join(dict.fromkeys(v)) for v in problems.values()]
    if len(lines) == 1:  # the usual case: one line, key first
        return f"{lines[0]} (in {source})"
    return "\n".join([f"invalid parameters in {source}:"] + ["  " + line for line in lines])


def _section_model(loc, rule: str | None = None) -> type[BaseModel] | None:
    model: Any = RunParams
    for part in loc:
        if model is RunParams and part == "learning":
            model = LearningBase if rule is None else next(
                m for m in LearningConfig.__origin__.__args__ if m.model_fields["rule"].annotation == Literal[rule])
            continue
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        ann = field.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None:
            return None
    return model


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"section.key=value"`` → (["section", "key"], value), the value read as a TOML value
    (so ``0.1``, ``true``, ``[1, 2]`` and ``"text"`` keep their types; bare words are strings)."""
    if "=" not in item:
        raise ParameterError(f"--set {item!r}: expected section.key=value, e.g. --set learning.epochs=5")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ParameterError(f"--set {item!r}: the key must be section.key, e.g. dynamics.dt")
    raw = raw.strip()
    if "\n" in raw or "\r" in raw:
        raise ParameterError(f"--set {item!r}: the value must be one line (one TOML value)")
    try:
        parsed = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        return parts, raw
    except RecursionError:
        raise ParameterError(f"--set {key.strip()}: the value is nested too deeply") from None
    if set(parsed) != {"v"}:  # e.g. 'a.b=1 \n [x]' or 'a.b=1, c = 2': more TOML than one value
        raise ParameterError(f"--set {item!r}: the value must be a single TOML value")
    return parts, parsed["v"]


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    for item in overrides or ():
        parts, value = parse_override(item)
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ParameterError(f"--set {item!r}: {p!r} is not a section")
        node[parts[-1]] = value
    return raw


def validate_params(raw: dict, source: str = "parameters") -> RunParams:
    try:
        return RunParams.model_validate(raw)
    except ValidationError as err:
        raise ParameterError(_format_errors(err, source)) from None
    except RecursionError:
        raise ParameterError(f"{source}: values are nested too deeply to be parameters") from None


def read_toml_file(path: Path, what: str) -> dict:
    """The tables of the TOML file ``path``; every way it can be unreadable is one
    :class:`ParameterError` line naming ``what`` and the path."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ParameterError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ParameterError(f"{what} {path} is a directory; give a .toml file") from None
    except PermissionError:
        raise ParameterError(f"{what} {path} cannot be read (permission denied)") from None
    except UnicodeDecodeError as err:
        raise ParameterError(f"{what} {path} is not UTF-8 text (byte {err.start}); TOML files are UTF-8") from None
    except OSError as err:
        raise ParameterError(f"{what} {path} cannot be read: {err.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ParameterError(f"{path} is not valid TOML: {err}") from None
    except RecursionError:
        raise ParameterError(f"{path}: arrays or tables are nested too deeply to be a {what}") from None


def load_params(path: str | Path | dict | RunParams, overrides: list[str] | None = None) -> RunParams:
    """Read and validate a parameter file (or a dict), applying ``--set`` style overrides."""
    if isinstance(path, RunParams):
        if not overrides:
            return path
        path = path.model_dump(exclude_none=True)
    if isinstance(path, dict):
        return validate_params(apply_overrides(copy.deepcopy(path), overrides))
    path = Path(path)
    raw = read_toml_file(path, "parameter file")
    return validate_params(apply_overrides(raw, overrides), str(path))
