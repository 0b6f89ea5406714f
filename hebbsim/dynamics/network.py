r"""Network structure: populations, projections and the topology presets (docs/model.md).

A :class:`Network` is a frozen description (no arrays). Its parameters live in
:class:`hebbsim.dynamics.params.Params`. Populations are named ``x`` (input),
``h1 … hL`` (hidden) and ``o`` (output). A projection ``p = (src, dst, kind)``
sends the current :math:`W_p \rho(s_\mathrm{src})` into ``dst``, with :math:`W_p`
of shape ``(n_dst, n_src)``; it is called ``"{src}_to_{dst}"``.

Projection kinds:

- ``learned``: trained by the learning rule, Glorot-uniform at init;
- ``fixed``: random at init (a named distribution), never trained;
- ``tied``: :math:`W_p = W_q^\top` for the learned projection ``q`` named in ``tied_to``
  (symmetric feedback, as in Equilibrium Propagation).

A projection may carry a ``tag``, appended to its name (``"h1_to_h2_below"``): a second
projection between the same two populations, e.g. the fixed route *from the layer below* of
the ``mixed_feedback`` topology beside the learned forward ``h1_to_h2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .loss import COSTS
from .nonlinearities import RHO_NAMES

INPUT = "x"
OUTPUT = "o"

PROJECTION_KINDS = ("learned", "fixed", "tied")
ProjectionKind = Literal[PROJECTION_KINDS]  # type: ignore[valid-type]
TOPOLOGIES = ("loop", "symmetric", "random_feedback", "direct_feedback", "mixed_feedback", "feedforward")
# the fixed feedback routes into a hidden layer h_i (seed 002): from the layer below (h_{i-1}),
# directly from the output, from the layer above (h_{i+1}; for the top hidden layer that is o)
FEEDBACK_ROUTES = ("below", "direct", "above")
NEURON_MODELS = ("gated", "additive")
INIT_DISTRIBUTIONS = (
    "glorot_uniform",
    "uniform",
    "kaiming_uniform",
    "trinomial",
    "binomial",
    "sign_identity",
    "unit_uniform",
)


@dataclass(frozen=True)
class Population:
    """A group of neurons. ``leak`` is the leak time constant :math:`r` (ds/dt ∋ −s/r)."""

    name: str
    size: int
    leak: float = 1.0


@dataclass(frozen=True)
class Projection:
    """Synapses from ``src`` to ``dst``; see the module docstring for the kinds.

    ``init`` names the distribution drawn at initialisation and ``scale`` multiplies it
    (ignored for ``tied``). ``tag`` tells apart two projections between the same populations.
    """

    src: str
    dst: str
    kind: ProjectionKind = "learned"
    tied_to: str | None = None
    init: str = "glorot_uniform"
    scale: float = 1.0
    tag: str | None = None

    @property
    def name(self) -> str:
        return projection_name(self.src, self.dst, self.tag)


def projection_name(src: str, dst: str, tag: str | None = None) -> str:
    return f"{src}_to_{dst}" + (f"_{tag}" if tag else "")


@dataclass(frozen=True)
class Network:
    """Populations (input first) and the projections between them.

    ``neuron`` selects the dynamics (docs/model.md; ``gated``: eq. 13 of seed 000, the
    continuous Hopfield model; ``additive``: leaky rate neurons). ``clip_states``
    clips every state to [0, 1] after each Euler step (Scellier's code). ``cost`` names the
    output cost :math:`C` (:mod:`hebbsim.dynamics.loss`) whose force is the nudge.
    """

    populations: tuple[Population, ...]
    projections: tuple[Projection, ...]
    rho: str = "hard_sigmoid"
    neuron: str = "gated"
    clip_states: bool = False
    cost: str = "state_mse"
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        names = [p.name for p in self.populations]
        if not names or names[0] != INPUT:
            raise ValueError(f"the first population must be the input {INPUT!r}, got {names[:1]}")
        if OUTPUT not in names:
            raise ValueError(f"the network needs an output population {OUTPUT!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"population names must be unique, got {names}")
        if self.rho not in RHO_NAMES:
            raise ValueError(f"rho = {self.rho!r} is not allowed; use one of {', '.join(RHO_NAMES)}")
        if self.cost not in COSTS:
            raise ValueError(f"cost = {self.cost!r} is not allowed; use one of {', '.join(COSTS)}")
        if self.neuron not in NEURON_MODELS:
            raise ValueError(f"neuron = {self.neuron!r} is not allowed; use one of {', '.join(NEURON_MODELS)}")
        by_name = {}
        for p in self.projections:
            for end in (p.src, p.dst):
                if end not in names:
                    raise ValueError(f"projection {p.name}: unknown population {end!r}; populations are {names}")
            if p.dst == INPUT:
                raise ValueError(f"projection {p.name}: the input population {INPUT!r} is clamped and receives no projection")
            if p.src == p.dst:
                raise ValueError(f"projection {p.name}: a population cannot project onto itself; connect two "
                                 "different populations")
            if p.name in by_name:
                raise ValueError(f"projection {p.name} is listed twice")
            if p.init not in INIT_DISTRIBUTIONS:
                raise ValueError(f"projection {p.name}: init = {p.init!r} is not allowed; use one of {', '.join(INIT_DISTRIBUTIONS)}")
            by_name[p.name] = p
        for p in self.projections:
            if p.kind == "tied":
                q = by_name.get(p.tied_to or "")
                if q is None or q.kind != "learned" or (q.src, q.dst) != (p.dst, p.src):
                    raise ValueError(
                        f"projection {p.name} is tied to {p.tied_to!r}, which must be a learned projection "
                        f"{projection_name(p.dst, p.src)}"
                    )
        object.__setattr__(self, "_by_name", by_name)

    # -- look-ups ---------------------------------------------------------------------------
    @property
    def sizes(self) -> dict[str, int]:
        return {p.name: p.size for p in self.populations}

    @property
    def dynamic_populations(self) -> tuple[Population, ...]:
        """Every population with a state (all but the clamped input)."""
        return self.populations[1:]

    @property
    def hidden(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.populations if p.name not in (INPUT, OUTPUT))

    def projection(self, name: str) -> Projection:
        return self._by_name[name]

    @property
    def learned(self) -> tuple[Projection, ...]:
        return tuple(p for p in self.projections if p.kind == "learned")

    def without_input_projections(self) -> "Network":
        """This network without the projections from the clamped input: where the input rate is
        constant (a window after a phase), their current is computed once and held instead."""
        return Network(self.populations, tuple(p for p in self.projections if p.src != INPUT), rho=self.rho,
                       neuron=self.neuron, clip_states=self.clip_states, cost=self.cost)

    def projections_into(self, dst: str) -> tuple[Projection, ...]:
        return tuple(p for p in self.projections if p.dst == dst)

    @property
    def is_symmetric(self) -> bool:
        """True when every projection between dynamic populations has a tied partner,
        so the gated dynamics descend the Hopfield energy."""
        tied_partners = {p.tied_to for p in self.projections if p.kind == "tied"}
        for p in self.projections:
            if p.src == INPUT:
                continue
            if p.kind != "tied" and p.name not in tied_partners:
                return False
        return True


def build_network(
    layers: list[int],
    topology: str = "loop",
    *,
    rho: str = "hard_sigmoid",
    neuron: str = "gated",
    clip_states: bool = False,
    cost: str = "state_mse",
    leak: float | list[float] = 1.0,
    loop_kind: ProjectionKind = "learned",
    loop_init: str = "glorot_uniform",
    loop_scale: float = 1.0,
    feedback_init: str = "uniform",
    feedback_scale: float = 1.0,
    feedback_routes: tuple[str, ...] = ("direct", "above"),
    projections: list[Projection] | None = None,
) -> Network:
    """Build a network from layer sizes ``[n_x, n_h1, …, n_hL, n_o]`` and a topology preset.

    ``projections`` replaces the preset by an explicit list. ``leak`` is one value, or one
    per non-input population.
    """
    if len(layers) < 2:
        raise ValueError(f"layers needs at least an input and an output size, got {layers}")
    names = [INPUT] + [f"h{k}" for k in range(1, len(layers) - 1)] + [OUTPUT]
    leaks = [float(leak)] * (len(layers) - 1) if isinstance(leak, (int, float)) else list(leak)
    if len(leaks) != len(layers) - 1:
        raise ValueError(f"leak needs one value or {len(layers) - 1} values (one per non-input population), got {leak}")
    pops = (Population(INPUT, int(layers[0]), 1.0),) + tuple(
        Population(n, int(size), r) for n, size, r in zip(names[1:], layers[1:], leaks)
    )
    if projections is None:
        projections = topology_projections(
            names, topology, loop_kind=loop_kind, loop_init=loop_init, loop_scale=loop_scale,
            feedback_init=feedback_init, feedback_scale=feedback_scale, feedback_routes=feedback_routes,
        )
    return Network(pops, tuple(projections), rho=rho, neuron=neuron, clip_states=clip_states, cost=cost)


def topology_projections(
    names: list[str],
    topology: str,
    *,
    loop_kind: ProjectionKind = "learned",
    loop_init: str = "glorot_uniform",
    loop_scale: float = 1.0,
    feedback_init: str = "uniform",
    feedback_scale: float = 1.0,
    feedback_routes: tuple[str, ...] = ("direct", "above"),
) -> list[Projection]:
    """The projection list of a topology preset (docs/model.md), feed-forward projections first.

    ``feedback_routes`` (``mixed_feedback`` only) lists the fixed routes into every hidden layer,
    from :data:`FEEDBACK_ROUTES`; where two routes of the top hidden layer both come from the
    output (``direct`` and ``above``) they are one projection."""
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology = {topology!r} is not allowed; use one of {', '.join(TOPOLOGIES)}")
    forward = [Projection(a, b, "learned") for a, b in zip(names[:-1], names[1:])]
    hidden = names[1:-1]
    if topology == "feedforward":
        return forward
    if topology == "loop":
        if not hidden:
            raise ValueError(f"network.layers = [{len(names)} sizes]: the loop topology needs at least one hidden "
                             "layer (the loop runs o → h1); give three or more sizes")
        if loop_kind == "tied":
            raise ValueError("the loop projection o → h1 can be learned or fixed, not tied")
        init = loop_init if loop_kind == "learned" else feedback_init
        scale = loop_scale if loop_kind == "learned" else feedback_scale
        return forward + [Projection(OUTPUT, hidden[0], loop_kind, init=init, scale=scale)]
    if topology == "symmetric":
        return forward + [Projection(b, a, "tied", tied_to=projection_name(a, b)) for a, b in zip(names[1:-1], names[2:])]
    if topology == "random_feedback":
        return forward + [
            Projection(b, a, "fixed", init=feedback_init, scale=feedback_scale) for a, b in zip(names[1:-1], names[2:])
        ]
    fixed = dict(kind="fixed", init=feedback_init, scale=feedback_scale)
    if topology == "direct_feedback":
        return forward + [Projection(OUTPUT, h, **fixed) for h in hidden]
    # mixed_feedback
    unknown = [r for r in feedback_routes if r not in FEEDBACK_ROUTES]
    if unknown or not feedback_routes or len(set(feedback_routes)) != len(feedback_routes):
        raise ValueError(f"feedback.routes = {list(feedback_routes)}: give distinct routes from "
                         f"{', '.join(FEEDBACK_ROUTES)}")
    out = list(forward)
    for k, h in enumerate(hidden):
        above = hidden[k + 1] if k + 1 < len(hidden) else OUTPUT
        if "below" in feedback_routes and k > 0:
            out.append(Projection(hidden[k - 1], h, tag="below", **fixed))
        if "direct" in feedback_routes:
            out.append(Projection(OUTPUT, h, **fixed))
        if "above" in feedback_routes and not (above == OUTPUT and "direct" in feedback_routes):
            out.append(Projection(above, h, **fixed))
    return out
