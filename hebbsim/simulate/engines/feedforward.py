r"""The feed-forward chain of a network, as the reference engine computes it (no JAX here, so
that parameter validation can ask whether a network has one without importing JAX).

The chain is the network's *learned* projections alone: every population :math:`j` after the
input, in population order, gets

.. math::  s_j = r_j\Big(\sum_{p\ \mathrm{learned},\ \mathrm{dst}(p) = j} W_p\,\rho(s_{\mathrm{src}(p)}) + b_j\Big)

(:math:`r_j` the leak time constant, clipped to [0, 1] with ``clip_states``), which is the fixed
point of the ``additive`` dynamics once the fixed and tied projections (feedback) are left out.
That needs every learned projection to run from an earlier population to a later one
(x → h1 → … → hL → o, skip connections allowed) and neurons whose fixed point has this closed
form (``additive``; a ``gated`` neuron's fixed point :math:`\rho'(s)I = s/r` has none).
"""

from __future__ import annotations

from ...dynamics.network import Network, Projection


def feedforward_chain(net: Network) -> dict[str, tuple[Projection, ...]]:
    """For every non-input population, in order, the learned projections into it.

    Raises ``ValueError`` (one line naming the setting and the fix) for a network that has no
    feed-forward chain: a learned projection that runs backwards (a learned loop, a learned
    feedback path) or ``gated`` neurons."""
    if net.neuron != "additive":
        raise ValueError(
            f"network.neuron = {net.neuron!r}: dynamics.engine = 'reference' computes the fixed point of additive "
            "neurons (s = r·I) in one feed-forward sweep; set network.neuron = 'additive'")
    order = {p.name: k for k, p in enumerate(net.populations)}
    backwards = [p.name for p in net.learned if order[p.src] >= order[p.dst]]
    if backwards:
        raise ValueError(
            f"network: the learned projection(s) {', '.join(backwards)} run against the population order, so the "
            "learned projections are no feed-forward chain and dynamics.engine = 'reference' has no one-sweep fixed "
            "point for them; make them fixed (e.g. network.loop.kind = 'fixed') or use network.topology = "
            "'feedforward', 'random_feedback' or 'direct_feedback'")
    return {pop.name: tuple(p for p in net.learned if p.dst == pop.name) for pop in net.dynamic_populations}
