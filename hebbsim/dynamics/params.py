"""Network parameters (weights and biases) and their initialisation (docs/model.md, Projections and topologies)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network import Network, Projection


@dataclass
class Params:
    """Weights of the learned and fixed projections, shape ``(n_dst, n_src)``, and one bias
    per non-input population. Tied projections have no entry: :meth:`weight` resolves them."""

    weights: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]

    def weight(self, proj: Projection) -> np.ndarray:
        """Effective weight of a projection (the transpose of its partner when tied)."""
        if proj.kind == "tied":
            return self.weights[proj.tied_to].T
        return self.weights[proj.name]

    def trainable(self, net: Network, fixed: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """Flat view ``{"W_<proj>": W, "b_<pop>": b}`` of what the learning rule changes: the
        learned projections, the biases, and the ``fixed`` projections named (feedback a rule
        learns by a rule of its own, e.g. node perturbation)."""
        out = {f"W_{p.name}": self.weights[p.name] for p in net.learned}
        out.update({f"W_{name}": self.weights[name] for name in fixed})
        out.update({f"b_{name}": b for name, b in self.biases.items()})
        return out

    def with_trainable(self, net: Network, flat: dict) -> "Params":
        """These parameters with the trainable arrays replaced by ``flat`` (same keys as
        :meth:`trainable`, fixed projections included where ``flat`` names them)."""
        weights = dict(self.weights)
        weights.update({p.name: flat[f"W_{p.name}"] for p in net.projections if f"W_{p.name}" in flat})
        return Params(weights, {name: flat[f"b_{name}"] for name in self.biases})

    def astype(self, dtype) -> "Params":
        return Params(
            {k: v.astype(dtype) for k, v in self.weights.items()},
            {k: v.astype(dtype) for k, v in self.biases.items()},
        )

    def copy(self) -> "Params":
        return self.astype(next(iter(self.weights.values())).dtype)


def draw_weight(rng: np.random.Generator, dist: str, n_dst: int, n_src: int, scale: float = 1.0) -> np.ndarray:
    r"""Draw an ``(n_dst, n_src)`` weight matrix (float64) from a named distribution.

    - ``glorot_uniform`` / ``uniform``: :math:`U(-a, a)`, :math:`a = \sqrt{6/(n_\mathrm{src}+n_\mathrm{dst})}`
    - ``kaiming_uniform``: :math:`U(-a, a)`, :math:`a = \sqrt{6/n_\mathrm{src}}`
    - ``trinomial``: values in {−1, 0, 1} with probability 1/3 each
    - ``binomial``: values in {0, 1} with probability 1/2 each
    - ``sign_identity``: :math:`\pm I` (random sign per diagonal entry; rectangular
      shapes get the identity on the leading square block)
    - ``unit_uniform``: :math:`U(-1, 1)` (with ``scale = 0.5``: seed 002's :math:`B \sim U(-\tfrac12, \tfrac12)`)

    and multiplied by ``scale``.
    """
    if dist in ("glorot_uniform", "uniform"):
        a = np.sqrt(6.0 / (n_src + n_dst))
        w = rng.uniform(-a, a, size=(n_dst, n_src))
    elif dist == "unit_uniform":
        w = rng.uniform(-1.0, 1.0, size=(n_dst, n_src))
    elif dist == "kaiming_uniform":
        a = np.sqrt(6.0 / n_src)
        w = rng.uniform(-a, a, size=(n_dst, n_src))
    elif dist == "trinomial":
        w = rng.integers(-1, 2, size=(n_dst, n_src)).astype(np.float64)
    elif dist == "binomial":
        w = rng.integers(0, 2, size=(n_dst, n_src)).astype(np.float64)
    elif dist == "sign_identity":
        w = np.zeros((n_dst, n_src))
        k = min(n_dst, n_src)
        w[np.arange(k), np.arange(k)] = rng.choice([-1.0, 1.0], size=k)
    else:
        raise ValueError(f"unknown init distribution {dist!r}")
    return scale * w


def init_params(net: Network, seed: int | np.random.Generator, dtype=np.float32) -> Params:
    """Draw every learned and fixed weight in projection order from one seeded generator;
    zero biases. The same seed gives the same parameters on every engine."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    sizes = net.sizes
    weights = {}
    for p in net.projections:
        if p.kind == "tied":
            continue
        weights[p.name] = draw_weight(rng, p.init, sizes[p.dst], sizes[p.src], p.scale).astype(dtype)
    biases = {pop.name: np.zeros(pop.size, dtype=dtype) for pop in net.dynamic_populations}
    return Params(weights, biases)
